import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { DeleteMediaDocument, MediaDocument, ReplaceMediaTagsDocument, SecMediaUrlDocument, SecUploadDocument, SecUploadManyDocument } from '../generated/graphql.js';
import { startTestApp, newTenant, STORAGE_DRIVER, TEST_JWT_SECRET, type TestApp } from '../helpers/app.js';
import { codeOf, gql, ok } from '../helpers/client.js';
import { jpeg, jpegOfSize, pdf } from '../helpers/files.js';
import { expectNothingStored, expectResponsive, rowCounts, within } from '../helpers/security.js';
import { storedKeys } from '../helpers/stored.js';
import type { Storage } from '../../src/storage/index.js';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(() => app?.close());

const enc = new TextEncoder();
const now = () => Math.floor(Date.now() / 1000);

/** A JWT with exactly the given claims (nothing added), HS256 unless told. */
async function craft(claims: Record<string, unknown>, o: { secret?: string; alg?: string } = {}): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: o.alg ?? 'HS256' }).sign(enc.encode(o.secret ?? TEST_JWT_SECRET));
}

const valid = (tenant: string) => ({ sub: 'mallory', tenant, scope: 'media:read media:create media:update media:delete', iat: now() - 5, exp: now() + 3600 });

/** An unsigned token ("alg": "none"), which must never be accepted. */
function unsigned(claims: Record<string, unknown>): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
}

/** The tokens that must all be UNAUTHENTICATED, with the tenant they pretend to act for. */
async function badTokens(tenant: string): Promise<[string, string][]> {
  const c = valid(tenant);
  return [
    ['expired', await craft({ ...c, exp: now() - 120 })],
    // Beyond the maximum age (a day by default), however far away its exp.
    ['issued two days ago, valid ten years', await craft({ ...c, iat: now() - 2 * 86400, exp: now() + 10 * 365 * 86400 })],
    ['without iat (its age cannot be checked)', await craft({ sub: c.sub, tenant, scope: c.scope, exp: c.exp })],
    ['issued in the future', await craft({ ...c, iat: now() + 600 })],
    ['longer than 8 KiB', await craft({ ...c, pad: 'x'.repeat(9000) })],
    ['signed with another secret', await craft(c, { secret: 'another-secret-that-is-also-long-enough-0123456789' })],
    ['signed with HS512 (not an accepted algorithm)', await craft(c, { alg: 'HS512' })],
    ['unsigned (alg none)', unsigned(c)],
    ['without a tenant claim', await craft({ sub: c.sub, scope: c.scope, iat: c.iat, exp: c.exp })],
    ['with an upper-case tenant', await craft({ ...c, tenant: 'Acme' })],
    ['with a too short tenant', await craft({ ...c, tenant: 'ab' })],
    ['with a tenant starting with a digit', await craft({ ...c, tenant: '1acme' })],
    ['with a too long tenant', await craft({ ...c, tenant: 'a'.repeat(17) })],
    ['with a tenant that tries SQL', await craft({ ...c, tenant: "acme' OR '1'='1" })],
    ['with a numeric tenant', await craft({ ...c, tenant: 12345 })],
    ['without exp', await craft({ sub: c.sub, tenant, scope: c.scope, iat: c.iat })],
    ['without sub', await craft({ tenant, scope: c.scope, iat: c.iat, exp: c.exp })],
    // The subject is stored as created_by: a NUL there was an internal error on upload.
    ['with a NUL in sub', await craft({ ...c, sub: 'mal\u0000lory' })],
    ['with a numeric sub', await craft({ ...c, sub: 42 })],
    ['with a 1000-character sub', await craft({ ...c, sub: 'x'.repeat(1000) })],
    ['garbage', 'not.a.jwt'],
    ['with a tampered payload', await (async () => {
      const [h, , s] = (await craft(c)).split('.');
      return `${h}.${Buffer.from(JSON.stringify({ ...c, tenant: 'victim' })).toString('base64url')}.${s}`;
    })()],
  ];
}

