import { afterAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import sharp from 'sharp';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { MediaDocument, UploadDocument } from '../generated/graphql.js';
import { newTenant, startTestApp, STORAGE_DRIVER, S3_CHECKSUMS, S3_STORE, SSE_C_OVER_HTTP_ENV, testS3Store, TEST_JWT_SECRET, type TestApp } from '../helpers/app.js';
import { sweepTenant } from '../helpers/sweep.js';
import { ok } from '../helpers/client.js';
import { jpeg, pdfBytes } from '../helpers/files.js';
import { decodeHeader } from '../../src/crypto/segmented-gcm.js';
import type { Storage } from '../../src/storage/index.js';
import { CopyNotSupported } from '../../src/storage/storage.js';
import { S3Storage } from '../../src/storage/s3.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const OLD = `old:${randomBytes(32).toString('base64')}`;
const NEW = `new:${randomBytes(32).toString('base64')}`;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** The store encrypts (SSE-C enforced): rotation must copy server side. */
const SSE_C = STORAGE_DRIVER === 's3' && S3_STORE === 'rgw';

async function raw(app: TestApp, key: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of await app.services.storage.get(key)) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

async function content(app: TestApp, token: string, p: string): Promise<Buffer> {
  const res = await fetch(`${app.url}${p}`, { headers: { authorization: `Bearer ${token}` } });
  expect(res.status, p).toBe(200);
  return Buffer.from(await res.arrayBuffer());
}

/** GET with a user token: the status, how a render was answered (X-Render-Outcome) and the body. */
async function fetchAs(app: TestApp, token: string, p: string): Promise<{ status: number; outcome: string | null; body: Buffer }> {
  const res = await fetch(`${app.url}${p}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, outcome: res.headers.get('x-render-outcome'), body: Buffer.from(await res.arrayBuffer()) };
}

async function rowOf(app: TestApp, tenant: string, id: string) {
  const r = await app.db.prisma.media.findFirstOrThrow({ where: { tenantId: tenant, id }, select: { encryptionKeyId: true, storageKey: true, variants: true } });
  return { ...r, variants: r.variants as { name: string; key?: string; size?: number }[] };
}

/**
 * Keys the row points at: storage_key and the key (recorded, else derived) of each
 * variant stored with the upload (one with a size; the others are renders, made on request).
 */
function referenced(tenant: string, id: string, row: Awaited<ReturnType<typeof rowOf>>): string[] {
  return [row.storageKey, ...row.variants.filter((v) => v.size !== undefined).map((v) => v.key ?? `${tenant}/${id}/${v.name}`)].sort();
}

/** The tenant's image_render rows (of one media when given), oldest first. */
function renderRows(app: TestApp, tenant: string, ownerId?: string) {
  return app.db.prisma.imageRender.findMany({ where: { tenantId: tenant, ...(ownerId ? { ownerId } : {}) }, orderBy: { createdAt: 'asc' } });
}

/** Every object a media's rows claim: what the row points at, and its current renders. */
async function live(app: TestApp, tenant: string, id: string): Promise<string[]> {
  const renders = (await renderRows(app, tenant, id)).map((r) => r.storageKey);
  return [...referenced(tenant, id, await rowOf(app, tenant, id)), ...renders].sort();
}

/**
 * Makes a media look like one uploaded before variants were rendered on demand: its
 * variant `name` an object of its own at {tenant}/{id}/{name}, sealed like its original
 * (with the active key of `app`), its size recorded on the row. Returns the variant's bytes.
 */
async function storeLegacyVariant(app: TestApp, tenant: string, id: string, name: string, photo: File): Promise<Buffer> {
  const row = await rowOf(app, tenant, id);
  const v = row.variants.find((x) => x.name === name)!;
  const bytes = await sharp(Buffer.from(await photo.arrayBuffer())).resize(160, 160, { fit: 'inside' }).jpeg().toBuffer();
  const sealed = await app.services.crypto.seal(app.services.storage, `${tenant}/${id}/${name}`, Readable.from([bytes]));
  expect(sealed.plainSize).toBe(bytes.length);
  const variants = row.variants.map((x) => (x === v ? { ...x, size: sealed.plainSize } : x));
  await app.db.prisma.media.update({ where: { tenantId_id: { tenantId: tenant, id } }, data: { variants } });
  return bytes;
}

const sweep = (app: TestApp, tenant: string) => sweepTenant(app, tenant);

/** The storage with deletes that fail while `ctl.failDeletes` (a rotation interrupted after its row update). */
function failingDeletes(real: Storage, ctl: { failDeletes: boolean }): Storage {
  return new Proxy(real, {
    get(target, p) {
      if (p === 'delete') {
        return async (key: string) => {
          if (ctl.failDeletes) throw new Error(`injected: could not delete ${key}`);
          return target.delete(key);
        };
      }
      const v = Reflect.get(target, p, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** Counts the S3 commands a client sends, by name. */
function countCommands(storage: Storage): Map<string, number> {
  const counts = new Map<string, number>();
  if (storage instanceof S3Storage) {
    storage.client.middlewareStack.add(
      (next, context) => async (args) => {
        const name = context.commandName ?? '?';
        counts.set(name, (counts.get(name) ?? 0) + 1);
        return next(args);
      },
      { step: 'initialize', name: 'rotationTestCommandCounter' },
    );
  }
  return counts;
}

/** Environment of the maintenance commands for this run's database and store. */
function cliEnv(dataDir: string, mediaKeys: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env['PATH'],
    HOME: process.env['HOME'],
    DATABASE_URL: inject('databaseUrl'),
    DATA_DIR: dataDir,
    MEDIA_KEYS: mediaKeys,
    JWT_SECRET: TEST_JWT_SECRET,
    LOG_LEVEL: 'info',
  };
  if (STORAGE_DRIVER === 's3') {
    const store = testS3Store();
    Object.assign(env, {
      S3_BUCKET: store.bucket,
      S3_ENDPOINT: store.endpoint,
      S3_FORCE_PATH_STYLE: 'true',
      S3_CHECKSUMS: S3_CHECKSUMS.toLowerCase(),
      AWS_ACCESS_KEY_ID: store.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: store.credentials.secretAccessKey,
      AWS_REGION: 'us-east-1',
      ...SSE_C_OVER_HTTP_ENV,
    });
  }
  return env;
}

/** Whether the run's store re-encrypts an SSE-C object in a CopyObject (AWS S3, Ceph RGW v20+), or refuses (RGW before v20). */
async function storeCopiesSseC(): Promise<boolean> {
  const s3 = new S3Storage({ ...testS3Store(), forcePathStyle: true, checksums: S3_CHECKSUMS });
  const [a, b] = [randomBytes(32), randomBytes(32)];
  const from = `_probe/copy-${randomBytes(6).toString('hex')}`;
  await s3.put(from, Readable.from([Buffer.from('probe')]), { size: 5, sseKey: a });
  try {
    await s3.copy(from, `${from}-copy`, { sourceSseKey: a, sseKey: b });
    return true;
  } catch (e) {
    if (e instanceof CopyNotSupported) return false;
    throw e;
  } finally {
    await s3.delete(from);
    await s3.delete(`${from}-copy`);
  }
}

/** Files under dir (recursively) whose bytes contain needle. */
async function filesContaining(dir: string, needle: Buffer): Promise<string[]> {
  const found: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const file = path.join(e.parentPath, e.name);
    if ((await readFile(file)).includes(needle)) found.push(file);
  }
  return found;
}

const apps: TestApp[] = [];
afterAll(async () => {
  for (const a of apps) await a.close().catch(() => undefined);
});

describe(`key rotation (${STORAGE_DRIVER}${STORAGE_DRIVER === 's3' ? `, ${S3_STORE}` : ''})`, () => {
  it('old media stays readable with a new active key, new media uses it, and the rotation moves everything to new objects under it', async () => {
    const tenant = newTenant();
    const lease = Buffer.concat([pdfBytes(2), Buffer.from('%' + 'clause '.repeat(30_000))]);
    const photo = await jpeg(900, 700);
    const oldPhoto = await jpeg(700, 500, 'older.jpg');

    // 1. Uploads under the old key.
    const a = await startTestApp({ env: { MEDIA_KEYS: OLD } });
    const dataDir = a.dataDir;
    const tokenA = await a.token(tenant);
    const doc = (await ok(a.url, UploadDocument, { input: { file: new File([lease], 'lease.pdf'), entity: { type: 'lease', id: 'l1' } } }, { token: tokenA })).upload;
    const pic = (await ok(a.url, UploadDocument, { input: { file: photo, entity: { type: 'person', id: 'p1' } } }, { token: tokenA })).upload;
    const older = (await ok(a.url, UploadDocument, { input: { file: oldPhoto, entity: { type: 'person', id: 'p2' } } }, { token: tokenA })).upload;
    expect([doc.encryptionKeyId, pic.encryptionKeyId, older.encryptionKeyId]).toEqual(['old', 'old', 'old']);
    // A variant and a render of `pic`, made on request: stored beside it, sealed with the old key.
    const renderPath = `/media/${pic.id}/render?w=300&format=png`;
    const thumbBefore = await content(a, tokenA, `/media/${pic.id}/variants/THUMB`);
    const renderBefore = await content(a, tokenA, renderPath);
    const oldRenders = await renderRows(a, tenant);
    expect(oldRenders.map((r) => [r.ownerId, r.encryptionKeyId])).toEqual([[pic.id, 'old'], [pic.id, 'old']]);
    for (const r of oldRenders) expect(r.storageKey).toMatch(new RegExp(`^${tenant}/${pic.id}/r-[0-9a-f]{32}$`));
    if (!SSE_C) for (const r of oldRenders) expect(decodeHeader(await raw(a, r.storageKey)).kid).toBe('old');
    // `older` as an upload before renders on demand left it: its THUMB stored with it. Served from that object.
    const olderThumb = await storeLegacyVariant(a, tenant, older.id, 'THUMB', oldPhoto);
    expect((await content(a, tokenA, `/media/${older.id}/variants/THUMB`)).equals(olderThumb)).toBe(true);
    expect(await renderRows(a, tenant, older.id)).toEqual([]);
    await a.close({ keepData: true });

    // 2. A new active key in front of the old one.
    const b = await startTestApp({ dataDir, env: { MEDIA_KEYS: `${NEW},${OLD}` } });
    apps.push(b);
    expect(b.services.crypto.mode).toBe(SSE_C ? 'sse-c' : 'app');
    const token = await b.token(tenant);
    expect(sha(await content(b, token, `/media/${doc.id}/content`))).toBe(sha(lease));
    const fresh = (await ok(b.url, UploadDocument, { input: { file: new File([pdfBytes(1)], 'n.pdf'), entity: { type: 'lease', id: 'l2' } } }, { token })).upload;
    expect(fresh.encryptionKeyId).toBe('new');

    // 3. A row that the earlier, in-place rotation left half-done: the original of
    //    `doc` re-sealed with the new key under its old storage key, the row still
    //    naming the old key. The rotation finds the key that really opens it.
    await b.services.crypto.seal(b.services.storage, `${tenant}/${doc.id}/original`, Readable.from([lease]));
    if (!SSE_C) expect(decodeHeader(await raw(b, `${tenant}/${doc.id}/original`)).kid).toBe('new');

    const report = await b.services.rotation.run({ tenant });
    expect(report).toEqual({ rotated: 3, failed: [] });
    for (const m of [doc, pic, older]) {
      const row = await rowOf(b, tenant, m.id);
      expect(row.encryptionKeyId).toBe('new');
      expect(row.storageKey).toBe(`${tenant}/${m.id}/original-new`);
      // A variant stored with its upload moves to a new object; the others are renders (not moved, see below).
      for (const v of row.variants) expect(v.key).toBe(v.size === undefined ? undefined : `${tenant}/${m.id}/${v.name}-new`);
      // The old objects are gone, the renders of the old original with them: only what the row points at is left.
      expect((await b.services.storage.list(`${tenant}/${m.id}/`)).map((o) => o.key).sort()).toEqual(referenced(tenant, m.id, row));
      if (!SSE_C) for (const key of referenced(tenant, m.id, row)) expect(decodeHeader(await raw(b, key)).kid, key).toBe('new');
    }
    expect(referenced(tenant, older.id, await rowOf(b, tenant, older.id))).toEqual([`${tenant}/${older.id}/THUMB-new`, `${tenant}/${older.id}/original-new`]);
    expect(referenced(tenant, pic.id, await rowOf(b, tenant, pic.id))).toEqual([`${tenant}/${pic.id}/original-new`]);
    // The rows of the renders under the old key went with them.
    expect(await renderRows(b, tenant)).toEqual([]);
    expect((await ok(b.url, MediaDocument, { id: pic.id }, { token })).media?.encryptionKeyId).toBe('new');
    // Asked for again, the variant is rendered again, from the new original and sealed with the new key.
    const thumbRotated = await fetchAs(b, token, `/media/${pic.id}/variants/THUMB`);
    expect([thumbRotated.status, thumbRotated.outcome]).toEqual([200, 'rendered']);
    expect(thumbRotated.body.equals(thumbBefore)).toBe(true);
    const newRenders = await renderRows(b, tenant);
    expect(newRenders.map((r) => [r.ownerId, r.sourceKey, r.encryptionKeyId])).toEqual([[pic.id, `${tenant}/${pic.id}/original-new`, 'new']]);
    if (!SSE_C) expect(decodeHeader(await raw(b, newRenders[0]!.storageKey)).kid).toBe('new');
    expect((await content(b, token, `/media/${older.id}/variants/THUMB`)).equals(olderThumb)).toBe(true);
    expect(await b.services.rotation.run({ tenant })).toEqual({ rotated: 0, failed: [] });
    await b.close({ keepData: true });
    apps.pop();

    // 4. With the old key gone from the ring, everything still reads back identical.
    const c = await startTestApp({ dataDir, env: { MEDIA_KEYS: NEW } });
    apps.push(c);
    const tokenC = await c.token(tenant);
    expect(sha(await content(c, tokenC, `/media/${doc.id}/content`))).toBe(sha(lease));
    expect(sha(await content(c, tokenC, `/media/${pic.id}/content`))).toBe(sha(Buffer.from(await photo.arrayBuffer())));
    // The variant rendered after the rotation is served as it is stored (under the new key only)…
    const thumbAfter = await fetchAs(c, tokenC, `/media/${pic.id}/variants/THUMB`);
    expect([thumbAfter.status, thumbAfter.outcome]).toEqual([200, 'hit']);
    expect(thumbAfter.body.equals(thumbBefore)).toBe(true);
    expect(await sharp(thumbAfter.body).metadata()).toMatchObject({ format: 'jpeg', width: 160 });
    // …the render made before it is rendered again from the new original…
    const renderAfter = await fetchAs(c, tokenC, renderPath);
    expect([renderAfter.status, renderAfter.outcome]).toEqual([200, 'rendered']);
    expect(renderAfter.body.equals(renderBefore)).toBe(true);
    expect(await sharp(renderAfter.body).metadata()).toMatchObject({ format: 'png', width: 300 });
    // …and the older media's stored THUMB and its MEDIUM (rendered now) read too.
    expect(sha(await content(c, tokenC, `/media/${older.id}/content`))).toBe(sha(Buffer.from(await oldPhoto.arrayBuffer())));
    expect((await content(c, tokenC, `/media/${older.id}/variants/THUMB`)).equals(olderThumb)).toBe(true);
    expect(await sharp(await content(c, tokenC, `/media/${older.id}/variants/MEDIUM`)).metadata()).toMatchObject({ format: 'jpeg', width: 640 });
    expect((await renderRows(c, tenant)).map((r) => r.encryptionKeyId)).toEqual(['new', 'new', 'new']);
  });

  it('a rotation killed between its copies and its row update, then run again, leaves every media readable under the new key and nothing behind', { timeout: 180_000 }, async () => {
    const tenant = newTenant();
    const a = await startTestApp({ env: { MEDIA_KEYS: OLD } });
    const dataDir = a.dataDir;
    const tokenA = await a.token(tenant);
    const files = [
      new File([Buffer.concat([pdfBytes(2), randomBytes(200_000)])], 'one.pdf'),
      await jpeg(1400, 900, 'wide.jpg'),
      await jpeg(700, 500, 'small.jpg'),
      new File([Buffer.concat([pdfBytes(1), randomBytes(50_000)])], 'two.pdf'),
    ];
    const media: { id: string; bytes: Buffer; variants: Map<string, Buffer> }[] = [];
    for (const [i, f] of files.entries()) {
      const m = (await ok(a.url, UploadDocument, { input: { file: f, entity: { type: f.name.endsWith('.pdf') ? 'lease' : 'person', id: `e${i}` } } }, { token: tokenA })).upload;
      expect(m.encryptionKeyId).toBe('old');
      const variants = new Map<string, Buffer>();
      for (const v of m.variants) variants.set(v.name, await content(a, tokenA, `/media/${m.id}/variants/${v.name}`));
      media.push({ id: m.id, bytes: Buffer.from(await f.arrayBuffer()), variants });
    }
    // Each variant was rendered on its request, sealed with the old key.
    const variantCount = media.reduce((n, m) => n + m.variants.size, 0);
    expect(variantCount).toBe(5);
    expect((await renderRows(a, tenant)).map((r) => r.encryptionKeyId)).toEqual(Array(variantCount).fill('old'));
    await a.close({ keepData: true });

    const ctl = { failDeletes: false };
    let counts = new Map<string, number>();
    const b = await startTestApp({
      dataDir,
      env: { MEDIA_KEYS: `${NEW},${OLD}` },
      storage: (_dir, real) => {
        counts = countCommands(real);
        return failingDeletes(real, ctl);
      },
    });
    apps.push(b);
    const token = await b.token(tenant);
    const readsBack = async () => {
      for (const m of media) {
        expect(sha(await content(b, token, `/media/${m.id}/content`)), m.id).toBe(sha(m.bytes));
        for (const [name, bytes] of m.variants) expect((await content(b, token, `/media/${m.id}/variants/${name}`)).equals(bytes), `${m.id} ${name}`).toBe(true);
      }
    };

    // The image with the most variants is held at its row update: a transaction of
    // ours locks its row, so the rotation command blocks right after its copies.
    const held = [...media].sort((x, y) => y.variants.size - x.variants.size)[0]!;
    const pool = new pg.Pool({ connectionString: inject('databaseUrl'), max: 2 });
    const lock = await pool.connect();
    let child: ReturnType<typeof spawn> | undefined;
    try {
      await lock.query('BEGIN');
      await lock.query('SELECT 1 FROM media WHERE tenant_id = $1 AND id = $2::uuid FOR UPDATE', [tenant, held.id]);
      child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/cli/rotate-keys.ts'), '--tenant', tenant], {
        cwd: ROOT,
        env: cliEnv(dataDir, `${NEW},${OLD}`),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
      child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
      const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
      let blocked: number | undefined;
      for (let i = 0; i < 600 && blocked === undefined; i++) {
        if (child.exitCode !== null) throw new Error(`the rotation command ended (${child.exitCode}) before it reached the held row:\n${output}`);
        const { rows } = await pool.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND wait_event_type = 'Lock' AND query LIKE '%UPDATE media SET storage_key%'`,
        );
        if (rows[0]) blocked = rows[0].pid;
        else await new Promise((r) => setTimeout(r, 100));
      }
      expect(blocked, output).toBeDefined();
      // Its copy is written (of the original only: its renders are not copied); its row is not updated
      // and its renders' rows not deleted: kill it here, for real.
      const heldRenders = await renderRows(b, tenant, held.id);
      expect(heldRenders).toHaveLength(held.variants.size);
      const heldKeys = (await b.services.storage.list(`${tenant}/${held.id}/`)).map((o) => o.key).sort();
      expect(heldKeys).toEqual([`${tenant}/${held.id}/original`, `${tenant}/${held.id}/original-new`, ...heldRenders.map((r) => r.storageKey)].sort());
      child.kill('SIGKILL');
      expect(await exited).toBeNull();
      // Killed mid-run: no plaintext of any document anywhere on disk it could have written to
      // (the app's DATA_DIR with its blobs and temporary files, and no rotation spool in tmpdir).
      for (const m of media.filter((x) => x.bytes.length > 100_000)) expect(await filesContaining(dataDir, m.bytes.subarray(20_000, 20_064))).toEqual([]);
      expect((await readdir(os.tmpdir())).filter((n) => n.startsWith('media-rotate-'))).toEqual([]);
      // The killed process's connection goes with it (PostgreSQL would notice only later).
      await pool.query('SELECT pg_terminate_backend($1)', [blocked]);
    } finally {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await lock.query('ROLLBACK').catch(() => undefined);
      lock.release();
      await pool.end();
    }

    // Interrupted before the update: the held row still names the old key and its
    // intact old objects; media before it in the run are done; all read back.
    const heldRow = await rowOf(b, tenant, held.id);
    expect(heldRow.encryptionKeyId).toBe('old');
    expect(heldRow.storageKey).toBe(`${tenant}/${held.id}/original`);
    expect(heldRow.variants.every((v) => v.key === undefined)).toBe(true);
    expect((await renderRows(b, tenant, held.id)).map((r) => r.encryptionKeyId)).toEqual(Array(held.variants.size).fill('old'));
    for (const m of media) {
      const row = await rowOf(b, tenant, m.id);
      expect(row.storageKey).toBe(row.encryptionKeyId === 'new' ? `${tenant}/${m.id}/original-new` : `${tenant}/${m.id}/original`);
    }
    await readsBack();

    // The killed run's record of its write on the held media stays: while it is fresh the
    // sweep leaves the new copies alone (a live rotation is never swept from under it).
    const records = () => b.db.prisma.pendingWrite.findMany({ where: { tenantId: tenant } });
    expect((await records()).map((p) => p.groupId)).toEqual([held.id]);
    const heldCopies = (await b.services.storage.list(`${tenant}/${held.id}/`)).map((o) => o.key).sort();
    await sweep(b, tenant);
    expect((await b.services.storage.list(`${tenant}/${held.id}/`)).map((o) => o.key).sort()).toEqual(heldCopies);
    // Ten minutes without a refresh later (aged here), the record is a crashed writer's.
    await b.db.prisma.$executeRaw`UPDATE pending_write SET touched_at = now() - interval '11 minutes' WHERE tenant_id = ${tenant}`;
    // The new copies of the held media are leftovers, and so are the old objects of media
    // the killed run had just switched (they outlive the switch by a grace period, for
    // reads in flight): the sweep deletes them all, and nothing a row still needs.
    const afterKill = await sweep(b, tenant);
    expect(afterKill.stalePendingWritesRemoved).toBe(1);
    expect(await records()).toEqual([]);
    expect(afterKill.staleMediaObjectsDeleted).toBeGreaterThanOrEqual(1);
    for (const m of media) {
      expect((await b.services.storage.list(`${tenant}/${m.id}/`)).map((o) => o.key).sort(), m.id).toEqual(await live(b, tenant, m.id));
    }
    expect(await b.services.storage.list(`${tenant}/${held.id}/original-new`)).toEqual([]);
    await readsBack();

    // Run again, this time interrupted after each row update: the old objects cannot be deleted.
    const pending = (await b.db.prisma.media.findMany({ where: { tenantId: tenant, encryptionKeyId: 'old' }, select: { id: true } })).map((r) => r.id);
    expect(pending).toContain(held.id);
    // One object of each to re-encrypt (its original); its renders are deleted, not copied.
    const pendingObjects = pending.length;
    const pendingRenders = (await renderRows(b, tenant)).filter((r) => pending.includes(r.ownerId));
    expect(pendingRenders).toHaveLength(pending.reduce((n, id) => n + media.find((m) => m.id === id)!.variants.size, 0));
    counts.clear();
    ctl.failDeletes = true;
    expect(await b.services.rotation.run({ tenant })).toEqual({ rotated: pending.length, failed: [] });
    ctl.failDeletes = false;
    if (SSE_C) {
      if (await storeCopiesSseC()) {
        // Re-encrypted by the store: one CopyObject per object, no byte through this process.
        expect(counts.get('CopyObjectCommand') ?? 0).toBe(pendingObjects);
        for (const c of ['GetObjectCommand', 'PutObjectCommand', 'CreateMultipartUploadCommand', 'UploadPartCommand']) expect(counts.get(c) ?? 0, c).toBe(0);
      } else {
        // Ceph RGW before v20 answers 501 to any copy of an SSE-C object: the first
        // CopyObject is refused, and every object streams GET (old key) -> PUT (new key).
        expect(counts.get('CopyObjectCommand') ?? 0).toBe(1);
        expect(counts.get('GetObjectCommand') ?? 0).toBe(pendingObjects);
        expect((counts.get('PutObjectCommand') ?? 0) + (counts.get('CreateMultipartUploadCommand') ?? 0)).toBe(pendingObjects);
        expect(b.logs.some((l) => String(l['msg']).includes('cannot re-encrypt SSE-C objects server side'))).toBe(true);
      }
    } else if (STORAGE_DRIVER === 's3') {
      // A store without SSE-C: the plaintext streams from the old object into the new one.
      expect(counts.get('CopyObjectCommand') ?? 0).toBe(0);
    }
    for (const m of media) {
      const row = await rowOf(b, tenant, m.id);
      expect(row.encryptionKeyId).toBe('new');
      expect(row.storageKey).toBe(`${tenant}/${m.id}/original-new`);
      expect(row.variants.every((v) => v.key === undefined && v.size === undefined)).toBe(true);
      expect((await ok(b.url, MediaDocument, { id: m.id }, { token })).media?.encryptionKeyId).toBe('new');
    }
    // The rows of the renders of the rotated media are gone (their objects could not be deleted).
    expect((await renderRows(b, tenant)).filter((r) => pending.includes(r.ownerId))).toEqual([]);
    for (const r of pendingRenders) expect(await b.services.storage.list(r.storageKey), r.storageKey).toHaveLength(1);
    for (const m of media) expect(sha(await content(b, token, `/media/${m.id}/content`)), m.id).toBe(sha(m.bytes));

    // Interrupted after the update: the old objects (originals and renders) are the leftovers, and the sweep removes them.
    const afterRerun = await sweep(b, tenant);
    expect(afterRerun.staleMediaObjectsDeleted).toBe(pendingObjects + pendingRenders.length);
    expect(afterRerun.staleRendersRemoved).toBe(0);
    for (const m of media) {
      const keys = (await b.services.storage.list(`${tenant}/${m.id}/`)).map((o) => o.key).sort();
      expect(keys).toEqual(await live(b, tenant, m.id));
    }
    for (const id of pending) expect(await live(b, tenant, id)).toEqual([`${tenant}/${id}/original-new`]);
    expect((await sweep(b, tenant)).staleMediaObjectsDeleted).toBe(0);
    // Every variant reads back: rendered again from the new originals, sealed with the new key.
    await readsBack();
    const rendersNow = await renderRows(b, tenant);
    expect(rendersNow.map((r) => r.encryptionKeyId)).toEqual(Array(variantCount).fill('new'));
    if (!SSE_C) for (const r of rendersNow) expect(decodeHeader(await raw(b, r.storageKey)).kid, r.storageKey).toBe('new');
    for (const m of media) {
      expect((await b.services.storage.list(`${tenant}/${m.id}/`)).map((o) => o.key).sort(), m.id).toEqual(await live(b, tenant, m.id));
    }
    expect(await b.services.rotation.run({ tenant })).toEqual({ rotated: 0, failed: [] });

    if (SSE_C) {
      // The store holds the rotated object encrypted with the new customer key only.
      const s3 = new S3Storage({ ...testS3Store(), forcePathStyle: true, checksums: S3_CHECKSUMS });
      const ring = b.services.crypto.ring;
      const newKey = `${tenant}/${held.id}/original-new`;
      const get = async (sseKey?: Buffer) => {
        try {
          const out = await s3.client.send(
            new GetObjectCommand({
              Bucket: s3.bucket,
              Key: newKey,
              ...(sseKey ? { SSECustomerAlgorithm: 'AES256', SSECustomerKey: sseKey.toString('base64'), SSECustomerKeyMD5: createHash('md5').update(sseKey).digest('base64') } : {}),
            }),
          );
          return { status: 200, body: Buffer.from(await out.Body!.transformToByteArray()) };
        } catch (e) {
          return { status: (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode ?? 0, body: null };
        }
      };
      for (const attempt of [undefined, ring.objectKey('old', newKey), ring.objectKey('old', `${tenant}/${held.id}/original`)]) {
        const r = await get(attempt);
        expect(r.status, attempt ? 'the old key' : 'no key').toBeGreaterThanOrEqual(400);
        expect(r.status).toBeLessThan(500);
      }
      const right = await get(ring.objectKey('new', newKey));
      expect(right.status).toBe(200);
      expect(sha(right.body!)).toBe(sha(held.bytes));
    }
  });

  it('refuses a malformed key ring at start, naming MEDIA_KEYS and never echoing key material', async () => {
    const secret = Buffer.alloc(16, 7).toString('base64');
    await expect(startTestApp({ env: { MEDIA_KEYS: `short:${secret}` } })).rejects.toThrow(/MEDIA_KEYS/);
    await expect(startTestApp({ env: { MEDIA_KEYS: `short:${secret}` } })).rejects.not.toThrow(secret);
  });
});
