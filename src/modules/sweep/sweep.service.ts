import type pg from 'pg';
import type { PrismaClient } from '../../generated/prisma/client.js';
import { PENDING_STALE_SECONDS } from '../../db/pending-writes.js';
import type { Metrics } from '../../http/metrics.js';
import type { Logger } from '../../logger.js';
import type { Storage } from '../../storage/index.js';
import { objectKeys, variantKey } from '../../storage/index.js';
import type { VariantRecord } from '../media/media.record.js';
import type { MediaService } from '../media/media.service.js';
import { purgeAsset } from '../assets/asset.service.js';
import type { ProgressCallback } from '../../util/progress.js';
import type { ResumableSweep } from '../resumable-uploads/resumable-sweep.js';
import { TUS_PREFIX } from '../resumable-uploads/tus-keys.js';

export interface SweepReport {
  /** Deleted media whose objects and row were purged. */
  deletedMediaPurged: number;
  /** Deleted assets whose objects were purged (their rows stay as tombstones). */
  deletedAssetsPurged: number;
  /** Objects of live assets that their row no longer points at (replaced files an update could not delete). */
  staleAssetObjectsDeleted: number;
  /** Objects of live media that their row no longer points at (copies and originals an interrupted key rotation left). */
  staleMediaObjectsDeleted: number;
  /** Expired, never-completed or finished direct upload tickets removed. */
  directUploadsRemoved: number;
  /** Expired resumable (tus) uploads removed with their bytes (S3: their multipart uploads aborted), and their leftovers. */
  resumableUploadsRemoved: number;
  /** Object groups ({tenant}/{id}/) with no row, deleted. */
  orphanGroupsDeleted: number;
  /** Temporary files of interrupted writes removed (local disk). */
  temporaryRemoved: number;
  /** Multipart uploads that a crash or a failed abort left in the store, aborted (S3). */
  multipartUploadsAborted: number;
  /** Pending-write records of writers that stopped refreshing them (crashed), removed. */
  stalePendingWritesRemoved: number;
  /** Rows of renders whose original is gone, replaced or re-keyed (their objects go with the stored-objects step). */
  staleRendersRemoved: number;
}

/** The least grace period the service and the sweep command accept (SWEEP_GRACE_SECONDS, --grace-seconds). */
export const MIN_SWEEP_GRACE_SECONDS = 60;
/** Groups whose objects one claims query judges. */
const GROUP_BATCH = 1000;
/** Objects of one group the sweep holds at once (a group has a handful; the rest waits for the next sweep). */
const MAX_GROUP_OBJECTS = 10_000;

/** The sweep lost its advisory lock (its connection went): it stops before deleting anything more. */
export class SweepLockLost extends Error {
  override readonly name = 'SweepLockLost';
}

/**
 * A session-level advisory lock on a connection of its own, held for the whole
 * sweep however long it runs (not a transaction's, which a timeout ends while the
 * deletions go on). The connection is pinged while held; once it fails or ends,
 * PostgreSQL has released the lock, and check() throws so the sweep stops.
 */
class SessionLock {
  private lost: Error | undefined;
  private readonly ping: NodeJS.Timeout;
  private readonly onError = (err: Error) => {
    this.lost ??= err;
  };

  private constructor(
    private readonly client: pg.PoolClient,
    private readonly key: number,
  ) {
    client.on('error', this.onError);
    this.ping = setInterval(() => {
      if (this.lost) return;
      client.query('SELECT 1').catch((err: unknown) => {
        this.lost ??= err instanceof Error ? err : new Error(String(err));
      });
    }, 15_000);
    this.ping.unref();
  }

  static async take(pool: pg.Pool, key: number): Promise<SessionLock | null> {
    const client = await pool.connect();
    try {
      const r = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [key]);
      if (r.rows[0]?.ok) return new SessionLock(client, key);
      client.release();
      return null;
    } catch (e) {
      client.release(e instanceof Error ? e : true);
      throw e;
    }
  }

  check(): void {
    if (this.lost) throw new SweepLockLost(`the sweep lost its lock (${this.lost.message}); stopped`, { cause: this.lost });
  }

  async release(): Promise<void> {
    clearInterval(this.ping);
    if (!this.lost) {
      await this.client.query('SELECT pg_advisory_unlock($1)', [this.key]).catch((err: unknown) => {
        this.lost = err instanceof Error ? err : new Error(String(err));
      });
    }
    this.client.removeListener('error', this.onError);
    // A connection that failed is destroyed (its session, and any lock, goes with it).
    this.client.release(this.lost ?? undefined);
  }
}

