// Resumable uploads (SPEC 17): the real tus-js-client against the app over HTTP, on
// the run's driver (local disk: @tus/file-store; S3: @tus/s3-store, whose parts go
// to a multipart upload of the bucket).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import crypto, { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { CreateMultipartUploadCommand, ListMultipartUploadsCommand, S3Client } from '@aws-sdk/client-s3';
import { DefaultHttpStack, Upload, type DetailedError, type HttpRequest, type HttpStack } from 'tus-js-client';
import { ResumableUploadStateDocument } from '../generated/graphql.js';
import { newTenant, startTestApp, STORAGE_DRIVER, testS3Options, type TestApp } from '../helpers/app.js';
import { ok } from '../helpers/client.js';
import { mp4, pdfBytes } from '../helpers/files.js';
import { recordUncaught } from '../helpers/security.js';
import { sweepTenant } from '../helpers/sweep.js';
import { TUS_PREFIX, tusIdOfKey } from '../../src/modules/resumable-uploads/tus-keys.js';
import { ResumableSweep } from '../../src/modules/resumable-uploads/resumable-sweep.js';
import { createTusBackend } from '../../src/modules/resumable-uploads/tus-backend.js';
import { createLogger } from '../../src/logger.js';

const MiB = 1024 * 1024;
const ENDPOINT = '/uploads/resumable';

let app: TestApp;
let other: (TestApp & { close(o?: { keepData?: boolean }): Promise<void> }) | undefined;
/** A second instance on the same database and storage (local disk: the same DATA_DIR; S3: the same bucket). */
async function otherInstance(): Promise<TestApp> {
  other ??= await startTestApp({ ...(STORAGE_DRIVER === 'local' ? { dataDir: app.dataDir } : {}), env: { SWEEP_INTERVAL_SECONDS: '0', RESUMABLE_UPLOAD_MAX_OUTSTANDING: '3', RESUMABLE_LOCK_TIMEOUT_MS: '1000' } });
  return other;
}
beforeAll(async () => {
  // No periodic sweep: the tests sweep themselves. A short lock wait keeps the contention tests quick.
  app = await startTestApp({ env: { SWEEP_INTERVAL_SECONDS: '0', RESUMABLE_LOCK_TIMEOUT_MS: '8000', CORS_ORIGINS: 'https://app.example.com' } });
});
afterAll(async () => {
  await other?.close({ keepData: true });
  await app?.close();
});

const uncaught = recordUncaught('all');
afterAll(() => expect(uncaught).toEqual([]));

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A 50 MiB-or-other MP4: a valid header, then random filler (so parts differ). */
async function mp4Bytes(size: number): Promise<Buffer> {
  const buf = Buffer.from(await mp4(size).arrayBuffer());
  randomBytes(size - 64).copy(buf, 64);
  return buf;
}

/**
 * tus-js-client's Node HTTP stack, with a PATCH body that stops after `cutAt`
 * bytes of the file (its offset counted) and calls `onCut` there: the test then
 * aborts the upload, which destroys the request, exactly as a dropped connection.
 */
class CuttingStack implements HttpStack {
  private readonly inner = new DefaultHttpStack({});
  constructor(private readonly cut?: { at: number; onCut: () => void }) {}
  getName(): string {
    return 'cutting';
  }
  createRequest(method: string, url: string): HttpRequest {
    const req = this.inner.createRequest(method, url);
    const cut = this.cut;
    if (method !== 'PATCH' || !cut) return req;
    const send = req.send.bind(req);
    req.send = (body: Buffer) => {
      const start = Number(req.getHeader('Upload-Offset') ?? 0);
      const stopAt = Math.max(0, cut.at - start);
      let sent = 0;
      const source = new Readable({
        read() {
          if (sent >= stopAt || sent >= body.length) {
            if (sent >= body.length) this.push(null);
            else cut.onCut();
            return;
          }
          const n = Math.min(256 * 1024, stopAt - sent, body.length - sent);
          this.push(body.subarray(sent, sent + n));
          sent += n;
        },
      });
      return send(source);
    };
    return req;
  }
}

interface TusOutcome {
  url: string | null;
  mediaId?: string | undefined;
  error?: DetailedError;
  cut?: boolean;
  /** Upload-Offset of every PATCH sent. */
  patchOffsets: number[];
}

