import { Field, InputType } from 'type-graphql';
import type { IncomingFile } from '../../graphql/multipart.js';
import { UploadScalar } from '../../graphql/scalars.js';
import { MediaRole, SecurityLevel } from '../../graphql/enums.js';
import { EntityInput } from '../entities/entity.type.js';

@InputType({ description: 'One file to upload and where it belongs.' })
export class UploadInput {
  @Field(() => UploadScalar, { description: 'The file (GraphQL multipart request spec).' })
  file!: IncomingFile;

  @Field(() => EntityInput, { description: 'Entity the media is attached to.' })
  entity!: EntityInput;

  @Field(() => [String], { nullable: true, description: 'Tags; an element may also hold several comma-separated tags ("photo,primary").' })
  tags?: string[] | null;

  @Field(() => MediaRole, { nullable: true, description: 'Role to assign to the new media for this entity (moves it from any previous holder).' })
  role?: MediaRole | null;

  @Field(() => SecurityLevel, { nullable: true, description: 'Raise (never lower) the security level the entity policy gives.' })
  securityLevel?: SecurityLevel | null;
}
