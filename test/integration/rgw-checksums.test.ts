// The S3 driver on Ceph RGW with both S3_CHECKSUMS modes: known- and unknown-length
// puts, multipart, SSE-C put and get, and presigned PUTs (with and without a signed
// Content-MD5). RGW is the store that behaves like production here: it refuses
// aws-chunked bodies without a length (411), validates Content-MD5 (400 BadDigest)
// and enforces SSE-C. Runs in the rgw project only (npm run test:rgw).
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { S3Storage } from '../../src/storage/s3.js';
import { testS3Options, testS3Store } from '../helpers/app.js';

const MiB = 1024 * 1024;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('base64');
const key = () => `checksums-test/${randomUUID()}`;

/** `data` as a stream of uneven chunks (so nothing can take its length from it). */
function source(data: Buffer): Readable {
  let at = 0;
  return new Readable({
    read() {
      if (at >= data.length) return this.push(null);
      const n = Math.min(1 + Math.floor(Math.random() * 300_000), data.length - at);
      this.push(data.subarray(at, at + n));
      at += n;
    },
  });
}

async function readAll(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

interface Sent {
  command: string;
  checksumHeaders: string[];
  contentEncoding: string | undefined;
}

function storage(checksums: 'WHEN_REQUIRED' | 'WHEN_SUPPORTED') {
  const s = new S3Storage(testS3Options({ checksums, partSize: 5 * MiB, queueSize: 2 }));
  const sent: Sent[] = [];
  s.client.middlewareStack.add(
    (next, context) => async (args) => {
      const headers = (args.request as { headers: Record<string, string> }).headers;
      sent.push({
        command: context.commandName!.replace(/Command$/, ''),
        checksumHeaders: Object.keys(headers).filter((h) => h.toLowerCase().startsWith('x-amz-checksum-') && h.toLowerCase() !== 'x-amz-checksum-mode'),
        contentEncoding: headers['content-encoding'],
      });
      return next(args);
    },
    { step: 'finalizeRequest', name: 'testRecorder', priority: 'low' },
  );
  return { s, sent };
}

describe.each(['WHEN_REQUIRED', 'WHEN_SUPPORTED'] as const)('S3 driver on Ceph RGW, request checksums %s', (mode) => {
  it.each([
    ['known length, small', 1000, true],
    ['known length, multipart', 12 * MiB + 5, true],
    ['unknown length, small', 1000, false],
    ['unknown length, multipart', 12 * MiB + 5, false],
  ])('put with %s: stores every byte', async (_label, size, known) => {
    const { s, sent } = storage(mode);
    const data = randomBytes(size);
    const k = key();
    expect(await s.put(k, source(data), known ? { size } : {})).toEqual({ size });
    expect(await s.head(k)).toEqual({ size });
    expect(sha(await readAll(await s.get(k)))).toBe(sha(data));
    const writes = sent.filter((r) => r.command === 'PutObject' || r.command === 'UploadPart');
    expect(writes.length).toBeGreaterThan(0);
    // No aws-chunked body ever (RGW answers 411 to one without a length).
    expect(writes.every((r) => !r.contentEncoding?.includes('aws-chunked'))).toBe(true);
    // WHEN_SUPPORTED sends a CRC32 header with every write; WHEN_REQUIRED none.
    for (const w of writes) expect(w.checksumHeaders.length > 0).toBe(mode === 'WHEN_SUPPORTED');
    await s.delete(k);
  });

  it.each([
    ['known length', 1000, true],
    ['unknown length, multipart', 11 * MiB, false],
    ['known length, multipart', 11 * MiB, true],
  ])('SSE-C put and get, %s: the key reads it back (ranges too), no key or a wrong key is refused', async (_label, size, known) => {
    const { s } = storage(mode);
    const data = randomBytes(size);
    const sseKey = randomBytes(32);
    const k = key();
    await s.put(k, source(data), { sseKey, ...(known ? { size } : {}) });
    expect(sha(await readAll(await s.get(k, undefined, { sseKey })))).toBe(sha(data));
    expect(sha(await readAll(await s.get(k, { start: 100, end: 999 }, { sseKey })))).toBe(sha(data.subarray(100, 1000)));
    await expect(s.get(k)).rejects.toMatchObject({ extensions: { code: 'STORAGE_UNAVAILABLE' } });
    // Another key: the store holds content that key cannot open, an integrity failure (not "try again later").
    await expect(s.get(k, undefined, { sseKey: randomBytes(32) })).rejects.toMatchObject({ name: 'IntegrityFailure' });
    // The raw answer without the key is a 4xx (RGW: 400 InvalidArgument; AWS: 400 InvalidRequest).
    const raw = await s.client.send(new GetObjectCommand({ Bucket: testS3Store().bucket, Key: k })).then(
      () => 200,
      (e: { $metadata?: { httpStatusCode?: number } }) => e.$metadata?.httpStatusCode ?? 0,
    );
    expect(raw).toBeGreaterThanOrEqual(400);
    expect(raw).toBeLessThan(500);
    await s.delete(k);
  });

  it('a presigned PUT carries no x-amz-checksum-* parameter, and RGW accepts a PUT to it', async () => {
    const { s } = storage(mode);
    const data = randomBytes(64 * 1024);
    const k = key();
    const url = await s.presignPut(k, { expiresIn: 300, contentType: 'application/octet-stream', size: data.length });
    const params = [...new URL(url).searchParams.keys()].map((p) => p.toLowerCase());
    expect(params.filter((p) => p.startsWith('x-amz-checksum') || p === 'x-amz-sdk-checksum-algorithm')).toEqual([]);
    const r = await fetch(url, { method: 'PUT', headers: { 'Content-Type': 'application/octet-stream' }, body: data });
    expect(r.status).toBe(200);
    expect(sha(await readAll(await s.get(k)))).toBe(sha(data));
    await s.delete(k);
  });

  it('a presigned PUT with Content-MD5: a signed header; the right bytes succeed, one changed byte is BadDigest, no header is refused', async () => {
    const { s } = storage(mode);
    const data = randomBytes(256 * 1024);
    const k = key();
    const contentMd5 = md5(data);
    const url = await s.presignPut(k, { expiresIn: 300, contentType: 'application/pdf', size: data.length, contentMd5 });
    const u = new URL(url);
    expect(u.searchParams.get('X-Amz-SignedHeaders')!.split(';')).toContain('content-md5');
    expect([...u.searchParams.keys()].some((p) => p.toLowerCase() === 'content-md5')).toBe(false);
    expect([...u.searchParams.keys()].filter((p) => p.toLowerCase().startsWith('x-amz-checksum'))).toEqual([]);

    const tampered = Buffer.from(data);
    tampered[1000] = tampered[1000]! ^ 0xff;
    const bad = await fetch(url, { method: 'PUT', headers: { 'Content-Type': 'application/pdf', 'Content-MD5': contentMd5 }, body: tampered });
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain('BadDigest');
    expect(await s.head(k)).toBeNull();

    const missing = await fetch(url, { method: 'PUT', headers: { 'Content-Type': 'application/pdf' }, body: data });
    expect(missing.status).toBe(403);
    expect(await s.head(k)).toBeNull();

    const good = await fetch(url, { method: 'PUT', headers: { 'Content-Type': 'application/pdf', 'Content-MD5': contentMd5 }, body: data });
    expect(good.status).toBe(200);
    expect(sha(await readAll(await s.get(k)))).toBe(sha(data));
    await s.delete(k);
  });
});
