import { Field, ObjectType } from 'type-graphql';
import { DateTimeScalar } from '../../graphql/scalars.js';
import { MediaRole } from '../../graphql/enums.js';

@ObjectType({ description: 'A role held by one media for one entity. At most one media holds a given role for a given entity within a tenant.' })
export class Role {
  @Field(() => MediaRole, { description: 'The role.' })
  role!: MediaRole;

  @Field(() => DateTimeScalar, { description: 'When the current holder got the role.' })
  assignedAt!: Date;
}
