import { Field, ObjectType } from 'type-graphql';
import { SafeIntScalar } from '../../graphql/scalars.js';
import { SecurityLevel } from '../../graphql/enums.js';

@ObjectType({ description: 'A document for a back-office worker: decrypted, checksum-verified content as base64.' })
export class WorkerMedia {
  @Field(() => String, { description: 'The content, base64.' })
  contentBase64!: string;

  @Field(() => String, { description: 'File name of the media.' })
  documentName!: string;

  @Field(() => String, { description: 'Detected MIME type.' })
  contentType!: string;

  @Field(() => SafeIntScalar, { description: 'Size in bytes.' })
  fileSize!: number;

  @Field(() => String, { description: 'Hex SHA-256 of the content (verified before it was returned).' })
  checksum!: string;

  @Field(() => SecurityLevel, { description: 'Security level of the media.' })
  securityLevel!: string;
}
