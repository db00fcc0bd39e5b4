import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { CreateAssetDocument, CreateDirectUploadDocument, UploadDocument } from '../generated/graphql.js';
import { newTenant, startTestApp, STORAGE_DRIVER, type TestApp } from '../helpers/app.js';
import { ok } from '../helpers/client.js';
import { jpeg, pdfBytes, png } from '../helpers/files.js';
import { serviceUploadUrl } from '../helpers/direct-put.js';

/**
 * CORS at the HTTP level (the browser itself: cors-browser.test.ts). The app
 * lists two origins; a second app lists none (the default).
 */
const LISTED = 'http://127.0.0.1:5173';
const ALSO_LISTED = 'https://app.example.com';
/** Origins that are not on the list: another port, another host name for the same address, an opaque origin. */
const UNLISTED = ['http://127.0.0.1:5174', 'http://localhost:5173', 'https://app.example.com.evil.example', 'null'];

let app: TestApp;
let plain: TestApp;
let tenant: string;
let token: string;
let mediaId: string;
let publicAssetUrl: string;
let privateAssetPath: string;
beforeAll(async () => {
  [app, plain] = await Promise.all([startTestApp({ env: { CORS_ORIGINS: `${LISTED}, ${ALSO_LISTED}` } }), startTestApp()]);
  tenant = newTenant('co');
  token = await app.token(tenant);
  const media = (await ok(app.url, UploadDocument, { input: { file: await jpeg(64, 48, 'cors.jpg'), entity: { type: 'property', id: 'co-1' } } }, { token })).upload;
  mediaId = media.id;
  const pub = (await ok(app.url, CreateAssetDocument, { input: { type: 'BLOB', access: 'PUBLIC', key: 'logo', file: await png(40, 20, 'logo.png') } }, { token })).createAsset;
  publicAssetUrl = pub.publicUrl!;
  await ok(app.url, CreateAssetDocument, { input: { type: 'BLOB', access: 'PRIVATE', key: 'secret', file: await png(40, 20, 'secret.png') } }, { token });
  privateAssetPath = `/tenants/${tenant}/assets/secret`;
});
afterAll(() => Promise.all([app?.close(), plain?.close()]));

