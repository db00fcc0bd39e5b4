import { Arg, Ctx, FieldResolver, ID, Int, Mutation, Query, Resolver, Root } from 'type-graphql';
import type { Context } from '../../graphql/context.js';
import { requireUser } from '../../graphql/context.js';
import { MediaKind } from '../../graphql/enums.js';
import { Entity, EntityInput } from '../entities/entity.type.js';
import { Role } from '../roles/role.type.js';
import type { EntityRef, MediaRecord, RoleRecord } from './media.record.js';
import { contentPath, renderUrl, signedUrl, variantUrl } from './media.links.js';
import { ImageFit, ImageFormat } from '../../graphql/enums.js';
import { renderRequestOf } from '../renders/render-plan.js';
import { keyOrIntegrityError, openChecksum } from '../../crypto/sealed-checksum.js';
import { ImageVariant, Media, MediaConnection, MediaPage } from './media.type.js';
import { UploadInput } from './media.input.js';
import { checkFirst, decodeCursor, isUuid } from './cursor.js';

@Resolver(() => Media)
export class MediaResolver {
  @Query(() => Media, { nullable: true, description: 'A media of the caller\'s tenant, or null.' })
  async media(@Arg('id', () => ID) id: string, @Ctx() ctx: Context): Promise<MediaRecord | null> {
    requireUser(ctx, 'media:read');
    return isUuid(id) ? ctx.loaders.mediaById.load(id) : null;
  }

  @Query(() => MediaConnection, { description: 'Media attached to an entity, newest first, cursor-paginated.' })
  async mediaForEntity(
    @Arg('entity', () => EntityInput) entity: EntityInput,
    @Arg('kind', () => MediaKind, { nullable: true }) kind: MediaKind | null,
    @Arg('first', () => Int, { nullable: true, defaultValue: 50 }) first: number,
    @Arg('after', () => String, { nullable: true }) after: string | null,
    @Ctx() ctx: Context,
  ) {
    requireUser(ctx, 'media:read');
    const ref = ctx.services.media.entity(entity);
    return ctx.loaders.entityMedia.load({ entity: ref, kind: kind ?? null, first: checkFirst(first), after: decodeCursor(after) });
  }

  @Query(() => MediaConnection, { description: 'matchAll=true: media carrying every tag (@>); false: any of them (&&). GIN-indexed.' })
  async searchByTags(
    @Arg('tags', () => [String]) tags: string[],
    @Arg('matchAll', () => Boolean, { nullable: true, defaultValue: true }) matchAll: boolean,
    @Arg('entity', () => EntityInput, { nullable: true }) entity: EntityInput | null,
    @Arg('first', () => Int, { nullable: true, defaultValue: 50 }) first: number,
    @Arg('after', () => String, { nullable: true }) after: string | null,
    @Ctx() ctx: Context,
  ) {
    const user = requireUser(ctx, 'media:read');
    return ctx.services.media.searchByTags(user.tenant, { tags, matchAll: matchAll ?? true, entity: entity ?? null, first, after });
  }

  @Query(() => MediaPage, { description: 'Page-numbered catalogue; pageSize at most 100; search matches file names case-insensitively.' })
  async mediaLibrary(
    @Arg('page', () => Int, { nullable: true, defaultValue: 1 }) page: number,
    @Arg('pageSize', () => Int, { nullable: true, defaultValue: 10 }) pageSize: number,
    @Arg('kind', () => MediaKind, { nullable: true }) kind: MediaKind | null,
    @Arg('search', () => String, { nullable: true }) search: string | null,
    @Ctx() ctx: Context,
  ) {
    const user = requireUser(ctx, 'media:read');
    return ctx.services.media.library(user.tenant, { page: page ?? 1, pageSize: pageSize ?? 10, kind: kind ?? null, search: search ?? null });
  }

  @Mutation(() => Media, { description: 'Uploads one file to an entity (GraphQL multipart request).' })
  async upload(@Arg('input', () => UploadInput) input: UploadInput, @Ctx() ctx: Context): Promise<MediaRecord> {
    const user = requireUser(ctx, 'media:create');
    return ctx.services.uploads.upload(user.tenant, user.subject, input);
  }

  @Mutation(() => [Media], { description: 'Uploads up to 20 files, all or nothing; a refused input is named by extensions.index.' })
  async uploadMany(@Arg('inputs', () => [UploadInput]) inputs: UploadInput[], @Ctx() ctx: Context): Promise<MediaRecord[]> {
    const user = requireUser(ctx, 'media:create');
    return ctx.services.uploads.uploadMany(user.tenant, user.subject, inputs);
  }

