// Fault injection (SPEC 15): storage failing mid-stream, and the database failing
// after the storage write. The storage faults wrap the run's real driver; the
// database faults are real PostgreSQL errors raised by a trigger for one tenant
// (test/helpers/db-faults.ts).
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import pg from 'pg';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { errors } from '../../src/errors/index.js';
import type { Storage } from '../../src/storage/index.js';
import type { ObjectInfo, PutOptions } from '../../src/storage/storage.js';
import { FltMediaDocument, FltUploadDocument, FltUploadManyDocument } from '../generated/graphql.js';
import { STORAGE_DRIVER, newTenant, startTestApp, type TestApp } from '../helpers/app.js';
import { codeOf, gql, ok, type GqlResult } from '../helpers/client.js';
import { jpeg, mp4, pdf, png } from '../helpers/files.js';
import { storedKeys } from '../helpers/stored.js';
import { DbFaults } from '../helpers/db-faults.js';
import { recordUncaught, within } from '../helpers/security.js';

type PutFault = (key: string, body: Readable, options: PutOptions | undefined, real: Storage) => Promise<ObjectInfo>;

/**
 * The run's real driver with a switchable fault on put. `written` lists every
 * key a put completed, so a test can show that objects existed before the
 * service deleted them.
 */
class FaultSwitch {
  fault: { tenant: string; put: PutFault } | null = null;
  /** Reads of the tenant's originals break after this many bytes (an S3 body reset mid-transfer). */
  readFault: { tenant: string; after: number } | null = null;
  readonly written: string[] = [];
  readonly failedPuts: string[] = [];

