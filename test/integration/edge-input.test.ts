import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import {
  AssetsDocument,
  CreateAssetDocument,
  EntitiesWithMediaAndRolesDocument,
  EntityDocument,
  MediaForEntityDocument,
  MediaLibraryDocument,
  SearchByTagsDocument,
  UpdateAssetDocument,
} from '../generated/graphql.js';
import { newTenant, startTestApp, type TestApp } from '../helpers/app.js';
import { codeOf, gql, ok, type GqlResult } from '../helpers/client.js';
import { rawPost } from '../helpers/security.js';

// Input PostgreSQL cannot store as text (a NUL, an unpaired surrogate) and a
// cursor outside timestamptz's range are the client's fault: BAD_USER_INPUT at the
// edge, before any resolver or route touches the database, and no error log line.

let app: TestApp;
let tenant: string;
let token: string;
beforeAll(async () => {
  app = await startTestApp();
  tenant = newTenant('edge');
  token = await app.token(tenant);
});
afterAll(() => app?.close());

const NUL = 'a\u0000b';
const LONE = 'a\ud800b';

/** Log lines at error level or above written so far. */
const errorLogs = () => app.logs.filter((l) => typeof l['level'] === 'number' && (l['level'] as number) >= 50);

/**
 * A refused GraphQL answer: one BAD_USER_INPUT error naming `field`, no data,
 * nothing logged as an error; HTTP 400 when refused at the edge (before execution,
 * like Apollo's own variable errors), 200 when a resolver refused it.
 */
async function expectRefused(run: () => Promise<GqlResult<unknown>>, field: string, status = 400): Promise<void> {
  const before = errorLogs().length;
  const r = await run();
  expect(r.errors, JSON.stringify(r)).toHaveLength(1);
  expect(codeOf(r), JSON.stringify(r.errors)).toBe('BAD_USER_INPUT');
  expect(r.errors![0]!.extensions?.field).toBe(field);
  expect(r.data ?? null).toBeNull();
  expect(r.status).toBe(status);
  expect(errorLogs().slice(before)).toEqual([]);
}

/** A raw JSON GraphQL request (for string literals in the document). */
async function raw(query: string, variables: Record<string, unknown> = {}): Promise<GqlResult<unknown>> {
  const r = await rawPost(app, JSON.stringify({ query, variables }), { 'content-type': 'application/json', authorization: `Bearer ${token}` });
  const json = r.json as { data?: unknown; errors?: GqlResult<unknown>['errors'] };
  return { status: r.status, data: json.data, errors: json.errors };
}

/** The earliest instant timestamptz holds: 4714-11-24 BC 00:00 UTC (Julian day 0). */
const PG_MIN_TIME = Date.UTC(-4713, 10, 24);
const cursorAt = (t: number) => Buffer.from(JSON.stringify([new Date(t).toISOString(), '00000000-0000-4000-8000-000000000000'])).toString('base64url');

