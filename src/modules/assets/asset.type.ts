import { Field, ID, Int, ObjectType } from 'type-graphql';
import { AssetAccess, AssetType } from '../../graphql/enums.js';
import { DateTimeScalar, SafeIntScalar } from '../../graphql/scalars.js';

@ObjectType({ description: 'A reference from an asset to a business object, e.g. a PRODUCT or CATEGORY id.' })
export class AssetRef {
  @Field(() => String, { description: 'Identifier of the referenced object.' })
  id!: string;

  @Field(() => String, { description: 'Type of the referenced object, e.g. PRODUCT or CATEGORY.' })
  type!: string;
}

@ObjectType({ description: 'The stored file of a BLOB asset (LINK assets: only filename, when given).' })
export class AssetDetails {
  @Field(() => String, { nullable: true, description: 'File name, as uploaded or as set by the filename argument.' })
  filename!: string | null;

  @Field(() => String, { nullable: true, description: 'MIME type detected from the content (magic bytes).' })
  mimeType!: string | null;

  @Field(() => SafeIntScalar, { nullable: true, description: 'Size of the file in bytes.' })
  bytes!: number | null;

  @Field(() => String, { nullable: true, description: 'Hex SHA-256 of the file; also the ETag the download routes send.' })
  checksum!: string | null;
}

@ObjectType({ description: 'Version and timestamps of an asset.' })
export class AssetMetadata {
  @Field(() => Int, { description: 'Incremented by every write; updateAsset must send the version it last read.' })
  version!: number;

  @Field(() => DateTimeScalar, { description: 'When the asset was created.' })
  createdAt!: Date;

  @Field(() => DateTimeScalar, { description: 'Last change of the asset.' })
  modifiedAt!: Date;
}

@ObjectType({ description: 'A tenant asset: a stored file (BLOB) or an external URL (LINK), PUBLIC or PRIVATE.' })
export class Asset {
  @Field(() => ID, { description: 'Opaque identifier.' })
  id!: string;

  @Field(() => AssetType, { description: 'BLOB or LINK; never changes.' })
  type!: AssetType;

  @Field(() => AssetAccess, { description: 'PUBLIC or PRIVATE; never changes.' })
  access!: AssetAccess;

  @Field(() => String, { description: 'Display name.' })
  name!: string;

  @Field(() => String, { description: 'Unique per tenant; GET /tenants/{tenant}/assets/{key} serves the content.' })
  key!: string;

  @Field(() => [AssetRef], { description: 'Business objects the asset belongs to.' })
  refIds!: AssetRef[];

  @Field(() => Int, { description: 'Ordering hint for clients (higher first when sorted with priority:desc).' })
  priority!: number;

  @Field(() => Boolean, { description: 'Whether the asset is in use; inactive assets are still served.' })
  active!: boolean;
}

@ObjectType({ description: 'A numbered page of assets.' })
export class AssetPage {
  @Field(() => [Asset], { description: 'The assets of this page.' })
  items!: Asset[];

  @Field(() => Int, { description: 'Number of assets matching q, across all pages.' })
  totalCount!: number;

  @Field(() => Int, { description: 'This page number, from 1.' })
  pageNumber!: number;

  @Field(() => Int, { description: 'Page size used.' })
  pageSize!: number;
}