  wrap(real: Storage): Storage {
    const put = async (key: string, body: Readable, options?: PutOptions): Promise<ObjectInfo> => {
      const fault = this.fault;
      if (fault && key.startsWith(`${fault.tenant}/`)) {
        try {
          const info = await fault.put(key, body, options, real);
          this.written.push(key);
          return info;
        } catch (e) {
          this.failedPuts.push(key);
          throw e;
        }
      }
      const info = await real.put(key, body, options);
      this.written.push(key);
      return info;
    };
    const get = async (...args: Parameters<Storage['get']>): Promise<Readable> => {
      const body = await real.get(...args);
      const fault = this.readFault;
      if (!fault || !args[0].startsWith(`${fault.tenant}/`) || !args[0].endsWith('/original')) return body;
      let seen = 0;
      const breaking = new Transform({
        transform(chunk: Buffer, _enc, done) {
          const before = seen;
          seen += chunk.length;
          if (seen <= fault.after) return done(null, chunk);
          if (before >= fault.after) return done();
          // The bytes up to the break get through, and nothing after them (not even the end of a
          // body that was read whole); then the read fails as a reset connection would. The
          // backend's stream is closed (a file handle, a socket).
          body.unpipe(breaking);
          body.destroy();
          this.push(chunk.subarray(0, fault.after - before));
          setImmediate(() => breaking.destroy(new Error('ECONNRESET: backend went away (secret-host:9000)')));
          done();
        },
      });
      body.on('error', (e) => breaking.destroy(e));
      return body.pipe(breaking);
    };
    return new Proxy(real, {
      get(target, prop) {
        if (prop === 'put') return put;
        if (prop === 'get') return get;
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  }

  writtenFor(tenant: string): string[] {
    return this.written.filter((k) => k.startsWith(`${tenant}/`));
  }
}

/** Reads about `bytes` of the body, then fails as a backend would mid-transfer (the body is left as is). */
function consumeThenThrow(bytes: number, error: Error = new Error('ECONNRESET: backend went away (secret-host:9000)')): PutFault {
  return (_key, body) =>
    new Promise<ObjectInfo>((_resolve, reject) => {
      let seen = 0;
      const onData = (c: Buffer) => {
        seen += c.length;
        if (seen >= bytes) {
          body.off('data', onData);
          body.pause();
          reject(error);
        }
      };
      body.on('data', onData);
      body.once('end', () => reject(error));
      body.once('error', reject);
    });
}

/** Hands the real driver a body that breaks after `bytes`: the driver's own clean-up (temporary files, multipart) is tested. */
function breakBodyAfter(bytes: number): PutFault {
  return (key, body, options, real) => {
    let seen = 0;
    const breaking = new Transform({
      transform(chunk: Buffer, _enc, done) {
        seen += chunk.length;
        if (seen > bytes) return done(new Error('stream broke mid-transfer'));
        done(null, chunk);
      },
    });
    body.on('error', (e) => breaking.destroy(e));
    body.pipe(breaking);
    return real.put(key, breaking, options);
  };
}

/** Fails the puts of keys matching `pattern`, everything else passes to the real driver. */
function failKeysMatching(pattern: RegExp, fault: PutFault): PutFault {
  return (key, body, options, real) => (pattern.test(key) ? fault(key, body, options, real) : real.put(key, body, options));
}

/** Keys of stored renders: {tenant}/{id}/r-{32 hex}. */
const RENDER_KEY = /^[^/]+\/[^/]+\/r-[0-9a-f]{32}$/;

/** Every file under <dataDir>/blobs for a tenant, and every temporary file (local driver only). */
async function localLeftovers(app: TestApp, tenant: string): Promise<string[]> {
  if (STORAGE_DRIVER !== 'local') return [];
  const root = path.join(app.dataDir, 'blobs');
  const out: string[] = [];
  for (const dir of [path.join(root, tenant), path.join(root, '.tmp')]) {
    if (!existsSync(dir)) continue;
    const entries = await readdir(dir, { recursive: true, withFileTypes: true });
    for (const e of entries) if (!e.isDirectory()) out.push(path.relative(root, path.join(e.parentPath, e.name)));
  }
  return out;
}

let app: TestApp;
const faults = new FaultSwitch();
const uncaught = recordUncaught();
let sql: pg.Client;
const healthyTenant = newTenant('ok');
let healthyToken: string;

beforeAll(async () => {
  app = await startTestApp({ storage: (_dataDir, real) => faults.wrap(real) });
  sql = new pg.Client({ connectionString: inject('databaseUrl') });
  await sql.connect();
  healthyToken = await app.token(healthyTenant);
});
afterAll(async () => {
  await sql?.end();
  await app?.close();
});

async function mediaRows(tenant: string): Promise<number> {
  return app.db.prisma.media.count({ where: { tenantId: tenant } });
}

/** Nothing of the tenant is left: no media, attachment, role or render row, no object, no temporary file. */
async function expectNothingLeft(tenant: string): Promise<void> {
  expect(await mediaRows(tenant)).toBe(0);
  expect(await app.db.prisma.imageRender.count({ where: { tenantId: tenant } })).toBe(0);
  expect(await app.db.prisma.mediaAttachment.count({ where: { tenantId: tenant } })).toBe(0);
  expect(await app.db.prisma.mediaRoleAssignment.count({ where: { tenantId: tenant } })).toBe(0);
  expect(await storedKeys(app, tenant)).toEqual([]);
  expect(await localLeftovers(app, tenant)).toEqual([]);
}

/** (d) The server still serves: an upload for another tenant works and reads back. */
async function expectStillServing(): Promise<void> {
  const { upload } = await ok(app.url, FltUploadDocument, { input: { file: await png(40, 30), entity: { type: 'property', id: 'alive' } } }, { token: healthyToken });
  const { media } = await ok(app.url, FltMediaDocument, { id: upload.id }, { token: healthyToken });
  expect(media?.id).toBe(upload.id);
  expect(await storedKeys(app, healthyTenant)).toContain(`${healthyTenant}/${upload.id}/original`);
  const health = await fetch(`${app.url}/readyz`);
  expect(health.status).toBe(200);
}

async function pendingWrites(tenant: string): Promise<number> {
  return app.db.prisma.pendingWrite.count({ where: { tenantId: tenant } });
}

async function readStored(key: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of await app.services.storage.get(key)) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** GET of a variant or a render of a media with a bearer token: status, X-Render-Outcome and the body. */
async function getImage(path: string, token: string): Promise<{ status: number; outcome: string | null; body: Buffer }> {
  const res = await within(fetch(`${app.url}${path}`, { headers: { authorization: `Bearer ${token}` } }), 10_000, `GET ${path}`);
  return { status: res.status, outcome: res.headers.get('x-render-outcome'), body: Buffer.from(await res.arrayBuffer()) };
}

/** A content route's answer to a storage fault: 503 with `{ error: { code: STORAGE_UNAVAILABLE, message } }`, nothing of the backend in it. */
function expectStorageUnavailableHttp(r: { status: number; outcome: string | null; body: Buffer }): void {
  expect(r.status).toBe(503);
  expect(r.outcome).toBeNull();
  const j = JSON.parse(r.body.toString('utf8')) as { error?: { code?: string; message?: string } };
  expect(j.error?.code).toBe('STORAGE_UNAVAILABLE');
  expect(typeof j.error?.message).toBe('string');
  expect(j.error!.message).not.toMatch(/secret-host|ECONNRESET|broke/);
}

/**
 * After a render that failed: the media is there with its original (byte for byte),
 * and nothing of the render is (no image_render row, no object, no temporary file,
 * no pending-write record); no image job is running or waiting.
 */
async function expectOnlyTheOriginal(tenant: string, id: string, bytes: Buffer): Promise<void> {
  const original = `${tenant}/${id}/original`;
  expect(await app.db.prisma.media.count({ where: { tenantId: tenant, id, deletedAt: null } })).toBe(1);
  expect(await app.db.prisma.imageRender.count({ where: { tenantId: tenant } })).toBe(0);
  expect(await storedKeys(app, tenant)).toEqual([original]);
  expect(await localLeftovers(app, tenant)).toEqual(STORAGE_DRIVER === 'local' ? [original] : []);
  expect((await readStored(original)).equals(bytes)).toBe(true);
  expect(await pendingWrites(tenant)).toBe(0);
  expect(app.services.images.stats()).toMatchObject({ running: 0, waiting: 0 });
  expect(app.services.renders.running).toBe(0);
}

function expectStorageUnavailable(r: GqlResult<unknown>, index?: number): void {
  expect(r.data ?? null).toBeNull();
  expect(r.errors).toHaveLength(1);
  expect(codeOf(r)).toBe('STORAGE_UNAVAILABLE');
  expect(r.errors![0]!.message).not.toMatch(/secret-host|ECONNRESET|broke/);
  if (index !== undefined) expect(r.errors![0]!.extensions?.index).toBe(index);
}

async function withFault<T>(tenant: string, put: PutFault, fn: () => Promise<T>): Promise<T> {
  faults.fault = { tenant, put };
  try {
    return await fn();
  } finally {
    faults.fault = null;
  }
}

describe('storage failing mid-stream', () => {
  it('a driver that fails after reading part of the body: STORAGE_UNAVAILABLE, no row, no object', async () => {
    const tenant = newTenant('fs');
    const token = await app.token(tenant);
    const file = mp4(2 * 1024 * 1024);
    const r = await withFault(tenant, consumeThenThrow(256 * 1024), () =>
      gql(app.url, FltUploadDocument, { input: { file, entity: { type: 'property', id: 'p1' }, tags: ['x'], role: 'PRIMARY_PHOTO' } }, { token }),
    );
    expectStorageUnavailable(r);
    expect(faults.failedPuts.some((k) => k.startsWith(`${tenant}/`))).toBe(true);
    await expectNothingLeft(tenant);
    await expectStillServing();
  });

  it('the real driver given a body that breaks mid-stream: no object and no temporary file', async () => {
    const tenant = newTenant('fb');
    const token = await app.token(tenant);
    const r = await withFault(tenant, breakBodyAfter(300 * 1024), () =>
      gql(app.url, FltUploadDocument, { input: { file: mp4(3 * 1024 * 1024), entity: { type: 'property', id: 'p1' } } }, { token }),
    );
    expectStorageUnavailable(r);
    await expectNothingLeft(tenant);
    await expectStillServing();
  });

  it('a driver error that is already STORAGE_UNAVAILABLE passes through unchanged', async () => {
    const tenant = newTenant('fu');
    const token = await app.token(tenant);
    const r = await withFault(
      tenant,
      consumeThenThrow(1, errors.storageUnavailable(new Error('bucket unreachable'))),
      () => gql(app.url, FltUploadDocument, { input: { file: pdf(2), entity: { type: 'company', id: 'c1' } } }, { token }),
    );
    expectStorageUnavailable(r);
    await expectNothingLeft(tenant);
  });

  // Uploads read only an image's header: pixels are decoded when a variant or a render
  // is first asked for, so that is where a read of the original can fail mid-decode.
  it('a read of the stored original failing while the image is decoded (a first render): 503 STORAGE_UNAVAILABLE, no render left, the original intact, the image queue free', async () => {
    // Early (the header) and late (the pixels; the PNG is about 13 KB).
    for (const after of [64, 2500]) {
      const tenant = newTenant('fr');
      const token = await app.token(tenant);
      const file = await png(900, 700);
      const bytes = Buffer.from(await file.arrayBuffer());
      expect(bytes.length).toBeGreaterThan(after);
      const { upload } = await ok(app.url, FltUploadDocument, { input: { file, entity: { type: 'property', id: 'p1' } } }, { token });
      expect(upload.variants.map((v) => v.name)).toContain('THUMB');
      for (const path of [`/media/${upload.id}/variants/THUMB`, `/media/${upload.id}/render?w=300&format=webp`]) {
        faults.readFault = { tenant, after };
        let res;
        try {
          res = await getImage(path, token);
        } finally {
          faults.readFault = null;
        }
        expectStorageUnavailableHttp(res);
        await expectOnlyTheOriginal(tenant, upload.id, bytes);
      }
      // Nothing was wedged: with the store healthy again the same render is made and served.
      const thumb = await getImage(`/media/${upload.id}/variants/THUMB`, token);
      expect(thumb.status).toBe(200);
      expect(thumb.outcome).toBe('rendered');
      expect(await sharp(thumb.body).metadata()).toMatchObject({ format: 'png', width: 160 });
      expect(await app.db.prisma.imageRender.count({ where: { tenantId: tenant } })).toBe(1);
    }
    expect(uncaught).toEqual([]);
    await expectStillServing();
  });

  it('a failure writing a render leaves no render object and no row, keeps the renders already made, and the next request renders fine', async () => {
    for (const fault of [consumeThenThrow(1), breakBodyAfter(1024)]) {
      const tenant = newTenant('fv');
      const token = await app.token(tenant);
      const file = await jpeg(1400, 1000);
      const bytes = Buffer.from(await file.arrayBuffer());
      const { upload } = await ok(app.url, FltUploadDocument, { input: { file, entity: { type: 'property', id: 'p1' } } }, { token });
      expect(upload.variants.map((v) => v.name)).toEqual(['THUMB', 'MEDIUM', 'LARGE']);
      // THUMB is rendered and stored before the fault.
      const thumb = await getImage(`/media/${upload.id}/variants/THUMB`, token);
      expect(thumb.status).toBe(200);
      const [thumbRow] = await app.db.prisma.imageRender.findMany({ where: { tenantId: tenant } });
      expect(thumbRow).toBeDefined();
      const failedBefore = faults.failedPuts.length;
      const r = await withFault(tenant, failKeysMatching(RENDER_KEY, fault), () => getImage(`/media/${upload.id}/variants/MEDIUM`, token));
      expectStorageUnavailableHttp(r);
      // The put of the MEDIUM render was the one that failed…
      const failed = faults.failedPuts.slice(failedBefore);
      expect(failed).toHaveLength(1);
      expect(failed[0]).toMatch(new RegExp(`^${tenant}/${upload.id}/r-[0-9a-f]{32}$`));
      expect(failed[0]).not.toBe(thumbRow!.storageKey);
      // …and nothing of it is left; THUMB's render and the original are untouched.
      expect((await app.db.prisma.imageRender.findMany({ where: { tenantId: tenant } })).map((x) => x.storageKey)).toEqual([thumbRow!.storageKey]);
      expect((await storedKeys(app, tenant)).sort()).toEqual([`${tenant}/${upload.id}/original`, thumbRow!.storageKey].sort());
      expect((await localLeftovers(app, tenant)).sort()).toEqual(STORAGE_DRIVER === 'local' ? [`${tenant}/${upload.id}/original`, thumbRow!.storageKey].sort() : []);
      expect((await readStored(`${tenant}/${upload.id}/original`)).equals(bytes)).toBe(true);
      expect(await pendingWrites(tenant)).toBe(0);
      expect(app.services.images.stats()).toMatchObject({ running: 0, waiting: 0 });
      const again = await getImage(`/media/${upload.id}/variants/MEDIUM`, token);
      expect(again.status).toBe(200);
      expect(again.outcome).toBe('rendered');
      expect(await sharp(again.body).metadata()).toMatchObject({ format: 'jpeg', width: 640 });
      expect((await getImage(`/media/${upload.id}/variants/THUMB`, token)).outcome).toBe('hit');
      expect(await app.db.prisma.imageRender.count({ where: { tenantId: tenant } })).toBe(2);
    }
    expect(uncaught).toEqual([]);
    await expectStillServing();
  });

  it('uploadMany: a failure in the third file deletes the objects of the first two, names index 2, stores no row', async () => {
    const tenant = newTenant('fm');
    const token = await app.token(tenant);
    const ids: string[] = [];
    const inputs = [
      { file: await jpeg(800, 600, 'a.jpg'), entity: { type: 'property', id: 'p1' } },
      { file: pdf(3, 'b.pdf'), entity: { type: 'property', id: 'p1' } },
      { file: mp4(1024 * 1024, 'c.mp4'), entity: { type: 'property', id: 'p1' } },
      { file: await png(50, 50, 'd.png'), entity: { type: 'property', id: 'p1' } },
    ];
    let puts = 0;
    const r = await withFault(
      tenant,
      (key, body, options, real) => {
        if (key.endsWith('/original')) {
          ids.push(key.split('/')[1]!);
          if (++puts === 3) return consumeThenThrow(128 * 1024)(key, body, options, real);
        }
        return real.put(key, body, options);
      },
      () => gql(app.url, FltUploadManyDocument, { inputs }, { token }),
    );
    expectStorageUnavailable(r, 2);
    // Inputs 0 and 1 were stored (their originals only: an upload renders no variant) before input 2 failed; input 3 never was.
    const written = faults.writtenFor(tenant);
    expect(ids).toHaveLength(3);
    expect([...written].sort()).toEqual(ids.slice(0, 2).map((id) => `${tenant}/${id}/original`).sort());
    expect(faults.failedPuts).toContain(`${tenant}/${ids[2]}/original`);
    await expectNothingLeft(tenant);
    await expectStillServing();
  });
});

describe('database failing after the storage write', () => {
  const db = new DbFaults((text, values) => sql.query(text, values));

  /** A real PostgreSQL error on insert into `table` for one tenant only. */
  const failInserts = (table: 'media' | 'media_attachment' | 'media_role', tenant: string) => db.fail(tenant, table);
  const clearFaults = () => db.clear();

  afterAll(async () => {
    await clearFaults();
  });

  function expectMaskedInternal(r: GqlResult<unknown>): void {
    expect(r.data ?? null).toBeNull();
    expect(r.errors).toHaveLength(1);
    const e = r.errors![0]!;
    expect(e.extensions?.code).toBe('INTERNAL_SERVER_ERROR');
    expect(e.message).toBe('Internal server error');
    expect(String(e.extensions?.['requestId'])).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    // Nothing of the SQL or the database error reaches the client.
    const body = JSON.stringify(r.errors);
    for (const leak of ['injected', 'vault', 'SELECT', 'INSERT', 'media_', 'P2010', 'P0001', 'prisma', 'stacktrace']) expect(body).not.toContain(leak);
  }

  it.each([['media'], ['media_attachment'], ['media_role']] as const)(
    'upload: an insert into %s failing deletes the stored original, and no row remains',
    async (table) => {
      const tenant = newTenant('db');
      const token = await app.token(tenant);
      await failInserts(table, tenant);
      try {
        const before = faults.writtenFor(tenant).length;
        const r = await gql(
          app.url,
          FltUploadDocument,
          { input: { file: await jpeg(1400, 1000), entity: { type: 'property', id: 'p1' }, tags: ['a'], role: 'PRIMARY_PHOTO' } },
          { token },
        );
        expectMaskedInternal(r);
        // The original was written before the transaction failed (an upload stores nothing else: its variants render on request)…
        const written = faults.writtenFor(tenant).slice(before);
        expect(written.map((k) => k.split('/')[2])).toEqual(['original']);
        // …and is gone now, with every row of the transaction.
        await expectNothingLeft(tenant);
      } finally {
        await clearFaults();
      }
      await expectStillServing();
      // The same tenant uploads fine once the database is healthy again.
      const { upload } = await ok(app.url, FltUploadDocument, { input: { file: pdf(1), entity: { type: 'property', id: 'p1' } } }, { token });
      expect(await storedKeys(app, tenant)).toEqual([`${tenant}/${upload.id}/original`]);
    },
  );

  it('uploadMany: the transaction failing deletes the objects of every input, the earlier ones included', async () => {
    const tenant = newTenant('dm');
    const token = await app.token(tenant);
    await failInserts('media', tenant);
    try {
      const inputs = [
        { file: await jpeg(900, 700, 'a.jpg'), entity: { type: 'property', id: 'p1' } },
        { file: pdf(2, 'b.pdf'), entity: { type: 'property', id: 'p2' } },
        { file: await png(200, 100, 'c.png'), entity: { type: 'unit', id: 'u1' }, role: 'PRIMARY_PHOTO' as const },
      ];
      const r = await gql(app.url, FltUploadManyDocument, { inputs }, { token });
      expectMaskedInternal(r);
      const written = faults.writtenFor(tenant);
      // Every input's original was stored before the transaction failed, and nothing else (no variant is written by an upload).
      expect(written).toHaveLength(3);
      expect(new Set(written.filter((k) => k.endsWith('/original')).map((k) => k.split('/')[1])).size).toBe(3);
      await expectNothingLeft(tenant);
    } finally {
      await clearFaults();
    }
    await expectStillServing();
  });

  it('uploadMany: a failure at the last row of the transaction rolls back the earlier rows too', async () => {
    const tenant = newTenant('dl');
    const token = await app.token(tenant);
    // Only the role of the last input is refused: rows of inputs 0 and 1 were inserted in the same transaction.
    await failInserts('media_role', tenant);
    try {
      const inputs = [
        { file: pdf(1, 'a.pdf'), entity: { type: 'company', id: 'c1' } },
        { file: pdf(2, 'b.pdf'), entity: { type: 'company', id: 'c1' } },
        { file: await jpeg(300, 200, 'c.jpg'), entity: { type: 'company', id: 'c1' }, role: 'AVATAR' as const },
      ];
      const r = await gql(app.url, FltUploadManyDocument, { inputs }, { token });
      expectMaskedInternal(r);
      expect(faults.writtenFor(tenant).filter((k) => k.endsWith('/original'))).toHaveLength(3);
      await expectNothingLeft(tenant);
    } finally {
      await clearFaults();
    }
    await expectStillServing();
  });
});

describe('after the faults', () => {
  it('keeps serving many requests, and left nothing behind in temporary storage', async () => {
    const results = await Promise.all(
      Array.from({ length: 5 }, async (_, i) => ok(app.url, FltUploadDocument, { input: { file: pdf(i + 1), entity: { type: 'property', id: `after-${i}` } } }, { token: healthyToken })),
    );
    expect(new Set(results.map((r) => r.upload.id)).size).toBe(5);
    if (STORAGE_DRIVER === 'local') {
      const tmp = path.join(app.dataDir, 'blobs', '.tmp');
      expect(existsSync(tmp) ? await readdir(tmp) : []).toEqual([]);
    }
  });

});
