// The resumable uploads' only contact with the upload pipeline's own files
// (inspection and its durations, images and their queue, file names, the
// UploadService and its types): when they move or change, this file is what
// follows them. Nothing else under src/modules/resumable-uploads/ imports them
// (the resolver uses the GraphQL Media type and records, which are not the pipeline's).
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Storage } from '../../storage/index.js';
import { InspectStream, SNIFF_BYTES, type InspectResult } from '../media/inspect-stream.js';
import { processImage, type ImageFacts } from '../media/images.js';
import type { ImageQueue } from '../media/image-queue.js';
import { sanitiseFileName } from '../media/file-name.js';
import { SUPPORTED_TYPES } from '../policy/media-types.js';

export type { Plan, Stored, UploadService } from '../media/upload.service.js';
export type { ImageQueue };
export type { InspectResult };
export { sanitiseFileName };

/** Bytes the type is detected from: the upload pipeline's own sniffing window. */
export const HEAD_BYTES = SNIFF_BYTES;

const discard = () => new Writable({ write: (_c, _e, cb) => cb() });

/**
 * The type of content that starts with `head`, detected exactly as an upload's
 * (magic numbers; the file name only tells DOC from XLS); rejects with
 * UNSUPPORTED_MEDIA_TYPE when nothing supported is recognised.
 */
export async function detectType(head: Buffer, fileName: string): Promise<string> {
  let mime: string | undefined;
  const probe = new InspectStream({
    fileName,
    accept: (m) => {
      mime = m;
      return Number.MAX_SAFE_INTEGER;
    },
  });
  await pipeline(Readable.from([head]), probe, discard());
  return mime!;
}

/**
 * Streams a stored object once through the upload pipeline's inspection: the
 * type detected again, `accept` asked for its size limit (or throws), bytes
 * counted against it, SHA-256, PDF pages, durations.
 */
export async function inspectStored(storage: Storage, key: string, o: { fileName: string; accept(mime: string): number }): Promise<InspectResult> {
  const inspector = new InspectStream(o);
  await pipeline(await storage.get(key), inspector, discard());
  return inspector.result();
}

/** What an image's stored original gives its media (dimensions, variants), as for an upload; undefined for other kinds. */
export async function imageFacts(storage: Storage, tenant: string, mediaId: string, mime: string, queue: ImageQueue): Promise<ImageFacts | undefined> {
  if (SUPPORTED_TYPES.get(mime)?.kind !== 'IMAGE') return undefined;
  return processImage(storage, tenant, mediaId, mime, queue);
}
