import { readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { PrismaClient } from '../generated/prisma/client.js';
import type { Logger } from '../logger.js';
import type { Storage } from '../storage/storage.js';
import { objectKeys, variantKey } from '../storage/storage.js';
import type { VariantRecord } from '../modules/media/media.record.js';
import type { ContentCrypto, EncryptionMode } from './content-crypto.js';
import type { PendingWrite, PendingWrites } from '../db/pending-writes.js';
import { transact } from '../db/transact.js';
import { openChecksum, sealChecksum } from './sealed-checksum.js';
import type { ProgressCallback } from '../util/progress.js';

export interface RotationReport {
  /** Media now entirely under the active key. */
  rotated: number;
  /** Media that could not be re-encrypted (logged; left as they were). */
  failed: string[];
}

interface Row {
  tenant_id: string;
  id: string;
  storage_key: string;
  file_size: bigint;
  checksum: string;
  encryption_key_id: string;
  encryption_mode: EncryptionMode | null;
  encryption_key_fp: string | null;
  variants: VariantRecord[] | string;
}

/** One object of a media to re-encrypt: where it is, where its new copy goes. */
interface Move {
  from: string;
  to: string;
  plainSize: number;
  checksum?: string;
}

/**
 * Re-encrypts media under the active ring key (SPEC 9). Each object of a media
 * (original and variants) is written again under a new storage key of its own,
 * `{tenant}/{id}/{name}-{kid}`, sealed with the active key: under SSE-C the store
 * re-encrypts it server side (a copy with the old and the new customer key); in
 * application-side mode its authenticated plaintext streams from the old object
 * into the new one (nothing is spooled to disk). Then ONE guarded UPDATE moves the
 * row to the new keys, the new key id and the process's encryption mode together
 * (each object is read with the mode its row records), and only after it has committed
 * are the old objects deleted.
 *
 * So a row never names a key its objects are not sealed with, whenever the run is
 * interrupted: before the UPDATE the row still points at the old objects, intact,
 * and the new copies are leftovers (a rerun writes them again; the sweep deletes
 * them once they are older than its grace period); after it, the old objects are
 * the leftovers. Rerunning picks up every row not yet under the active key.
 *
 * Run one rotation at a time; the UPDATE is guarded by the row's old key id and
 * storage keys, so a row that changed meanwhile (deleted, or rotated by another
 * run) is left to what changed it.
 */
/**
 * Rotations before this version decrypted each document into
 * a `media-rotate-…` directory under os.tmpdir() (file `plain`); one killed mid-object left the plaintext
 * there. Nothing writes such a directory any more: remove any that remain.
 * Returns how many were removed.
 */
export async function removeStaleRotationSpools(logger: Logger, dir = os.tmpdir()): Promise<number> {
  let removed = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.startsWith('media-rotate-')) continue;
    await rm(path.join(dir, name), { recursive: true, force: true });
    logger.warn({ dir: path.join(dir, name) }, 'removed a plaintext spool directory an older key rotation left behind');
    removed++;
  }
  return removed;
}

export class KeyRotation {
  constructor(
    private readonly deps: {
      prisma: PrismaClient;
      storage: Storage;
      crypto: ContentCrypto;
      logger: Logger;
      /** Records writes in progress (the sweep leaves the copies alone until the row points at them). */
      pending: PendingWrites;
      /** How long an old object outlives its row's switch to the new one (default 3 s): reads in flight finish on it. */
      oldObjectGraceMs?: number;
    },
  ) {}

  /**
   * `onProgress` hears after each media: done (rotated, failed or left alone
   * because it changed meanwhile) out of the media under another key at the start.
   */
  async run(options: { batchSize?: number; tenant?: string; onProgress?: ProgressCallback } = {}): Promise<RotationReport> {
    const { prisma, crypto } = this.deps;
    await removeStaleRotationSpools(this.deps.logger);
    // Old objects outlive their row's switch by a grace period: a read that loaded the
    // row just before the update still finds the object it was told to open.
    const graceMs = this.deps.oldObjectGraceMs ?? 3000;
    const retiring: { keys: string[]; mediaId: string; at: number }[] = [];
    const retire = async (all: boolean) => {
      while (retiring.length > 0) {
        const wait = retiring[0]!.at + graceMs - Date.now();
        if (wait > 0) {
          if (!all) return;
          await new Promise((r) => setTimeout(r, wait));
        }
        const done = retiring.shift()!;
        for (const key of done.keys) {
          await this.deps.storage.delete(key).catch((err: unknown) => this.deps.logger.warn({ err, mediaId: done.mediaId, key }, 'key rotation: could not delete an old object; the sweep will'));
        }
      }
    };
    const active = crypto.ring.active.kid;
    const report: RotationReport = { rotated: 0, failed: [] };
    // Rows this run gave up on (failed, or changed by someone else): never picked again.
    const skip: string[] = [];
    const progress = options.onProgress;
    let total = 0;
    if (progress) {
      const [{ n } = { n: 0n }] = await prisma.$queryRaw<{ n: bigint }[]>`
        SELECT count(*) AS n FROM media
        WHERE encrypted AND deleted_at IS NULL AND encryption_key_id <> ${active}
          AND (${options.tenant ?? null}::text IS NULL OR tenant_id = ${options.tenant ?? null})`;
      total = Number(n);
      progress({ done: 0, total, failed: 0 });
    }
    let done = 0;
    for (;;) {
      const rows = await prisma.$queryRaw<Row[]>`
        SELECT tenant_id, id::text AS id, storage_key, file_size, checksum, encryption_key_id, encryption_mode, encryption_key_fp, variants FROM media
        WHERE encrypted AND deleted_at IS NULL AND encryption_key_id <> ${active}
          AND (${options.tenant ?? null}::text IS NULL OR tenant_id = ${options.tenant ?? null})
          AND NOT (id::text = ANY(${skip}::text[]))
        ORDER BY id LIMIT ${options.batchSize ?? 50}`;
      if (rows.length === 0) break;
      for (const r of rows) {
        try {
          await retire(false);
          const old = await this.rotateMedia(r, active);
          if (old) {
            report.rotated++;
            retiring.push({ keys: old, mediaId: r.id, at: Date.now() });
          } else skip.push(r.id);
        } catch (e) {
          this.deps.logger.error({ err: e, mediaId: r.id }, 'key rotation: media left under its old key');
          report.failed.push(r.id);
          skip.push(r.id);
        }
        // Rows written under an old key during the run make it longer than counted.
        done++;
        progress?.({ done, total: Math.max(total, done), failed: report.failed.length });
      }
    }
    await retire(true);
    return report;
  }

