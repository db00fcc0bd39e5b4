import { randomBytes, createHash } from 'node:crypto';
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
}

export function resolveSecrets(config: Config): Secrets {
  const jwtSecret = config.jwt.jwksUrl ? undefined : (config.jwt.secret ?? persistentSecret(config.dataDir, 'jwt-secret'));
  // Signed links must verify on every instance: derive their key from the shared
  // JWT secret when there is one, otherwise keep a generated one under DATA_DIR.
  const linkBase = jwtSecret ?? persistentSecret(config.dataDir, 'link-signing-key');
  const linkSigningKey = createHash('sha256').update('media-api/signed-links\0').update(linkBase).digest();
  return Object.freeze({ jwtSecret, linkSigningKey });
}
