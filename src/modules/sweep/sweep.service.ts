import type { PrismaClient } from '../../generated/prisma/client.js';
import type { Logger } from '../../logger.js';
import type { Storage } from '../../storage/index.js';
import { objectKeys, variantKey } from '../../storage/index.js';
import type { VariantRecord } from '../media/media.record.js';
import type { MediaService } from '../media/media.service.js';
import { purgeAsset } from '../assets/asset.service.js';

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
  /** Object groups ({tenant}/{id}/) with no row, deleted. */
  orphanGroupsDeleted: number;
  /** Temporary files of interrupted writes removed (local disk). */
  temporaryRemoved: number;
  /** Multipart uploads that a crash or a failed abort left in the store, aborted (S3). */
  multipartUploadsAborted: number;
}

const KEY_RE = /^([a-z][a-z0-9]{2,15})\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\//;
const SWEEP_LOCK = 727275;

/**
 * Finishes what a crash or a fault left half-done (SPEC 15), in both directions,
 * for anything older than the grace period (so in-flight uploads are never
 * touched): rows of deleted media whose objects remain, direct uploads that
 * expired or ended, and stored objects that no row points at. One instance sweeps
 * at a time (advisory lock); every step is idempotent.
 */
export class SweepService {
  constructor(private readonly deps: { prisma: PrismaClient; storage: Storage; media: MediaService; logger: Logger }) {}