/** One run of tus-js-client; resolves on success, error, or once the body was cut (and the upload aborted). */
function tus(
  data: Buffer,
  o: {
    token: string;
    base?: string;
    uploadUrl?: string;
    metadata?: Record<string, string>;
    cutAt?: number;
    /** With cutAt: keep the request open at the cut (the body stalls) and call this, instead of aborting. */
    onStall?: () => void;
    chunkSize?: number;
    uploadDataDuringCreation?: boolean;
    overridePatchMethod?: boolean;
  },
): Promise<TusOutcome> {
  return new Promise((resolve) => {
    const patchOffsets: number[] = [];
    let upload: Upload;
    const stack = new CuttingStack(
      o.cutAt === undefined
        ? undefined
        : {
            at: o.cutAt,
            onCut: () => {
              if (o.onStall) return o.onStall();
              // Let the server read what was sent, then drop the connection.
              void sleep(300).then(async () => {
                await upload.abort();
                resolve({ url: upload.url, cut: true, patchOffsets });
              });
            },
          },
    );
    upload = new Upload(data, {
      endpoint: `${o.base ?? app.url}${ENDPOINT}`,
      ...(o.uploadUrl ? { uploadUrl: o.uploadUrl } : {}),
      headers: { Authorization: `Bearer ${o.token}` },
      metadata: o.metadata ?? { entityType: 'property', entityId: 'p-1', filename: 'clip.mp4', filetype: 'video/mp4' },
      retryDelays: [],
      httpStack: stack,
      ...(o.chunkSize ? { chunkSize: o.chunkSize } : {}),
      ...(o.uploadDataDuringCreation ? { uploadDataDuringCreation: true } : {}),
      ...(o.overridePatchMethod ? { overridePatchMethod: true } : {}),
      onBeforeRequest: (req) => {
        if (req.getMethod() === 'PATCH' || req.getHeader('X-HTTP-Method-Override') === 'PATCH') patchOffsets.push(Number(req.getHeader('Upload-Offset')));
      },
      onSuccess: ({ lastResponse }) => resolve({ url: upload.url, mediaId: lastResponse.getHeader('Media-Id'), patchOffsets }),
      onError: (error) => resolve({ url: upload.url, error: error as DetailedError, patchOffsets }),
    });
    upload.start();
  });
}

const statusOf = (e: DetailedError | undefined) => e?.originalResponse?.getStatus();
const idOf = (url: string) => url.split('/').pop()!;
const meta = (m: Record<string, string>) =>
  Object.entries(m)
    .map(([k, v]) => `${k} ${b64(v)}`)
    .join(',');

/** A tus request made by hand. */
async function call(method: string, url: string, token: string | null, headers: Record<string, string> = {}, body?: Buffer): Promise<Response> {
  return fetch(url.startsWith('http') ? url : `${app.url}${url}`, {
    method,
    headers: { 'Tus-Resumable': '1.0.0', ...(token ? { Authorization: `Bearer ${token}` } : {}), ...headers },
    ...(body ? { body } : {}),
  });
}

async function create(token: string, length: number, m: Record<string, string> = { entityType: 'property', entityId: 'p-1', filename: 'clip.mp4' }): Promise<Response> {
  return call('POST', ENDPOINT, token, { 'Upload-Length': String(length), 'Upload-Metadata': meta(m) });
}

async function errorOf(res: Response): Promise<{ code?: string; message?: string }> {
  return ((await res.json()) as { error: { code?: string; message?: string } }).error;
}

/** How the completion of an upload inspected its bytes: on their way in (one instance saw them all), or read back from storage. */
const inspected = (a: TestApp, uploadId: string) => a.logs.find((l) => l['msg'] === 'resumable upload completed' && l['uploadId'] === uploadId)?.['inspected'];

const state = (token: string, id: string) => ok(app.url, ResumableUploadStateDocument, { id }, { token }).then((d) => d.resumableUpload);

async function content(token: string, mediaId: string, base = app.url): Promise<Buffer> {
  const res = await fetch(`${base}/media/${mediaId}/content`, { headers: { authorization: `Bearer ${token}` } });
  expect(res.status).toBe(200);
  return Buffer.from(await res.arrayBuffer());
}

/** Every object of an upload under tus-uploads/ (the bytes, and the store's records and parts). */
async function tusObjects(id: string): Promise<string[]> {
  return (await app.services.storage.list(TUS_PREFIX)).map((o) => o.key).filter((k) => k.includes(id));
}

/** Multipart uploads of the bucket under a prefix (S3; [] on local disk). */
async function multipartUploads(prefix: string): Promise<string[]> {
  if (STORAGE_DRIVER !== 's3') return [];
  const o = testS3Options();
  const client = new S3Client({ region: 'us-east-1', endpoint: o.endpoint, forcePathStyle: true, credentials: o.credentials });
  try {
    const out = await client.send(new ListMultipartUploadsCommand({ Bucket: o.bucket, Prefix: prefix }));
    return (out.Uploads ?? []).map((u) => `${u.Key}:${u.UploadId}`);
  } finally {
    client.destroy();
  }
}

/** The upload has left nothing: no row, no bytes or records, no multipart upload. */
async function expectGone(id: string): Promise<void> {
  expect(await app.db.prisma.resumableUpload.findUnique({ where: { id } })).toBeNull();
  expect(await tusObjects(id)).toEqual([]);
  expect(await multipartUploads(`${TUS_PREFIX}${id}`)).toEqual([]);
  if (STORAGE_DRIVER === 'local') {
    expect(existsSync(path.join(app.dataDir, 'blobs', 'tus-uploads', id))).toBe(false);
    expect(existsSync(path.join(app.dataDir, 'blobs', 'tus-uploads', `${id}.json`))).toBe(false);
  }
}

