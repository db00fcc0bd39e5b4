// SSE-C for real, on Ceph RGW (a store that enforces customer keys): every path
// that writes or reads SENSITIVE and CRITICAL content sends the key derived for the
// object from the ring key that `encryptionKeyId` names, and the store keeps no
// plaintext. Checked from outside the service: a plain S3 client with no key, a
// wrong key and the right key, the S3 requests the service's own client sends (a
// middleware records them), and the bytes RADOS holds below RGW.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { CreateAssetDocument, UploadDocument, UploadSignedDocumentDocument, WorkerMediaDocument } from '../generated/graphql.js';
import { newTenant, S3_STORE, startTestApp, type TestApp } from '../helpers/app.js';
import { ok } from '../helpers/client.js';
import { jpeg, pdfBytes } from '../helpers/files.js';
import { md5Base64, radosBytes, rawGet, rawHead } from '../helpers/sse-c.js';
import { S3Storage } from '../../src/storage/s3.js';
import type { Storage } from '../../src/storage/index.js';

const MiB = 1024 * 1024;
const PART = 8 * MiB; // the driver's default part size
const LIVE = 'live';
const OLD = 'old';
const MEDIA_KEYS = `${LIVE}:${randomBytes(32).toString('base64')},${OLD}:${randomBytes(32).toString('base64')}`;
const WORKER_KEY = 'wk-rgw-Fj3Kp9Wq2Ze6Tn0Ub4Ys8Ld1Mx5Rc7';
const worker = (tenant: string, type: string) => ({ headers: { authorization: `Bearer ${WORKER_KEY}`, 'x-worker-type': type, 'x-tenant-id': tenant } });
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const MARKER = Buffer.from('CONFIDENTIAL-LEASE-CLAUSE ');

/** A PDF with a recognisable plaintext marker, padded to `size` bytes. */
function leasePdf(size: number): Buffer {
  const head = pdfBytes(2);
  const body = Buffer.alloc(size - head.length);
  for (let i = 0; i < body.length; i += MARKER.length) MARKER.copy(body, i);
  // Random bytes in every MiB, so that no two parts are alike.
  for (let i = 0; i + 64 < body.length; i += MiB) randomBytes(64).copy(body, i);
  return Buffer.concat([head, body]);
}

/** One S3 request the service's client sent. */
interface Sent {
  command: string;
  key: string | undefined;
  keyMd5: string | undefined;
}
const sent: Sent[] = [];
const sentFor = (key: string) => sent.filter((s) => s.key === key);

/** Records every command of the app's own S3 client with the SSE-C key MD5 it carries. */
function recording(storage: Storage): Storage {
  if (!(storage instanceof S3Storage)) throw new Error('rgw-sse-c.test.ts needs the S3 driver');
  storage.client.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as { Key?: string; SSECustomerKeyMD5?: string };
      sent.push({ command: context.commandName ?? '?', key: input.Key, keyMd5: input.SSECustomerKeyMD5 });
      return next(args);
    },
    { step: 'initialize', name: 'recordSseCRequests' },
  );
  return storage;
}

let app: TestApp;
beforeAll(async () => {
  if (S3_STORE !== 'rgw') throw new Error('rgw-sse-c.test.ts runs on Ceph RGW only (TEST_RGW=1 npx vitest run --project rgw)');
  app = await startTestApp({ storage: (_dir, real) => recording(real), env: { MEDIA_KEYS, WORKER_API_KEYS: `${WORKER_KEY}:signature-processor|otp-validator:*`, WORKER_API_KEYS_ALLOW_ANY_TENANT: 'true' } });
});
afterAll(() => app?.close());
beforeEach(() => {
  sent.length = 0;
});

const ring = () => app.services.crypto.ring;

function expect4xx(status: number, what: string): void {
  expect(status, what).toBeGreaterThanOrEqual(400);
  expect(status, what).toBeLessThan(500);
}

/**
 * The object at `key` is stored with SSE-C under the key derived for it from ring
 * key `kid`: unreadable without it or with any other key, exactly `plain` with it
 * (S3 decrypts: not our AES-GCM segment format), and no plaintext in RADOS.
 */
