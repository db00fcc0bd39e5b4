import type { Readable } from 'node:stream';
import { S3Store, type MetadataValue, type Options } from '@tus/s3-store';
import { KeptBuffers } from '../../util/kept-buffers.js';
import { giveBack } from './body-blocks.js';

type Permit = { release(): Promise<void> };

/**
 * @tus/s3-store with the parts of a PATCH gathered in memory instead of temporary
 * files. The store writes each part to a file under os.tmpdir() and uploads it from
 * there: every byte is written to disk, read back and sent in 64 KiB reads, which
 * on the benchmark's machine cost as much CPU as the rest of the request. Here a
 * part is one buffer, sent in one write. Everything else is the store's: the
 * part numbers, the incomplete part (a tail under S3's 5 MiB minimum, kept as an
 * object until the next PATCH), the multipart upload's completion, the records.
 *
 * Memory is bounded as before: a part's buffer is taken only with one of the
 * store's permits (maxConcurrentPartUploads for the whole instance), so at most
 * that many parts are gathered or in flight at once, and reading the body waits
 * for a permit. Buffers of the preferred part size are kept for reuse (as many as
 * there are permits, released after 15 s without uploads).
 */
export class MemoryPartsS3Store extends S3Store {
  private readonly kept: KeptBuffers<Buffer>;

  constructor(options: Omit<Options, 'maxConcurrentPartUploads'> & { partsInFlight: number }) {
    super({ ...options, maxConcurrentPartUploads: options.partsInFlight });
    const size = this.preferredPartSize;
    this.kept = new KeptBuffers(() => Buffer.allocUnsafeSlow(size), options.partsInFlight);
  }

  protected override async uploadParts(metadata: MetadataValue, readStream: Readable, currentPartNumber: number, offset: number): Promise<number> {
    const size = metadata.file.size;
    const partSize = this.calcOptimalPartSize(size);
    const reusable = partSize === this.preferredPartSize;
    const uploads: Promise<void>[] = [];
    let bytesUploaded = 0;
    let failure: { error: unknown } | undefined;
    let part: Buffer | undefined;
    let filled = 0;
    let permit: Permit | undefined;

    const send = () => {
      const buffer = part!;
      const length = filled;
      const held = permit!;
      part = undefined;
      permit = undefined;
      filled = 0;
      const partNumber = currentPartNumber++;
      offset += length;
      const body = buffer.subarray(0, length);
      // A part under S3's minimum that is not the upload's last waits as the incomplete part.
      // (The store passes its argument on as PutObject's Body, which takes a Buffer: its
      // length is known, where a stream's is not.)
      const sending =
        length >= this.minPartSize || size === offset ? this.uploadPart(metadata, body, partNumber) : this.uploadIncompletePart(metadata.file.id, body as unknown as Readable);
      const done = sending.then(
        () => {
          bytesUploaded += length;
        },
        (error: unknown) => {
          failure ??= { error };
          throw error;
        },
      );
      const settled = done.finally(() => {
        if (reusable) this.kept.give(buffer);
        held.release().catch(() => undefined);
      });
      // Awaited below (allSettled, then all); never an unhandled rejection meanwhile.
      settled.catch(() => undefined);
      uploads.push(settled);
    };

    // A part that failed ends the request: the rest of the body is not read.
    const stopIfFailed = () => {
      if (failure) throw failure.error;
    };
    try {
      for await (const chunk of readStream as AsyncIterable<Buffer>) {
        let rest = chunk;
        while (rest.length > 0) {
          stopIfFailed();
          if (!part) {
            permit = await this.partUploadSemaphore.acquire();
            stopIfFailed();
            part = reusable ? this.kept.take() : Buffer.allocUnsafeSlow(partSize);
          }
          const n = Math.min(rest.length, partSize - filled);
          rest.copy(part, filled, 0, n);
          filled += n;
          rest = rest.subarray(n);
          if (filled === partSize) send();
        }
        // Copied: the body's block can be reused (body-blocks.ts).
        giveBack(chunk);
      }
      if (part && filled > 0) send();
    } catch (error) {
      failure ??= { error };
    } finally {
      if (part && reusable) this.kept.give(part);
      part = undefined;
      if (permit) await permit.release().catch(() => undefined);
      // No upload left running behind the request.
      await Promise.allSettled(uploads);
    }
    if (failure) throw failure.error;
    return bytesUploaded;
  }
}
