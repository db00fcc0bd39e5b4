import { randomBytes, createHash } from 'node:crypto';
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
}

export function resolveSecrets(config: Config): Secrets {
  const jwtSecret = config.jwt.jwksUrl ? undefined : (config.jwt.secret ?? persistentSecret(config.dataDir, 'jwt-secret'));
  // Signed links must verify on every instance: derive their key from the shared
  // JWT secret when there is one, otherwise keep a generated one under DATA_DIR.
  const linkBase = jwtSecret ?? persistentSecret(config.dataDir, 'link-signing-key');
  const linkSigningKey = createHash('sha256').update('media-api/signed-links\0').update(linkBase).digest();
  return Object.freeze({ jwtSecret, linkSigningKey });
}