describe('GraphQL authentication', () => {
  it('no token is UNAUTHENTICATED for queries and mutations', async () => {
    const r = await gql(app.url, MediaDocument, { id: randomUUID() }, {});
    expect(codeOf(r)).toBe('UNAUTHENTICATED');
    expect(r.data?.media ?? null).toBeNull();
    const d = await gql(app.url, DeleteMediaDocument, { id: randomUUID() }, {});
    expect(codeOf(d)).toBe('UNAUTHENTICATED');
  });

  it('an upload without a token is UNAUTHENTICATED, stores nothing and does not wedge the server', async () => {
    const tenant = newTenant('auth');
    // This app's own objects (local disk is per app; the S3 bucket is shared by the run).
    const objectsBefore = STORAGE_DRIVER === 'local' ? await app.services.storage.list('') : [];
    const r = await within(gql(app.url, SecUploadDocument, { input: { file: await jpegOfSize(3 * 1024 * 1024), entity: { type: 'property', id: 'p1' } } }, {}), 20_000, 'upload');
    expect(codeOf(r)).toBe('UNAUTHENTICATED');
    expect(r.data ?? null).toBeNull();
    if (STORAGE_DRIVER === 'local') expect(await app.services.storage.list('')).toEqual(objectsBefore);
    await expectResponsive(app, await app.token(tenant));
    // Again, twice in a row on the same client.
    for (let i = 0; i < 2; i++) {
      const again = await within(gql(app.url, SecUploadDocument, { input: { file: await jpegOfSize(2 * 1024 * 1024), entity: { type: 'property', id: 'p1' } } }, {}), 20_000, 'upload');
      expect(codeOf(again)).toBe('UNAUTHENTICATED');
    }
    await expectResponsive(app, await app.token(tenant));
  });

  it('an Authorization header that is not Bearer is UNAUTHENTICATED', async () => {
    const token = await app.token(newTenant('auth'));
    for (const authorization of [`Basic ${Buffer.from('a:b').toString('base64')}`, `Bearer`, `Token ${token}`, `Bearer ${token} extra`]) {
      const r = await gql(app.url, MediaDocument, { id: randomUUID() }, { headers: { authorization } });
      expect(codeOf(r), authorization).toBe('UNAUTHENTICATED');
    }
  });

  it('every forged, expired or incomplete token is UNAUTHENTICATED', async () => {
    const tenant = newTenant('auth');
    for (const [label, token] of await badTokens(tenant)) {
      const r = await gql(app.url, MediaDocument, { id: randomUUID() }, { token });
      expect(codeOf(r), label).toBe('UNAUTHENTICATED');
      expect(r.data?.media ?? null, label).toBeNull();
    }
    // The same claims, correctly signed, are accepted: the refusals above are about the token, not the query.
    const good = await gql(app.url, MediaDocument, { id: randomUUID() }, { token: await craft(valid(tenant)) });
    expect(good.errors).toBeUndefined();
    expect(good.data?.media).toBeNull();
  });

  it('a token just under 8 KiB is accepted; one over it is UNAUTHENTICATED saying so', async () => {
    const tenant = newTenant('auth');
    const base = await craft(valid(tenant));
    const under = await craft({ ...valid(tenant), pad: 'x'.repeat(Math.floor((8 * 1024 - base.length) * 0.75) - 20) });
    expect(under.length).toBeLessThanOrEqual(8 * 1024);
    expect(under.length).toBeGreaterThan(8 * 1024 - 64);
    const good = await gql(app.url, MediaDocument, { id: randomUUID() }, { token: under });
    expect(good.errors).toBeUndefined();
    const r = await gql(app.url, MediaDocument, { id: randomUUID() }, { token: await craft({ ...valid(tenant), pad: 'x'.repeat(8 * 1024) }) });
    expect(codeOf(r)).toBe('UNAUTHENTICATED');
    expect(r.errors?.[0]?.message).toBe('Token too long');
  });

  it('an expired token says so', async () => {
    // Past the 30-second clock tolerance.
    const r = await gql(app.url, MediaDocument, { id: randomUUID() }, { token: await craft({ ...valid(newTenant('auth')), exp: now() - 60 }) });
    expect(codeOf(r)).toBe('UNAUTHENTICATED');
    expect(r.errors?.[0]?.message).toMatch(/expired/i);
  });

  it('an upload with only media:read is FORBIDDEN naming media:create, stores nothing, and the server stays responsive', async () => {
    const tenant = newTenant('auth');
    const token = await app.token(tenant, { scopes: ['media:read'] });
    const r = await within(gql(app.url, SecUploadDocument, { input: { file: await jpegOfSize(3 * 1024 * 1024), entity: { type: 'property', id: 'p1' } } }, { token }), 20_000, 'upload');
    expect(codeOf(r)).toBe('FORBIDDEN');
    expect(r.errors?.[0]?.message).toContain('media:create');
    await expectNothingStored(app, tenant);
    await expectResponsive(app, token);
    // And again on the same client, several times: no connection is left wedged.
    for (let i = 0; i < 3; i++) {
      const again = await within(gql(app.url, SecUploadDocument, { input: { file: await jpegOfSize(2 * 1024 * 1024), entity: { type: 'property', id: 'p1' } } }, { token }), 20_000, 'upload');
      expect(codeOf(again)).toBe('FORBIDDEN');
    }
    await expectNothingStored(app, tenant);
    await expectResponsive(app, token);
  });

  it('uploadMany with only media:read is FORBIDDEN naming media:create and stores nothing', async () => {
    const tenant = newTenant('auth');
    const token = await app.token(tenant, { scopes: ['media:read', 'media:update'] });
    const r = await within(
      gql(app.url, SecUploadManyDocument, { inputs: [{ file: await jpeg(64, 64, 'a.jpg'), entity: { type: 'property', id: 'p1' } }, { file: pdf(1), entity: { type: 'property', id: 'p1' } }] }, { token }),
      20_000,
      'uploadMany',
    );
    expect(codeOf(r)).toBe('FORBIDDEN');
    expect(r.errors?.[0]?.message).toContain('media:create');
    await expectNothingStored(app, tenant);
    await expectResponsive(app, token);
  });

  it('each operation names the scope it misses; the media is untouched', async () => {
    const tenant = newTenant('auth');
    const full = await app.token(tenant);
    const { upload } = await ok(app.url, SecUploadDocument, { input: { file: await jpeg(64, 64), entity: { type: 'property', id: 'p1' }, tags: ['keep'] } }, { token: full });

    const readOnly = await app.token(tenant, { scopes: ['media:read'] });
    const del = await gql(app.url, DeleteMediaDocument, { id: upload.id }, { token: readOnly });
    expect(codeOf(del)).toBe('FORBIDDEN');
    expect(del.errors?.[0]?.message).toContain('media:delete');
    expect(del.errors?.[0]?.extensions?.['scope']).toBe('media:delete');

    const tags = await gql(app.url, ReplaceMediaTagsDocument, { id: upload.id, tags: ['changed'] }, { token: readOnly });
    expect(codeOf(tags)).toBe('FORBIDDEN');
    expect(tags.errors?.[0]?.message).toContain('media:update');

    const writeOnly = await app.token(tenant, { scopes: ['media:create', 'media:update', 'media:delete'] });
    const read = await gql(app.url, MediaDocument, { id: upload.id }, { token: writeOnly });
    expect(codeOf(read)).toBe('FORBIDDEN');
    expect(read.errors?.[0]?.message).toContain('media:read');

    // Asset scopes do not stand in for media scopes.
    const assets = await app.token(tenant, { scopes: ['asset:read', 'asset:manage'] });
    const viaAssets = await gql(app.url, DeleteMediaDocument, { id: upload.id }, { token: assets });
    expect(codeOf(viaAssets)).toBe('FORBIDDEN');

    const { media } = await ok(app.url, MediaDocument, { id: upload.id }, { token: full });
    expect(media).toMatchObject({ id: upload.id, tags: ['keep'], version: 1 });
    expect(await storedKeys(app, tenant)).toContain(`${tenant}/${upload.id}/original`);
  });
});

