import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { PrismaClient } from '../generated/prisma/client.js';
import { AppError, ErrorCode, errors } from '../errors/index.js';
import type { Logger } from '../logger.js';
import type { KeyRing } from './key-ring.js';
import { IntegrityFailure } from './segmented-gcm.js';

/**
 * The SHA-256 of an encrypted media's plaintext is itself a fact about the
 * document: with it, anyone who can read the database can confirm that a known
 * file is stored. So the `checksum` column of encrypted media holds it sealed:
 * `s1.` + base64url(nonce ‖ AES-256-GCM(sha256 hex) ‖ tag), under a key derived
 * from the media's ring key and its id (so a value copied onto another row does
 * not open). The service opens it where it needs the plaintext checksum (the
 * GraphQL field, verifying a read, the ETag's HMAC, a worker's read); rotation
 * seals it again under the new key with the row's switch.
 */
const PREFIX = 's1.';
const HEX_SHA256 = /^[0-9a-f]{64}$/;

export interface ChecksumOwner {
  tenantId: string;
  id: string;
}

/**
 * The ring holds a key of the name a media was encrypted with, but another key
 * (its fingerprint differs from the one recorded with the media): a configuration
 * problem of this instance (MEDIA_KEYS), not corrupt content.
 */
export class KeyMismatch extends Error {
  override readonly name = 'KeyMismatch';
  constructor(readonly kid: string) {
    super(`content was encrypted with another key named "${kid}" than the one MEDIA_KEYS holds under that name`);
  }
}

/** Throws KeyMismatch when the media recorded a fingerprint and the ring's key of its name has another one. */
export function checkMediaKey(ring: KeyRing, media: { encryptionKeyId: string | null; encryptionKeyFp?: string | null | undefined }): void {
  const kid = media.encryptionKeyId;
  if (!kid || !media.encryptionKeyFp || !ring.has(kid)) return;
  if (ring.fingerprint(kid) !== media.encryptionKeyFp) throw new KeyMismatch(kid);
}

/** Where integrity events go: the log, and the counter media_integrity_failures_total. */
export interface IntegrityReport {
  readonly logger: Logger;
  readonly metrics?: { integrityFailure(event: 'INTEGRITY_ERROR' | 'KEY_MISMATCH'): void } | undefined;
}

/**
 * The client-facing error for a failure to open a media's checksum or content
 * key, logged as the event it is: KEY_MISMATCH (503: this instance's key ring is
 * wrong) or INTEGRITY_ERROR (502: the stored data does not verify). Anything else
 * is returned as it is.
 */
export function keyOrIntegrityError(e: unknown, report: IntegrityReport, media: { id: string }, requestId?: unknown): unknown {
  const { logger } = report;
  if (e instanceof KeyMismatch) {
    report.metrics?.integrityFailure('KEY_MISMATCH');
    logger.error({ event: 'KEY_MISMATCH', mediaId: media.id, kid: e.kid, requestId }, 'key mismatch: MEDIA_KEYS holds another key under the name this media was encrypted with');
    return new AppError(ErrorCode.STORAGE_UNAVAILABLE, `This content was encrypted with another key named "${e.kid}" than the one this service holds under that name (MEDIA_KEYS); it is not corrupt`, {
      extensions: { reason: 'KEY_MISMATCH' },
    });
  }
  if (e instanceof IntegrityFailure) {
    report.metrics?.integrityFailure('INTEGRITY_ERROR');
    logger.error({ event: 'INTEGRITY_ERROR', mediaId: media.id, reason: e.message, requestId }, 'integrity failure: stored checksum does not open');
    return errors.integrity('Stored content failed verification');
  }
  return e;
}

function keyFor(ring: KeyRing, kid: string, media: ChecksumOwner): Buffer {
  return ring.objectKey(kid, `checksum:${media.tenantId}/${media.id}`);
}

export function isSealedChecksum(stored: string): boolean {
  return stored.startsWith(PREFIX);
}

/** The stored form of an encrypted media's checksum (hex SHA-256 in). */
export function sealChecksum(ring: KeyRing, kid: string, media: ChecksumOwner, hex: string): string {
  if (!HEX_SHA256.test(hex)) throw new Error('a checksum to seal is a hex SHA-256');
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', keyFor(ring, kid, media), nonce);
  const sealed = Buffer.concat([cipher.update(Buffer.from(hex, 'hex')), cipher.final()]);
  return PREFIX + Buffer.concat([nonce, sealed, cipher.getAuthTag()]).toString('base64url');
}

/**
 * The hex SHA-256 a row's checksum stands for: opened when sealed (under the key
 * id the row names), as it is otherwise (unencrypted media; rows written before
 * sealing, until the start-up pass seals them). A value that does not open is an
 * IntegrityFailure.
 */
