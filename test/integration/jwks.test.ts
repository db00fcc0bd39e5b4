import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import { MediaDocument } from '../generated/graphql.js';
import { newTenant, startTestApp, type TestApp } from '../helpers/app.js';
import { codeOf, gql } from '../helpers/client.js';

// An identity provider on this machine serving its JWKS over plain http (allowed for loopback only).
const ISSUER = 'https://idp.example.test/';
const AUDIENCE = 'media-api';
let server: http.Server;
let key: CryptoKey;
let app: TestApp;

beforeAll(async () => {
  const pair = await generateKeyPair('RS256');
  key = pair.privateKey;
  const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
  app = await startTestApp({ env: { JWT_SECRET: '', JWT_JWKS_URL: url, JWT_ISSUER: ISSUER, JWT_AUDIENCE: AUDIENCE, SIGNING_SECRET: 'Zk3Qp8Wn2Rt6Yv0Bx4Mc9Ld1Hs5Jf7Ga3Ue' } });
});
afterAll(async () => {
  await app?.close();
  await new Promise((r) => server?.close(r));
});

const token = (tenant: string, o: { iss?: string; aud?: string; iatAgo?: number; expIn?: number } = {}) => {
  const now = Math.floor(Date.now() / 1000);
  let t = new SignJWT({ tenant, scope: 'media:read' }).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setSubject('alice')
    .setIssuedAt(now - (o.iatAgo ?? 5)).setExpirationTime(now + (o.expIn ?? 3600));
  if (o.iss !== '') t = t.setIssuer(o.iss ?? ISSUER);
  if (o.aud !== '') t = t.setAudience(o.aud ?? AUDIENCE);
  return t.sign(key);
};
const query = async (t: string) => gql(app.url, MediaDocument, { id: randomUUID() }, { token: t });

describe('JWKS mode', () => {
  it('accepts a token of the identity provider for this API', async () => {
    const r = await query(await token(newTenant()));
    expect(r.errors).toBeUndefined();
  });

  it('refuses a token for another application of the same identity provider, or without audience or issuer', async () => {
    const tenant = newTenant();
    for (const [label, t] of [
      ['another audience', await token(tenant, { aud: 'billing-app' })],
      ['no audience', await token(tenant, { aud: '' })],
      ['another issuer', await token(tenant, { iss: 'https://other-idp.example.test/' })],
      ['no issuer', await token(tenant, { iss: '' })],
      ['issued two days ago, valid ten years', await token(tenant, { iatAgo: 2 * 86400, expIn: 10 * 365 * 86400 })],
    ] as const) {
      expect(codeOf(await query(t)), label).toBe('UNAUTHENTICATED');
    }
  });
});