describe('content route authentication', () => {
  let tenant: string;
  let mediaId: string;
  let path: string;
  beforeAll(async () => {
    tenant = newTenant('auth');
    const { upload } = await ok(app.url, SecUploadDocument, { input: { file: pdf(1, 'doc.pdf'), entity: { type: 'property', id: 'p1' } } }, { token: await app.token(tenant) });
    mediaId = upload.id;
    path = upload.contentPath;
  });

  async function get(headers: Record<string, string>) {
    const res = await fetch(`${app.url}${path}`, { headers });
    const text = await res.text();
    return { status: res.status, type: res.headers.get('content-type'), text, json: JSON.parse(text) as { error?: { code?: string; message?: string } } };
  }

  it('no token is 401 with a JSON error body', async () => {
    const r = await get({});
    expect(r.status).toBe(401);
    expect(r.type).toMatch(/^application\/json/);
    expect(r.json.error?.code).toBe('UNAUTHENTICATED');
    expect(r.text).not.toContain('%PDF');
  });

  it('every forged, expired or incomplete token is 401', async () => {
    for (const [label, token] of await badTokens(tenant)) {
      const r = await get({ authorization: `Bearer ${token}` });
      expect(r.status, label).toBe(401);
      expect(r.json.error?.code, label).toBe('UNAUTHENTICATED');
    }
    const good = await fetch(`${app.url}${path}`, { headers: { authorization: `Bearer ${await craft(valid(tenant))}` } });
    expect(good.status).toBe(200);
    expect(Buffer.from(await good.arrayBuffer()).subarray(0, 5).toString('latin1')).toBe('%PDF-');
  });

  it('a token without media:read is 403 naming media:read', async () => {
    const token = await app.token(tenant, { scopes: ['media:create', 'media:update', 'media:delete', 'asset:read'] });
    const r = await get({ authorization: `Bearer ${token}` });
    expect(r.status).toBe(403);
    expect(r.json.error?.code).toBe('FORBIDDEN');
    expect(r.json.error?.message).toContain('media:read');
    const v = await fetch(`${app.url}/media/${mediaId}/variants/THUMB`, { headers: { authorization: `Bearer ${token}` } });
    expect(v.status).toBe(403);
  });
});