  @Mutation(() => Media, { description: 'Replaces the whole tag set of a media (same normalisation as upload).' })
  async replaceMediaTags(@Arg('id', () => ID) id: string, @Arg('tags', () => [String]) tags: string[], @Ctx() ctx: Context) {
    const user = requireUser(ctx, 'media:update');
    return ctx.services.media.replaceTags(user.tenant, id, tags);
  }

  @Mutation(() => Media, { description: 'Links a media to one more entity.' })
  async attachMedia(@Arg('id', () => ID) id: string, @Arg('entity', () => EntityInput) entity: EntityInput, @Ctx() ctx: Context) {
    const user = requireUser(ctx, 'media:update');
    return ctx.services.media.attach(user.tenant, id, entity);
  }

  @Mutation(() => Media, { description: 'Unlinks a media from an entity; its roles for that entity go too.' })
  async detachMedia(@Arg('id', () => ID) id: string, @Arg('entity', () => EntityInput) entity: EntityInput, @Ctx() ctx: Context) {
    const user = requireUser(ctx, 'media:update');
    return ctx.services.media.detach(user.tenant, id, entity);
  }

  @Mutation(() => Boolean, { description: 'Deletes a media: gone from every read at once, its stored objects purged after.' })
  async deleteMedia(@Arg('id', () => ID) id: string, @Ctx() ctx: Context): Promise<boolean> {
    const user = requireUser(ctx, 'media:delete');
    return ctx.services.media.delete(user.tenant, id);
  }

  @FieldResolver(() => String, { nullable: true, description: 'Where the bytes can be fetched without credentials for a limited time: null for encrypted media (use contentPath with credentials).' })
  url(@Root() m: MediaRecord, @Ctx() ctx: Context): Promise<string | null> {
    return signedUrl(ctx.services, m, contentPath(m.id));
  }

  @FieldResolver(() => String, { description: 'Hex SHA-256 of the original (plaintext) content.' })
  checksum(@Root() m: MediaRecord, @Ctx() ctx: Context): string {
    // Encrypted media keep it sealed at rest (a known file's hash would confirm it is stored).
    try {
      return openChecksum(ctx.services.crypto.ring, m);
    } catch (e) {
      throw keyOrIntegrityError(e, ctx.services, m);
    }
  }

  @FieldResolver(() => String, { description: 'API path that streams the content to an authorised caller (decrypting and verifying it).' })
  contentPath(@Root() m: MediaRecord): string {
    return contentPath(m.id);
  }

  @FieldResolver(() => [ImageVariant], { description: 'Resized copies of an image.' })
  variants(@Root() m: MediaRecord, @Ctx() ctx: Context): Promise<ImageVariant[]> {
    return Promise.all(m.variants.map(async (v) => ({ name: v.name, width: v.width, height: v.height, url: await variantUrl(ctx.services, m, v) })));
  }

  @FieldResolver(() => String, {
    nullable: true,
    description:
      'A signed, time-limited URL of a render of this image (GET /media/{id}/render): at most 4096 px a side, never upscaled. ' +
      'Null for encrypted media (fetch their renders with a token) and for media that are not JPEG, PNG, WebP or GIF images.',
  })
  renderUrl(
    @Root() m: MediaRecord,
    @Ctx() ctx: Context,
    @Arg('width', () => Int, { nullable: true }) width: number | null,
    @Arg('height', () => Int, { nullable: true }) height: number | null,
    @Arg('fit', () => ImageFit, { nullable: true }) fit: ImageFit | null,
    @Arg('format', () => ImageFormat, { nullable: true }) format: ImageFormat | null,
    @Arg('quality', () => Int, { nullable: true, description: '1-100; the format\'s default when omitted.' }) quality: number | null,
  ): string | null {
    const request = renderRequestOf({ width, height, fit, format, quality }, ctx.services.config.renderSizes);
    return renderUrl(ctx.services, m, request);
  }

  @FieldResolver(() => [Entity], { description: 'Entities the media is attached to.' })
  entities(@Root() m: MediaRecord, @Ctx() ctx: Context): Promise<EntityRef[]> {
    return ctx.loaders.mediaEntities.load(m.id);
  }

  @FieldResolver(() => [Role], { description: 'Roles the media holds, for any entity.' })
  roles(@Root() m: MediaRecord, @Ctx() ctx: Context): Promise<RoleRecord[]> {
    return ctx.loaders.mediaRoles.load(m.id);
  }
}
