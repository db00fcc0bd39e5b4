// The resumable uploads' only contact with the upload pipeline's own files
// (inspection and its durations, images and their queue, file names, the
// UploadService and its types): when they move or change, this file is what
// follows them. Nothing else under src/modules/resumable-uploads/ imports them
// (the resolver uses the GraphQL Media type and records, which are not the pipeline's).
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Storage } from '../../storage/index.js';
import { InspectStream, SNIFF_BYTES, type InspectResult } from '../../ingest/inspect-stream.js';
import { imageFacts as factsFromHeader, type ImageFacts } from '../../ingest/image-facts.js';
import type { Ingest } from '../../ingest/ingest.js';
import type { ImageQueue } from '../renders/image-queue.js';
import { sanitiseFileName } from '../../ingest/file-name.js';
import { SUPPORTED_TYPES } from '../policy/media-types.js';

export type { Plan, Stored, UploadService } from '../media/upload.service.js';
export type { ImageQueue };
export type { InspectResult };
/** The inspection itself (bench/resumable.ts compares ways to run it). */
export { InspectStream, sanitiseFileName };

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
export async function inspectStored(
  storage: Storage,
  key: string,
  o: { fileName: string; accept(mime: string): number },
  through?: { ingest: Ingest; tenant: string },
): Promise<InspectResult> {
  // Through the ingest pipeline when given: malware scanning (CLAMD_URL) included.
  const inspector = through ? through.ingest.inspector(o, { tenant: through.tenant, source: 'resumable' }) : new InspectStream(o);
  await pipeline(await storage.get(key), inspector, discard());
  return inspector.result();
}

/**
 * The upload pipeline's inspection fed chunk by chunk as the bytes arrive, across
 * requests, and ended once the last byte passed: the same checks as one stream
 * through InspectStream. It never fails its feeder: an inspection that fails (or
 * falls behind the stored bytes) is simply not used, and the stored bytes are
 * inspected instead.
 */
export class RunningInspection {
  /** Bytes fed so far. */
  bytes = 0;
  /** Why the inspection failed, if it did. */
  failure: unknown;
  private readonly inspector: InspectStream;
  private readonly done: Promise<void>;

  constructor(o: { fileName: string; accept(mime: string): number }) {
    this.inspector = new InspectStream(o);
    this.inspector.on('error', (e) => (this.failure ??= e));
    this.done = pipeline(this.inspector, discard());
    this.done.catch(() => undefined);
  }

  /** Feeds a chunk; a promise when the inspection wants the feeder to wait (hashing behind). */
  feed(chunk: Buffer): Promise<void> | undefined {
    if (this.failure !== undefined) return undefined;
    this.bytes += chunk.length;
    if (this.inspector.write(chunk)) return undefined;
    return new Promise((resolve) => {
      const go = () => {
        this.inspector.off('drain', go);
        this.inspector.off('error', go);
        this.inspector.off('close', go);
        resolve();
      };
      this.inspector.on('drain', go);
      this.inspector.on('error', go);
      this.inspector.on('close', go);
    });
  }

  /** Ends the inspection (every byte was fed) and returns its facts; rejects with its failure. */
  async finish(): Promise<InspectResult> {
    if (this.failure !== undefined) throw this.failure;
    this.inspector.end();
    await this.done;
    return this.inspector.result();
  }

  /** Drops the inspection (its hash job included). */
  abort(): void {
    this.inspector.destroy();
  }
}

/**
 * What an image gives its media (dimensions, variants that render on request), from
 * its header as the inspection read it, as for an upload; undefined for other kinds.
 */
export function imageFacts(facts: InspectResult, queue: ImageQueue): ImageFacts | undefined {
  if (SUPPORTED_TYPES.get(facts.mime)?.kind !== 'IMAGE') return undefined;
  return factsFromHeader(facts.image, facts.mime, queue.memoryBytes);
}