  /**
   * The old objects to delete once the row was moved to the active key; null when
   * it changed meanwhile (left alone). The copies are written under a
   * pending-write record, so the sweep leaves them alone until the row points at
   * them (settled in the statement's transaction).
   */
  private async rotateMedia(r: Row, active: string): Promise<string[] | null> {
    const pending = await this.deps.pending.begin(r.tenant_id, r.id);
    try {
      const old = await this.rotateMediaAs(r, active, pending);
      await pending.close();
      return old;
    } catch (e) {
      await pending.close(e);
      throw e;
    }
  }

  private async rotateMediaAs(r: Row, active: string, pending: PendingWrite): Promise<string[] | null> {
    const { prisma, storage, crypto, logger } = this.deps;
    const media = { tenantId: r.tenant_id, id: r.id };
    const owner = { ...media, checksum: r.checksum, encryptionKeyId: r.encryption_key_id, encryptionKeyFp: r.encryption_key_fp };
    const variants: VariantRecord[] = typeof r.variants === 'string' ? (JSON.parse(r.variants) as VariantRecord[]) : (r.variants ?? []);
    // Variants stored with the upload (older media) move with it; renders made on demand are a cache: deleted below.
    const stored = variants.filter((v): v is VariantRecord & { size: number } => v.size !== undefined);
    const moves: Move[] = [
      { from: r.storage_key, to: objectKeys.rotated(r.tenant_id, r.id, 'original', active), plainSize: Number(r.file_size), checksum: openChecksum(crypto.ring, owner) },
      ...stored.map((v) => ({ from: variantKey(media, v), to: objectKeys.rotated(r.tenant_id, r.id, v.name, active), plainSize: v.size })),
    ];
    for (const m of moves) {
      // The key the object is really sealed with (its header, or which customer key the store accepts).
      // Read with the mode the media was written with; the copy gets the process's mode.
      const source = await crypto.sealedWith(storage, m.from, r.encryption_key_id, r.encryption_mode);
      await crypto.reseal(storage, { ...m, kid: source.kid, storedSize: source.storedSize, mode: r.encryption_mode }, logger);
    }
    const movedTo = new Map(stored.map((v, i) => [v.name, moves[i + 1]!.to]));
    const moved = variants.map((v) => (movedTo.has(v.name) ? { ...v, key: movedTo.get(v.name)! } : v));
    let renders: string[] = [];
    // One statement: keys and key id change together or not at all. Guarded by what
    // the copies were made from, so a concurrent change is never overwritten.
    const n = await transact(prisma, async (tx) => {
      await pending.settle(tx);
      const n = await tx.$executeRaw`
        UPDATE media SET storage_key = ${moves[0]!.to}, variants = ${JSON.stringify(moved)}::jsonb, encryption_key_id = ${active}, encryption_mode = ${crypto.mode},
               checksum = ${sealChecksum(crypto.ring, active, media, openChecksum(crypto.ring, owner))}, encryption_key_fp = ${crypto.ring.fingerprint(active)}
        WHERE tenant_id = ${r.tenant_id} AND id = ${r.id}::uuid AND deleted_at IS NULL AND checksum = ${r.checksum}
          AND encryption_key_id = ${r.encryption_key_id} AND encryption_mode IS NOT DISTINCT FROM ${r.encryption_mode}::text AND storage_key = ${r.storage_key} AND variants = ${JSON.stringify(variants)}::jsonb`;
      // Renders of the old original (sealed under an old key) are not kept: made again on request, under the active key.
      if (n === 1) {
        const gone = await tx.$queryRaw<{ storage_key: string }[]>`
          DELETE FROM image_render WHERE tenant_id = ${r.tenant_id} AND owner_id = ${r.id}::uuid RETURNING storage_key`;
        renders = gone.map((g) => g.storage_key);
      }
      return n;
    });
    if (n !== 1) {
      // Deleted or rotated meanwhile: the copies are the sweep's (or the other run's) to keep or delete.
      logger.warn({ mediaId: r.id }, 'key rotation: the media changed while it was copied; left as it is');
      return null;
    }
    return [...moves.map((m) => m.from), ...renders];
  }
}
