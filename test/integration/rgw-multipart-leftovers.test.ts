// No multipart upload left behind, on Ceph RGW (a store that implements
// AbortMultipartUpload and ListMultipartUploads; s3rver implements neither):
// refused uploads through the GraphQL `upload` mutation (too large, wrong type),
// storage faults (a part refused; a part refused and the abort failing too), the
// driver's own abort paths (the source failing while CreateMultipartUpload or parts
// are in flight), and a service process killed mid-upload. Afterwards one sweep
// with graceSeconds 0 leaves ListMultipartUploads on the bucket empty, and nothing
// refused left an object or a row. The test has a bucket of its own, so "empty" is
// about the whole bucket, and one tenant, so the sweep touches nothing of other tests.
// Runs in the rgw project only (npm run test:rgw).
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  ListMultipartUploadsCommand,
  S3Client,
  UploadPartCommand,
  type MultipartUpload,
} from '@aws-sdk/client-s3';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { mintToken, ALL_USER_SCOPES } from '../../src/auth/tokens.js';
import { S3Storage } from '../../src/storage/s3.js';
import { UploadDocument } from '../generated/graphql.js';
import { S3_CHECKSUMS, SSE_C_OVER_HTTP_ENV, TEST_JWT_SECRET, newTenant, startTestApp, testS3Options, testS3Store, type TestApp } from '../helpers/app.js';
import { codeOf, gql } from '../helpers/client.js';

/**
 * One sweep of this file's app. Other test files share the database and sweep too;
 * while one of them holds the sweep's advisory lock, run() answers null: try again.
 */
async function sweepOnce(o: { graceSeconds: number; tenant: string }) {
  for (let attempt = 0; attempt < 100; attempt++) {
    const report = await app.services.sweep.run(o);
    if (report) return report;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('the sweep lock stayed taken for 20 s');
}
import { mp4 } from '../helpers/files.js';

const MiB = 1024 * 1024;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bucket = `mpu-${randomBytes(4).toString('hex')}`;
const tenant = newTenant('mpu');

/** What the app's storage sent, in order, and the faults a test arms. */
const sent: string[] = [];
const faults: { failPart?: number; failAbort?: boolean } = {};

let app: TestApp;
let raw: S3Client;
let token: string;

async function uploadsOnBucket(prefix?: string): Promise<MultipartUpload[]> {
  const out: MultipartUpload[] = [];
  let keyMarker: string | undefined;
  let uploadIdMarker: string | undefined;
  for (;;) {
    const page = await raw.send(new ListMultipartUploadsCommand({ Bucket: bucket, ...(prefix ? { Prefix: prefix } : {}), KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }));
    out.push(...(page.Uploads ?? []));
    if (!page.IsTruncated) return out;
    keyMarker = page.NextKeyMarker;
    uploadIdMarker = page.NextUploadIdMarker;
  }
}

/** The app's S3 driver on the test's bucket (5 MiB parts), with a recorder and armed faults. */
function faultyStorage(): S3Storage {
  const s = new S3Storage(testS3Options({ bucket, partSize: 5 * MiB, queueSize: 2 }));
  s.client.middlewareStack.add(
    (next, context) => async (args) => {
      const command = context.commandName!.replace(/Command$/, '');
      const input = args.input as { PartNumber?: number };
      sent.push(command);
      if (command === 'UploadPart' && faults.failPart !== undefined && input.PartNumber === faults.failPart) throw new Error(`injected: part ${input.PartNumber} refused`);
      if (command === 'AbortMultipartUpload' && faults.failAbort) throw new Error('injected: abort failed');
      return next(args);
    },
    { step: 'initialize', name: 'testFaults' },
  );
  return s;
}

beforeAll(async () => {
  const store = testS3Store();
  raw = new S3Client({ region: 'us-east-1', endpoint: store.endpoint, forcePathStyle: true, credentials: store.credentials, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
  await raw.send(new CreateBucketCommand({ Bucket: bucket }));
  app = await startTestApp({ env: { SWEEP_INTERVAL_SECONDS: '0', MEDIA_KIND_LIMITS_MB: 'VIDEO=12' }, storage: () => faultyStorage() });
  token = await app.token(tenant);
});

afterAll(async () => {
  await app?.close();
  if (raw) {
    // Leave the cluster as found: whatever is still in the bucket, then the bucket.
    for (const u of await uploadsOnBucket().catch(() => [])) await raw.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId })).catch(() => undefined);
    const s = new S3Storage(testS3Options({ bucket }));
    await s.deletePrefix('').catch(() => undefined);
    await raw.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => undefined);
    raw.destroy();
  }
});