export function openChecksum(ring: KeyRing, media: ChecksumOwner & { checksum: string; encryptionKeyId: string | null; encryptionKeyFp?: string | null | undefined }): string {
  checkMediaKey(ring, media);
  if (!isSealedChecksum(media.checksum)) return media.checksum;
  if (!media.encryptionKeyId || !ring.has(media.encryptionKeyId)) throw new IntegrityFailure(`the checksum is sealed under key "${media.encryptionKeyId ?? ''}", which the ring does not hold`);
  const raw = Buffer.from(media.checksum.slice(PREFIX.length), 'base64url');
  if (raw.length !== 12 + 32 + 16) throw new IntegrityFailure('the sealed checksum has the wrong length');
  try {
    const decipher = createDecipheriv('aes-256-gcm', keyFor(ring, media.encryptionKeyId, media), raw.subarray(0, 12));
    decipher.setAuthTag(raw.subarray(44));
    return Buffer.concat([decipher.update(raw.subarray(12, 44)), decipher.final()]).toString('hex');
  } catch {
    throw new IntegrityFailure('the sealed checksum does not open under its key');
  }
}

/**
 * At start, for encrypted media written before checksums were sealed or key
 * fingerprints recorded: seals a plain checksum (and records the fingerprint of
 * the ring key this instance reads the media with), and records the fingerprint
 * of rows whose sealed checksum opens under the ring's key of their name (proof
 * it is that key). In batches, each update guarded by what it read, so it is safe
 * beside other instances; rows under a key the ring does not hold, or whose
 * sealed checksum does not open, are left and counted in the log. Then reports,
 * per key of the ring, media recorded with another key of the same name.
 * Returns how many rows it updated.
 */
export async function sealLegacyChecksums(prisma: Pick<PrismaClient, '$queryRaw' | '$executeRaw'>, ring: KeyRing, logger: Logger): Promise<number> {
  let updated = 0;
  let unknownKey = 0;
  let notOpening = 0;
  let after = '00000000-0000-0000-0000-000000000000';
  for (;;) {
    const rows = await prisma.$queryRaw<{ tenant_id: string; id: string; checksum: string; encryption_key_id: string }[]>`
      SELECT tenant_id, id::text AS id, checksum, encryption_key_id FROM media
      WHERE encrypted AND encryption_key_id IS NOT NULL AND (checksum NOT LIKE 's1.%' OR encryption_key_fp IS NULL) AND id > ${after}::uuid
      ORDER BY id LIMIT 500`;
    if (rows.length === 0) break;
    after = rows[rows.length - 1]!.id;
    for (const r of rows) {
      const owner = { tenantId: r.tenant_id, id: r.id };
      if (!ring.has(r.encryption_key_id)) {
        unknownKey++;
        continue;
      }
      let checksum: string;
      if (isSealedChecksum(r.checksum)) {
        try {
          openChecksum(ring, { ...owner, checksum: r.checksum, encryptionKeyId: r.encryption_key_id });
        } catch {
          notOpening++;
          continue;
        }
        checksum = r.checksum;
      } else if (HEX_SHA256.test(r.checksum)) {
        checksum = sealChecksum(ring, r.encryption_key_id, owner, r.checksum);
      } else {
        notOpening++;
        continue;
      }
      updated += await prisma.$executeRaw`
        UPDATE media SET checksum = ${checksum}, encryption_key_fp = ${ring.fingerprint(r.encryption_key_id)}
        WHERE tenant_id = ${r.tenant_id} AND id = ${r.id}::uuid AND checksum = ${r.checksum} AND encryption_key_id = ${r.encryption_key_id}
          AND (encryption_key_fp IS NULL OR checksum NOT LIKE 's1.%')`;
    }
  }
  if (updated > 0) logger.info({ count: updated }, 'sealed the checksums and recorded the key fingerprints of encrypted media written before they were');
  if (unknownKey > 0) logger.warn({ count: unknownKey }, 'encrypted media under a key that MEDIA_KEYS does not hold (they cannot be read here)');
  if (notOpening > 0) logger.error({ count: notOpening }, 'encrypted media whose sealed checksum does not open under the key of its name in MEDIA_KEYS');
  for (const kid of ring.kids()) {
    const [row] = await prisma.$queryRaw<{ n: number }[]>`
      SELECT count(*)::int AS n FROM (SELECT 1 FROM media WHERE encrypted AND encryption_key_id = ${kid}
        AND encryption_key_fp IS NOT NULL AND encryption_key_fp <> ${ring.fingerprint(kid)} LIMIT 1000) x`;
    if (row && row.n > 0) {
      logger.error(
        { event: 'KEY_MISMATCH', kid, count: row.n >= 1000 ? '1000 or more' : row.n },
        `MEDIA_KEYS holds another key under the name "${kid}" than the one that encrypted media of this database: they cannot be read until the right key is in the ring`,
      );
    }
  }
  return updated;
}
