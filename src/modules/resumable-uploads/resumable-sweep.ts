import type { PrismaClient } from '../../generated/prisma/client.js';
import type { Logger } from '../../logger.js';
import type { Storage } from '../../storage/index.js';
import type { PgLocker } from './pg-locker.js';
import type { TusBackend } from './tus-backend.js';
import { TUS_PREFIX } from './tus-keys.js';

export interface ResumableSweepReport {
  /** Expired uploads (rows) removed, with their bytes, and byte sets no row claims. */
  removed: number;
  /** Multipart uploads under TUS_PREFIX older than an upload can live, aborted (S3). */
  aborted: number;
}

/** Rows, and object ids of the listing, one run judges at most (the rest waits for the next run). */
const BATCH = 10_000;

/**
 * The sweep's part for resumable uploads. An upload expires `ttlSeconds` after its
 * creation (tus answers 410 from then on); once past the sweep's cutoff its bytes
 * go (local: its file and record; S3: its multipart upload is aborted, its object,
 * record and incomplete part deleted) and then its row; a finished upload's row
 * goes the same way (its bytes went at completion). Each removal takes the upload's
 * lock without waiting, so a request still writing (it started before expiry) is
 * never cut: that upload waits for the next sweep. A whole-store sweep also removes
 * bytes no row claims (an interrupted removal) and aborts multipart uploads under
 * TUS_PREFIX initiated longer ago than an upload can live (a creation that crashed
 * before the store wrote its record).
 */
export class ResumableSweep {
  constructor(private readonly deps: { prisma: PrismaClient; storage: Storage; locker: PgLocker; backend: TusBackend; ttlSeconds: number; logger: Logger }) {}

  /**
   * `cutoff`: rows expired before it go (database clock); `objectCutoff`: unclaimed
   * objects older than it go (store clock). `check` throws when the sweep lost its lock.
   */
  async run(o: { cutoff: Date; objectCutoff: Date; tenant: string | null; check(): void }): Promise<ResumableSweepReport> {
    const { prisma, backend, logger } = this.deps;
    const report: ResumableSweepReport = { removed: 0, aborted: 0 };
    const expired = await prisma.$queryRaw<{ id: string }[]>`
      SELECT id::text AS id FROM resumable_upload WHERE expires_at < ${o.cutoff}
        AND (${o.tenant}::text IS NULL OR tenant_id = ${o.tenant}) LIMIT ${BATCH}::int`;
    for (const { id } of expired) {
      o.check();
      if (await this.remove(id, true)) report.removed++;
    }
    if (o.tenant !== null) return report;

    // Bytes whose row is gone: rows are written before a store creates anything and
    // deleted after its bytes, so these are what an interrupted removal left.
    const newest = new Map<string, number>();
    const pages = this.deps.storage.listPages?.(TUS_PREFIX) ?? (async function* (s: Storage) {
      yield await s.list(TUS_PREFIX);
    })(this.deps.storage);
    for await (const page of pages) {
      o.check();
      for (const obj of page) {
        const id = backend.idOfKey(obj.key);
        if (id) newest.set(id, Math.max(newest.get(id) ?? 0, obj.lastModified.getTime()));
      }
      if (newest.size >= BATCH) break;
    }
    const old = [...newest].filter(([, t]) => t < o.objectCutoff.getTime()).map(([id]) => id);
    if (old.length > 0) {
      const claimed = new Set(
        (await prisma.$queryRaw<{ id: string }[]>`SELECT id::text AS id FROM resumable_upload WHERE id = ANY(${old}::uuid[])`).map((r) => r.id),
      );
      for (const id of old.filter((x) => !claimed.has(x))) {
        o.check();
        if (await this.remove(id, false)) {
          report.removed++;
          logger.info({ uploadId: id }, 'sweep: removed the bytes of a resumable upload that has no row');
        }
      }
    }
    // No upload lives longer than ttlSeconds: a multipart upload under the prefix
    // initiated before that (and idle since) belongs to none that can still be resumed.
    o.check();
    const oldest = new Date(o.objectCutoff.getTime() - this.deps.ttlSeconds * 1000);
    report.aborted = (await this.deps.storage.abortStaleMultipartUploads?.(oldest, TUS_PREFIX)) ?? 0;
    return report;
  }

  /** Removes one upload's bytes, then its row; false when it is in use (its lock is held) or a removal failed. */
  private async remove(id: string, withRow: boolean): Promise<boolean> {
    const { prisma, backend, locker, logger } = this.deps;
    const lock = await locker.tryLock(id).catch((err: unknown) => {
      logger.warn({ err, uploadId: id }, 'sweep: could not take the lock of a resumable upload; left for the next sweep');
      return null;
    });
    if (!lock) return false;
    try {
      await backend.purge(id);
      if (withRow) await prisma.$executeRaw`DELETE FROM resumable_upload WHERE id = ${id}::uuid AND expires_at < now()`;
      return true;
    } catch (err) {
      logger.warn({ err, uploadId: id }, 'sweep: could not remove an expired resumable upload; left for the next sweep');
      return false;
    } finally {
      await lock.unlock();
    }
  }
}
