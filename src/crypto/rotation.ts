import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { PrismaClient } from '../generated/prisma/client.js';
import type { Logger } from '../logger.js';
import type { Storage } from '../storage/storage.js';
import { objectKeys } from '../storage/storage.js';
import type { ContentCrypto } from './content-crypto.js';

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
  variants: { name: string; size: number }[] | string;
}

/**
 * Re-encrypts media under the active ring key (SPEC 9, issue 4). Streaming: each
 * object's verified plaintext goes to a private temporary file and is sealed back
 * under the same storage key (an atomic replace on both drivers). Resumable: an
 * object already sealed with the active key is skipped, and a media row is moved
 * to the active key id only once all its objects are. Safe to interrupt at any
 * point: in application-side mode every object names its key in its header.
 */
export class KeyRotation {
  constructor(private readonly deps: { prisma: PrismaClient; storage: Storage; crypto: ContentCrypto; logger: Logger }) {}

  async run(options: { batchSize?: number; tenant?: string } = {}): Promise<RotationReport> {
    const { prisma, crypto } = this.deps;
    const active = crypto.ring.active.kid;
    const report: RotationReport = { rotated: 0, failed: [] };
    const tmp = await mkdtemp(path.join(os.tmpdir(), 'media-rotate-'));
    try {
      for (;;) {
        const rows = await prisma.$queryRaw<Row[]>`
          SELECT tenant_id, id::text AS id, storage_key, file_size, checksum, encryption_key_id, variants FROM media
          WHERE encrypted AND deleted_at IS NULL AND encryption_key_id <> ${active}
            AND (${options.tenant ?? null}::text IS NULL OR tenant_id = ${options.tenant ?? null})
            AND NOT (id::text = ANY(${report.failed}::text[]))
          ORDER BY id LIMIT ${options.batchSize ?? 50}`;
        if (rows.length === 0) break;
        for (const r of rows) {
          try {
            const variants = typeof r.variants === 'string' ? (JSON.parse(r.variants) as Row['variants'] & unknown[]) : r.variants;
            for (const v of variants as { name: string; size: number }[]) {
              await this.rotateObject(tmp, objectKeys.variant(r.tenant_id, r.id, v.name), r.encryption_key_id, v.size);
            }
            await this.rotateObject(tmp, r.storage_key, r.encryption_key_id, Number(r.file_size), r.checksum);
            await prisma.$executeRaw`UPDATE media SET encryption_key_id = ${active} WHERE tenant_id = ${r.tenant_id} AND id = ${r.id}::uuid`;
            report.rotated++;
          } catch (e) {
            this.deps.logger.error({ err: e, mediaId: r.id }, 'key rotation: media left under its old key');
            report.failed.push(r.id);
          }
        }
      }
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    return report;
  }

  private async rotateObject(tmp: string, key: string, recordedKid: string, plainSize: number, checksum?: string): Promise<void> {
    const { storage, crypto } = this.deps;
    const kid = await crypto.sealedWith(storage, key, recordedKid);
    if (kid === crypto.ring.active.kid) return; // done by an earlier, interrupted run
    const file = path.join(tmp, 'plain');
    await pipeline(await crypto.open(storage, { key, kid, plainSize, ...(checksum ? { checksum } : {}) }), createWriteStream(file, { mode: 0o600 }));
    try {
      await crypto.seal(storage, key, createReadStream(file));
    } finally {
      await rm(file, { force: true });
    }
  }
}
