// The S3 driver's streaming upload (src/storage/s3-multipart.ts) against the run's
// s3rver: one PutObject when the stream fits in one part, a multipart upload
// otherwise, parts signed with their SHA-256 over http (or sent UNSIGNED-PAYLOAD),
// and an abort whenever the source or a part fails. Requests are recorded with a
// middleware after signing, and faults are injected the same way. It runs in the
// S3 pass of the suite only (vitest.config.ts).
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { S3Storage } from '../../src/storage/s3.js';
import { testS3Options, testS3Store } from '../helpers/app.js';

const MiB = 1024 * 1024;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

interface Sent {
  command: string;
  input: Record<string, unknown>;
  payloadHash: string | undefined;
  bodyHash: string | undefined;
}

function storage(signPayload?: boolean, fail?: (command: string, input: Record<string, unknown>) => void) {
  const s = new S3Storage({
    ...testS3Options({ checksums: 'WHEN_REQUIRED' }),
    partSize: 5 * MiB,
    queueSize: 2,
    ...(signPayload === undefined ? {} : { signPayload }),
  });
  const sent: Sent[] = [];
  s.client.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as Record<string, unknown>;
      fail?.(context.commandName!.replace(/Command$/, ''), input);
      return next(args);
    },
    { step: 'initialize', name: 'testFault' },
  );
  s.client.middlewareStack.add(
    (next, context) => async (args) => {
      const request = args.request as { headers: Record<string, string>; body?: unknown };
      const body = request.body instanceof Uint8Array ? request.body : undefined;
      sent.push({ command: context.commandName!.replace(/Command$/, ''), input: args.input as Record<string, unknown>, payloadHash: request.headers['x-amz-content-sha256'], bodyHash: body && sha(body) });
      return next(args);
    },
    { step: 'finalizeRequest', name: 'testRecorder', priority: 'low' },
  );
  return { s, sent };
}

/** `data` as a stream of uneven chunks, optionally failing after `failAfter` bytes. */
function source(data: Buffer, failAfter?: number): Readable {
  let at = 0;
  return new Readable({
    read() {
      if (failAfter !== undefined && at >= failAfter) return this.destroy(new Error('source broke'));
      if (at >= data.length) return this.push(null);
      const n = Math.min(1 + Math.floor(Math.random() * 200_000), data.length - at);
      this.push(data.subarray(at, at + n));
      at += n;
    },
  });
}

async function stored(s: S3Storage, key: string): Promise<Buffer | null> {
  try {
    const out = await s.client.send(new GetObjectCommand({ Bucket: testS3Store().bucket, Key: key }));
    return Buffer.from(await out.Body!.transformToByteArray());
  } catch {
    return null;
  }
}

const key = () => `multipart-test/${randomUUID()}`;

describe('S3 streaming upload', () => {
  it.each([
    ['1 byte', 1, ['PutObject']],
    ['exactly one part', 5 * MiB, ['PutObject']],
    ['one part and one byte', 5 * MiB + 1, ['CreateMultipartUpload', 'UploadPart', 'UploadPart', 'CompleteMultipartUpload']],
    ['exactly two parts (no empty third)', 10 * MiB, ['CreateMultipartUpload', 'UploadPart', 'UploadPart', 'CompleteMultipartUpload']],
    ['five parts and a bit', 23 * MiB + 17, ['CreateMultipartUpload', 'UploadPart', 'UploadPart', 'UploadPart', 'UploadPart', 'UploadPart', 'CompleteMultipartUpload']],
  ])('%s: stores every byte, in the fewest requests', async (_label, size, commands) => {
    const { s, sent } = storage();
    const data = randomBytes(size);
    const k = key();
    expect(await s.put(k, source(data))).toEqual({ size });
    expect(sent.map((r) => r.command)).toEqual(commands);
    expect(sha((await stored(s, k))!)).toBe(sha(data));
    const parts = sent.filter((r) => r.command === 'UploadPart');
    expect(parts.map((r) => r.input['PartNumber'])).toEqual(parts.map((_, i) => i + 1));
    await s.delete(k);
  });

  it('over http each payload is signed with its own SHA-256; unsigned when told (as over https)', async () => {
    const data = randomBytes(11 * MiB);
    const signed = storage();
    await signed.s.put(key(), source(data));
    const requests = signed.sent.filter((r) => r.command === 'UploadPart');
    expect(requests).toHaveLength(3);
    for (const r of requests) expect(r.payloadHash).toBe(r.bodyHash);
    expect(requests[0]!.payloadHash).toBe(sha(data.subarray(0, 5 * MiB)));

    const unsigned = storage(false);
    const k = key();
    await unsigned.s.put(k, source(data));
    expect(unsigned.sent.filter((r) => r.command === 'UploadPart').map((r) => r.payloadHash)).toEqual(Array(3).fill('UNSIGNED-PAYLOAD'));
    expect(sha((await stored(unsigned.s, k))!)).toBe(sha(data));
  });

  it('a source that breaks after two parts: its own error, the upload aborted, no object', async () => {
    const { s, sent } = storage();
    const k = key();
    await expect(s.put(k, source(randomBytes(30 * MiB), 12 * MiB))).rejects.toThrow('source broke');
    const created = sent.find((r) => r.command === 'CreateMultipartUpload');
    expect(created).toBeDefined();
    const aborts = sent.filter((r) => r.command === 'AbortMultipartUpload');
    expect(aborts).toHaveLength(1);
    expect(sent.some((r) => r.command === 'CompleteMultipartUpload')).toBe(false);
    // Every part sent was sent before the abort.
    expect(sent.map((r) => r.command).lastIndexOf('UploadPart')).toBeLessThan(sent.indexOf(aborts[0]!));
    expect(await stored(s, k)).toBeNull();
  });

  it('a part the store refuses: STORAGE_UNAVAILABLE, the upload aborted, no object', async () => {
    const { s, sent } = storage(undefined, (command, input) => {
      if (command === 'UploadPart' && input['PartNumber'] === 2) throw new Error('store refused part 2');
    });
    const k = key();
    const body = source(randomBytes(40 * MiB));
    await expect(s.put(k, body)).rejects.toMatchObject({ extensions: { code: 'STORAGE_UNAVAILABLE' } });
    expect(sent.filter((r) => r.command === 'AbortMultipartUpload')).toHaveLength(1);
    expect(sent.some((r) => r.command === 'CompleteMultipartUpload')).toBe(false);
    expect(await stored(s, k)).toBeNull();
  });

  it('reuses its part buffers from upload to upload, keeping at most queueSize + 1', async () => {
    const { s } = storage();
    const parts = (s as unknown as { parts: { kept: number } }).parts;
    for (let i = 0; i < 3; i++) {
      const k = key();
      await s.put(k, source(randomBytes(16 * MiB)));
      await s.delete(k);
      expect(parts.kept).toBeGreaterThan(0);
      expect(parts.kept).toBeLessThanOrEqual(3);
    }
  });
});
