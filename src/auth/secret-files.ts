import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../config.js';

/**
 * Secrets the service generates for itself live in DATA_DIR/secrets (the JWT
 * secret, the link-signing key, the media key ring), files 0600 in a directory
 * 0700, owned by the service's user. The service refuses to start when one of
 * them (or the directory) is open to the group or to others, or belongs to
 * another user: a key someone else can read is a key to rotate, and one someone
 * else owns may have been replaced.
 */
export const SECRET_FILE_MODE = 0o600;
export const SECRET_DIR_MODE = 0o700;

export function secretsDir(dataDir: string): string {
  return path.join(dataDir, 'secrets');
}

/** Throws a ConfigError naming the path, its mode or owner, and the command that fixes it. */
export function checkSecretPath(file: string): void {
  // Windows has no POSIX modes or uids to check.
  if (process.platform === 'win32') return;
  const s = statSync(file);
  const dir = s.isDirectory();
  const uid = process.getuid?.();
  if (uid !== undefined && s.uid !== uid) {
    throw new ConfigError(
      `refusing to start: ${dir ? 'the secrets directory' : 'the secret file'} ${file} is owned by uid ${s.uid}, not by the service's user (uid ${uid}); ` +
        `check who changed it, then: chown ${uid} ${file}`,
    );
  }
  const mode = s.mode & 0o777;
  if (mode & 0o077) {
    const want = dir ? SECRET_DIR_MODE : SECRET_FILE_MODE;
    throw new ConfigError(
      `refusing to start: ${dir ? 'the secrets directory' : 'the secret file'} ${file} has mode 0${mode.toString(8)}, open to its group or to others; ` +
        `it must be 0${want.toString(8)}: chmod ${want.toString(8)} ${file}` +
        (dir ? '' : ' (and rotate the secret if someone else may have read it)'),
    );
  }
}

/**
 * Checks DATA_DIR/secrets and every file in it, if it exists: at start-up, so
 * that a loose file fails the start even when this configuration does not use it.
 */
export function checkSecretFiles(dataDir: string): void {
  const dir = secretsDir(dataDir);
  if (!existsSync(dir)) return;
  checkSecretPath(dir);
  for (const name of readdirSync(dir).sort()) checkSecretPath(path.join(dir, name));
}

/**
 * The contents of DATA_DIR/secrets/{name}, generated with `generate()` on first
 * use (written 0600 in a directory created 0700); the directory and the file are
 * checked before the file is read.
 */
export function readOrCreateSecretFile(dataDir: string, name: string, generate: () => string): string {
  const dir = secretsDir(dataDir);
  const file = path.join(dir, name);
  mkdirSync(dir, { recursive: true, mode: SECRET_DIR_MODE });
  checkSecretPath(dir);
  if (!existsSync(file)) {
    try {
      writeFileSync(file, generate(), { mode: SECRET_FILE_MODE, flag: 'wx' });
    } catch (e) {
      // Another process generated it first: read theirs.
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  checkSecretPath(file);
  return readFileSync(file, 'utf8');
}
