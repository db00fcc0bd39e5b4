import { Arg, Ctx, FieldResolver, ID, Query, Resolver, Root } from 'type-graphql';
import type { Context } from '../../graphql/context.js';
import { requireUser } from '../../graphql/context.js';
import type { MediaRecord } from '../media/media.record.js';
import { Media } from '../media/media.type.js';
import { ResumableUpload } from './resumable-upload.type.js';
import type { ResumableState } from './resumable-upload.service.js';

@Resolver(() => ResumableUpload)
export class ResumableUploadResolver {
  @Query(() => ResumableUpload, { nullable: true, description: 'A resumable (tus) upload of the caller\'s tenant by its id (the last segment of its upload URL), or null (unknown, expired and forgotten, or another tenant\'s). Needs media:create.' })
  resumableUpload(@Arg('id', () => ID) id: string, @Ctx() ctx: Context): Promise<ResumableState | null> {
    const user = requireUser(ctx, 'media:create');
    return ctx.services.resumable.describe(user.tenant, id);
  }

  @FieldResolver(() => Media, { nullable: true, description: 'The media the upload became once its last byte arrived and passed the checks; null before (and once that media is deleted).' })
  media(@Root() upload: ResumableState, @Ctx() ctx: Context): Promise<MediaRecord | null> | null {
    return upload.mediaId ? ctx.loaders.mediaById.load(upload.mediaId) : null;
  }
}