const upload = (file: File, entityType: string) => gql(app.url, UploadDocument, { input: { file, entity: { type: entityType, id: 'e1' } } }, { token });

describe('multipart uploads on Ceph RGW: none left behind', () => {
  it('an upload over the size limit: multipart started, PAYLOAD_TOO_LARGE, aborted at once', async () => {
    sent.length = 0;
    const r = await upload(mp4(20 * MiB), 'property');
    expect(codeOf(r)).toBe('PAYLOAD_TOO_LARGE');
    expect(sent).toContain('CreateMultipartUpload');
    expect(sent).toContain('AbortMultipartUpload');
    expect(sent).not.toContain('CompleteMultipartUpload');
    expect(await uploadsOnBucket(`${tenant}/`)).toEqual([]);
  });

  it('a type the entity does not accept, in a file larger than a part: UNSUPPORTED_MEDIA_TYPE, nothing left', async () => {
    sent.length = 0;
    const r = await upload(mp4(20 * MiB), 'company');
    expect(codeOf(r)).toBe('UNSUPPORTED_MEDIA_TYPE');
    // The type is read from the first bytes, so the refusal comes before the first part is full: no multipart upload starts.
    expect(sent.filter((c) => c === 'CreateMultipartUpload')).toEqual([]);
    expect(await uploadsOnBucket(`${tenant}/`)).toEqual([]);
  });

  it('a part the store refuses: STORAGE_UNAVAILABLE, the upload aborted', async () => {
    sent.length = 0;
    faults.failPart = 2;
    try {
      const r = await upload(mp4(11 * MiB), 'property');
      expect(codeOf(r)).toBe('STORAGE_UNAVAILABLE');
    } finally {
      delete faults.failPart;
    }
    expect(sent).toContain('AbortMultipartUpload');
    expect(await uploadsOnBucket(`${tenant}/`)).toEqual([]);
  });

  it('a part refused and the abort failing too: the multipart upload stays (for the sweep)', async () => {
    sent.length = 0;
    faults.failPart = 2;
    faults.failAbort = true;
    try {
      const r = await upload(mp4(11 * MiB), 'property');
      expect(codeOf(r)).toBe('STORAGE_UNAVAILABLE');
    } finally {
      delete faults.failPart;
      delete faults.failAbort;
    }
    expect(sent).toContain('AbortMultipartUpload');
    expect(await uploadsOnBucket(`${tenant}/`)).toHaveLength(1);
  });

  it('the driver: a source that fails while CreateMultipartUpload is in flight is aborted once the upload exists', async () => {
    const s = new S3Storage(testS3Options({ bucket, partSize: 5 * MiB }));
    const log: string[] = [];
    const src = new Readable({ read() {} });
    src.push(randomBytes(6 * MiB));
    s.client.middlewareStack.add(
      (next, context) => async (args) => {
        const command = context.commandName!.replace(/Command$/, '');
        log.push(command);
        if (command === 'CreateMultipartUpload') {
          src.destroy(new Error('source broke'));
          await new Promise((r) => setTimeout(r, 200));
        }
        return next(args);
      },
      { step: 'initialize', name: 'testDelay' },
    );
    const key = `${tenant}/driver-create-in-flight`;
    await expect(s.put(key, src)).rejects.toThrow('source broke');
    expect(log).toContain('CreateMultipartUpload');
    // Create, then the abort (and the driver's DeleteObject of the key, in case a store wrote in place).
    expect(log.filter((c) => c !== 'DeleteObject')).toEqual(['CreateMultipartUpload', 'AbortMultipartUpload']);
    expect(await uploadsOnBucket(key)).toEqual([]);
    expect(await s.head(key)).toBeNull();
  });

  it('the driver: a source that fails while parts are in flight is aborted after those parts end', async () => {
    const s = new S3Storage(testS3Options({ bucket, partSize: 5 * MiB, queueSize: 3 }));
    const log: string[] = [];
    let pushed = 0;
    const src = new Readable({
      read() {
        if (pushed >= 12 * MiB) return; // then wait: the test breaks it
        pushed += MiB;
        this.push(randomBytes(MiB));
      },
    });
    s.client.middlewareStack.add(
      (next, context) => async (args) => {
        const command = context.commandName!.replace(/Command$/, '');
        log.push(`${command}:start`);
        if (command === 'UploadPart') {
          if ((args.input as { PartNumber: number }).PartNumber === 2) setTimeout(() => src.destroy(new Error('source broke')), 50);
          await new Promise((r) => setTimeout(r, 400));
        }
        const out = await next(args);
        log.push(`${command}:end`);
        return out;
      },
      { step: 'initialize', name: 'testDelay' },
    );
    const key = `${tenant}/driver-parts-in-flight`;
    await expect(s.put(key, src)).rejects.toThrow('source broke');
    const abortAt = log.indexOf('AbortMultipartUpload:start');
    expect(abortAt).toBeGreaterThan(0);
    expect(log.filter((l) => l === 'UploadPart:start')).toHaveLength(2);
    // Both parts had ended before the abort went out.
    expect(log.slice(0, abortAt).filter((l) => l === 'UploadPart:end')).toHaveLength(2);
    expect(await uploadsOnBucket(key)).toEqual([]);
    expect(await s.head(key)).toBeNull();
  });

  it('the driver\'s stale-upload sweep pages through the listing, and leaves an upload that received a part since the cutoff', async () => {
    const s = new S3Storage(testS3Options({ bucket }));
    const prefix = `paging-${randomBytes(4).toString('hex')}/`;
    const create = async (name: string) => (await raw.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: `${prefix}${name}` }))).UploadId!;
    const stale: string[] = [];
    for (const name of ['a', 'b', 'b', 'c', 'd']) stale.push(await create(name)); // two uploads of one key: UploadIdMarker matters
    const busy = await create('busy');
    await new Promise((r) => setTimeout(r, 1500));
    const cutoff = new Date();
    await new Promise((r) => setTimeout(r, 1500));
    await raw.send(new UploadPartCommand({ Bucket: bucket, Key: `${prefix}busy`, UploadId: busy, PartNumber: 1, Body: randomBytes(1024), ContentLength: 1024 }));
    const later = await create('later');
    try {
      // Pages of 2: the 7 uploads take 4 pages.
      expect(await s.abortStaleMultipartUploads(cutoff, prefix, { pageSize: 2 })).toBe(stale.length);
      expect((await uploadsOnBucket(prefix)).map((u) => u.UploadId).sort()).toEqual([busy, later].sort());
    } finally {
      for (const [key, id] of [['busy', busy], ['later', later]] as const) await raw.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: `${prefix}${key}`, UploadId: id }));
    }
    expect(await uploadsOnBucket(prefix)).toEqual([]);
  });

  it('a service process killed while a big upload streams leaves a multipart upload; one sweep (grace 0) aborts every leftover', async () => {
    const earlier = new Set((await uploadsOnBucket()).map((u) => u.UploadId));
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'media-api-killed-'));
    const port = await freePort();
    const store = testS3Store();
    const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: ROOT,
      env: {
        ...process.env,
        PORT: String(port),
        HOST: '127.0.0.1',
        DATA_DIR: dataDir,
        DATABASE_URL: inject('databaseUrl'),
        DEV_ALLOW_GENERATED_SECRETS: 'true',
        JWT_SECRET: TEST_JWT_SECRET,
        LOG_LEVEL: 'warn',
        SWEEP_INTERVAL_SECONDS: '0',
        MEDIA_KIND_LIMITS_MB: 'VIDEO=200',
        S3_BUCKET: bucket,
        S3_ENDPOINT: store.endpoint,
        S3_FORCE_PATH_STYLE: 'true',
        S3_CHECKSUMS: S3_CHECKSUMS === 'WHEN_SUPPORTED' ? 'when_supported' : 'when_required',
        AWS_ACCESS_KEY_ID: store.credentials.accessKeyId,
        AWS_SECRET_ACCESS_KEY: store.credentials.secretAccessKey,
        AWS_REGION: 'us-east-1',
        ...SSE_C_OVER_HTTP_ENV,
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    let req: http.ClientRequest | undefined;
    try {
      await waitForReady(`http://127.0.0.1:${port}/readyz`, child, () => stderr);
      const childToken = await mintToken(TEST_JWT_SECRET, { tenant, scopes: ALL_USER_SCOPES });
      // A GraphQL multipart upload of a 100 MiB video whose body the test writes itself, then stops writing.
      const boundary = `----mpu${randomBytes(8).toString('hex')}`;
      const operations = JSON.stringify({ query: 'mutation ($input: UploadInput!) { upload(input: $input) { id } }', variables: { input: { file: null, entity: { type: 'property', id: 'killed' } } } });
      const head =
        `--${boundary}\r\nContent-Disposition: form-data; name="operations"\r\n\r\n${operations}\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="map"\r\n\r\n{"0":["variables.input.file"]}\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="0"; filename="big.mp4"\r\nContent-Type: video/mp4\r\n\r\n`;
      req = http.request({ host: '127.0.0.1', port, path: '/graphql', method: 'POST', headers: { authorization: `Bearer ${childToken}`, 'apollo-require-preflight': 'true', 'content-type': `multipart/form-data; boundary=${boundary}` } });
      req.on('error', () => undefined);
      req.write(head);
      const video = Buffer.from(await mp4(100 * MiB).arrayBuffer());
      // 24 MiB: the service's 8 MiB parts 1 and 2 go out, part 3 fills.
      for (let at = 0; at < 24 * MiB; at += MiB) {
        if (!req.write(video.subarray(at, at + MiB))) await new Promise((r) => req!.once('drain', r));
      }
      const deadline = Date.now() + 20_000;
      let mine: MultipartUpload[] = [];
      while (Date.now() < deadline) {
        mine = (await uploadsOnBucket(`${tenant}/`)).filter((u) => !earlier.has(u.UploadId) && u.Key?.endsWith('/original'));
        if (mine.length > 0) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(mine, 'the killed upload had started a multipart upload').toHaveLength(1);
      child.kill('SIGKILL');
      await exited;
    } finally {
      req?.destroy();
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
      await rm(dataDir, { recursive: true, force: true });
    }

    // Left behind: the killed process's upload and the one whose abort failed.
    const before = await uploadsOnBucket();
    expect(before.length).toBeGreaterThanOrEqual(2);

    // A grace period longer than their age touches none of them.
    expect((await sweepOnce({ graceSeconds: 3600, tenant }))?.multipartUploadsAborted).toBe(0);
    expect(await uploadsOnBucket()).toHaveLength(before.length);

    const report = await sweepOnce({ graceSeconds: 0, tenant });
    expect(report?.multipartUploadsAborted).toBe(before.length);
    expect(await uploadsOnBucket()).toEqual([]);

    // Nothing refused, failed or killed left an object or a row.
    expect((await app.services.storage.list(`${tenant}/`)).map((o) => o.key)).toEqual([]);
    expect(await app.db.prisma.media.count({ where: { tenantId: tenant } })).toBe(0);
  }, 120_000);
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

async function waitForReady(url: string, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the service exited with ${child.exitCode}:\n${stderr()}`);
    const r = await fetch(url).catch(() => undefined);
    if (r?.ok) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the service did not become ready:\n${stderr()}`);
}