async function expectSseCObject(key: string, kid: string, plain: Buffer): Promise<void> {
  const objectKey = ring().objectKey(kid, key);
  expect4xx((await rawGet(key)).status, `GET ${key} without a key`);
  expect4xx((await rawGet(key, randomBytes(32))).status, `GET ${key} with a random key`);
  expect4xx((await rawGet(key, ring().objectKey(kid === LIVE ? OLD : LIVE, key))).status, `GET ${key} with the other ring key's object key`);
  expect4xx((await rawGet(key, ring().objectKey(kid, `${key}x`))).status, `GET ${key} with the key of another object`);
  expect4xx((await rawHead(key)).status, `HEAD ${key} without a key`);
  expect(await rawHead(key, objectKey)).toMatchObject({ status: 200, size: plain.length });
  const read = await rawGet(key, objectKey);
  expect(read).toMatchObject({ status: 200, algorithm: 'AES256', keyMd5: md5Base64(objectKey) });
  expect(read.body!.length).toBe(plain.length);
  expect(read.body!.equals(plain), `${key} read with its SSE-C key is the plaintext`).toBe(true);
  const atRest = await radosBytes(key);
  expect(atRest.length).toBeGreaterThanOrEqual(plain.length);
  for (const at of [0, Math.floor(plain.length / 2), Math.max(0, plain.length - 256)]) {
    expect(atRest.includes(plain.subarray(at, at + 256)), `plaintext at ${at} of ${key} is in RADOS`).toBe(false);
  }
}

/** Every request the service sent for `key` carried the SSE-C key derived for it from `kid`. */
function expectKeyOnEveryRequest(key: string, kid: string, commands: string[]): void {
  const mine = sentFor(key);
  expect(mine.map((s) => s.command)).toEqual(commands);
  const md5 = md5Base64(ring().objectKey(kid, key));
  for (const s of mine) expect(s.keyMd5, `${s.command} ${key}`).toBe(md5);
}

