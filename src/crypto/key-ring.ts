import { createHash, hkdfSync, randomBytes } from 'node:crypto';
import { readOrCreateSecretFile } from '../auth/secret-files.js';

const KID_RE = /^[A-Za-z0-9_-]{1,32}$/;

export interface RingKey {
  readonly kid: string;
  /** 32 bytes; never logged, never returned. */
  readonly material: Buffer;
}

/**
 * The encryption key ring (SPEC 9): `kid:base64key,…`, the first one active. Old
 * keys stay to decrypt what they encrypted. Each object gets its own key, derived
 * with HKDF-SHA-256 from a ring key and the object's storage key.
 */
export class KeyRing {
  readonly active: RingKey;
  private readonly byKid: ReadonlyMap<string, RingKey>;

  constructor(keys: RingKey[]) {
    if (keys.length === 0) throw new Error('MEDIA_KEYS: the key ring is empty');
    const map = new Map<string, RingKey>();
    for (const k of keys) {
      if (!KID_RE.test(k.kid)) throw new Error(`MEDIA_KEYS: key id "${k.kid}" must be 1-32 characters of A-Z a-z 0-9 _ -`);
      if (k.material.length !== 32) throw new Error(`MEDIA_KEYS: key "${k.kid}" must be 32 bytes (base64 of 32 random bytes)`);
      if (map.has(k.kid)) throw new Error(`MEDIA_KEYS: key id "${k.kid}" appears twice`);
      map.set(k.kid, k);
    }
    this.byKid = map;
    this.active = keys[0]!;
  }

  /** Parses `kid:base64,kid:base64`; throws naming MEDIA_KEYS (never echoing key material). */
  static parse(spec: string): KeyRing {
    return new KeyRing(
      spec
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
        .map((entry) => {
          const i = entry.indexOf(':');
          if (i <= 0) throw new Error('MEDIA_KEYS: expected kid:base64key,…');
          return { kid: entry.slice(0, i), material: Buffer.from(entry.slice(i + 1), 'base64') };
        }),
    );
  }

  /**
   * The configured ring, or (embedded default) one generated on first start and
   * kept under DATA_DIR/secrets/media-keys (mode 0600, directory 0700). A file
   * open to group or others, or owned by another user, is refused (ConfigError).
   */
  static load(spec: string | undefined, dataDir: string): KeyRing {
    if (spec) return KeyRing.parse(spec);
    const text = readOrCreateSecretFile(dataDir, 'media-keys', () => {
      // The date says when; the random part keeps two generated rings from sharing a name.
      const kid = `k${new Date().toISOString().slice(0, 10).replace(/-/g, '')}-${randomBytes(4).toString('hex')}`;
      return `${kid}:${randomBytes(32).toString('base64')}\n`;
    });
    return KeyRing.parse(text.trim());
  }

  has(kid: string): boolean {
    return this.byKid.has(kid);
  }

  kids(): string[] {
    return [...this.byKid.keys()];
  }

  /** The per-object key: HKDF-SHA-256(ring key, salt "media-api/v1", info = object id). */
  objectKey(kid: string, objectId: string): Buffer {
    const ring = this.byKid.get(kid);
    if (!ring) throw new Error(`unknown encryption key id "${kid}"`);
    return Buffer.from(hkdfSync('sha256', ring.material, 'media-api/v1', `object:${objectId}`, 32));
  }

  /**
   * What tells two keys of the same name apart: 16 hex characters derived from the
   * material (HKDF, its own purpose; reveals nothing usable about the key).
   * Recorded with each encrypted media, so that a ring whose key of that name is
   * another key is reported as such, not as corrupt content.
   */
  fingerprint(kid: string): string {
    const ring = this.byKid.get(kid);
    if (!ring) throw new Error(`unknown encryption key id "${kid}"`);
    return Buffer.from(hkdfSync('sha256', ring.material, 'media-api/v1', 'key-fingerprint', 8)).toString('hex');
  }

  /** A fingerprint of the ring for logs: key ids and a hash prefix, never material. */
  describe(): string {
    return this.kids()
      .map((k) => `${k}#${createHash('sha256').update(this.byKid.get(k)!.material).digest('hex').slice(0, 8)}`)
      .join(',');
  }
}
