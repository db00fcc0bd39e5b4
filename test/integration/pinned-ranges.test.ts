import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import pg from 'pg';
import { migrate } from '../../src/db/migrate.js';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { newTenant, startTestApp, STORAGE_DRIVER, S3_STORE, testStorage } from '../helpers/app.js';
import { ok } from '../helpers/client.js';
import { pdfBytes } from '../helpers/files.js';
import { UploadDocument } from '../generated/graphql.js';
import { ContentCrypto } from '../../src/crypto/content-crypto.js';
import { KeyRing } from '../../src/crypto/key-ring.js';
import { AppError } from '../../src/errors/index.js';
import type { ByteRange, Storage } from '../../src/storage/index.js';
import type { GetOptions } from '../../src/storage/storage.js';

/*
 * A range of an application-side encrypted object takes two GETs (header, then
 * segments), pinned to one version of the object: an object replaced between them
 * is read again, and one replaced under every attempt is STORAGE_UNAVAILABLE
 * (retryable), never a false INTEGRITY_ERROR.
 */

/**
 * Application-side encryption on every store: Ceph RGW enforces SSE-C, which the
 * service would use there (objects not in the segment format, each read one GET), so
 * the app of the HTTP test is not allowed SSE-C over http (S3_SSE_C_OVER_HTTP unset):
 * it falls back to segments, which is what these tests are about.
 */
const ON_RGW = STORAGE_DRIVER === 's3' && S3_STORE === 'rgw';

/**
 * The environment of that app: on RGW, SSE-C not allowed over http, and a database
 * of its own (the shared one holds SSE-C media of other files, and a process that
 * cannot use SSE-C refuses to start on it: content-crypto.ts reconcileStoredModes).
 */