describe('GraphQL: strings PostgreSQL cannot store are refused before any resolver', () => {
  it.each([
    ['a NUL', NUL],
    ['an unpaired surrogate', LONE],
  ])('%s in an entity id (variable)', async (_n, bad) => {
    await expectRefused(() => gql(app.url, EntityDocument, { type: 'property', id: bad }, { token }), 'id');
  });

  it('a NUL in a string literal of the document, and in a variable default', async () => {
    await expectRefused(() => raw('{ entity(type: "property", id: "a\\u0000b") { id media { totalCount } } }'), 'id');
    await expectRefused(() => raw('query ($s: String = "x\\u0000") { mediaLibrary(search: $s) { total } }'), 'search');
    // the same literal inside a fragment
    await expectRefused(() => raw('query { ...F } fragment F on Query { assets(q: "name:\\u0000") { totalCount } }'), 'q');
  });

  it('a NUL in mediaLibrary(search:)', async () => {
    await expectRefused(() => gql(app.url, MediaLibraryDocument, { search: NUL }, { token }), 'search');
  });

  it.each([
    ['a value', `name:${NUL}`],
    ['a regular expression', `name:~${NUL}`],
    ['a list of values', `id:(x,${NUL})`],
  ])('a NUL in %s of assets(q:)', async (_n, q) => {
    await expectRefused(() => gql(app.url, AssetsDocument, { q }, { token }), 'q');
  });

  it('a NUL or unpaired surrogate deep in an input object names its path; nothing is stored', async () => {
    const input = (id: string) => ({ type: 'LINK' as const, access: 'PUBLIC' as const, url: 'https://example.com/a', refIds: [{ id: 'ok', type: 'PRODUCT' }, { id, type: 'PRODUCT' }] });
    await expectRefused(() => gql(app.url, CreateAssetDocument, { input: input(NUL) }, { token }), 'input.refIds.1.id');
    await expectRefused(() => gql(app.url, CreateAssetDocument, { input: input(LONE) }, { token }), 'input.refIds.1.id');
    // a text column would silently hold U+FFFD instead of what was sent
    await expectRefused(() => gql(app.url, CreateAssetDocument, { input: { ...input('ok'), name: LONE } }, { token }), 'input.name');
    expect(await app.db.prisma.asset.count({ where: { tenantId: tenant } })).toBe(0);
    const version = 1;
    await expectRefused(() => gql(app.url, UpdateAssetDocument, { id: '00000000-0000-4000-8000-000000000000', input: { version, refIds: [{ id: NUL, type: 'X' }] } }, { token }), 'input.refIds.0.id');
  });

  it('a NUL in a list of entity refs and in a tag', async () => {
    await expectRefused(() => gql(app.url, EntitiesWithMediaAndRolesDocument, { refs: [{ type: 'property', id: 'p' }, { type: 'property', id: NUL }] }, { token }), 'refs.1.id');
    await expectRefused(() => gql(app.url, SearchByTagsDocument, { tags: ['x', NUL] }, { token }), 'tags.1');
  });

  it('a NUL in a variable the operation does not use is refused too (every string sent is checked)', async () => {
    const r = await raw('query ($id: ID!) { media(id: $id) { id } }', { id: 'x', extra: { deep: [NUL] } });
    expect(codeOf(r), JSON.stringify(r)).toBe('BAD_USER_INPUT');
    expect(r.errors![0]!.extensions?.field).toBe('$extra.deep.0');
  });

  it('ordinary text (accents, emoji, right-to-left scripts) passes', async () => {
    const r = await ok(app.url, MediaLibraryDocument, { search: 'é 🏠 עברית \u200f' }, { token });
    expect(r.mediaLibrary.total).toBe(0);
  });
});

describe('cursors outside the range PostgreSQL stores are BAD_USER_INPUT', () => {
  it.each([
    ['10000 BC', Date.UTC(-9999, 0, 1)],
    ['one millisecond before 4714-11-24 BC', PG_MIN_TIME - 1],
    ['the earliest JavaScript date', -8.64e15],
  ])('%s on mediaForEntity, Entity.media and searchByTags', async (_n, t) => {
    const after = cursorAt(t);
    const entity = { type: 'property', id: 'p-1' };
    await expectRefused(() => gql(app.url, MediaForEntityDocument, { entity, after }, { token }), 'after', 200);
    await expectRefused(() => gql(app.url, SearchByTagsDocument, { tags: ['x'], after }, { token }), 'after', 200);
    const before = errorLogs().length;
    const r = await gql(app.url, EntityDocument, { ...entity, after }, { token });
    expect(codeOf(r), JSON.stringify(r.errors)).toBe('BAD_USER_INPUT');
    expect(r.errors![0]!.extensions?.field).toBe('after');
    expect(errorLogs().slice(before)).toEqual([]);
  });

  it('the ends of the range are accepted by PostgreSQL: the earliest it holds, and the latest JavaScript date', async () => {
    const entity = { type: 'property', id: 'p-1' };
    for (const t of [PG_MIN_TIME, 8.64e15]) {
      const r = await ok(app.url, MediaForEntityDocument, { entity, after: cursorAt(t) }, { token });
      expect(r.mediaForEntity.totalCount).toBe(0);
      const s = await ok(app.url, SearchByTagsDocument, { tags: ['x'], after: cursorAt(t) }, { token });
      expect(s.searchByTags.nodes).toEqual([]);
    }
  });
});

