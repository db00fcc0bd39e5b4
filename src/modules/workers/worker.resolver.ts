import { Arg, Ctx, ID, Mutation, Query, Resolver } from 'type-graphql';
import type { IncomingFile } from '../../graphql/multipart.js';
import type { Context } from '../../graphql/context.js';
import { requireWorker } from '../../graphql/context.js';
import { UploadScalar } from '../../graphql/scalars.js';
import { Media } from '../media/media.type.js';
import type { MediaRecord } from '../media/media.record.js';
import { discardUpload } from '../media/upload.service.js';
import { WorkerMedia } from './worker.type.js';

@Resolver()
export class WorkerResolver {
  @Query(() => WorkerMedia, { description: 'Worker credentials only: the decrypted, checksum-verified content as base64 (PDFs and images up to 20 MiB).' })
  workerMedia(@Arg('id', () => ID) id: string, @Ctx() ctx: Context) {
    const worker = requireWorker(ctx);
    return ctx.services.workers.mediaContent(worker.tenant, id, worker.workerType);
  }

  @Mutation(() => Media, { description: 'Worker credentials only: store a signed PDF for a lease document (CRITICAL, encrypted), attached where the original is, LEASE_SIGNED where it holds LEASE_ORIGINAL.' })
  async uploadSignedDocument(
    @Arg('mediaId', () => ID) mediaId: string,
    @Arg('file', () => UploadScalar) file: IncomingFile,
    @Ctx() ctx: Context,
  ): Promise<MediaRecord> {
    let worker;
    try {
      worker = requireWorker(ctx);
    } catch (e) {
      await discardUpload(file);
      throw e;
    }
    return ctx.services.workers.uploadSigned(worker.tenant, worker.workerType, mediaId, file);
  }
}