async function appModeEnv(): Promise<{ env: Record<string, string>; drop(): Promise<void> }> {
  if (!ON_RGW) return { env: {}, drop: async () => undefined };
  const url = new URL(inject('databaseUrl'));
  const name = `pinned_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: url.toString() });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const own = new URL(url);
  own.pathname = `/${name}`;
  await migrate(own.toString());
  return {
    env: { S3_SSE_C_OVER_HTTP: '', DATABASE_URL: own.toString() },
    drop: async () => {
      const c = new pg.Client({ connectionString: url.toString() });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).finally(() => c.end());
    },
  };
}
const OLD = `old:${randomBytes(32).toString('base64')}`;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function drain(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

interface GetCall {
  key: string;
  range: ByteRange | undefined;
}

/**
 * The real driver, with every get recorded and one fault that can be armed: on a
 * get of `key` that `when` matches, the real get is read to its end and `after`
 * runs before its bytes are handed over (the object replaced between two GETs).
 */
class FaultyGets {
  readonly calls: GetCall[] = [];
  fault: { key: string; when: (range: ByteRange | undefined) => boolean; times: number; after: () => Promise<void> } | null = null;

  wrap(real: Storage): Storage {
    return new Proxy(real, {
      get: (target, p) => {
        if (p === 'get') {
          return async (key: string, range?: ByteRange, options?: GetOptions) => {
            this.calls.push({ key, range });
            const f = this.fault;
            if (!f || f.key !== key || f.times <= 0 || !f.when(range)) return target.get(key, range, options);
            f.times--;
            const bytes = await drain(await target.get(key, range, options));
            await f.after();
            return Readable.from([bytes]);
          };
        }
        const v = Reflect.get(target, p, target) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  }

  gets(key: string): GetCall[] {
    return this.calls.filter((c) => c.key === key);
  }
}

const isHeaderGet = (r: ByteRange | undefined) => r?.start === 0;

describe(`pinned ranges of encrypted content (${STORAGE_DRIVER}${STORAGE_DRIVER === 's3' ? `, ${S3_STORE}` : ''})`, () => {
  describe('ContentCrypto.open on the real driver', () => {
    let dataDir: string;
    let real: Storage;
    const faults = new FaultyGets();
    let storage: Storage;
    // Small segments: a few KiB of content spans many of them.
    const crypto = new ContentCrypto(KeyRing.parse(OLD), 'app', 4096);
    const plain = randomBytes(50_000);
    const tenant = newTenant('cr');
    let key: string;
    const replace = () => crypto.seal(real, key, Readable.from([plain])).then(() => undefined);

    beforeAll(async () => {
      dataDir = await mkdtemp(path.join(os.tmpdir(), 'media-api-reads-'));
      real = testStorage(dataDir);
      storage = faults.wrap(real);
    });
    afterAll(async () => {
      await real.deletePrefix(`${tenant}/`).catch(() => undefined);
      await rm(dataDir, { recursive: true, force: true });
    });

    it('a range whose object is replaced between its header GET and its segment GET is read again and answers the right bytes', async () => {
      key = `${tenant}/${randomUUID()}/original`;
      await crypto.seal(real, key, Readable.from([plain]));
      faults.calls.length = 0;
      faults.fault = { key, when: isHeaderGet, times: 1, after: replace };
      const range = { start: 5000, end: 17_000 };
      const out = await drain(await crypto.open(storage, { key, kid: 'old', mode: 'app', plainSize: plain.length, range }));
      expect(out.equals(plain.subarray(range.start, range.end + 1))).toBe(true);
      expect(faults.fault.times).toBe(0);
      // header, segments (refused: another object now), header again, segments.
      expect(faults.gets(key).map((c) => c.range?.start)).toEqual([0, expect.any(Number), 0, expect.any(Number)]);
    });

    it('a range whose object keeps changing under it is STORAGE_UNAVAILABLE (retryable), never an integrity failure', async () => {
      key = `${tenant}/${randomUUID()}/original`;
      await crypto.seal(real, key, Readable.from([plain]));
      faults.fault = { key, when: isHeaderGet, times: 2, after: replace };
      const e = await crypto.open(storage, { key, kid: 'old', mode: 'app', plainSize: plain.length, range: { start: 100, end: 200 } }).then(
        () => null,
        (err: unknown) => err,
      );
      expect(e).toBeInstanceOf(AppError);
      expect(e).toMatchObject({ code: 'STORAGE_UNAVAILABLE' });
      faults.fault = null;
      // Unchanged since: the next read succeeds.
      const out = await drain(await crypto.open(storage, { key, kid: 'old', mode: 'app', plainSize: plain.length, range: { start: 100, end: 200 } }));
      expect(out.equals(plain.subarray(100, 201))).toBe(true);
    });
  });


  it('over HTTP: a range replaced once answers 206 with the right bytes; replaced under every attempt 503 STORAGE_UNAVAILABLE, and no INTEGRITY_ERROR is logged', async () => {
    const faults = new FaultyGets();
    let real!: Storage;
    const mode = await appModeEnv();
    const app = await startTestApp({
      env: mode.env,
      storage: (_dir, r) => {
        real = r;
        return faults.wrap(r);
      },
    });
    try {
      const tenant = newTenant('pr');
      const token = await app.token(tenant);
      const lease = Buffer.concat([pdfBytes(2), Buffer.from('%' + 'clause '.repeat(40_000))]);
      const up = (await ok(app.url, UploadDocument, { input: { file: new File([lease], 'lease.pdf', { type: 'application/pdf' }), entity: { type: 'lease', id: 'l1' } } }, { token })).upload;
      expect(up.encrypted).toBe(true);
      expect(app.services.crypto.mode).toBe('app');
      const key = `${tenant}/${up.id}/original`;
      const after = () => app.services.crypto.seal(real, key, Readable.from([lease])).then(() => undefined);
      const get = (range: string) => fetch(`${app.url}/media/${up.id}/content`, { headers: { authorization: `Bearer ${token}`, range } });

      faults.fault = { key, when: isHeaderGet, times: 1, after };
      const res = await get('bytes=60000-200000');
      expect(res.status).toBe(206);
      expect(Buffer.from(await res.arrayBuffer()).equals(lease.subarray(60_000, 200_001))).toBe(true);

      faults.fault = { key, when: isHeaderGet, times: 2, after };
      const busy = await get('bytes=10-20');
      expect(busy.status).toBe(503);
      expect(await busy.json()).toMatchObject({ error: { code: 'STORAGE_UNAVAILABLE' } });
      expect(faults.fault.times).toBe(0);
      expect(app.logs.some((l) => l['event'] === 'INTEGRITY_ERROR')).toBe(false);
    } finally {
      await app.close();
      await mode.drop();
    }
  });
});