const KEY_RE = /^([a-z][a-z0-9]{2,15})\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\//;
const SWEEP_LOCK = 727275;

export interface SweepOptions {
  graceSeconds: number;
  /** Limits the sweep to one tenant's rows and objects (operations on one customer; tests). */
  tenant?: string;
  /**
   * Hears each step's progress: `step` names it (SWEEP_STEPS), `done` counts its
   * units (rows, or listed objects for 'stored objects', whose total is unknown).
   */
  onProgress?: ProgressCallback;
}

/** The sweep's steps, in order, as its progress reports name them. */
export const SWEEP_STEPS = ['deleted media', 'deleted assets', 'direct uploads', 'resumable uploads', 'stored objects', 'temporary files', 'multipart uploads'] as const;

/**
 * Finishes what a crash or a fault left half-done (SPEC 15), in both directions:
 * rows of deleted media whose objects remain, direct uploads that expired or
 * ended, and stored objects that no row points at. Writes in progress are told
 * apart by state: a group with a pending-write record (PendingWrites) is never
 * touched, whatever its age; the grace period is a second guard. Ages are measured
 * on one clock each: rows on the database's (`now()`), objects on the store's (the
 * clock of their lastModified). One instance sweeps at a time (a session advisory
 * lock held for the whole run); the listing is read page by page; every step is
 * idempotent.
 */
export class SweepService {
  constructor(
    private readonly deps: {
      prisma: PrismaClient;
      pool: pg.Pool;
      storage: Storage;
      media: MediaService;
      logger: Logger;
      metrics?: Metrics;
      /** Expired resumable uploads (absent: the step is skipped). */
      resumable?: ResumableSweep;
    },
  ) {}

  /**
   * Null: another sweep holds the lock.
   * Counted in sweep_runs_total (done, skipped, failed) and sweep_items_total (per report field).
   */
  async run(options: SweepOptions): Promise<SweepReport | null> {
    const { metrics } = this.deps;
    try {
      const report = await this.runLocked(options);
      metrics?.sweep(report ? { ...report } : null);
      return report;
    } catch (e) {
      metrics?.sweepRuns.inc({ outcome: 'failed' });
      throw e;
    }
  }

  private async runLocked(options: SweepOptions): Promise<SweepReport | null> {
    const lock = await SessionLock.take(this.deps.pool, SWEEP_LOCK);
    if (!lock) return null;
    try {
      return await this.sweep(options, lock);
    } finally {
      await lock.release();
    }
  }