describe('unknown internal failures are masked', () => {
  const SECRET = 'postgres://admin:hunter2@10.0.0.5/prod';
  let faulty: TestApp;
  beforeAll(async () => {
    // A storage driver whose reads and presigning fail with a foreign error carrying
    // something that must never reach a client (as a driver bug or outage would).
    faulty = await startTestApp({
      storage: (_dataDir, real) => {
        const s: Storage = {
          driver: real.driver,
          put: (k, b, o) => real.put(k, b, o),
          get: async () => {
            throw new Error(`read failed for ${SECRET}`);
          },
          head: (k) => real.head(k),
          copy: (f, t) => real.copy(f, t),
          delete: (k) => real.delete(k),
          deletePrefix: (p) => real.deletePrefix(p),
          list: (p) => real.list(p),
          check: () => real.check(),
          presignGet: async () => {
            throw new TypeError(`Cannot read properties of undefined (reading '${SECRET}')`);
          },
        };
        return new Proxy(s, { get: (t, p, r) => (p in t ? Reflect.get(t, p, r) : Reflect.get(real as object, p)) }) as Storage;
      },
    });
  });
  afterAll(() => faulty?.close());

  it('a GraphQL field failing with an unknown error is INTERNAL_SERVER_ERROR with a generic message and the request id', async () => {
    const tenant = newTenant('mask');
    const token = await faulty.token(tenant);
    const { upload } = await ok(faulty.url, SecUploadDocument, { input: { file: pdf(1), entity: { type: 'property', id: 'p1' } } }, { token });
    const res = await fetch(`${faulty.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query: 'query ($id: ID!) { media(id: $id) { id url } }', variables: { id: upload.id } }),
    });
    const text = await res.text();
    expect(text).not.toContain('hunter2');
    expect(text).not.toContain('Cannot read properties');
    const body = JSON.parse(text) as { data: { media: { id: string; url: string | null } }; errors: { message: string; path: unknown[]; extensions: Record<string, unknown> }[] };
    expect(body.data.media).toEqual({ id: upload.id, url: null });
    expect(body.errors).toHaveLength(1);
    expect(body.errors[0]).toMatchObject({ message: 'Internal server error', path: ['media', 'url'], extensions: { code: 'INTERNAL_SERVER_ERROR' } });
    expect(Object.keys(body.errors[0]!.extensions).sort()).toEqual(['code', 'requestId']);
    expect(body.errors[0]!.extensions['requestId']).toBe(res.headers.get('x-request-id'));
    // Same through the typed client.
    const r = await gql(faulty.url, SecMediaUrlDocument, { id: upload.id }, { token });
    expect(codeOf(r)).toBe('INTERNAL_SERVER_ERROR');
  });

  it('a content route failing with an unknown error is 500 with a generic JSON body and the request id', async () => {
    const tenant = newTenant('mask');
    const token = await faulty.token(tenant);
    const { upload } = await ok(faulty.url, SecUploadDocument, { input: { file: pdf(1), entity: { type: 'property', id: 'p1' } } }, { token });
    const res = await fetch(`${faulty.url}${upload.contentPath}`, { headers: { authorization: `Bearer ${token}` } });
    const text = await res.text();
    expect(res.status).toBe(500);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(text).not.toContain('hunter2');
    expect(JSON.parse(text)).toEqual({ error: { code: 'INTERNAL_SERVER_ERROR', message: 'Internal server error', requestId: res.headers.get('x-request-id') } });
  });
});
