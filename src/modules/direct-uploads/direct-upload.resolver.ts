import { Arg, Ctx, Mutation, Resolver } from 'type-graphql';
import type { Context } from '../../graphql/context.js';
import { requireUser } from '../../graphql/context.js';
import { errors } from '../../errors/index.js';
import { MediaRole } from '../../graphql/enums.js';
import { EntityInput } from '../entities/entity.type.js';
import type { MediaRecord } from '../media/media.record.js';
import { Media } from '../media/media.type.js';
import { DirectUpload, DirectUploadInput } from './direct-upload.type.js';
import type { DirectUploadTicket } from './direct-upload.service.js';

@Resolver()
export class DirectUploadResolver {
  @Mutation(() => DirectUpload, { description: 'Starts a browser-to-storage upload: PUT the bytes to `url` with `headers`, then call completeDirectUpload (or createAsset with the signedId). STANDARD content only. Needs media:create or asset:manage.' })
  createDirectUpload(@Arg('input', () => DirectUploadInput) input: DirectUploadInput, @Ctx() ctx: Context): Promise<DirectUploadTicket> {
    const user = requireUser(ctx);
    // The ticket becomes a media (completeDirectUpload, media:create) or an asset (createAsset, asset:manage).
    if (!user.scopes.has('media:create') && !user.scopes.has('asset:manage')) throw errors.forbiddenAny(['media:create', 'asset:manage']);
    return ctx.services.directUploads.create(user.tenant, user.subject, input);
  }

  @Mutation(() => Media, { description: 'Verifies a direct upload (existence, size, checksum, detected type) and creates the media like upload. A signed id works once; a completion that fails leaves it usable until it expires.' })
  completeDirectUpload(
    @Arg('signedId', () => String) signedId: string,
    @Arg('entity', () => EntityInput) entity: EntityInput,
    @Arg('tags', () => [String], { nullable: true }) tags: string[] | null,
    @Arg('role', () => MediaRole, { nullable: true }) role: MediaRole | null,
    @Ctx() ctx: Context,
  ): Promise<MediaRecord> {
    const user = requireUser(ctx, 'media:create');
    return ctx.services.directUploads.complete(user.tenant, user.subject, { signedId, entity: ctx.services.media.entity(entity), tags, role });
  }
}