  private async sweep(options: SweepOptions, lock: SessionLock): Promise<SweepReport> {
    const { prisma } = this.deps;
    const progress = options.onProgress ?? (() => undefined);
    const report: SweepReport = {
      deletedMediaPurged: 0,
      deletedAssetsPurged: 0,
      staleAssetObjectsDeleted: 0,
      staleMediaObjectsDeleted: 0,
      directUploadsRemoved: 0,
      resumableUploadsRemoved: 0,
      orphanGroupsDeleted: 0,
      temporaryRemoved: 0,
      multipartUploadsAborted: 0,
      stalePendingWritesRemoved: 0,
      staleRendersRemoved: 0,
    };
    const tenant = options.tenant ?? null;
    const graceMs = options.graceSeconds * 1000;
    // Rows are aged on the database's clock, objects on the store's.
    const [{ now: dbNow } = { now: new Date() }] = await prisma.$queryRaw<{ now: Date }[]>`SELECT now() AS now`;
    const cutoff = new Date(dbNow.getTime() - graceMs);
    const storeNow = (await this.deps.storage.now?.()) ?? new Date();
    const objectCutoff = new Date(storeNow.getTime() - graceMs);

    // Writers refresh their records every minute; one left alone this long is a crashed writer's.
    const stale = await prisma.$queryRaw<{ tenant_id: string; group_id: string }[]>`
      DELETE FROM pending_write WHERE touched_at < now() - make_interval(secs => ${PENDING_STALE_SECONDS}::int)
        AND (${tenant}::text IS NULL OR tenant_id = ${tenant})
      RETURNING tenant_id, group_id::text AS group_id`;
    report.stalePendingWritesRemoved = stale.length;
    if (stale.length > 0) this.deps.logger.warn({ count: stale.length, groups: stale.slice(0, 20).map((p) => `${p.tenant_id}/${p.group_id}`) }, 'sweep: removed the pending-write records of writers that stopped (crashed); their objects are judged by their rows now');

    // A render is served only while its original is current; rows of earlier originals are removed here,
    // and their objects (no longer claimed) by the stored-objects step below.
    report.staleRendersRemoved = await prisma.$executeRaw`
      DELETE FROM image_render r WHERE r.created_at < ${cutoff} AND (${tenant}::text IS NULL OR r.tenant_id = ${tenant})
        AND NOT EXISTS (SELECT 1 FROM media m WHERE r.owner_kind = 'media' AND m.tenant_id = r.tenant_id AND m.id = r.owner_id AND m.deleted_at IS NULL AND m.storage_key = r.source_key)
        AND NOT EXISTS (SELECT 1 FROM asset a WHERE r.owner_kind = 'asset' AND a.tenant_id = r.tenant_id AND a.id = r.owner_id AND a.deleted_at IS NULL AND a.storage_key = r.source_key)`;

    const deleted = await prisma.$queryRaw<{ tenant_id: string; id: string }[]>`
      SELECT tenant_id, id FROM media WHERE deleted_at IS NOT NULL AND deleted_at < ${cutoff}
        AND (${tenant}::text IS NULL OR tenant_id = ${tenant}) LIMIT 10000`;
    progress({ step: 'deleted media', done: 0, total: deleted.length });
    for (const [i, m] of deleted.entries()) {
      lock.check();
      if (await this.deps.media.purge(m.tenant_id, m.id)) report.deletedMediaPurged++;
      progress({ step: 'deleted media', done: i + 1, total: deleted.length });
    }

    const deletedAssets = await prisma.$queryRaw<{ tenant_id: string; id: string }[]>`
      SELECT tenant_id, id FROM asset WHERE deleted_at IS NOT NULL AND deleted_at < ${cutoff} AND storage_key IS NOT NULL
        AND (${tenant}::text IS NULL OR tenant_id = ${tenant}) LIMIT 10000`;
    progress({ step: 'deleted assets', done: 0, total: deletedAssets.length });
    for (const [i, a] of deletedAssets.entries()) {
      lock.check();
      if (await purgeAsset(this.deps, a.tenant_id, a.id)) report.deletedAssetsPurged++;
      progress({ step: 'deleted assets', done: i + 1, total: deletedAssets.length });
    }

    // A ticket's objects are its own group, {tenant}/{ticket id}/ (staging, and
    // whatever a late presigned PUT wrote after completion): the media or asset it
    // became has a fresh id, so the group goes with the ticket. Only tickets
    // completed before migration 20261210000000 gave their id to their media or
    // asset, whose objects are in that group: those groups stay.
    const tickets = await prisma.$queryRaw<{ tenant_id: string; id: string; has_media: boolean }[]>`
      SELECT d.tenant_id, d.id,
             EXISTS (SELECT 1 FROM media m WHERE m.tenant_id = d.tenant_id AND m.id = d.id)
             OR EXISTS (SELECT 1 FROM asset a WHERE a.tenant_id = d.tenant_id AND a.id = d.id AND a.storage_key IS NOT NULL) AS has_media
      FROM direct_upload d
      WHERE ((d.completed_at IS NULL AND d.expires_at < ${cutoff}) OR (d.completed_at IS NOT NULL AND d.completed_at < ${cutoff}))
        AND (${tenant}::text IS NULL OR d.tenant_id = ${tenant})
      LIMIT 10000`;
    let ticketsDone = 0;
    progress({ step: 'direct uploads', done: 0, total: tickets.length });
    for (const t of tickets) {
      // The ticket row goes only once its objects are gone; a store that could not
      // delete one keeps it for the next sweep, and this sweep goes on.
      lock.check();
      try {
        if (!t.has_media) await this.deps.storage.deletePrefix(objectKeys.prefix(t.tenant_id, t.id));
      } catch (err) {
        this.deps.logger.warn({ err, tenant: t.tenant_id, directUploadId: t.id }, 'sweep: could not delete the objects of a direct upload; the ticket stays for the next sweep');
        continue;
      } finally {
        progress({ step: 'direct uploads', done: ++ticketsDone, total: tickets.length });
      }
      await prisma.$executeRaw`DELETE FROM direct_upload WHERE tenant_id = ${t.tenant_id} AND id = ${t.id}::uuid`;
      report.directUploadsRemoved++;
    }

    // Resumable uploads keep their bytes outside every media group (TUS_PREFIX): they
    // expire by their rows, and their multipart uploads are judged by that, not by
    // the stale-multipart rule below (a client may rest for hours between PATCHes).
    if (this.deps.resumable) {
      progress({ step: 'resumable uploads', done: 0 });
      const r = await this.deps.resumable.run({ cutoff, objectCutoff, tenant, check: () => lock.check() });
      report.resumableUploadsRemoved = r.removed;
      report.multipartUploadsAborted += r.aborted;
      progress({ step: 'resumable uploads', done: r.removed });
    }

    Object.assign(report, await this.sweepOrphanObjects(objectCutoff, tenant, lock, progress));
    lock.check();
    if (!tenant) {
      progress({ step: 'temporary files', done: 0 });
      report.temporaryRemoved = (await this.deps.storage.sweepTemporary?.(objectCutoff)) ?? 0;
      progress({ step: 'temporary files', done: report.temporaryRemoved });
    }
    // Every multipart upload is a write of the service's own (keys are never the
    // client's): one that started before the cutoff and received no part since is
    // a leftover. With a tenant, only keys under {tenant}/. Resumable uploads' are
    // judged by their rows (above).
    lock.check();
    progress({ step: 'multipart uploads', done: 0 });
    report.multipartUploadsAborted += (await this.deps.storage.abortStaleMultipartUploads?.(objectCutoff, tenant ? `${tenant}/` : undefined, { skip: TUS_PREFIX })) ?? 0;
    progress({ step: 'multipart uploads', done: report.multipartUploadsAborted });
    if (report.multipartUploadsAborted > 0) this.deps.logger.info({ count: report.multipartUploadsAborted }, 'sweep: aborted stale multipart uploads');
    return report;
  }