const preflight = (base: string, path: string, origin: string, method: string, requestHeaders: string) =>
  fetch(`${base}${path}`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': requestHeaders } });

const list = (value: string | null) => (value ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
const corsHeaders = (res: Response) => [...res.headers.keys()].filter((k) => k.startsWith('access-control-'));

/** One route of each family a browser front end calls, with what its preflight asks for. */
const ROUTES: [family: string, path: () => string, method: string, headers: string][] = [
  ['GraphQL (multipart upload)', () => '/graphql', 'POST', 'apollo-require-preflight,authorization'],
  ['GraphQL (JSON)', () => '/graphql', 'POST', 'authorization,content-type'],
  ['media content', () => `/media/${mediaId}/content`, 'GET', 'authorization,range'],
  ['media variant', () => `/media/${mediaId}/variants/THUMB`, 'GET', 'authorization,if-none-match'],
  ['asset download', () => '/assets/00000000-0000-0000-0000-000000000000/download', 'GET', 'authorization'],
  ['asset by key', () => privateAssetPath, 'GET', 'authorization'],
  ['local direct-upload PUT', () => '/direct-uploads/some-signed-id', 'PUT', 'content-type,content-md5'],
];

describe(`CORS (${STORAGE_DRIVER})`, () => {
  describe.each(ROUTES)('preflight: %s', (_family, path, method, requestHeaders) => {
    it('is answered for a listed origin: that origin, the methods and headers asked for, cached 600 s, no credentials', async () => {
      for (const origin of [LISTED, ALSO_LISTED]) {
        const res = await preflight(app.url, path(), origin, method, requestHeaders);
        expect(res.status).toBe(204);
        expect(res.headers.get('access-control-allow-origin')).toBe(origin);
        expect(list(res.headers.get('access-control-allow-methods'))).toContain(method.toLowerCase());
        expect(list(res.headers.get('access-control-allow-headers'))).toEqual(expect.arrayContaining(list(requestHeaders)));
        expect(res.headers.get('access-control-max-age')).toBe('600');
        expect(res.headers.get('access-control-allow-credentials')).toBeNull();
        expect(list(res.headers.get('vary'))).toContain('origin');
      }
    });

    it('gets no CORS headers for an origin not on the list', async () => {
      for (const origin of UNLISTED) {
        const res = await preflight(app.url, path(), origin, method, requestHeaders);
        expect(corsHeaders(res), origin).toEqual([]);
        expect(list(res.headers.get('vary'))).toContain('origin');
      }
    });

    it('gets no CORS headers at all when CORS_ORIGINS is unset', async () => {
      const res = await preflight(plain.url, path(), LISTED, method, requestHeaders);
      expect(corsHeaders(res)).toEqual([]);
    });
  });

  it('lists the Authorization and Apollo-Require-Preflight headers and exposes the useful response headers', async () => {
    const res = await preflight(app.url, '/graphql', LISTED, 'POST', 'authorization');
    expect(list(res.headers.get('access-control-allow-headers'))).toEqual(
      expect.arrayContaining(['authorization', 'content-type', 'apollo-require-preflight', 'x-apollo-operation-name', 'content-md5', 'range', 'if-none-match']),
    );
    // x-worker-type / x-tenant-id are for workers, which are not browsers.
    expect(list(res.headers.get('access-control-allow-headers'))).not.toContain('x-worker-type');
    const actual = await fetch(`${app.url}/graphql`, {
      method: 'POST',
      headers: { origin: LISTED, 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query: '{ __typename }' }),
    });
    expect(actual.status).toBe(200);
    expect(actual.headers.get('access-control-allow-origin')).toBe(LISTED);
    expect(list(actual.headers.get('access-control-expose-headers'))).toEqual(
      expect.arrayContaining(['etag', 'content-disposition', 'content-length', 'content-range', 'accept-ranges', 'retry-after', 'x-request-id']),
    );
  });

  it('answers a listed origin on the content routes, refusals included; an unlisted one gets no CORS headers', async () => {
    const contentUrl = `${app.url}/media/${mediaId}/content`;
    const content = await fetch(contentUrl, { headers: { origin: LISTED, range: 'bytes=0-9', authorization: `Bearer ${token}` } });
    expect(content.status).toBe(206);
    expect(content.headers.get('access-control-allow-origin')).toBe(LISTED);
    expect(list(content.headers.get('access-control-expose-headers'))).toEqual(expect.arrayContaining(['content-range', 'etag', 'content-disposition']));
    expect(list(content.headers.get('vary'))).toContain('origin');
    // A refusal is readable too: the front end sees the 401, not a network error.
    const refused = await fetch(contentUrl, { headers: { origin: LISTED } });
    expect(refused.status).toBe(401);
    expect(refused.headers.get('access-control-allow-origin')).toBe(LISTED);
    for (const origin of UNLISTED) {
      const other = await fetch(contentUrl, { headers: { origin, authorization: `Bearer ${token}` } });
      // CORS is no access control: the token is the credential; the browser withholds the answer from the page.
      expect(other.status).toBe(200);
      expect(corsHeaders(other)).toEqual([]);
      expect(list(other.headers.get('vary'))).toContain('origin');
    }
  });

  it('lets any origin read a PUBLIC asset; a PRIVATE or missing one only the listed origins', async () => {
    for (const headers of [{ origin: UNLISTED[0]! }, { origin: LISTED }, {} as Record<string, string>]) {
      const res = await fetch(publicAssetUrl, { headers });
      expect(res.status).toBe(200);
      expect(res.headers.get('access-control-allow-origin')).toBe('*');
      expect(list(res.headers.get('access-control-expose-headers'))).toContain('etag');
      expect(res.headers.get('access-control-allow-credentials')).toBeNull();
    }
    const priv = await fetch(`${app.url}${privateAssetPath}`, { headers: { origin: UNLISTED[0]! } });
    expect(priv.status).toBe(401);
    expect(corsHeaders(priv)).toEqual([]);
    const privListed = await fetch(`${app.url}${privateAssetPath}`, { headers: { origin: LISTED, authorization: `Bearer ${token}` } });
    expect(privListed.status).toBe(200);
    expect(privListed.headers.get('access-control-allow-origin')).toBe(LISTED);
    const missing = await fetch(`${app.url}/tenants/${tenant}/assets/nothing-here?handleError=true`, { headers: { origin: UNLISTED[0]! } });
    expect(missing.status).toBe(204);
    expect(corsHeaders(missing)).toEqual([]);
    // CORS off: a public asset carries no CORS header either.
    const plainToken = await plain.token(newTenant('co'));
    const plainPub = (await ok(plain.url, CreateAssetDocument, { input: { type: 'BLOB', access: 'PUBLIC', key: 'logo', file: await png(40, 20, 'logo.png') } }, { token: plainToken })).createAsset;
    const off = await fetch(plainPub.publicUrl!, { headers: { origin: LISTED } });
    expect(off.status).toBe(200);
    expect(corsHeaders(off)).toEqual([]);
  });

  it('answers a listed origin on the local direct-upload PUT', async () => {
    const bytes = pdfBytes(1);
    const ticket = (
      await ok(
        app.url,
        CreateDirectUploadDocument,
        { input: { filename: 'doc.pdf', contentType: 'application/pdf', byteSize: bytes.length, checksum: createHash('sha256').update(bytes).digest('base64') } },
        { token },
      )
    ).createDirectUpload;
    const res = await fetch(serviceUploadUrl(app.url, ticket.signedId), { method: 'PUT', headers: { origin: LISTED, 'content-type': 'application/pdf' }, body: bytes });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(LISTED);
  });

  it('leaves routes that are not for browsers alone', async () => {
    for (const path of ['/healthz', '/readyz']) {
      const res = await fetch(`${app.url}${path}`, { headers: { origin: LISTED } });
      expect(corsHeaders(res)).toEqual([]);
    }
    const res = await preflight(app.url, '/metrics', LISTED, 'GET', 'authorization');
    expect(corsHeaders(res)).toEqual([]);
  });
});
