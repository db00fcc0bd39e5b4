// The sweep never deletes work in flight (SPEC 15): writes are protected by their
// pending-write records, not by timing; ages are read on one clock each; the lock
// is held for the whole run (and losing it stops the sweep); the listing is read
// in pages. Slow commits are made real with a PostgreSQL trigger that holds the
// transaction of one tenant's rows until the test lets it go (db-faults.ts), so the
// sweep runs between an upload's store and its commit exactly as it would under load.
import { createHash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CompleteDirectUploadDocument, CreateAssetDocument, CreateDirectUploadDocument, UpdateAssetDocument, UploadDocument } from '../generated/graphql.js';
import { newTenant, startTestApp, type TestApp } from '../helpers/app.js';
import { gql, ok } from '../helpers/client.js';
import { DbFaults, type FaultTable } from '../helpers/db-faults.js';
import { jpeg, pdfBytes } from '../helpers/files.js';
import { storedKeys } from '../helpers/stored.js';
import { sweepTenant } from '../helpers/sweep.js';
import { SweepLockLost, SweepService } from '../../src/modules/sweep/sweep.service.js';
import { loadConfig } from '../../src/config.js';
import type { ListedObject, Storage } from '../../src/storage/storage.js';
import { createLogger } from '../../src/logger.js';

let app: TestApp;
let db: DbFaults;
beforeAll(async () => {
  app = await startTestApp({ env: { SWEEP_INTERVAL_SECONDS: '0' } });
  db = new DbFaults((text, values) => app.db.pool.query(text, values as unknown[]));
});
afterAll(async () => {
  await db?.clear();
  await app?.close();
});

/** Holds the transaction that writes one of the tenant's rows into `tables` in that write, until released (at most 4.5 s: Prisma's transaction timeout is 5 s). */
const hold = (tenant: string, tables: FaultTable[]) => db.hold(tenant, tables);
const sha256b64 = (b: Buffer) => createHash('sha256').update(b).digest('base64');

const sweepNow = (tenant: string, service = app.services.sweep) => sweepTenant(app, tenant, 0, service);

/** Waits until the tenant has stored objects matching `match` (the write reached the store; its commit waits). */
async function untilStored(tenant: string, match: (keys: string[]) => boolean): Promise<string[]> {
  for (let i = 0; i < 200; i++) {
    const keys = await storedKeys(app, tenant);
    if (match(keys)) return keys;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`nothing stored for ${tenant}`);
}

