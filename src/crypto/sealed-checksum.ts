import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { PrismaClient } from '../generated/prisma/client.js';
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
export function openChecksum(ring: KeyRing, media: ChecksumOwner & { checksum: string; encryptionKeyId: string | null }): string {
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
 * At start: seals the checksums of encrypted media written before they were
 * sealed (in batches; rows under a key the ring does not hold are left, and
 * reported: they cannot be read here anyway). Idempotent and safe beside other
 * instances (each update is guarded by the value it read).
 */
export async function sealLegacyChecksums(prisma: Pick<PrismaClient, '$queryRaw' | '$executeRaw'>, ring: KeyRing, logger: Logger): Promise<number> {
  let sealed = 0;
  let skipped = 0;
  let after = '00000000-0000-0000-0000-000000000000';
  for (;;) {
    const rows = await prisma.$queryRaw<{ tenant_id: string; id: string; checksum: string; encryption_key_id: string }[]>`
      SELECT tenant_id, id::text AS id, checksum, encryption_key_id FROM media
      WHERE encrypted AND encryption_key_id IS NOT NULL AND checksum NOT LIKE 's1.%' AND id > ${after}::uuid
      ORDER BY id LIMIT 500`;
    if (rows.length === 0) break;
    after = rows[rows.length - 1]!.id;
    for (const r of rows) {
      if (!ring.has(r.encryption_key_id) || !HEX_SHA256.test(r.checksum)) {
        skipped++;
        continue;
      }
      const value = sealChecksum(ring, r.encryption_key_id, { tenantId: r.tenant_id, id: r.id }, r.checksum);
      sealed += await prisma.$executeRaw`
        UPDATE media SET checksum = ${value}
        WHERE tenant_id = ${r.tenant_id} AND id = ${r.id}::uuid AND checksum = ${r.checksum} AND encryption_key_id = ${r.encryption_key_id}`;
    }
  }
  if (sealed > 0) logger.info({ count: sealed }, 'sealed the checksums of encrypted media written before checksums were sealed');
  if (skipped > 0) logger.warn({ count: skipped }, 'encrypted media whose checksum could not be sealed (their key is not in MEDIA_KEYS)');
  return sealed;
}
