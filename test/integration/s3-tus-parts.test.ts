// The S3 tus store that gathers parts in memory (src/modules/resumable-uploads/
// s3-memory-parts.ts), on the run's real S3 store (s3rver, and RGW, which enforces
// S3's 5 MiB minimum part size): PATCHes of odd sizes give the same bytes, with the
// incomplete part carried between them; no more parts are gathered or in flight
// than its permits; a part or a body that fails ends the write with that error,
// stops reading the body, and gives every permit back.
import { createHash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@tus/utils';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryPartsS3Store } from '../../src/modules/resumable-uploads/s3-memory-parts.js';
import { testS3Options } from '../helpers/app.js';

const MiB = 1024 * 1024;
const PART = 5 * MiB;
const o = testS3Options();
const clientConfig = { bucket: o.bucket, region: 'us-east-1', endpoint: o.endpoint, forcePathStyle: true, credentials: o.credentials!, requestChecksumCalculation: 'WHEN_REQUIRED' as const, responseChecksumValidation: 'WHEN_REQUIRED' as const };
const s3 = new S3Client(clientConfig);
const made: { store: MemoryPartsS3Store; id: string }[] = [];

afterAll(async () => {
  for (const { store, id } of made) await store.remove(id).catch(() => undefined);
  s3.destroy();
});

/** Counts the parts in flight; `failPart` makes that part number's upload fail after a moment. */
class Observed extends MemoryPartsS3Store {
  inFlight = 0;
  maxInFlight = 0;
  failPart: number | undefined;
  protected override async uploadPart(...args: Parameters<MemoryPartsS3Store['uploadPart']>): Promise<string> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (args[2] === this.failPart) {
        await new Promise((r) => setTimeout(r, 50));
        throw new Error(`injected: part ${args[2]} refused`);
      }
      return await super.uploadPart(...args);
    } finally {
      this.inFlight--;
    }
  }
}

const newStore = (partsInFlight: number) => new Observed({ s3ClientConfig: clientConfig, partSize: PART, partsInFlight, useTags: false });

async function created(store: MemoryPartsS3Store, size: number): Promise<string> {
  // Not under TUS_PREFIX: resumable.test.ts checks what appears there, and the service's sweep judges it.
  const id = `test-tus-parts/${randomUUID()}`;
  await store.create(new Upload({ id, size, offset: 0, metadata: {} }));
  made.push({ store, id });
  return id;
}

/** `bytes` as a body of uneven chunks (as a socket gives them), counting what was read. */
function body(bytes: Buffer, read = { bytes: 0 }, fail?: { after: number; error: Error }): Readable {
  const sizes = [65_536, 1_000_003, 7, 262_144, 3_333_333];
  let at = 0;
  let i = 0;
  return new Readable({
    read() {
      if (fail && at >= fail.after) return this.destroy(fail.error);
      if (at >= bytes.length) return this.push(null);
      const n = Math.min(sizes[i++ % sizes.length]!, bytes.length - at);
      read.bytes += n;
      this.push(bytes.subarray(at, (at += n)));
    },
  });
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('the S3 tus store with parts in memory', () => {
  it('PATCHes of odd sizes (incomplete parts between them) store exactly the bytes sent, with no more parts in flight than its permits', async () => {
    const store = newStore(2);
    const data = Buffer.alloc(23 * MiB + 123);
    for (let i = 0; i < data.length; i += 4096) data.writeUInt32BE((i * 2654435761) >>> 0, i);
    const id = await created(store, data.length);
    // 3 MiB (an incomplete part only), then 6 MiB + 7 (with the incomplete part: one part and a new incomplete one), 11 MiB, the rest.
    const cuts = [3 * MiB, 9 * MiB + 7, 20 * MiB + 7, data.length];
    let offset = 0;
    for (const end of cuts) {
      const next = await store.write(body(data.subarray(offset, end)), id, offset);
      expect(next).toBe(end);
      expect((await store.getUpload(id)).offset).toBe(end);
      offset = end;
    }
    expect(store.maxInFlight).toBeGreaterThan(0);
    expect(store.maxInFlight).toBeLessThanOrEqual(2);
    const stored = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: o.bucket, Key: id }))).Body!.transformToByteArray());
    expect(stored.length).toBe(data.length);
    expect(sha(stored)).toBe(sha(data));
  });

  it('a part that fails ends the write with its error, stops reading the body, and gives its permits back', async () => {
    const store = newStore(2);
    const data = Buffer.alloc(40 * MiB, 7);
    const id = await created(store, data.length);
    store.failPart = 2;
    const read = { bytes: 0 };
    await expect(store.write(body(data, read), id, 0)).rejects.toThrow('injected: part 2 refused');
    // With two permits, reading waits for a free one: the body stops a few parts after the failure.
    expect(read.bytes).toBeLessThan(6 * PART);
    expect(store.inFlight).toBe(0);
    // Every permit is back: a write that needs more parts than there are permits completes.
    store.failPart = undefined;
    const other = await created(store, 16 * MiB);
    expect(await store.write(body(Buffer.alloc(16 * MiB, 1)), other, 0)).toBe(16 * MiB);
  });

  it('a body that fails mid-part ends the write with its error and gives its permits back', async () => {
    const store = newStore(2);
    const id = await created(store, 30 * MiB);
    const error = new Error('client gone');
    await expect(store.write(body(Buffer.alloc(30 * MiB, 3), undefined, { after: 12 * MiB, error }), id, 0)).rejects.toBe(error);
    expect(store.inFlight).toBe(0);
    const other = await created(store, 16 * MiB);
    expect(await store.write(body(Buffer.alloc(16 * MiB, 2)), other, 0)).toBe(16 * MiB);
  });
});
