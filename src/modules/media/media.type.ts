import { Field, Float, ID, Int, ObjectType } from 'type-graphql';
import { DateTimeScalar, SafeIntScalar } from '../../graphql/scalars.js';
import { MediaKind, SecurityLevel, VariantName } from '../../graphql/enums.js';

@ObjectType({ description: 'A resized copy of an image (never larger than the original).' })
export class ImageVariant {
  @Field(() => VariantName, { description: 'Size name: THUMB 160, MEDIUM 640, LARGE 1280, LARGE_2X 2560 px on the long edge.' })
  name!: VariantName;

  @Field(() => Int, { description: 'Width in pixels.' })
  width!: number;

  @Field(() => Int, { description: 'Height in pixels.' })
  height!: number;

  @Field(() => String, { description: 'Where the variant can be fetched (signed, time-limited for STANDARD media).' })
  url!: string;
}

@ObjectType({ description: 'A stored file: its metadata, tags, entities and roles.' })
export class Media {
  @Field(() => ID, { description: 'Opaque identifier.' })
  id!: string;

  @Field(() => String, { description: 'File name as the client sent it.' })
  fileName!: string;

  @Field(() => String, { description: 'MIME type detected from the content (magic bytes), e.g. image/jpeg, application/pdf.' })
  mediaType!: string;

  @Field(() => MediaKind, { description: 'Kind of content.' })
  kind!: MediaKind;

  @Field(() => SafeIntScalar, { description: 'Size of the original content in bytes.' })
  fileSize!: number;

  // checksum: a field resolver (MediaResolver), since an encrypted media's row holds it sealed.
  checksum!: string;

  @Field(() => SecurityLevel, { description: 'Security level: from the entity policy, raised by roles or the upload.' })
  securityLevel!: SecurityLevel;

  @Field(() => Boolean, { description: 'Whether the stored content is encrypted.' })
  encrypted!: boolean;

  @Field(() => String, { nullable: true, description: 'Identifier of the key that encrypts the stored content; null when not encrypted.' })
  encryptionKeyId!: string | null;

  @Field(() => [String], { description: 'Lowercase tags, each [a-z0-9_-]{1,64}, at most 32.' })
  tags!: string[];

  @Field(() => Int, { nullable: true, description: 'Image width in pixels.' })
  width!: number | null;

  @Field(() => Int, { nullable: true, description: 'Image height in pixels.' })
  height!: number | null;

  @Field(() => Float, { nullable: true, description: 'Duration of audio or video, where it can be read cheaply.' })
  durationSeconds!: number | null;

  @Field(() => Int, { nullable: true, description: 'Page count of a PDF.' })
  pageCount!: number | null;

  @Field(() => String, { nullable: true, description: 'Subject of the token that uploaded the media.' })
  createdBy!: string | null;

  @Field(() => DateTimeScalar, { description: 'When the media was uploaded.' })
  createdAt!: Date;

  @Field(() => DateTimeScalar, { description: 'Last change of the media, its tags, entities or roles.' })
  updatedAt!: Date;

  @Field(() => Int, { description: 'Incremented by every write.' })
  version!: number;
}

@ObjectType({ description: 'Cursor pagination state.' })
export class PageInfo {
  @Field(() => String, { nullable: true, description: 'Pass as `after` to get the next page.' })
  endCursor!: string | null;

  @Field(() => Boolean, { description: 'Whether more items follow.' })
  hasNextPage!: boolean;
}

@ObjectType({ description: 'A page of media, newest first.' })
export class MediaConnection {
  @Field(() => [Media], { description: 'The media of this page.' })
  nodes!: Media[];

  @Field(() => PageInfo, { description: 'Where the next page starts.' })
  pageInfo!: PageInfo;

  @Field(() => Int, { description: 'Exact number of media matching, across all pages.' })
  totalCount!: number;
}

@ObjectType({ description: 'A numbered page of the media library.' })
export class MediaPage {
  @Field(() => [Media], { description: 'The media of this page.' })
  items!: Media[];

  @Field(() => Int, { description: 'Number of media matching, across all pages.' })
  total!: number;

  @Field(() => Int, { description: 'This page number, from 1.' })
  page!: number;

  @Field(() => Int, { description: 'Page size used.' })
  pageSize!: number;
}
