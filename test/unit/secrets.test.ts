import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveSecrets } from '../../src/auth/secrets.js';
import { loadConfig } from '../../src/config.js';

const SIGNING = 'Zk3Qp8Wn2Rt6Yv0Bx4Mc9Ld1Hs5Jf7Ga3Ue';
const JWT = 'jwt-secret-jwt-secret-jwt-secret-0123456';
const dirs: string[] = [];
const dataDir = async () => {
  const d = await mkdtemp(path.join(os.tmpdir(), 'secrets-test-'));
  dirs.push(d);
  return d;
};
afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

describe('signing subkeys', () => {
  it('signed links and signed direct upload ids use separate keys', async () => {
    for (const env of [{ SIGNING_SECRET: SIGNING }, { JWT_SECRET: JWT }, {}]) {
      const s = resolveSecrets(loadConfig({ DATA_DIR: await dataDir(), ...env }));
      expect(s.linkSigningKey).toHaveLength(32);
      expect(s.signedIdKey).toHaveLength(32);
      expect(s.linkSigningKey.equals(s.signedIdKey)).toBe(false);
    }
  });

  it('derives both from SIGNING_SECRET when set: the same on every instance, and unrelated to the JWT secret', async () => {
    const a = resolveSecrets(loadConfig({ DATA_DIR: await dataDir(), SIGNING_SECRET: SIGNING, JWT_SECRET: JWT }));
    const b = resolveSecrets(loadConfig({ DATA_DIR: await dataDir(), SIGNING_SECRET: SIGNING }));
    expect(a.linkSigningKey.equals(b.linkSigningKey)).toBe(true);
    expect(a.signedIdKey.equals(b.signedIdKey)).toBe(true);
    const fromJwt = resolveSecrets(loadConfig({ DATA_DIR: await dataDir(), JWT_SECRET: JWT }));
    expect(fromJwt.linkSigningKey.equals(a.linkSigningKey)).toBe(false);
    expect(fromJwt.linkSigningKey.includes(Buffer.from(JWT))).toBe(false);
  });

  it('with a JWKS URL (no JWT secret) they come from SIGNING_SECRET, the same on every instance', async () => {
    const env = { JWT_JWKS_URL: 'https://idp.example.com/jwks.json', JWT_ISSUER: 'https://idp.example.com/', JWT_AUDIENCE: 'media-api', SIGNING_SECRET: SIGNING };
    const a = resolveSecrets(loadConfig({ DATA_DIR: await dataDir(), ...env }));
    const b = resolveSecrets(loadConfig({ DATA_DIR: await dataDir(), ...env }));
    expect(a.jwtSecret).toBeUndefined();
    expect(a.linkSigningKey.equals(b.linkSigningKey)).toBe(true);
    expect(a.signedIdKey.equals(b.signedIdKey)).toBe(true);
  });
});
