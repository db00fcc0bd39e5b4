import { spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkSecretFiles } from '../../src/auth/secret-files.js';
import { persistentSecret } from '../../src/auth/secrets.js';
import { ConfigError } from '../../src/config.js';
import { KeyRing } from '../../src/crypto/key-ring.js';

let dataDir: string;
const secrets = () => path.join(dataDir, 'secrets');
const modeOf = (p: string) => statSync(p).mode & 0o777;
const isRoot = process.getuid?.() === 0;

beforeEach(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'secret-files-test-'));
});
afterEach(() => rm(dataDir, { recursive: true, force: true }));

function thrown(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
}

describe('secret files under DATA_DIR/secrets', () => {
  it('generates the key ring and secrets 0600 in a 0700 directory, whatever the umask', () => {
    const previous = process.umask(0);
    try {
      KeyRing.load(undefined, dataDir);
      persistentSecret(dataDir, 'jwt-secret');
      persistentSecret(dataDir, 'link-signing-key');
    } finally {
      process.umask(previous);
    }
    expect(modeOf(secrets())).toBe(0o700);
    for (const f of ['media-keys', 'jwt-secret', 'link-signing-key']) expect([f, modeOf(path.join(secrets(), f))]).toEqual([f, 0o600]);
    // Read back the same on the next start.
    expect(persistentSecret(dataDir, 'jwt-secret')).toBe(persistentSecret(dataDir, 'jwt-secret'));
    expect(() => checkSecretFiles(dataDir)).not.toThrow();
  });

  it('refuses a world-readable key ring, naming the file, its mode and the chmod that fixes it', () => {
    const ring = KeyRing.load(undefined, dataDir);
    const file = path.join(secrets(), 'media-keys');
    chmodSync(file, 0o644);
    const e = thrown(() => KeyRing.load(undefined, dataDir));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toContain(file);
    expect(e.message).toContain('mode 0644');
    expect(e.message).toContain(`chmod 600 ${file}`);
    expect(thrown(() => checkSecretFiles(dataDir)).message).toContain(`chmod 600 ${file}`);
    chmodSync(file, 0o600);
    expect(KeyRing.load(undefined, dataDir).describe()).toBe(ring.describe());
  });

  it('refuses a group-readable generated secret, and a secrets directory open to others', () => {
    persistentSecret(dataDir, 'jwt-secret');
    const file = path.join(secrets(), 'jwt-secret');
    chmodSync(file, 0o640);
    expect(thrown(() => persistentSecret(dataDir, 'jwt-secret')).message).toMatch(/jwt-secret has mode 0640.*chmod 600/);
    chmodSync(file, 0o600);
    chmodSync(secrets(), 0o755);
    const e = thrown(() => persistentSecret(dataDir, 'jwt-secret'));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toContain(`chmod 700 ${secrets()}`);
  });

  it('checks at start-up every file present, also one this configuration does not read', () => {
    mkdirSync(secrets(), { mode: 0o700 });
    writeFileSync(path.join(secrets(), 'link-signing-key'), 'x\n', { mode: 0o604 });
    expect(thrown(() => checkSecretFiles(dataDir)).message).toMatch(/link-signing-key has mode 0604/);
  });

  it.runIf(isRoot)('refuses a key file owned by another user', () => {
    KeyRing.load(undefined, dataDir);
    const file = path.join(secrets(), 'media-keys');
    chownSync(file, 65534, 65534);
    const e = thrown(() => KeyRing.load(undefined, dataDir));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toContain(`${file} is owned by uid 65534`);
    expect(e.message).toContain(`chown ${process.getuid!()} ${file}`);
  });

  it('npm start exits 2 with the message when a key file is world-readable, before starting a database', async () => {
    KeyRing.load(undefined, dataDir);
    const file = path.join(secrets(), 'media-keys');
    chmodSync(file, 0o644);
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: path.resolve(import.meta.dirname, '../..'),
      env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? os.tmpdir(), PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    expect(out).toContain(`refusing to start: the secret file ${file} has mode 0644`);
    expect(out).toContain(`chmod 600 ${file}`);
    expect(out).not.toContain('PostgreSQL');
    expect(code).toBe(2);
  });
});