  /**
   * Groups objects by {tenant}/{id}/ and deletes groups older than the cutoff that
   * no media, direct upload or asset (live, or deleted but not purged yet) row
   * claims. In the groups of live assets, deletes the old objects the row no
   * longer points at (files replaced by an update whose clean-up failed). Likewise
   * in the groups of live media (storage_key and each variant's key): what an
   * interrupted key rotation left, the new copies before its row update or the old
   * objects after it. Media groups that a direct upload ticket or an asset of the
   * same id also claims (tickets completed before migration 20261210000000) keep
   * every object: those rules are the ticket's and the asset's.
   */
  private async sweepOrphanObjects(
    cutoff: Date,
    tenant: string | null,
    lock: SessionLock,
    progress: ProgressCallback,
  ): Promise<{ orphanGroupsDeleted: number; staleAssetObjectsDeleted: number; staleMediaObjectsDeleted: number }> {
    const totals = { orphanGroupsDeleted: 0, staleAssetObjectsDeleted: 0, staleMediaObjectsDeleted: 0 };
    // The listing comes in key order, page by page: a group's objects come together,
    // so a group is whole once a key of another group appears. Whole groups are
    // judged GROUP_BATCH at a time; nothing holds the bucket.
    const prefix = tenant ? `${tenant}/` : '';
    const pages = this.deps.storage.listPages?.(prefix) ?? (async function* (storage: Storage) {
      yield await storage.list(prefix);
    })(this.deps.storage);
    let current: Group | undefined;
    let batch: Group[] = [];
    const add = async (g: Group) => {
      if (g.objects.some((o) => o.time < cutoff.getTime())) batch.push(g);
      if (batch.length >= GROUP_BATCH) {
        await this.judge(batch, cutoff, lock, totals);
        batch = [];
      }
    };
    let listed = 0;
    progress({ step: 'stored objects', done: 0 });
    for await (const page of pages) {
      lock.check();
      for (const o of page) {
        listed++;
        const m = KEY_RE.exec(o.key);
        if (!m) continue;
        const name = `${m[1]}/${m[2]}`;
        const t = o.lastModified.getTime();
        if (current?.name !== name) {
          if (current) await add(current);
          current = { name, tenant: m[1]!, id: m[2]!, newest: t, objects: [] };
        }
        current.newest = Math.max(current.newest, t);
        if (current.objects.length < MAX_GROUP_OBJECTS) current.objects.push({ key: o.key, time: t });
      }
      progress({ step: 'stored objects', done: listed });
    }
    if (current) await add(current);
    if (batch.length > 0) await this.judge(batch, cutoff, lock, totals);
    return totals;
  }

