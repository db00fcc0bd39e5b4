import { Arg, Ctx, FieldResolver, ID, Int, Mutation, Query, Resolver, Root } from 'type-graphql';
import type { Context } from '../../graphql/context.js';
import { requireUser } from '../../graphql/context.js';
import { isUuid } from '../media/cursor.js';
import { ImageVariant } from '../media/media.type.js';
import { downloadPath, publicUrlOf, variantUrlOf, type AssetRecord } from './asset.record.js';
import { CreateAssetInput, UpdateAssetInput } from './asset.input.js';
import type { AssetPageResult } from './asset.service.js';
import { Asset, AssetDetails, AssetMetadata, AssetPage } from './asset.type.js';
import { ImageFit, ImageFormat } from '../../graphql/enums.js';
import { canonicalQuery, isRenderable, renderRequestOf } from '../renders/render-plan.js';

@Resolver(() => Asset)
export class AssetResolver {
  @Query(() => Asset, { nullable: true, description: "An asset of the caller's tenant, or null." })
  async asset(@Arg('id', () => ID) id: string, @Ctx() ctx: Context): Promise<AssetRecord | null> {
    requireUser(ctx, 'asset:read');
    return isUuid(id) ? ctx.loaders.assetById.load(id) : null;
  }

  @Query(() => AssetPage, { description: 'q: the asset query language of SPEC.md; sort: "name,metadata.createdAt:desc". pageSize at most 100.' })
  async assets(
    @Arg('pageNumber', () => Int, { nullable: true, defaultValue: 1 }) pageNumber: number,
    @Arg('pageSize', () => Int, { nullable: true, defaultValue: 60 }) pageSize: number,
    @Arg('sort', () => String, { nullable: true }) sort: string | null,
    @Arg('q', () => String, { nullable: true }) q: string | null,
    @Ctx() ctx: Context,
  ): Promise<AssetPageResult> {
    const user = requireUser(ctx, 'asset:read');
    return ctx.services.assets.list(user.tenant, { pageNumber: pageNumber ?? 1, pageSize: pageSize ?? 60, sort: sort ?? null, q: q ?? null });
  }

  @Mutation(() => Asset, { description: 'Creates a BLOB asset (file or signedId; sniffed, at most 50 MB) or a LINK asset (absolute http(s) url).' })
  async createAsset(@Arg('input', () => CreateAssetInput) input: CreateAssetInput, @Ctx() ctx: Context): Promise<AssetRecord> {
    const user = requireUser(ctx, 'asset:manage');
    return ctx.services.assets.create(user.tenant, user.subject, input);
  }

  @Mutation(() => Asset, { description: 'Changes an asset at the version the caller read (else CONFLICT, nothing changed); a new file replaces the old one.' })
  async updateAsset(@Arg('id', () => ID) id: string, @Arg('input', () => UpdateAssetInput) input: UpdateAssetInput, @Ctx() ctx: Context): Promise<AssetRecord> {
    const user = requireUser(ctx, 'asset:manage');
    return ctx.services.assets.update(user.tenant, id, input);
  }

  @Mutation(() => Boolean, { description: 'Deletes an asset: gone from every read at once (its key free again), its stored objects purged after.' })
  async deleteAsset(@Arg('id', () => ID) id: string, @Ctx() ctx: Context): Promise<boolean> {
    const user = requireUser(ctx, 'asset:manage');
    return ctx.services.assets.delete(user.tenant, id);
  }

  @FieldResolver(() => AssetDetails, { description: 'The stored file: name, detected type, size, checksum.' })
  details(@Root() a: AssetRecord): AssetDetails {
    return { filename: a.fileName, mimeType: a.mimeType, bytes: a.bytes, checksum: a.checksum };
  }

  @FieldResolver(() => AssetMetadata, { description: 'Version and timestamps.' })
  metadata(@Root() a: AssetRecord): AssetMetadata {
    return { version: a.version, createdAt: a.createdAt, modifiedAt: a.modifiedAt };
  }

  @FieldResolver(() => String, { nullable: true, description: 'PUBLIC assets and LINK assets: a URL anyone may fetch (a PUBLIC blob\'s carries ?v={version}). PRIVATE blobs: null.' })
  publicUrl(@Root() a: AssetRecord, @Ctx() ctx: Context): string | null {
    return publicUrlOf(ctx.services.urls.base(), a);
  }

  @FieldResolver(() => String, { description: 'API path: 301 to the public URL for PUBLIC/LINK, the bytes for PRIVATE blobs.' })
  downloadPath(@Root() a: AssetRecord): string {
    return downloadPath(a.id);
  }

  @FieldResolver(() => String, {
    nullable: true,
    description:
      'URL of a render of an image blob (at most 4096 px a side, never upscaled): for a PUBLIC asset its public by-key URL with the render parameters, ' +
      'for a PRIVATE one the download route with them (send a token with asset:read). Null for LINKs and for blobs that are not JPEG, PNG, WebP or GIF images.',
  })
  renderUrl(
    @Root() a: AssetRecord,
    @Ctx() ctx: Context,
    @Arg('width', () => Int, { nullable: true }) width: number | null,
    @Arg('height', () => Int, { nullable: true }) height: number | null,
    @Arg('fit', () => ImageFit, { nullable: true }) fit: ImageFit | null,
    @Arg('format', () => ImageFormat, { nullable: true }) format: ImageFormat | null,
    @Arg('quality', () => Int, { nullable: true, description: "1-100; the format's default when omitted." }) quality: number | null,
  ): string | null {
    const request = renderRequestOf({ width, height, fit, format, quality }, ctx.services.config.renderSizes);
    if (a.type !== 'BLOB' || !isRenderable(a.mimeType)) return null;
    const q = canonicalQuery(request);
    const base = ctx.services.urls.base();
    const pub = publicUrlOf(base, a);
    if (pub) return q ? pub.replace('?', `?${q}&`) : pub;
    return `${base}${downloadPath(a.id)}${q ? `?${q}` : ''}`;
  }

  @FieldResolver(() => [ImageVariant], { description: 'Resized copies of an image blob (public like the asset; PRIVATE ones through the download route).' })
  variants(@Root() a: AssetRecord, @Ctx() ctx: Context): ImageVariant[] {
    return a.variants.map((v) => ({ name: v.name, width: v.width, height: v.height, url: variantUrlOf(ctx.services.urls.base(), a, v.name) }));
  }
}