  /** `tenant` limits the sweep to one tenant's rows and objects (operations on one customer; tests). */
  async run(options: { graceSeconds: number; tenant?: string }): Promise<SweepReport | null> {
    const { prisma } = this.deps;
    const report: SweepReport = { deletedMediaPurged: 0, deletedAssetsPurged: 0, staleAssetObjectsDeleted: 0, staleMediaObjectsDeleted: 0, directUploadsRemoved: 0, orphanGroupsDeleted: 0, temporaryRemoved: 0, multipartUploadsAborted: 0 };
    const cutoff = new Date(Date.now() - options.graceSeconds * 1000);
    const tenant = options.tenant ?? null;
    // A session-level advisory lock needs one connection for lock and unlock: hold it in a transaction.
    return prisma.$transaction(
      async (tx) => {
        const [lock] = await tx.$queryRaw<{ ok: boolean }[]>`SELECT pg_try_advisory_xact_lock(${SWEEP_LOCK}) AS ok`;
        if (!lock?.ok) return null;

        const deleted = await prisma.$queryRaw<{ tenant_id: string; id: string }[]>`
          SELECT tenant_id, id FROM media WHERE deleted_at IS NOT NULL AND deleted_at < ${cutoff}
            AND (${tenant}::text IS NULL OR tenant_id = ${tenant}) LIMIT 10000`;
        for (const m of deleted) {
          if (await this.deps.media.purge(m.tenant_id, m.id)) report.deletedMediaPurged++;
        }

        const deletedAssets = await prisma.$queryRaw<{ tenant_id: string; id: string }[]>`
          SELECT tenant_id, id FROM asset WHERE deleted_at IS NOT NULL AND deleted_at < ${cutoff} AND storage_key IS NOT NULL
            AND (${tenant}::text IS NULL OR tenant_id = ${tenant}) LIMIT 10000`;
        for (const a of deletedAssets) {
          if (await purgeAsset(this.deps, a.tenant_id, a.id)) report.deletedAssetsPurged++;
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
        for (const t of tickets) {
          // The ticket row goes only once its objects are gone; a store that could not
          // delete one keeps it for the next sweep, and this sweep goes on.
          try {
            if (!t.has_media) await this.deps.storage.deletePrefix(objectKeys.prefix(t.tenant_id, t.id));
          } catch (err) {
            this.deps.logger.warn({ err, tenant: t.tenant_id, directUploadId: t.id }, 'sweep: could not delete the objects of a direct upload; the ticket stays for the next sweep');
            continue;
          }
          await prisma.$executeRaw`DELETE FROM direct_upload WHERE tenant_id = ${t.tenant_id} AND id = ${t.id}::uuid`;
          report.directUploadsRemoved++;
        }

        Object.assign(report, await this.sweepOrphanObjects(cutoff, tenant));
        if (!tenant) report.temporaryRemoved = (await this.deps.storage.sweepTemporary?.(cutoff)) ?? 0;
        // Every multipart upload is a write of the service's own (keys are never the
        // client's): one that started before the cutoff and received no part since is
        // a leftover. With a tenant, only keys under {tenant}/.
        report.multipartUploadsAborted = (await this.deps.storage.abortStaleMultipartUploads?.(cutoff, tenant ? `${tenant}/` : undefined)) ?? 0;
        if (report.multipartUploadsAborted > 0) this.deps.logger.info({ count: report.multipartUploadsAborted }, 'sweep: aborted stale multipart uploads');
        return report;
      },
      { timeout: 10 * 60_000, maxWait: 10_000 },
    );
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
  ): Promise<{ orphanGroupsDeleted: number; staleAssetObjectsDeleted: number; staleMediaObjectsDeleted: number }> {
    const groups = new Map<string, { tenant: string; id: string; newest: number; objects: { key: string; time: number }[] }>();
    for (const o of await this.deps.storage.list(tenant ? `${tenant}/` : '')) {
      const m = KEY_RE.exec(o.key);
      if (!m) continue;
      const key = `${m[1]}/${m[2]}`;
      const g = groups.get(key);
      const t = o.lastModified.getTime();
      if (!g) groups.set(key, { tenant: m[1]!, id: m[2]!, newest: t, objects: [{ key: o.key, time: t }] });
      else {
        g.newest = Math.max(g.newest, t);
        g.objects.push({ key: o.key, time: t });
      }
    }
    const old = [...groups.values()].filter((g) => g.objects.some((o) => o.time < cutoff.getTime()));
    let orphanGroupsDeleted = 0;
    let staleAssetObjectsDeleted = 0;
    let staleMediaObjectsDeleted = 0;
    for (let i = 0; i < old.length; i += 1000) {
      const batch = old.slice(i, i + 1000);
      const claimed = await this.deps.prisma.$queryRaw<
        { tenant_id: string; id: string; asset_keys: string[] | null; media_key: string | null; media_variants: VariantRecord[] | string | null }[]
      >`
        SELECT k.tenant_id, k.id::text AS id,
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
        WHERE EXISTS (SELECT 1 FROM media m WHERE m.tenant_id = k.tenant_id AND m.id = k.id)
           OR EXISTS (SELECT 1 FROM direct_upload d WHERE d.tenant_id = k.tenant_id AND d.id = k.id)
           OR EXISTS (SELECT 1 FROM asset a WHERE a.tenant_id = k.tenant_id AND a.id = k.id AND (a.deleted_at IS NULL OR a.storage_key IS NOT NULL))`;
      const keep = new Map(claimed.map((c) => [`${c.tenant_id}/${c.id}`, c]));
      for (const g of batch) {
        const name = `${g.tenant}/${g.id}`;
        if (!keep.has(name)) {
          if (g.newest >= cutoff.getTime()) continue;
          try {
            await this.deps.storage.deletePrefix(objectKeys.prefix(g.tenant, g.id));
          } catch (err) {
            this.deps.logger.warn({ err, tenant: g.tenant, id: g.id }, 'sweep: could not delete orphaned objects; left for the next sweep');
            continue;
          }
          this.deps.logger.info({ tenant: g.tenant, id: g.id }, 'sweep: deleted orphaned objects');
          orphanGroupsDeleted++;
          continue;
        }
        const row = keep.get(name)!;
        if (row.asset_keys) {
          const live = new Set(row.asset_keys);
          for (const o of g.objects) {
            if (live.has(o.key) || o.time >= cutoff.getTime()) continue;
            await this.deps.storage.delete(o.key);
            this.deps.logger.info({ tenant: g.tenant, assetId: g.id, key: o.key }, 'sweep: deleted a replaced asset object');
            staleAssetObjectsDeleted++;
          }
        } else if (row.media_key) {
          const variants: VariantRecord[] = typeof row.media_variants === 'string' ? (JSON.parse(row.media_variants) as VariantRecord[]) : (row.media_variants ?? []);
          const media = { tenantId: g.tenant, id: g.id };
          const live = new Set([row.media_key, ...variants.map((v) => variantKey(media, v))]);
          for (const o of g.objects) {
            if (live.has(o.key) || o.time >= cutoff.getTime()) continue;
            await this.deps.storage.delete(o.key);
            this.deps.logger.info({ tenant: g.tenant, mediaId: g.id, key: o.key }, 'sweep: deleted an object its media no longer points at');
            staleMediaObjectsDeleted++;
          }
        }
      }
    }
    return { orphanGroupsDeleted, staleAssetObjectsDeleted, staleMediaObjectsDeleted };
  }
}
