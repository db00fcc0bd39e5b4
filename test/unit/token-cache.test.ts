import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { createAuthenticator, mintToken } from '../../src/auth/tokens.js';
import { loadConfig } from '../../src/config.js';
import type { Secrets } from '../../src/auth/secrets.js';

const SECRET = 'unit-secret-unit-secret-unit-secret-0123';
// No clock tolerance: these tests look at the exact moment a token stops working.
const auth = () => createAuthenticator(loadConfig({ JWT_SECRET: SECRET, DATA_DIR: '/tmp/unused', JWT_CLOCK_TOLERANCE_SECONDS: '0' }), { jwtSecret: SECRET } as Secrets);
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

// Verified tokens are remembered (tokens.ts); remembering must never let through
// what verification would refuse.
describe('verified-token cache', () => {
  it('refuses a token once it expires, though it was accepted (and remembered) before', async () => {
    const a = auth();
    const exp = Math.floor(Date.now() / 1000) + 2;
    const token = await new SignJWT({ tenant: 'acme', scope: 'media:read' }).setProtectedHeader({ alg: 'HS256' }).setSubject('u').setIssuedAt().setExpirationTime(exp).sign(new TextEncoder().encode(SECRET));
    expect(await a.authenticate(bearer(token))).toMatchObject({ kind: 'user', tenant: 'acme' });
    expect(await a.authenticate(bearer(token))).toMatchObject({ kind: 'user', tenant: 'acme' });
    await new Promise((r) => setTimeout(r, exp * 1000 - Date.now() + 50));
    await expect(a.authenticate(bearer(token))).rejects.toMatchObject({ code: 'UNAUTHENTICATED', message: 'Token expired' });
  });

  it('does not accept a changed token because its original was accepted', async () => {
    const a = auth();
    const token = await mintToken(SECRET, { tenant: 'acme' });
    await a.authenticate(bearer(token));
    const [h, p, s] = token.split('.');
    const other = JSON.parse(Buffer.from(p!, 'base64url').toString());
    other.tenant = 'evil';
    const forged = `${h}.${Buffer.from(JSON.stringify(other)).toString('base64url')}.${s}`;
    await expect(a.authenticate(bearer(forged))).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    await expect(a.authenticate(bearer(`${token.slice(0, -2)}xx`))).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(await a.authenticate(bearer(token))).toMatchObject({ tenant: 'acme' });
  });

  it('gives each token its own principal', async () => {
    const a = auth();
    const one = await mintToken(SECRET, { tenant: 'one', scopes: ['media:read'] });
    const two = await mintToken(SECRET, { tenant: 'two', scopes: ['media:create'] });
    for (let i = 0; i < 3; i++) {
      expect(await a.authenticate(bearer(one))).toMatchObject({ tenant: 'one', scopes: new Set(['media:read']) });
      expect(await a.authenticate(bearer(two))).toMatchObject({ tenant: 'two', scopes: new Set(['media:create']) });
    }
  });
});
