import { Field, InputType, Int } from 'type-graphql';
import type { IncomingFile } from '../../graphql/multipart.js';
import { AssetAccess, AssetType } from '../../graphql/enums.js';
import { UploadScalar } from '../../graphql/scalars.js';

@InputType({ description: 'A reference to a business object.' })
export class AssetRefInput {
  @Field(() => String, { description: 'Identifier of the referenced object (1-128 characters).' })
  id!: string;

  @Field(() => String, { description: 'Type of the referenced object, e.g. PRODUCT or CATEGORY (1-64 characters).' })
  type!: string;
}

@InputType({ description: 'A new asset: a BLOB with a file (or a completed direct upload), or a LINK with a url.' })
export class CreateAssetInput {
  @Field(() => AssetType, { description: 'BLOB or LINK; cannot change later.' })
  type!: AssetType;

  @Field(() => AssetAccess, { description: 'PUBLIC or PRIVATE; cannot change later.' })
  access!: AssetAccess;

  @Field(() => String, { nullable: true, description: 'Display name (default: the file name, else the url).' })
  name?: string | null;

  @Field(() => String, { nullable: true, description: 'Unique per tenant, URL-safe: segments of A-Z a-z 0-9 . _ ~ - separated by "/" (default: the asset id).' })
  key?: string | null;

  @Field(() => [AssetRefInput], { nullable: true, description: 'Business objects the asset belongs to.' })
  refIds?: AssetRefInput[] | null;

  @Field(() => UploadScalar, { nullable: true, description: 'Required for BLOB (or signedId of a completed direct upload); forbidden for LINK. At most 50 MB.' })
  file?: IncomingFile | null;

  @Field(() => String, { nullable: true, description: 'The signedId of a completed direct upload, instead of file (BLOB).' })
  signedId?: string | null;

  @Field(() => String, { nullable: true, description: 'Required for LINK: an absolute http(s) URL.' })
  url?: string | null;

  @Field(() => String, { nullable: true, description: 'File name to keep instead of the uploaded one (details.filename).' })
  filename?: string | null;

  @Field(() => Int, { nullable: true, description: 'Ordering hint (default 0).' })
  priority?: number | null;
}

@InputType({ description: 'Changes to an asset; fields left out (or null) keep their value. type and access cannot change.' })
export class UpdateAssetInput {
  @Field(() => Int, { description: 'The version the caller last read; a stale version fails with extensions.code CONFLICT.' })
  version!: number;

  @Field(() => String, { nullable: true, description: 'New display name.' })
  name?: string | null;

  @Field(() => [AssetRefInput], { nullable: true, description: 'New references, replacing the old ones ([] removes all).' })
  refIds?: AssetRefInput[] | null;

  @Field(() => UploadScalar, { nullable: true, description: 'A new file for a BLOB asset; the old one is deleted once the change is saved.' })
  file?: IncomingFile | null;

  @Field(() => String, { nullable: true, description: 'A new absolute http(s) URL for a LINK asset.' })
  url?: string | null;

  @Field(() => String, { nullable: true, description: 'New details.filename.' })
  filename?: string | null;

  @Field(() => Int, { nullable: true, description: 'New ordering hint.' })
  priority?: number | null;

  @Field(() => Boolean, { nullable: true, description: 'Whether the asset is in use.' })
  active?: boolean | null;
}
