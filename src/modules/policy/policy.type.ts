import { Field, ObjectType } from 'type-graphql';
import { SafeIntScalar } from '../../graphql/scalars.js';
import { SecurityLevel } from '../../graphql/enums.js';

@ObjectType({ description: 'What an entity type accepts.' })
export class EntityPolicy {
  @Field(() => String, { description: 'Entity type name.' })
  entityType!: string;

  @Field(() => SecurityLevel, { description: 'Level its media gets at least.' })
  securityLevel!: SecurityLevel;

  @Field(() => [String], { description: 'MIME types accepted (detected from the content).' })
  allowedMediaTypes!: string[];

  @Field(() => SafeIntScalar, { description: 'Largest file accepted, in bytes (each kind may allow less).' })
  maxFileSize!: number;
}