describe(`resumable uploads (tus, ${STORAGE_DRIVER})`, () => {
  it('a 50 MiB MP4 cut off at 40 % resumes from the server\'s offset; the media is byte-identical; resumableUpload reports before, during, after', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const data = await mp4Bytes(50 * MiB);
    const metadata = { entityType: 'property', entityId: 'p-42', tags: 'Front, garden', role: 'PRIMARY_PHOTO', filename: 'walkthrough.mp4', filetype: 'video/mp4' };

    const first = await tus(data, { token, metadata, cutAt: Math.floor(data.length * 0.4) });
    expect(first.cut).toBe(true);
    expect(first.patchOffsets).toEqual([0]);
    const url = first.url!;
    expect(url).toMatch(new RegExp(`${ENDPOINT}/[0-9a-f-]{36}$`));
    const id = idOf(url);

    // During: the server kept what arrived, and says so (HEAD and the query agree).
    const head = await call('HEAD', url, token);
    expect(head.status).toBe(200);
    const offset = Number(head.headers.get('upload-offset'));
    expect(offset).toBeGreaterThan(0);
    expect(offset).toBeLessThan(data.length);
    expect(head.headers.get('upload-length')).toBe(String(data.length));
    expect(head.headers.get('upload-expires')).toBeTruthy();
    expect(head.headers.get('media-id')).toBeNull();
    const during = await state(token, id);
    expect(during).toMatchObject({ id, offset, length: data.length, media: null });
    expect(new Date(during!.expiresAt).getTime()).toBeGreaterThan(Date.now() + 23 * 3600 * 1000);

    // Resumed from the server's offset, not from 0.
    const second = await tus(data, { token, metadata, uploadUrl: url });
    expect(second.error).toBeUndefined();
    expect(second.patchOffsets).toEqual([offset]);
    expect(second.mediaId).toMatch(/^[0-9a-f-]{36}$/);

    const after = await state(token, id);
    expect(after).toMatchObject({ id, offset: data.length, length: data.length });
    expect(after!.media).toMatchObject({ id: second.mediaId, mediaType: 'video/mp4', fileSize: data.length, checksum: sha256(data), tags: ['front', 'garden'], securityLevel: 'STANDARD', fileName: 'walkthrough.mp4' });
    expect(sha256(await content(token, second.mediaId!))).toBe(sha256(data));
    // Both requests came here: the bytes were inspected as they arrived, not read again.
    expect(inspected(app, id)).toBe('on the way in');
    // Attached, with its role; and the upload's bytes are spent.
    const roles = await app.db.prisma.mediaRoleAssignment.findMany({ where: { tenantId: tenant } });
    expect(roles).toMatchObject([{ entityType: 'property', entityId: 'p-42', role: 'PRIMARY_PHOTO', mediaId: second.mediaId }]);
    expect(await tusObjects(id)).toEqual([]);
    expect(await multipartUploads(`${TUS_PREFIX}${id}`)).toEqual([]);

    // A client that lost the final answer asks again: the same media, never a second one.
    const again = await call('HEAD', url, token);
    expect(again.status).toBe(200);
    expect(again.headers.get('upload-offset')).toBe(String(data.length));
    expect(again.headers.get('media-id')).toBe(second.mediaId);
    const replay = await call('PATCH', url, token, { 'Upload-Offset': String(data.length), 'Content-Type': 'application/offset+octet-stream' }, Buffer.alloc(0));
    expect(replay.status).toBe(204);
    expect(replay.headers.get('media-id')).toBe(second.mediaId);
    expect(await app.db.prisma.media.count({ where: { tenantId: tenant } })).toBe(1);
    // Termination of a finished upload is refused; its media stays.
    expect((await call('DELETE', url, token)).status).toBe(400);
  }, 120_000);

  it('resumed on another instance that shares the database and the storage', async () => {
    const other = await otherInstance();
    const tenant = newTenant();
    const token = await app.token(tenant);
    const data = await mp4Bytes(20 * MiB);
    const first = await tus(data, { token, cutAt: Math.floor(data.length * 0.4) });
    expect(first.cut).toBe(true);
    const id = idOf(first.url!);
    const onOther = `${other.url}${ENDPOINT}/${id}`;
    const head = await call('HEAD', onOther, token);
    expect(head.status).toBe(200);
    const offset = Number(head.headers.get('upload-offset'));
    expect(offset).toBeGreaterThan(0);

    const second = await tus(data, { token, base: other.url, uploadUrl: onOther });
    expect(second.error).toBeUndefined();
    expect(second.patchOffsets).toEqual([offset]);
    expect(sha256(await content(token, second.mediaId!, other.url))).toBe(sha256(data));
    expect(sha256(await content(token, second.mediaId!))).toBe(sha256(data));
    // The other instance did not see the first bytes: it read the stored ones.
    expect(inspected(other, id)).toBe('read back');
    // The first instance sees it finished too.
    expect((await call('HEAD', first.url!, token)).headers.get('media-id')).toBe(second.mediaId);
  }, 120_000);

  it('a write by another instance in between: the first instance does not trust what it inspected, it reads the stored bytes', async () => {
    const other = await otherInstance();
    const tenant = newTenant();
    const token = await app.token(tenant);
    const data = await mp4Bytes(10 * MiB);
    const first = await tus(data, { token, cutAt: 4 * MiB });
    const id = idOf(first.url!);
    const offset = (await call('HEAD', first.url!, token)).headers.get('upload-offset')!;
    // An empty PATCH on the other instance: same offset, but not this instance's write.
    const empty = await call('PATCH', `${other.url}${ENDPOINT}/${id}`, token, { 'Upload-Offset': offset, 'Content-Type': 'application/offset+octet-stream' }, Buffer.alloc(0));
    expect(empty.status).toBe(204);
    expect(empty.headers.get('upload-offset')).toBe(offset);
    const rest = await tus(data, { token, uploadUrl: first.url! });
    expect(rest.patchOffsets).toEqual([Number(offset)]);
    expect(sha256(await content(token, rest.mediaId!))).toBe(sha256(data));
    expect(inspected(app, id)).toBe('read back');
  }, 60_000);

  it('a lock held on one instance makes a request on another wait, and asks the holder to let go', async () => {
    const other = await otherInstance();
    const tenant = newTenant();
    const token = await app.token(tenant);
    const res = await create(token, 4 * MiB);
    const id = idOf(res.headers.get('location')!);
    const lock = app.services.resumable.locker.newLock(id);
    let asked = 0;
    await lock.lock(new AbortController().signal, () => void asked++);
    const t0 = Date.now();
    const waiting = call('HEAD', `${other.url}${ENDPOINT}/${id}`, token);
    await sleep(500);
    await lock.unlock();
    const head = await waiting;
    expect(head.status).toBe(200);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400);
    // The waiter on the other instance reached this one's holder (NOTIFY).
    expect(asked).toBeGreaterThanOrEqual(1);
  });

  it('a request that cannot get the lock within RESUMABLE_LOCK_TIMEOUT_MS is 423 Locked (tus clients retry it)', async () => {
    const other = await otherInstance();
    const tenant = newTenant();
    const token = await app.token(tenant);
    const id = idOf((await create(token, MiB)).headers.get('location')!);
    const lock = app.services.resumable.locker.newLock(id);
    let asked = 0;
    await lock.lock(new AbortController().signal, () => void asked++);
    try {
      const t0 = Date.now();
      const res = await call('HEAD', `${other.url}${ENDPOINT}/${id}`, token);
      expect(res.status).toBe(423);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
      const patch = await call('PATCH', `${other.url}${ENDPOINT}/${id}`, token, { 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' }, Buffer.alloc(1000));
      expect(patch.status).toBe(423);
      expect(await errorOf(patch)).toMatchObject({ code: 'CONFLICT' });
      expect(asked).toBeGreaterThanOrEqual(2);
    } finally {
      await lock.unlock();
    }
    expect((await call('HEAD', `${other.url}${ENDPOINT}/${id}`, token)).status).toBe(200);
  });

  it('a PATCH whose lock connection dies stops at once; the lock is free, and the upload resumes intact', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const data = await mp4Bytes(12 * MiB);
    let stalled!: () => void;
    const atStall = new Promise<void>((r) => (stalled = r));
    // Past the first S3 part (8 MiB): a write cut by an error keeps its complete parts only.
    const running = tus(data, { token, cutAt: 10 * MiB, onStall: () => stalled() });
    await atStall;
    await sleep(300);
    const [upload] = await app.db.prisma.resumableUpload.findMany({ where: { tenantId: tenant } });
    const killed = await app.db.prisma.$queryRaw<{ ok: boolean }[]>`
      SELECT pg_terminate_backend(pid) AS ok FROM pg_locks
      WHERE locktype = 'advisory' AND classid = 727277 AND objid::bigint = (hashtext(${upload!.id})::bigint & 4294967295) AND granted`;
    expect(killed).toEqual([{ ok: true }]);
    const out = await running;
    expect(statusOf(out.error)).toBe(503);
    // Free at once (no 8 s wait for a lock), with what arrived before the cut.
    const t0 = Date.now();
    const head = await call('HEAD', out.url!, token);
    expect(head.status).toBe(200);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(Number(head.headers.get('upload-offset'))).toBeGreaterThan(0);
    const rest = await tus(data, { token, uploadUrl: out.url! });
    expect(rest.error).toBeUndefined();
    expect(sha256(await content(token, rest.mediaId!))).toBe(sha256(data));
    // The cut write may have kept fewer bytes than went through the inspection: it was dropped.
    expect(inspected(app, upload!.id)).toBe('read back');
  }, 60_000);

  it('a completion that fails for a passing reason keeps the upload; the next HEAD completes it', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const data = await mp4Bytes(3 * MiB);
    const storage = app.services.storage as unknown as { copy: (...a: unknown[]) => Promise<void> };
    const copy = storage.copy;
    storage.copy = async () => {
      throw new Error('injected: the store refused the copy');
    };
    let out: TusOutcome;
    try {
      out = await tus(data, { token });
    } finally {
      storage.copy = copy;
    }
    expect(statusOf(out.error)).toBe(503);
    const id = idOf(out.url!);
    expect(await state(token, id)).toMatchObject({ offset: data.length, media: null });
    expect(await app.db.prisma.media.count({ where: { tenantId: tenant } })).toBe(0);
    const head = await call('HEAD', out.url!, token);
    expect(head.status).toBe(200);
    const mediaId = head.headers.get('media-id')!;
    expect(mediaId).toMatch(/^[0-9a-f-]{36}$/);
    expect(sha256(await content(token, mediaId))).toBe(sha256(data));
    expect(await app.db.prisma.media.count({ where: { tenantId: tenant } })).toBe(1);
    // tus-js-client resuming it is told it is done, with the media.
    const again = await tus(data, { token, uploadUrl: out.url! });
    expect(again).toMatchObject({ mediaId, patchOffsets: [] });
  });

  it('a tenant holds at most RESUMABLE_UPLOAD_MAX_OUTSTANDING unfinished uploads', async () => {
    const other = await otherInstance();
    const token = await other.token(newTenant());
    const createOn = (length: number) =>
      call('POST', `${other.url}${ENDPOINT}`, token, { 'Upload-Length': String(length), 'Upload-Metadata': meta({ entityType: 'property', entityId: 'p' }) });
    for (let i = 0; i < 3; i++) expect((await createOn(1000)).status).toBe(201);
    const refused = await createOn(1000);
    expect(refused.status).toBe(429);
    expect(await errorOf(refused)).toMatchObject({ code: 'TOO_MANY_REQUESTS' });
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(3600);
  });

  it('expired uploads are refused (410) and swept: bytes gone (local), multipart upload aborted (S3), row gone', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const data = await mp4Bytes(12 * MiB);
    const first = await tus(data, { token, cutAt: 9 * MiB });
    const id = idOf(first.url!);
    expect(Number((await call('HEAD', first.url!, token)).headers.get('upload-offset'))).toBeGreaterThan(0);
    expect((await tusObjects(id)).length).toBeGreaterThan(0);
    if (STORAGE_DRIVER === 's3') expect(await multipartUploads(`${TUS_PREFIX}${id}`)).toHaveLength(1);

    await app.db.prisma.$executeRaw`UPDATE resumable_upload SET expires_at = now() - interval '1 second' WHERE id = ${id}::uuid`;
    expect((await call('HEAD', first.url!, token)).status).toBe(410);
    expect((await call('PATCH', first.url!, token, { 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' }, Buffer.alloc(10))).status).toBe(410);

    const report = await sweepTenant(app, tenant);
    expect(report.resumableUploadsRemoved).toBe(1);
    await expectGone(id);
    expect(await state(token, id)).toBeNull();
    expect((await call('HEAD', first.url!, token)).status).toBe(404);
  }, 60_000);

  it('a whole-store sweep removes tus bytes no row claims, and (S3) multipart uploads older than an upload can live', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const data = await mp4Bytes(12 * MiB);
    const first = await tus(data, { token, cutAt: 10 * MiB });
    const id = idOf(first.url!);
    // HEAD takes the upload's lock: it answers once the server is done with the cut PATCH
    // (a sweep while that PATCH still holds the lock leaves the upload alone, rightly).
    expect(Number((await call('HEAD', first.url!, token)).headers.get('upload-offset'))).toBeGreaterThan(0);
    // An interrupted removal: the row went, the bytes stayed.
    await app.db.prisma.$executeRaw`DELETE FROM resumable_upload WHERE id = ${id}::uuid`;
    expect((await tusObjects(id)).length).toBeGreaterThan(0);
    // A creation that died between CreateMultipartUpload and its record (S3).
    const stray = `${TUS_PREFIX}${crypto.randomUUID()}`;
    const o = testS3Options();
    const s3 = STORAGE_DRIVER === 's3' ? new S3Client({ region: 'us-east-1', endpoint: o.endpoint, forcePathStyle: true, credentials: o.credentials }) : undefined;
    if (s3) await s3.send(new CreateMultipartUploadCommand({ Bucket: o.bucket, Key: stray }));
    const sweep = new ResumableSweep({
      prisma: app.db.prisma,
      storage: app.services.storage,
      locker: app.services.resumable.locker,
      backend: createTusBackend(app.services.storage, { blobRoot: path.join(app.dataDir, 'blobs'), logger: createLogger('silent') }),
      // No upload lives: every multipart upload under the prefix is past its life.
      ttlSeconds: 0,
      logger: createLogger('silent'),
    });
    const later = new Date(Date.now() + 2000);
    const report = await sweep.run({ cutoff: new Date(0), objectCutoff: later, tenant: null, check: () => undefined });
    expect(report.removed).toBeGreaterThanOrEqual(1);
    await expectGone(id);
    if (s3) {
      expect(report.aborted).toBeGreaterThanOrEqual(1);
      expect(await multipartUploads(stray)).toEqual([]);
      s3.destroy();
    }
  }, 60_000);

  it('the sweep leaves an expired upload alone while a request holds its lock', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const id = idOf((await create(token, MiB)).headers.get('location')!);
    await app.db.prisma.$executeRaw`UPDATE resumable_upload SET expires_at = now() - interval '1 second' WHERE id = ${id}::uuid`;
    const lock = app.services.resumable.locker.newLock(id);
    await lock.lock(new AbortController().signal, () => undefined);
    try {
      expect((await sweepTenant(app, tenant)).resumableUploadsRemoved).toBe(0);
    } finally {
      await lock.unlock();
    }
    expect((await sweepTenant(app, tenant)).resumableUploadsRemoved).toBe(1);
    await expectGone(id);
  });

  it('Upload-Length over the entity\'s limit is 413 at creation, nothing stored; deferred lengths are refused', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const before = new Set((await app.services.storage.list(TUS_PREFIX)).map((x) => x.key));
    // property accepts video up to 100 MiB: the largest of its types.
    const over = await create(token, 100 * MiB + 1);
    expect(over.status).toBe(413);
    expect(await errorOf(over)).toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
    expect(over.headers.get('location')).toBeNull();
    // With the type declared, that type's limit (images: 10 MiB).
    const image = await create(token, 10 * MiB + 1, { entityType: 'property', entityId: 'p-1', filename: 'a.jpg', filetype: 'image/jpeg' });
    expect(image.status).toBe(413);
    // A body sent with the creation is not read.
    const withBody = await call('POST', ENDPOINT, token, { 'Upload-Length': String(200 * MiB), 'Upload-Metadata': meta({ entityType: 'property', entityId: 'p' }), 'Content-Type': 'application/offset+octet-stream' }, Buffer.alloc(64 * 1024));
    expect(withBody.status).toBe(413);
    const deferred = await call('POST', ENDPOINT, token, { 'Upload-Defer-Length': '1', 'Upload-Metadata': meta({ entityType: 'property', entityId: 'p' }) });
    expect(deferred.status).toBe(400);
    expect((await errorOf(deferred)).message).toMatch(/Deferred lengths are not supported/);
    const empty = await create(token, 0);
    expect(empty.status).toBe(400);
    expect(await app.db.prisma.resumableUpload.count({ where: { tenantId: tenant } })).toBe(0);
    // Other test files create resumable uploads in the same store meanwhile: each of theirs has
    // its row before its first byte. Nothing new under the prefix is without a row.
    const added = (await app.services.storage.list(TUS_PREFIX)).map((x) => x.key).filter((k) => !before.has(k));
    const ids = [...new Set(added.map((k) => tusIdOfKey(k) ?? k))];
    const claimed = new Set((await app.db.pool.query<{ id: string }>('SELECT id::text AS id FROM resumable_upload WHERE id::text = ANY($1)', [ids])).rows.map((r) => r.id));
    expect(ids.filter((id) => !claimed.has(id))).toEqual([]);
    // A declared type the entity does not accept: 415 at creation.
    const declared = await create(token, 1000, { entityType: 'property', entityId: 'p', filetype: 'application/msword' });
    expect(declared.status).toBe(415);
  });

  it('a type the entity does not accept (HTML for property) ends the upload with 415 after its first bytes: no bytes, parts, row or media left', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const html = Buffer.from(`<!doctype html><html><body>${'<p>hello</p>'.repeat(20_000)}<script>alert(1)</script></body></html>`);
    const out = await tus(html, { token, metadata: { entityType: 'property', entityId: 'p-1', filename: 'photo.jpg' } });
    expect(statusOf(out.error)).toBe(415);
    expect(JSON.parse(out.error!.originalResponse!.getBody()).error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    await expectGone(idOf(out.url!));
    expect(await app.db.prisma.media.count({ where: { tenantId: tenant } })).toBe(0);

    // The same with creation-with-upload (the bytes in the POST).
    const during = await tus(html, { token, uploadDataDuringCreation: true, metadata: { entityType: 'property', entityId: 'p-1' } });
    expect(statusOf(during.error)).toBe(415);
    // A PDF declared as a JPEG: the content decides, and disagrees.
    const liar = await tus(pdfBytes(2), { token, metadata: { entityType: 'property', entityId: 'p-1', filename: 'x.jpg', filetype: 'image/jpeg' } });
    expect(statusOf(liar.error)).toBe(415);
    expect(await app.db.prisma.resumableUpload.count({ where: { tenantId: tenant } })).toBe(0);
    expect(await app.db.prisma.media.count({ where: { tenantId: tenant } })).toBe(0);
  });

  it('the first bytes must come in one request (the type is checked on them): smaller first chunks are refused and nothing is stored', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const data = await mp4Bytes(MiB);
    const out = await tus(data, { token, chunkSize: 16 * 1024 });
    expect(statusOf(out.error)).toBe(400);
    expect(JSON.parse(out.error!.originalResponse!.getBody()).error.message).toMatch(/first 65536 bytes/);
    const head = await call('HEAD', out.url!, token);
    expect(head.headers.get('upload-offset')).toBe('0');
    // Chunks of 64 KiB and more are fine.
    const chunked = await tus(data, { token, chunkSize: 256 * 1024, uploadUrl: out.url! });
    expect(chunked.error).toBeUndefined();
    expect(chunked.patchOffsets).toEqual([0, 256 * 1024, 512 * 1024, 768 * 1024]);
    expect(sha256(await content(token, chunked.mediaId!))).toBe(sha256(data));
  });

  it('SENSITIVE entities and CRITICAL roles are refused at creation (STANDARD content only)', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const person = await create(token, 1000, { entityType: 'person', entityId: 'x', filename: 'id.pdf' });
    expect(person.status).toBe(400);
    expect((await errorOf(person)).message).toMatch(/STANDARD content only.*SENSITIVE/);
    const critical = await create(token, 1000, { entityType: 'property', entityId: 'x', role: 'ID_DOCUMENT' });
    expect(critical.status).toBe(400);
    expect((await errorOf(critical)).message).toMatch(/CRITICAL/);
    const out = await tus(pdfBytes(1), { token, metadata: { entityType: 'lease', entityId: 'l-1' } });
    expect(statusOf(out.error)).toBe(400);
    expect(out.url).toBeNull();
    expect(await app.db.prisma.resumableUpload.count({ where: { tenantId: tenant } })).toBe(0);
  });

  it('termination by its owner deletes its parts; another tenant gets 404 for HEAD, PATCH and DELETE', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const stranger = await app.token(newTenant());
    const data = await mp4Bytes(12 * MiB);
    const first = await tus(data, { token, cutAt: 10 * MiB });
    const url = first.url!;
    const id = idOf(url);
    const offset = (await call('HEAD', url, token)).headers.get('upload-offset')!;

    for (const [method, headers, body] of [
      ['HEAD', {}, undefined],
      ['PATCH', { 'Upload-Offset': offset, 'Content-Type': 'application/offset+octet-stream' }, Buffer.alloc(100)],
      ['DELETE', {}, undefined],
    ] as const) {
      const res = await call(method, url, stranger, headers, body);
      expect(res.status, method).toBe(404);
    }
    expect(await state(stranger, id)).toBeNull();
    expect((await call('HEAD', url, token)).headers.get('upload-offset')).toBe(offset);

    const del = await call('DELETE', url, token);
    expect(del.status).toBe(204);
    await expectGone(id);
    expect((await call('HEAD', url, token)).status).toBe(404);
  }, 60_000);

  it('small files in the creation request (creation-with-upload): the 201 names the media', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const pdf = pdfBytes(3);
    const out = await tus(pdf, { token, uploadDataDuringCreation: true, metadata: { entityType: 'company', entityId: 'c-1', filename: 'terms.pdf', tags: 'legal' } });
    expect(out.error).toBeUndefined();
    expect(out.patchOffsets).toEqual([]);
    const s = await state(token, idOf(out.url!));
    expect(s!.media).toMatchObject({ id: out.mediaId, mediaType: 'application/pdf', fileSize: pdf.length, checksum: sha256(pdf), tags: ['legal'] });
    const row = await app.db.prisma.media.findFirstOrThrow({ where: { tenantId: tenant } });
    expect(row.pageCount).toBe(3);
  });

  it('X-HTTP-Method-Override (clients behind proxies that drop PATCH) works', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const data = await mp4Bytes(MiB);
    const out = await tus(data, { token, overridePatchMethod: true });
    expect(out.error).toBeUndefined();
    expect(sha256(await content(token, out.mediaId!))).toBe(sha256(data));
  });

  it('hostile input gets clear 4xx answers and changes nothing', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const expectError = async (res: Response, status: number, code?: string) => {
      expect(res.status).toBe(status);
      if (code) expect(await errorOf(res)).toMatchObject({ code });
    };
    await expectError(await call('POST', ENDPOINT, null, { 'Upload-Length': '10' }), 401, 'UNAUTHENTICATED');
    await expectError(await call('POST', ENDPOINT, await app.token(tenant, { scopes: ['media:read'] }), { 'Upload-Length': '10' }), 403, 'FORBIDDEN');
    await expectError(await call('POST', ENDPOINT, token, { 'Upload-Length': '10', 'Upload-Metadata': 'entityType !!notbase64!!' }), 400, 'BAD_USER_INPUT');
    await expectError(await call('POST', ENDPOINT, token, { 'Upload-Length': '10', 'Upload-Metadata': 'entityType cHJvcGVydHk=,entityType cHJvcGVydHk=' }), 400);
    await expectError(await create(token, 10, { entityType: 'property', entityId: 'x'.repeat(5000) }), 400, 'BAD_USER_INPUT');
    await expectError(await create(token, 10, { entityType: 'property', entityId: 'x'.repeat(200) }), 400, 'BAD_USER_INPUT');
    await expectError(await create(token, 10, { entityId: 'x' }), 400, 'BAD_USER_INPUT');
    await expectError(await create(token, 10, { entityType: 'spaceship', entityId: 'x' }), 400, 'BAD_USER_INPUT');
    await expectError(await create(token, 10, { entityType: 'property', entityId: 'x', tags: 'ok,NOT OK!' }), 400, 'BAD_USER_INPUT');
    await expectError(await create(token, 10, { entityType: 'property', entityId: 'x', role: 'KING' }), 400, 'BAD_USER_INPUT');
    await expectError(await create(token, 10, { entityType: 'property', entityId: 'nul\u0000here' }), 400, 'BAD_USER_INPUT');
    await expectError(await call('POST', ENDPOINT, token, { 'Upload-Length': '99999999999999999999999', 'Upload-Metadata': meta({ entityType: 'property', entityId: 'p' }) }), 400);
    await expectError(await call('POST', ENDPOINT, token, { 'Upload-Length': '-5', 'Upload-Metadata': meta({ entityType: 'property', entityId: 'p' }) }), 400);
    await expectError(await call('POST', ENDPOINT, token, { 'Upload-Length': '10', 'Upload-Concat': 'partial', 'Upload-Metadata': meta({ entityType: 'property', entityId: 'p' }) }), 400);
    const noTus = await fetch(`${app.url}${ENDPOINT}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'Upload-Length': '10' } });
    expect(noTus.status).toBe(412);
    await expectError(await call('GET', `${ENDPOINT}/${'0'.repeat(8)}-0000-0000-0000-${'0'.repeat(12)}`, token), 404, 'NOT_FOUND');
    await expectError(await call('PUT', ENDPOINT, token), 404, 'NOT_FOUND');
    for (const bad of ['../../etc/passwd', '..%2F..%2Fsecrets', 'not-a-uuid', `${'a'.repeat(300)}`]) {
      await expectError(await call('HEAD', `${ENDPOINT}/${bad}`, token), 404);
    }
    expect(await app.db.prisma.resumableUpload.count({ where: { tenantId: tenant } })).toBe(0);

    // An upload to play with: offsets, content types, lengths.
    const data = await mp4Bytes(2 * MiB);
    const url = (await create(token, data.length)).headers.get('location')!;
    const patch = (headers: Record<string, string>, body = data.subarray(0, 128 * 1024)) =>
      call('PATCH', url, token, { 'Content-Type': 'application/offset+octet-stream', ...headers }, body);
    await expectError(await patch({ 'Upload-Offset': '99999999999999999999' }), 400);
    await expectError(await patch({ 'Upload-Offset': '-1' }), 400);
    await expectError(await patch({ 'Upload-Offset': '1.5' }), 400);
    await expectError(await patch({ 'Upload-Offset': '5' }), 409, 'CONFLICT');
    await expectError(await patch({}), 403);
    await expectError(await patch({ 'Upload-Offset': '0', 'Content-Type': 'application/json' }), 415, 'UNSUPPORTED_MEDIA_TYPE');
    await expectError(await call('PATCH', url, token, { 'Upload-Offset': '0' }, data.subarray(0, 1000)), 415, 'UNSUPPORTED_MEDIA_TYPE');
    await expectError(await patch({ 'Upload-Offset': '0', 'Upload-Length': String(data.length) }), 400);
    // More bytes than the upload has: refused.
    await expectError(await patch({ 'Upload-Offset': '0' }, Buffer.concat([data, Buffer.alloc(10)])), 413);
    expect((await call('HEAD', url, token)).headers.get('upload-offset')).toBe('0');

    // Concurrent PATCHes of one upload: each is answered (204, 409 or a 4xx of the
    // lock), none fails with a 5xx, and the upload stays consistent.
    const results = await Promise.all(Array.from({ length: 4 }, () => patch({ 'Upload-Offset': '0' }, data.subarray(0, MiB)).then((r) => r.status)));
    for (const s of results) expect([204, 400, 409, 423]).toContain(s);
    expect(results.filter((s) => s === 204).length).toBeGreaterThanOrEqual(1);
    const offset = Number((await call('HEAD', url, token)).headers.get('upload-offset'));
    expect(offset).toBeGreaterThan(0);
    const rest = await tus(data, { token, uploadUrl: url });
    expect(rest.error).toBeUndefined();
    expect(sha256(await content(token, rest.mediaId!))).toBe(sha256(data));
    expect(uncaught).toEqual([]);
  }, 60_000);

  it('browsers on a listed origin may call it: preflight, exposed tus headers and Media-Id', async () => {
    const origin = 'https://app.example.com';
    const pre = await fetch(`${app.url}${ENDPOINT}/x`, {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': 'PATCH', 'access-control-request-headers': 'authorization,tus-resumable,upload-offset,content-type,upload-metadata,upload-length' },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBe(origin);
    expect(pre.headers.get('access-control-allow-methods')).toMatch(/PATCH/);
    expect(pre.headers.get('access-control-allow-methods')).toMatch(/DELETE/);
    for (const h of ['Tus-Resumable', 'Upload-Offset', 'Upload-Length', 'Upload-Metadata']) expect(pre.headers.get('access-control-allow-headers')).toContain(h);
    const token = await app.token(newTenant());
    const res = await call('POST', ENDPOINT, token, { origin, 'Upload-Length': '1000', 'Upload-Metadata': meta({ entityType: 'property', entityId: 'p' }) });
    expect(res.status).toBe(201);
    expect(res.headers.get('access-control-allow-origin')).toBe(origin);
    const exposed = res.headers.get('access-control-expose-headers')!;
    for (const h of ['Location', 'Upload-Offset', 'Upload-Length', 'Upload-Expires', 'Tus-Resumable', 'Media-Id']) expect(exposed).toContain(h);
    // An origin that is not listed gets no CORS header (not tus's `*`).
    const stranger = await call('POST', ENDPOINT, token, { origin: 'https://evil.example', 'Upload-Length': '1000', 'Upload-Metadata': meta({ entityType: 'property', entityId: 'p' }) });
    expect(stranger.headers.get('access-control-allow-origin')).toBeNull();
    // tus discovery (OPTIONS without a preflight) needs no token.
    const discovery = await fetch(`${app.url}${ENDPOINT}`, { method: 'OPTIONS' });
    expect(discovery.status).toBe(204);
    expect(discovery.headers.get('tus-version')).toBe('1.0.0');
    expect(discovery.headers.get('tus-extension')).toBe('creation,creation-with-upload,termination,expiration');
    expect(Number(discovery.headers.get('tus-max-size'))).toBe(100 * MiB);
  });
});