async function bytesAt(url: string, token?: string): Promise<{ status: number; body: Buffer }> {
  const res = await fetch(url, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
}

describe('the sweep and writes in flight', () => {
  it('an upload between its store and its commit survives a sweep with no grace period, and serves its bytes', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    // The commit's transaction waits in its insert until the checks below are done.
    const release = await hold(tenant, ['media']);
    const file = await jpeg(900, 600);
    const uploading = ok(app.url, UploadDocument, { input: { file, entity: { type: 'property', id: 'p1' } } }, { token });
    // The original is stored (all an upload stores: its variants render on request); the commit waits in its transaction.
    const before = await untilStored(tenant, (k) => k.some((x) => x.endsWith('/original')));
    expect(before).toHaveLength(1);
    expect(await app.db.prisma.media.count({ where: { tenantId: tenant } })).toBe(0);
    const report = await sweepNow(tenant);
    expect(report.orphanGroupsDeleted).toBe(0);
    expect(await storedKeys(app, tenant)).toEqual(before);
    await release();
    const media = (await uploading).upload;
    expect(before).toEqual([`${tenant}/${media.id}/original`]);
    const served = await bytesAt(media.url!);
    expect(served.status).toBe(200);
    expect(served.body.equals(Buffer.from(await file.arrayBuffer()))).toBe(true);
    // Committed: the record is gone with the transaction, and a later sweep keeps everything.
    expect((await app.db.pool.query('SELECT count(*)::int AS n FROM pending_write WHERE tenant_id = $1', [tenant])).rows[0].n).toBe(0);
    await sweepNow(tenant);
    expect((await storedKeys(app, tenant)).sort()).toEqual([...before].sort());
  });

  it('a render between its store and its commit survives a sweep with no grace period, and serves it', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const media = (await ok(app.url, UploadDocument, { input: { file: await jpeg(900, 600), entity: { type: 'property', id: 'p1' } } }, { token })).upload;
    const original = `${tenant}/${media.id}/original`;
    const release = await hold(tenant, ['image_render']);
    const rendering = fetch(`${app.url}/media/${media.id}/variants/MEDIUM`, { headers: { authorization: `Bearer ${token}` } });
    // The render's object is stored; its row's transaction waits.
    const before = (await untilStored(tenant, (k) => k.length === 2)).sort();
    const renderKey = before.find((k) => k !== original)!;
    expect(renderKey).toMatch(new RegExp(`^${tenant}/${media.id}/r-[0-9a-f]{32}$`));
    // No row claims the object yet, and it is older than the sweep's cutoff (no grace period, and a
    // second more for stores that keep whole seconds): only its writer's pending-write record protects it.
    expect(await app.db.prisma.imageRender.count({ where: { tenantId: tenant } })).toBe(0);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await app.db.pool.query('SELECT count(*)::int AS n FROM pending_write WHERE tenant_id = $1', [tenant])).rows[0].n).toBe(1);
    const report = await sweepNow(tenant);
    expect(report).toMatchObject({ orphanGroupsDeleted: 0, staleMediaObjectsDeleted: 0, staleRendersRemoved: 0 });
    expect((await storedKeys(app, tenant)).sort()).toEqual(before);
    await release();
    const res = await rendering;
    expect(res.status).toBe(200);
    expect(res.headers.get('x-render-outcome')).toBe('rendered');
    expect(await sharp(Buffer.from(await res.arrayBuffer())).metadata()).toMatchObject({ format: 'jpeg', width: 640 });
    const rows = await app.db.prisma.imageRender.findMany({ where: { tenantId: tenant } });
    expect(rows.map((r) => r.storageKey)).toEqual([renderKey]);
    expect((await app.db.pool.query('SELECT count(*)::int AS n FROM pending_write WHERE tenant_id = $1', [tenant])).rows[0].n).toBe(0);
    // Committed: a later sweep keeps it (its row claims it), and it is served from the store.
    expect(await sweepNow(tenant)).toMatchObject({ orphanGroupsDeleted: 0, staleMediaObjectsDeleted: 0 });
    expect((await storedKeys(app, tenant)).sort()).toEqual(before);
    const again = await fetch(`${app.url}/media/${media.id}/variants/MEDIUM`, { headers: { authorization: `Bearer ${token}` } });
    expect(again.headers.get('x-render-outcome')).toBe('hit');
    expect((await again.arrayBuffer()).byteLength).toBe(Number(rows[0]!.size));
  });

  it('a direct upload being completed survives a sweep between its verified copy and its commit', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = pdfBytes(3);
    const t = (await ok(app.url, CreateDirectUploadDocument, { input: { filename: 'lease.pdf', contentType: 'application/pdf', byteSize: bytes.length, checksum: sha256b64(bytes) } }, { token })).createDirectUpload;
    expect((await fetch(t.url, { method: 'PUT', headers: t.headers.all as Record<string, string>, body: bytes })).status).toBe(200);
    const ticketGroup = t.key.split('/')[1]!;
    const release = await hold(tenant, ['media']);
    const completing = ok(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'company', id: 'c1' } }, { token });
    // The verified copy in the new media's group exists; the commit waits.
    await untilStored(tenant, (k) => k.some((x) => !x.includes(ticketGroup) && x.endsWith('/original')));
    expect(await app.db.prisma.media.count({ where: { tenantId: tenant } })).toBe(0);
    await sweepNow(tenant);
    await release();
    const media = (await completing).completeDirectUpload;
    const served = await bytesAt(media.url!);
    expect(served.status).toBe(200);
    expect(served.body.equals(bytes)).toBe(true);
  });

  it('a new asset, and an asset\'s new revision, survive a sweep between their store and their commit', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    let release = await hold(tenant, ['asset']);
    const first = await jpeg(640, 480, 'banner.jpg');
    const creating = ok(app.url, CreateAssetDocument, { input: { type: 'BLOB', access: 'PUBLIC', file: first } }, { token });
    await untilStored(tenant, (k) => k.some((x) => x.endsWith('/original')));
    expect(await app.db.prisma.asset.count({ where: { tenantId: tenant } })).toBe(0);
    await sweepNow(tenant);
    await release();
    const asset = (await creating).createAsset;
    expect((await bytesAt(asset.publicUrl!)).body.equals(Buffer.from(await first.arrayBuffer()))).toBe(true);

    const before = await storedKeys(app, tenant);
    const second = await jpeg(320, 240, 'banner2.jpg');
    release = await hold(tenant, ['asset']);
    const updating = ok(app.url, UpdateAssetDocument, { id: asset.id, input: { version: 1, file: second } }, { token });
    await untilStored(tenant, (k) => k.length > before.length && k.filter((x) => x.endsWith('/original')).length === 2);
    await sweepNow(tenant);
    await release();
    const updated = (await updating).updateAsset;
    const served = await bytesAt(updated.publicUrl!);
    expect(served.status).toBe(200);
    expect(served.body.equals(Buffer.from(await second.arrayBuffer()))).toBe(true);
  });

  it('the record of a crashed writer goes stale: the sweep removes it, then deletes the objects no row claims', async () => {
    const tenant = newTenant();
    const id = randomUUID();
    await app.services.storage.put(`${tenant}/${id}/original`, Readable.from([pdfBytes(1)]));
    // A live writer's record (refreshed a moment ago) protects the group…
    await app.db.pool.query('INSERT INTO pending_write (token, tenant_id, group_id) VALUES ($1, $2, $3)', [randomUUID(), tenant, id]);
    let report = await sweepNow(tenant);
    expect(report).toMatchObject({ orphanGroupsDeleted: 0, stalePendingWritesRemoved: 0 });
    expect(await storedKeys(app, tenant)).toEqual([`${tenant}/${id}/original`]);
    // …until nobody has refreshed it for more than ten minutes.
    await app.db.pool.query("UPDATE pending_write SET touched_at = now() - interval '11 minutes' WHERE tenant_id = $1", [tenant]);
    report = await sweepNow(tenant);
    expect(report).toMatchObject({ orphanGroupsDeleted: 1, stalePendingWritesRemoved: 1 });
    expect(await storedKeys(app, tenant)).toEqual([]);
  });

  it('a write whose record the sweep gave up (it stalled for longer than the stale period) does not commit, and leaves nothing', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = pdfBytes(2);
    const t = (await ok(app.url, CreateDirectUploadDocument, { input: { filename: 'a.pdf', contentType: 'application/pdf', byteSize: bytes.length, checksum: sha256b64(bytes) } }, { token })).createDirectUpload;
    expect((await fetch(t.url, { method: 'PUT', headers: t.headers.all as Record<string, string>, body: bytes })).status).toBe(200);
    const ticketGroup = t.key.split('/')[1]!;
    const release = await hold(tenant, ['direct_upload']);
    const completing = gql(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'company', id: 'c1' } }, { token });
    await untilStored(tenant, (k) => k.some((x) => !x.includes(ticketGroup)));
    // The completion's transaction waits before it settles its record. As if the writer had
    // stalled for ten minutes: the record is stale, and the sweep removes it and the copy no row claims.
    await app.db.pool.query("UPDATE pending_write SET touched_at = now() - interval '11 minutes' WHERE tenant_id = $1", [tenant]);
    const report = await sweepNow(tenant);
    expect(report).toMatchObject({ stalePendingWritesRemoved: 1, orphanGroupsDeleted: 1 });
    await release();
    const refused = await completing;
    expect(refused.errors?.[0]?.extensions?.['code']).toBe('STORAGE_UNAVAILABLE');
    expect(await app.db.prisma.media.count({ where: { tenantId: tenant } })).toBe(0);
    expect((await storedKeys(app, tenant)).every((k) => k.includes(ticketGroup))).toBe(true);
    // Nothing committed: the ticket is still usable, and completes once the database is quick again.
    const media = (await ok(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'company', id: 'c1' } }, { token })).completeDirectUpload;
    expect((await bytesAt(media.url!)).body.equals(bytes)).toBe(true);
  });
});