async function content(path: string, token: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${app.url}${path}`, { headers: { authorization: `Bearer ${token}`, ...headers } });
  return { res, body: Buffer.from(await res.arrayBuffer()) };
}

async function upload(token: string, file: File, entity: { type: string; id: string }, role?: 'LEASE_ORIGINAL' | 'AVATAR') {
  return (await ok(app.url, UploadDocument, { input: { file, entity, ...(role ? { role } : {}) } }, { token })).upload;
}

describe('SSE-C on Ceph RGW: every path', () => {
  it('the start-up probe found SSE-C enforced', () => {
    expect(app.services.crypto.mode).toBe('sse-c');
    expect(app.logs.filter((l) => l['msg'] === 'encryption at rest: SSE-C (the store enforces customer keys)')).toHaveLength(1);
  });

  it('a CRITICAL PDF in one PutObject: key on the PUT and every GET; GET, HEAD and ranges through the content route', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = leasePdf(600 * 1024);
    const m = await upload(token, new File([bytes], 'lease.pdf'), { type: 'lease', id: 'l-1' }, 'LEASE_ORIGINAL');
    expect(m).toMatchObject({ securityLevel: 'CRITICAL', encrypted: true, encryptionKeyId: LIVE, url: null, checksum: sha(bytes) });
    const key = `${tenant}/${m.id}/original`;
    expectKeyOnEveryRequest(key, LIVE, ['PutObjectCommand']);
    await expectSseCObject(key, LIVE, bytes);

    sent.length = 0;
    const full = await content(`/media/${m.id}/content`, token);
    expect(full.res.status).toBe(200);
    expect(full.body.equals(bytes)).toBe(true);
    const range = await content(`/media/${m.id}/content`, token, { range: 'bytes=1000-300000' });
    expect(range.res.status).toBe(206);
    expect(range.body.equals(bytes.subarray(1000, 300001))).toBe(true);
    const suffix = await content(`/media/${m.id}/content`, token, { range: 'bytes=-17' });
    expect(suffix.body.equals(bytes.subarray(bytes.length - 17))).toBe(true);
    expectKeyOnEveryRequest(key, LIVE, ['GetObjectCommand', 'GetObjectCommand', 'GetObjectCommand']);

    // An HTTP HEAD answers from the row: no request reaches the store.
    sent.length = 0;
    const head = await fetch(`${app.url}/media/${m.id}/content`, { method: 'HEAD', headers: { authorization: `Bearer ${token}` } });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(bytes.length));
    expect(sentFor(key)).toEqual([]);
  });

  it(`a CRITICAL 17 MiB PDF in a multipart upload: key on Create, every UploadPart and Complete; ranges across the ${PART / MiB} MiB part boundaries are byte-identical`, async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = leasePdf(17 * MiB);
    const m = await upload(token, new File([bytes], 'big-lease.pdf'), { type: 'lease', id: 'l-2' });
    expect(m).toMatchObject({ securityLevel: 'CRITICAL', encrypted: true, encryptionKeyId: LIVE, fileSize: bytes.length, checksum: sha(bytes) });
    const key = `${tenant}/${m.id}/original`;
    const parts = sentFor(key).filter((s) => s.command === 'UploadPartCommand');
    expect(parts).toHaveLength(3);
    expectKeyOnEveryRequest(key, LIVE, ['CreateMultipartUploadCommand', 'UploadPartCommand', 'UploadPartCommand', 'UploadPartCommand', 'CompleteMultipartUploadCommand']);
    await expectSseCObject(key, LIVE, bytes);

    const full = await content(`/media/${m.id}/content`, token);
    expect(full.res.status).toBe(200);
    expect(sha(full.body)).toBe(sha(bytes));
    for (const [start, end] of [
      [PART - 10, PART + 10],
      [PART - 1, PART],
      [PART, PART],
      [2 * PART - 4096, 2 * PART + 4095],
      [5 * MiB, 12 * MiB],
      [PART - 1, 2 * PART],
      [2 * PART, bytes.length - 1],
      [0, bytes.length - 1],
    ] as const) {
      const r = await content(`/media/${m.id}/content`, token, { range: `bytes=${start}-${end}` });
      expect(r.res.status, `${start}-${end}`).toBe(206);
      expect(r.res.headers.get('content-range')).toBe(`bytes ${start}-${end}/${bytes.length}`);
      expect(r.body.equals(bytes.subarray(start, end + 1)), `${start}-${end}`).toBe(true);
      // And straight from the store with the key: RGW decrypts ranges of SSE-C multipart objects right.
      const raw = await rawGet(key, ring().objectKey(LIVE, key), `bytes=${start}-${end}`);
      expect(raw.body!.equals(bytes.subarray(start, end + 1)), `raw ${start}-${end}`).toBe(true);
    }
  });

  it('S3Storage.head of an SSE-C object needs its key (RGW answers 400 without it); the service never heads encrypted objects', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = leasePdf(100 * 1024);
    const m = await upload(token, new File([bytes], 'l.pdf'), { type: 'lease', id: 'l-3' });
    const key = `${tenant}/${m.id}/original`;
    const objectKey = ring().objectKey(LIVE, key);
    await expect(app.services.storage.head(key)).rejects.toMatchObject({ code: 'STORAGE_UNAVAILABLE' });
    expect(await app.services.storage.head(key, { sseKey: objectKey })).toEqual({ size: bytes.length });
    expect(await app.services.storage.head(`${key}-missing`, { sseKey: objectKey })).toBeNull();
    expect(sentFor(key).filter((s) => s.command === 'HeadObjectCommand').map((s) => s.keyMd5)).toEqual([undefined, md5Base64(objectKey)]);
  });

  it('SENSITIVE image: the original and every variant (THUMB, MEDIUM, LARGE, rendered on request) are written and read with their own SSE-C keys', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const file = await jpeg(1400, 900);
    const bytes = Buffer.from(await file.arrayBuffer());
    const m = await upload(token, file, { type: 'person', id: 'p-1' }, 'AVATAR');
    expect(m).toMatchObject({ securityLevel: 'SENSITIVE', encrypted: true, encryptionKeyId: LIVE, width: 1400, height: 900 });
    expect(m.variants.map((v) => v.name)).toEqual(['THUMB', 'MEDIUM', 'LARGE']);
    const original = `${tenant}/${m.id}/original`;
    // Written once, with the key; the upload reads nothing back (variants render on request).
    expectKeyOnEveryRequest(original, LIVE, ['PutObjectCommand']);
    await expectSseCObject(original, LIVE, bytes);
    expect((await content(`/media/${m.id}/content`, token)).body.equals(bytes)).toBe(true);

    for (const v of m.variants) {
      const served = await content(`/media/${m.id}/variants/${v.name}`, token);
      expect(served.res.status, v.name).toBe(200);
      const row = await app.db.prisma.imageRender.findFirst({ where: { tenantId: tenant, ownerId: m.id, width: v.width, height: v.height } });
      expect(row, v.name).toMatchObject({ encryptionKeyId: LIVE, encryptionMode: 'sse-c' });
      const key = row!.storageKey;
      // Rendered: written with its own key, then read back with it to be served.
      expectKeyOnEveryRequest(key, LIVE, ['PutObjectCommand', 'GetObjectCommand']);
      await expectSseCObject(key, LIVE, served.body);
      const range = await content(`/media/${m.id}/variants/${v.name}`, token, { range: 'bytes=2-101' });
      expect(range.body.equals(served.body.subarray(2, 102))).toBe(true);
    }
    // The original was read with its key for each render.
    expectKeyOnEveryRequest(original, LIVE, ['PutObjectCommand', 'GetObjectCommand', 'GetObjectCommand', 'GetObjectCommand', 'GetObjectCommand']);
  });

  it('workerMedia reads the CRITICAL original with its SSE-C key', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = leasePdf(300 * 1024);
    const m = await upload(token, new File([bytes], 'lease.pdf'), { type: 'lease', id: 'l-4' }, 'LEASE_ORIGINAL');
    const key = `${tenant}/${m.id}/original`;
    sent.length = 0;
    const { workerMedia } = await ok(app.url, WorkerMediaDocument, { id: m.id }, worker(tenant, 'otp-validator'));
    expect(workerMedia).toMatchObject({ securityLevel: 'CRITICAL', fileSize: bytes.length, checksum: sha(bytes) });
    expect(Buffer.from(workerMedia.contentBase64, 'base64').equals(bytes)).toBe(true);
    expectKeyOnEveryRequest(key, LIVE, ['GetObjectCommand']);
  });

  it('uploadSignedDocument stores the signed PDF with SSE-C under the active ring key', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const original = await upload(token, new File([leasePdf(50 * 1024)], 'lease.pdf'), { type: 'lease', id: 'l-5' }, 'LEASE_ORIGINAL');
    const signed = leasePdf(200 * 1024);
    sent.length = 0;
    const { uploadSignedDocument: m } = await ok(
      app.url,
      UploadSignedDocumentDocument,
      { mediaId: original.id, file: new File([signed], 'lease-signed.pdf', { type: 'application/pdf' }) },
      worker(tenant, 'signature-processor'),
    );
    expect(m).toMatchObject({ securityLevel: 'CRITICAL', encrypted: true, encryptionKeyId: LIVE, url: null });
    const key = `${tenant}/${m.id}/original`;
    expectKeyOnEveryRequest(key, LIVE, ['PutObjectCommand']);
    await expectSseCObject(key, LIVE, signed);
    expect((await content(`/media/${m.id}/content`, token)).body.equals(signed)).toBe(true);
  });

  it('assets have no security level (SPEC 11) and are never encrypted: a PRIVATE blob is stored without SSE-C', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = pdfBytes(3);
    const { createAsset: a } = await ok(app.url, CreateAssetDocument, { input: { type: 'BLOB', access: 'PRIVATE', file: new File([bytes], 'sheet.pdf') } }, { token });
    const keys = (await app.services.storage.list(`${tenant}/${a.id}/`)).map((o) => o.key);
    expect(keys).toHaveLength(1);
    const stored = await rawGet(keys[0]!);
    expect(stored.status).toBe(200);
    expect(stored.algorithm).toBeUndefined();
    expect(stored.body!.equals(bytes)).toBe(true);
    expect(sentFor(keys[0]!).every((s) => s.keyMd5 === undefined)).toBe(true);
  });
});