interface RawHttp {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A request with the exact bytes of `path` on the request line (fetch would normalise it). */
function request(method: string, path: string, headers: Record<string, string> = {}): Promise<RawHttp> {
  const { port } = new URL(app.url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} did not answer`)));
    req.end(method === 'PUT' ? 'x' : undefined);
  });
}

/** A JSON error body with nosniff, the status and code expected. */
function expectJsonError(r: RawHttp, status: number, code: string): void {
  expect(r.status, r.body).toBe(status);
  expect(r.headers['content-type']).toMatch(/^application\/json\b/);
  expect(r.headers['x-content-type-options']).toBe('nosniff');
  expect((JSON.parse(r.body) as { error: { code: string } }).error.code).toBe(code);
}

describe('HTTP routes: a NUL or a broken percent-encoding in path or query is 400 BAD_USER_INPUT', () => {
  const paths = (t: string) => [
    ['GET', '/media/%00/content'],
    ['GET', '/media/00000000-0000-4000-8000-000000000000/variants/THUMB%00'],
    ['GET', '/media/00000000-0000-4000-8000-000000000000/content?token=%00'],
    ['GET', '/media/%E0%A4%A/content'],
    ['GET', '/assets/%00/download'],
    ['GET', '/assets/00000000-0000-4000-8000-000000000000/download?variant=a%00'],
    ['GET', `/tenants/${t}/assets/%00`],
    ['GET', `/tenants/${t}/assets/a%00b?handleError=true`],
    ['GET', `/tenants/${t}/assets/dir/a%00`],
    ['GET', `/tenants/${t}/assets/key?handleError=%00`],
    ['GET', `/tenants/${t}/assets/key?handleError=%E0`],
    ['GET', `/tenants/${t}/assets/key?%00=1`],
    ['GET', `/tenants/${t}/assets/%ED%A0%80`], // an encoded lone surrogate is not UTF-8
    ['GET', `/tenants/${t}%00/assets/key`],
    ['PUT', '/direct-uploads/a%00b'],
    ['PUT', '/direct-uploads/a%zz'],
  ];

  it.each([
    ['with a token', true],
    ['without a token', false],
  ])('%s', async (_n, withToken) => {
    const before = errorLogs().length;
    for (const [method, path] of paths(tenant)) {
      const r = await request(method!, path!, withToken ? { authorization: `Bearer ${token}` } : {});
      expect.soft(r.status, `${method} ${path}: ${r.body}`).toBe(400);
      expectJsonError(r, 400, 'BAD_USER_INPUT');
    }
    expect(errorLogs().slice(before)).toEqual([]);
  });

  it('a NUL in the query string of /graphql is a GraphQL-shaped 400', async () => {
    const r = await request('GET', '/graphql?query=%7B__typename%7D&x=%00', { 'apollo-require-preflight': '1' });
    expect(r.status).toBe(400);
    expect(r.headers['x-content-type-options']).toBe('nosniff');
    const body = JSON.parse(r.body) as { errors: { extensions: { code: string; field: string } }[] };
    expect(body.errors[0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'x' });
  });

  it('ordinary encoded paths still work', async () => {
    const r = await request('GET', `/tenants/${tenant}/assets/caf%C3%A9?handleError=true`);
    expect(r.status).toBe(204);
  });
});

describe('every JSON error body carries nosniff', () => {
  it('the 404 fallback, whose message echoes a path holding HTML', async () => {
    const r = await request('GET', '/<script>alert(1)</script>/<img/src=x/onerror=alert(1)>');
    expectJsonError(r, 404, 'NOT_FOUND');
    expect(r.body).toContain('No route for GET');
    expect(r.body).toContain('<script>');
  });

  it('errors of the content, asset and direct-upload routes', async () => {
    expectJsonError(await request('GET', '/media/00000000-0000-4000-8000-000000000000/content'), 401, 'UNAUTHENTICATED');
    expectJsonError(await request('GET', '/media/00000000-0000-4000-8000-000000000000/content', { authorization: `Bearer ${token}` }), 404, 'NOT_FOUND');
    expectJsonError(await request('GET', `/tenants/${tenant}/assets/<b>missing</b>`), 404, 'NOT_FOUND');
    expectJsonError(await request('GET', '/assets/00000000-0000-4000-8000-000000000000/download'), 401, 'UNAUTHENTICATED');
    expectJsonError(await request('PUT', '/direct-uploads/forged'), 403, 'FORBIDDEN');
  });

  it('the final error handler (a malformed JSON body) and GraphQL answers', async () => {
    const bad = await rawPost(app, '{"query": ', { 'content-type': 'application/json' });
    expect(bad.status).toBe(400);
    expect(bad.headers.get('x-content-type-options')).toBe('nosniff');
    expect(bad.headers.get('content-type')).toMatch(/^application\/json\b/);
    const refused = await rawPost(app, JSON.stringify({ query: '{ nope }' }), { 'content-type': 'application/json' });
    expect(refused.headers.get('x-content-type-options')).toBe('nosniff');
  });
});
