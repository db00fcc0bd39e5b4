import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { createAuthenticator, MAX_TOKEN_CHARS, mintToken, VERIFIED_MAX_BYTES } from '../../src/auth/tokens.js';
import { loadConfig } from '../../src/config.js';
import type { Secrets } from '../../src/auth/secrets.js';

const SECRET = 'unit-secret-unit-secret-unit-secret-0123';
const KEY_A = 'Qm9vZ2x5LXdvcmtlci1rZXktQWxwaGEtOTk3Mw==';
const KEY_ANY = '5f1c9e2ab7d04c83a6e19b0f2d47c8e1';
const auth = (env: Record<string, string> = {}) =>
  createAuthenticator(loadConfig({ JWT_SECRET: SECRET, DATA_DIR: '/tmp/unused', ...env }), { jwtSecret: SECRET } as Secrets);
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
const now = () => Math.floor(Date.now() / 1000);
const sign = (claims: Record<string, unknown>) => new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(SECRET));

describe('user token limits', () => {
  it('refuses a token longer than 8 KiB as UNAUTHENTICATED, before verifying it', async () => {
    const a = auth();
    const big = await mintToken(SECRET, { tenant: 'acme', subject: "x".repeat(200), scopes: Array.from({ length: 1400 }, (_, i) => `s${i}`) });
    expect(big.length).toBeGreaterThan(MAX_TOKEN_CHARS);
    await expect(a.authenticate(bearer(big))).rejects.toMatchObject({ code: 'UNAUTHENTICATED', message: 'Token too long' });
    await expect(a.authenticate(bearer('x'.repeat(1024 * 1024)))).rejects.toMatchObject({ code: 'UNAUTHENTICATED', message: 'Token too long' });
    // A valid token just under the limit is fine.
    expect(await a.authenticate(bearer(await mintToken(SECRET, { tenant: 'acme' })))).toMatchObject({ kind: 'user' });
  });

  it('refuses a token issued longer ago than the maximum age, though its exp is years away', async () => {
    const a = auth({ JWT_MAX_TOKEN_AGE_SECONDS: '3600' });
    const old = await sign({ sub: 'u', tenant: 'acme', iat: now() - 7200, exp: now() + 10 * 365 * 86400 });
    await expect(a.authenticate(bearer(old))).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    const fresh = await sign({ sub: 'u', tenant: 'acme', iat: now() - 60, exp: now() + 10 * 365 * 86400 });
    expect(await a.authenticate(bearer(fresh))).toMatchObject({ kind: 'user', tenant: 'acme' });
    // The default maximum age is a day.
    const twoDays = await sign({ sub: 'u', tenant: 'acme', iat: now() - 2 * 86400, exp: now() + 86400 });
    await expect(auth().authenticate(bearer(twoDays))).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
  });

  it('refuses a token without iat (its age cannot be checked) and one issued in the future', async () => {
    const a = auth();
    await expect(a.authenticate(bearer(await sign({ sub: 'u', tenant: 'acme', exp: now() + 3600 })))).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    await expect(a.authenticate(bearer(await sign({ sub: 'u', tenant: 'acme', iat: now() + 600, exp: now() + 3600 })))).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
  });

  it('allows the configured clock tolerance, and no more', async () => {
    const expired10s = await sign({ sub: 'u', tenant: 'acme', iat: now() - 100, exp: now() - 10 });
    expect(await auth().authenticate(bearer(expired10s))).toMatchObject({ kind: 'user' });
    await expect(auth({ JWT_CLOCK_TOLERANCE_SECONDS: '5' }).authenticate(bearer(expired10s))).rejects.toMatchObject({ code: 'UNAUTHENTICATED', message: 'Token expired' });
    const expired60s = await sign({ sub: 'u', tenant: 'acme', iat: now() - 100, exp: now() - 60 });
    await expect(auth().authenticate(bearer(expired60s))).rejects.toMatchObject({ code: 'UNAUTHENTICATED', message: 'Token expired' });
  });
});

describe('verified-token cache size', () => {
  it('holds at most VERIFIED_MAX_BYTES, however many large tokens arrive', async () => {
    const a = auth();
    const scopes = Array.from({ length: 620 }, (_, i) => `scope${i}`);
    const tokens = await Promise.all(Array.from({ length: 800 }, (_, i) => mintToken(SECRET, { tenant: 'acme', subject: `user-${i}`, scopes })));
    expect(tokens[0]!.length).toBeLessThanOrEqual(MAX_TOKEN_CHARS);
    expect(tokens[0]!.length).toBeGreaterThan(6000);
    for (const t of tokens) await a.authenticate(bearer(t));
    const { entries, bytes } = a.cacheStats();
    expect(bytes).toBeLessThanOrEqual(VERIFIED_MAX_BYTES);
    expect(bytes).toBeGreaterThan(VERIFIED_MAX_BYTES / 2);
    expect(entries).toBeLessThan(tokens.length);
    // The newest are kept, and every token still verifies.
    expect(await a.authenticate(bearer(tokens[0]!))).toMatchObject({ subject: 'user-0' });
    expect(a.cacheStats().bytes).toBeLessThanOrEqual(VERIFIED_MAX_BYTES);
  });
});

describe('worker keys', () => {
  const env = { WORKER_API_KEYS: `${KEY_A}:signature-processor:acme|globex,${KEY_ANY}:ocr:*`, WORKER_API_KEYS_ALLOW_ANY_TENANT: 'true' };
  const worker = (key: string, workerType: string, tenantId?: string) => ({ authorization: `Bearer ${key}`, workerType, tenantId });

  it('a key acts only for the tenants it is bound to', async () => {
    const a = auth(env);
    expect(await a.authenticate(worker(KEY_A, 'signature-processor', 'acme'))).toEqual({ kind: 'worker', tenant: 'acme', workerType: 'signature-processor' });
    expect(await a.authenticate(worker(KEY_A, 'signature-processor', 'globex'))).toMatchObject({ tenant: 'globex' });
    await expect(a.authenticate(worker(KEY_A, 'signature-processor', 'initech'))).rejects.toMatchObject({ code: 'UNAUTHENTICATED', message: 'Worker key is not valid for this X-Tenant-ID' });
    await expect(a.authenticate(worker(KEY_A, 'signature-processor'))).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
  });

  it('a key bound to * acts for any tenant (with the opt-in), still only for its types', async () => {
    const a = auth(env);
    expect(await a.authenticate(worker(KEY_ANY, 'ocr', 'initech'))).toMatchObject({ kind: 'worker', tenant: 'initech' });
    await expect(a.authenticate(worker(KEY_ANY, 'signature-processor', 'initech'))).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
  });

  it('a prefix, an extension or a near miss of a key is not a worker key', async () => {
    const a = auth(env);
    for (const k of [KEY_A.slice(0, -1), `${KEY_A}x`, `${KEY_A.slice(0, -1)}x`, KEY_A.toLowerCase()]) {
      await expect(a.authenticate(worker(k, 'signature-processor', 'acme')), k).rejects.toMatchObject({ code: 'UNAUTHENTICATED', message: 'Invalid token' });
    }
  });
});
