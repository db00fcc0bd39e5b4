import { Field, InputType, ObjectType } from 'type-graphql';
import { DateTimeScalar, JSONObjectScalar, SafeIntScalar } from '../../graphql/scalars.js';

@ObjectType({ description: 'Headers the PUT to a direct upload URL must carry.' })
export class DirectUploadHeaders {
  @Field(() => String, { description: 'Content-Type to send.' })
  contentType!: string;

  @Field(() => String, { nullable: true, description: 'Content-MD5 to send, where the store uses it (null: not used).' })
  contentMd5!: string | null;

  @Field(() => String, { nullable: true, description: 'Content-Disposition to send.' })
  contentDisposition!: string | null;

  @Field(() => JSONObjectScalar, { description: 'Every header the client must send with the PUT, as name -> value.' })
  all!: Record<string, string>;
}

@ObjectType({ description: 'Where and how to PUT a file straight to storage, and the signed id that completes it.' })
export class DirectUpload {
  @Field(() => String, { description: 'Tamper-proof, tenant-bound, single-use id for completeDirectUpload or createAsset (a completion that fails leaves it usable).' })
  signedId!: string;

  @Field(() => String, { description: 'Staging key of the upload, in its own object group (a presigned PUT writes it); completion copies the verified bytes to the new media\'s or asset\'s own key.' })
  key!: string;

  @Field(() => String, { description: 'File name as declared.' })
  filename!: string;

  @Field(() => String, { description: 'Declared MIME type; must match the content detected at completion.' })
  contentType!: string;

  @Field(() => SafeIntScalar, { description: 'Declared size in bytes; the object must have exactly this size.' })
  byteSize!: number;

  @Field(() => String, { description: 'Declared base64 SHA-256; the object must have this checksum.' })
  checksum!: string;

  @Field(() => String, { description: 'Storage backend receiving the PUT: "s3" or "local".' })
  serviceName!: string;

  @Field(() => String, { description: 'URL to PUT the bytes to (a presigned S3 URL, or the service\'s own upload endpoint).' })
  url!: string;

  @Field(() => DirectUploadHeaders, { description: 'Headers the PUT must carry.' })
  headers!: DirectUploadHeaders;

  @Field(() => DateTimeScalar, { description: 'After this the URL and the signed id no longer work.' })
  expiresAt!: Date;
}

@InputType({ description: 'The file a client is about to upload straight to storage.' })
export class DirectUploadInput {
  @Field(() => String, { description: 'File name.' })
  filename!: string;

  @Field(() => String, { description: 'MIME type of the content.' })
  contentType!: string;

  @Field(() => SafeIntScalar, { description: 'Exact size in bytes.' })
  byteSize!: number;

  @Field(() => String, { description: 'Base64 of the SHA-256 of the content.' })
  checksum!: string;

  @Field(() => String, {
    nullable: true,
    description: 'Base64 of the MD5 of the content (24 characters), optional. When given, the PUT must carry it as Content-MD5 (headers.contentMd5) and the store refuses bytes that do not match it.',
  })
  contentMd5?: string | null;
}
