import { Field, ID, InputType, ObjectType } from 'type-graphql';

@ObjectType({ description: 'A business entity (a property, a person, a lease…) that media attaches to.' })
export class Entity {
  @Field(() => String, { description: 'Entity type, one of the media policy.' })
  type!: string;

  @Field(() => ID, { description: 'Identifier of the entity in the business application.' })
  id!: string;
}

@InputType({ description: 'A business entity, by type and id.' })
export class EntityInput {
  @Field(() => String, { description: 'A business entity type known to the media policy, e.g. "property".' })
  type!: string;

  @Field(() => ID, { description: 'Identifier of the entity in the business application.' })
  id!: string;
}
