import { randomBytes, hkdfSync } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config.js';

/**
 * Reads a secret kept under DATA_DIR, generating it on first use (mode 0600).
 * Only the embedded default uses these; production passes its secrets in.
 */
export function persistentSecret(dataDir: string, name: string, bytes = 32): string {
  const file = path.join(dataDir, 'secrets', name);
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const value = randomBytes(bytes).toString('base64url');
  writeFileSync(file, value + '\n', { mode: 0o600, flag: 'wx' });
  return value;
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
