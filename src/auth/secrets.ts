import { randomBytes, hkdfSync } from 'node:crypto';
import type { Config } from '../config.js';
import { readOrCreateSecretFile } from './secret-files.js';

/**
 * Reads a secret kept under DATA_DIR/secrets, generating it on first use (mode
 * 0600, directory 0700); refuses (ConfigError) a file open to group or others or
 * owned by another user. Only the embedded default uses these; production passes
 * its secrets in.
 */
export function persistentSecret(dataDir: string, name: string, bytes = 32): string {
  return readOrCreateSecretFile(dataDir, name, () => randomBytes(bytes).toString('base64url') + '\n').trim();
}

export interface Secrets {
  /** HS256 secret for user tokens, unless a JWKS URL is configured. */
  readonly jwtSecret: string | undefined;
  /** Key for the HMAC of signed links (content URLs). */
  readonly linkSigningKey: Buffer;
  /** Key for the HMAC of signed direct upload ids. */
  readonly signedIdKey: Buffer;
}

/** A 32-byte key for one purpose, derived from the base secret (HKDF-SHA-256); different purposes give unrelated keys. */
export function subkey(base: string, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', base, 'media-api', `media-api/${purpose}`, 32));
}

export function resolveSecrets(config: Config): Secrets {
  const jwtSecret = config.jwt.jwksUrl ? undefined : (config.jwt.secret ?? persistentSecret(config.dataDir, 'jwt-secret'));
  // Signed links and direct upload ids must verify on every instance: their keys
  // are separate subkeys of SIGNING_SECRET (required with JWKS), else of the shared
  // JWT secret, else of a secret generated under DATA_DIR (one instance).
  const base = config.signingSecret ?? jwtSecret ?? persistentSecret(config.dataDir, 'link-signing-key');
  const linkSigningKey = subkey(base, 'signed-links');
  const signedIdKey = subkey(base, 'direct-upload-ids');
  return Object.freeze({ jwtSecret, linkSigningKey, signedIdKey });
}