  /**
   * One batch of whole groups with objects older than the cutoff: those no row
   * claims are deleted (when all their objects are that old); in claimed groups,
   * the old objects their row does not point at. A group with a pending write
   * (an upload between its store and its commit, a rotation's new copies) is left
   * alone whatever its age: the claims are read after the listing, and a writer
   * records its write before its first object.
   */
  private async judge(
    batch: Group[],
    cutoff: Date,
    lock: SessionLock,
    totals: { orphanGroupsDeleted: number; staleAssetObjectsDeleted: number; staleMediaObjectsDeleted: number },
  ): Promise<void> {
    const claimed = await this.deps.prisma.$queryRaw<
      { tenant_id: string; id: string; pending: boolean; asset_keys: string[] | null; media_key: string | null; media_variants: VariantRecord[] | string | null; render_keys: string[] }[]
    >`
      SELECT k.tenant_id, k.id::text AS id,
             ARRAY(SELECT r.storage_key FROM image_render r WHERE r.tenant_id = k.tenant_id AND r.owner_id = k.id) AS render_keys,
             EXISTS (SELECT 1 FROM pending_write p WHERE p.tenant_id = k.tenant_id AND p.group_id = k.id) AS pending,
             (SELECT array_append(ARRAY(SELECT v->>'key' FROM jsonb_array_elements(a.variants) v), a.storage_key)
                FROM asset a WHERE a.tenant_id = k.tenant_id AND a.id = k.id AND a.deleted_at IS NULL) AS asset_keys,
             lm.storage_key AS media_key, lm.variants AS media_variants
      FROM unnest(${batch.map((g) => g.tenant)}::text[], ${batch.map((g) => g.id)}::uuid[]) AS k(tenant_id, id)
      LEFT JOIN LATERAL (
        SELECT m.storage_key, m.variants FROM media m
        WHERE m.tenant_id = k.tenant_id AND m.id = k.id AND m.deleted_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM direct_upload d WHERE d.tenant_id = k.tenant_id AND d.id = k.id)
          AND NOT EXISTS (SELECT 1 FROM asset a WHERE a.tenant_id = k.tenant_id AND a.id = k.id)
      ) lm ON true
      WHERE EXISTS (SELECT 1 FROM pending_write p WHERE p.tenant_id = k.tenant_id AND p.group_id = k.id)
         OR EXISTS (SELECT 1 FROM media m WHERE m.tenant_id = k.tenant_id AND m.id = k.id)
         OR EXISTS (SELECT 1 FROM direct_upload d WHERE d.tenant_id = k.tenant_id AND d.id = k.id)
         OR EXISTS (SELECT 1 FROM asset a WHERE a.tenant_id = k.tenant_id AND a.id = k.id AND (a.deleted_at IS NULL OR a.storage_key IS NOT NULL))`;
    const keep = new Map(claimed.map((c) => [`${c.tenant_id}/${c.id}`, c]));
    for (const g of batch) {
      const row = keep.get(g.name);
      if (row?.pending) continue;
      lock.check();
      if (!row) {
        if (g.newest >= cutoff.getTime()) continue;
        try {
          await this.deps.storage.deletePrefix(objectKeys.prefix(g.tenant, g.id));
        } catch (err) {
          this.deps.logger.warn({ err, tenant: g.tenant, id: g.id }, 'sweep: could not delete orphaned objects; left for the next sweep');
          continue;
        }
        this.deps.logger.info({ tenant: g.tenant, id: g.id }, 'sweep: deleted orphaned objects');
        totals.orphanGroupsDeleted++;
        continue;
      }
      if (row.asset_keys) {
        const live = new Set([...row.asset_keys, ...row.render_keys]);
        for (const o of g.objects) {
          if (live.has(o.key) || o.time >= cutoff.getTime()) continue;
          lock.check();
          await this.deps.storage.delete(o.key);
          this.deps.logger.info({ tenant: g.tenant, assetId: g.id, key: o.key }, 'sweep: deleted a replaced asset object');
          totals.staleAssetObjectsDeleted++;
        }
      } else if (row.media_key) {
        const variants: VariantRecord[] = typeof row.media_variants === 'string' ? (JSON.parse(row.media_variants) as VariantRecord[]) : (row.media_variants ?? []);
        const media = { tenantId: g.tenant, id: g.id };
        const live = new Set([row.media_key, ...variants.map((v) => variantKey(media, v)), ...row.render_keys]);
        for (const o of g.objects) {
          if (live.has(o.key) || o.time >= cutoff.getTime()) continue;
          lock.check();
          await this.deps.storage.delete(o.key);
          this.deps.logger.info({ tenant: g.tenant, mediaId: g.id, key: o.key }, 'sweep: deleted an object its media no longer points at');
          totals.staleMediaObjectsDeleted++;
        }
      }
    }
  }
}

interface Group {
  /** {tenant}/{id} */
  name: string;
  tenant: string;
  id: string;
  newest: number;
  objects: { key: string; time: number }[];
}