/** The run's real storage behind a wrapper: listing pages of `pageSize`, times shifted by `skewMs` (a store whose clock is off). */
function wrapped(real: Storage, o: { pageSize?: number; skewMs?: number; beforePage?: () => Promise<void> } = {}): Storage {
  const skew = o.skewMs ?? 0;
  const shift = (x: ListedObject): ListedObject => ({ ...x, lastModified: new Date(x.lastModified.getTime() + skew) });
  return new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === 'list') return () => Promise.reject(new Error('the sweep must read the listing page by page'));
      if (prop === 'now') return async () => new Date(((await target.now?.()) ?? new Date()).getTime() + skew);
      if (prop === 'listPages') {
        return async function* (prefix: string) {
          const all: ListedObject[] = [];
          for await (const page of target.listPages!(prefix)) all.push(...page);
          for (let i = 0; i < all.length; i += o.pageSize ?? 1000) {
            await o.beforePage?.();
            yield all.slice(i, i + (o.pageSize ?? 1000)).map(shift);
          }
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

const sweepWith = (storage: Storage) =>
  new SweepService({ prisma: app.db.prisma, pool: app.db.pool, storage, media: app.services.media, logger: createLogger('silent') });

describe('the sweep itself', () => {
  it('reads the listing page by page: groups split over pages are judged whole', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const live = (await ok(app.url, UploadDocument, { input: { file: await jpeg(900, 600), entity: { type: 'property', id: 'p' } } }, { token })).upload;
    // Several objects in the live group: its original and three renders (live by their image_render rows).
    for (const w of [100, 200, 300]) {
      const res = await fetch(`${app.url}/media/${live.id}/render?w=${w}`, { headers: { authorization: `Bearer ${token}` } });
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    expect(await app.db.prisma.imageRender.count({ where: { tenantId: tenant, ownerId: live.id } })).toBe(3);
    const orphan = randomUUID();
    for (const name of ['original', 'THUMB', 'MEDIUM']) await app.services.storage.put(`${tenant}/${orphan}/${name}`, Readable.from([Buffer.from(name)]));
    const liveKeys = (await storedKeys(app, tenant)).filter((k) => k.includes(live.id));
    expect(liveKeys).toHaveLength(4);
    // Pages of one object: every group spans several pages.
    const report = await sweepNow(tenant, sweepWith(wrapped(app.services.storage, { pageSize: 1 })));
    expect(report.orphanGroupsDeleted).toBe(1);
    expect(report.staleMediaObjectsDeleted).toBe(0);
    expect((await storedKeys(app, tenant)).sort()).toEqual([...liveKeys].sort());
  });

  it('ages objects on the store\'s clock, not this machine\'s', async () => {
    const tenant = newTenant();
    const orphan = randomUUID();
    await app.services.storage.put(`${tenant}/${orphan}/original`, Readable.from([pdfBytes(1)]));
    // A store whose clock is two hours behind: the object is seconds old on it, two hours old on ours.
    const behind = sweepWith(wrapped(app.services.storage, { skewMs: -2 * 3600_000 }));
    let report = await sweepTenant(app, tenant, 3600, behind);
    expect(report.orphanGroupsDeleted).toBe(0);
    expect(await storedKeys(app, tenant)).toEqual([`${tenant}/${orphan}/original`]);
    // A store two hours ahead: its object times are in this machine's future. On its own
    // clock the object is seconds old: kept with an hour's grace, deleted with none (on
    // this machine's clock it would look two hours too young, and stay).
    const ahead = sweepWith(wrapped(app.services.storage, { skewMs: 2 * 3600_000 }));
    report = await sweepTenant(app, tenant, 3600, ahead);
    expect(report.orphanGroupsDeleted).toBe(0);
    report = await sweepNow(tenant, ahead);
    expect(report.orphanGroupsDeleted).toBe(1);
  });

  it('holds its lock for the whole run on a connection of its own, and stops when that connection goes', async () => {
    const tenant = newTenant();
    const groups = [randomUUID(), randomUUID(), randomUUID()].sort();
    for (const g of groups) await app.services.storage.put(`${tenant}/${g}/original`, Readable.from([Buffer.from('x')]));
    let pause: (() => void) | undefined;
    const paused = new Promise<void>((r) => (pause = r));
    let resume: () => void = () => undefined;
    let pages = 0;
    const service = sweepWith(
      wrapped(app.services.storage, {
        pageSize: 1,
        beforePage: async () => {
          if (++pages !== 2) return;
          pause!();
          await new Promise<void>((r) => (resume = r));
        },
      }),
    );
    // Another test file's sweep may hold the lock: wait for it.
    let running: Promise<unknown> | undefined;
    for (let i = 0; i < 100 && !running; i++) {
      const attempt = service.run({ graceSeconds: 0, tenant }).then(
        (r) => r,
        (e: unknown) => e,
      );
      const first = await Promise.race([attempt, paused.then(() => 'paused' as const)]);
      if (first === 'paused') running = attempt;
      else if (first === null) await new Promise((r) => setTimeout(r, 100));
      else throw new Error(`the sweep ended before its second page: ${JSON.stringify(first)}`);
    }
    expect(running).toBeDefined();
    // Mid-run: the lock is a session lock on an idle connection (no transaction to time out), and another sweep is refused.
    const holders = await app.db.pool.query<{ pid: number; state: string }>(
      "SELECT a.pid, a.state FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.objid = 727275 AND l.granted",
    );
    expect(holders.rows).toHaveLength(1);
    expect(holders.rows[0]!.state).toBe('idle');
    expect(await app.services.sweep.run({ graceSeconds: 0, tenant })).toBeNull();
    // The lock's connection is killed (a PostgreSQL restart, a proxy): the sweep stops before deleting anything more.
    await app.db.pool.query('SELECT pg_terminate_backend($1)', [holders.rows[0]!.pid]);
    await new Promise((r) => setTimeout(r, 200));
    resume();
    const outcome = await running!;
    expect(outcome).toBeInstanceOf(SweepLockLost);
    // At most the first group (judged before the pause) can be gone; the rest is there, and the lock is free again.
    const left = await storedKeys(app, tenant);
    expect(left.length).toBeGreaterThanOrEqual(groups.length - 1);
    const next = await sweepNow(tenant);
    expect(next.orphanGroupsDeleted).toBe(left.length);
    expect(await storedKeys(app, tenant)).toEqual([]);
  });

  it('the grace period has a floor of a minute in the configuration', () => {
    expect(() => loadConfig({ SWEEP_GRACE_SECONDS: '0', DATA_DIR: app.dataDir })).toThrow(/SWEEP_GRACE_SECONDS/);
    expect(() => loadConfig({ SWEEP_GRACE_SECONDS: '59', DATA_DIR: app.dataDir })).toThrow(/SWEEP_GRACE_SECONDS/);
    expect(loadConfig({ SWEEP_GRACE_SECONDS: '60', DATA_DIR: app.dataDir }).sweepGraceSeconds).toBe(60);
  });
});
