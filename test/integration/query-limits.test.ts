// Issue 10, defects 4-6 and the introspection weakness: hostile documents are
// refused quickly with GRAPHQL_VALIDATION_FAILED (the token limit, which acts in
// the parser, with GRAPHQL_PARSE_FAILED), /healthz keeps answering meanwhile, and
// legitimate operations and GraphiQL's introspection still work.
import { buildClientSchema, getIntrospectionQuery, type IntrospectionQuery } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UploadDocument } from '../generated/graphql.js';
import { newTenant, startTestApp, type TestApp } from '../helpers/app.js';
import { ok, type GraphQLErrorJson } from '../helpers/client.js';
import { pdf } from '../helpers/files.js';
import { rawPost, within } from '../helpers/security.js';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(() => app?.close());

interface Answer {
  status: number;
  bytes: number;
  data: unknown;
  errors: GraphQLErrorJson[] | undefined;
}

async function post(target: TestApp, body: unknown, token?: string): Promise<Answer> {
  const r = await rawPost(target, JSON.stringify(body), { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, 5000);
  const json = (r.json ?? {}) as { data?: unknown; errors?: GraphQLErrorJson[] };
  return { status: r.status, bytes: r.text.length, data: json.data, errors: json.errors };
}

/**
 * Sends a hostile request and, while it is in flight, a /healthz request: the
 * hostile one is refused within 5 s with `code`, a 400 and a small body, and
 * /healthz answers within 2 s (before the fix it waited for the whole request).
 */
async function expectRefusedQuickly(body: unknown, options: { token?: string; code?: string } = {}): Promise<string> {
  const hostile = post(app, body, options.token);
  await new Promise((r) => setTimeout(r, 10));
  const t0 = performance.now();
  const health = await within(fetch(`${app.url}/healthz`, { signal: AbortSignal.timeout(10_000) }), 10_000, '/healthz');
  const healthMs = performance.now() - t0;
  const r = await hostile;
  expect(health.status).toBe(200);
  expect(healthMs).toBeLessThan(2000);
  expect(r.data, JSON.stringify(r.errors)).toBeUndefined();
  expect(r.status).toBe(400);
  expect(r.errors?.[0]?.extensions?.code, JSON.stringify(r.errors)).toBe(options.code ?? 'GRAPHQL_VALIDATION_FAILED');
  expect(r.bytes).toBeLessThan(2048);
  return r.errors![0]!.message;
}

function fragmentBomb(n: number): string {
  let s = 'fragment F0 on Query { __typename }\n';
  for (let i = 1; i <= n; i++) s += `fragment F${i} on Query { ...F${i - 1} ...F${i - 1} }\n`;
  return `${s}query { ...F${n} }`;
}

const typenameAliases = (n: number) => `{${Array.from({ length: n }, (_, i) => `a${i}:__typename`).join(' ')}}`;

describe('exponential validation (defect 4)', () => {
  it('refuses the 21-level fragment bomb at once, without a token', async () => {
    const query = fragmentBomb(21);
    expect(query.length).toBeLessThan(900);
    expect(await expectRefusedQuickly({ query })).toMatch(/recursively requests too many selections/);
  });

  it('still answers documents that share fragments within the limits', async () => {
    const r = await post(app, { query: fragmentBomb(8) });
    expect(r.errors).toBeUndefined();
    expect(r.data).toEqual({ __typename: 'Query' });
  });
});

describe('introspection amplification (defect 5)', () => {
  it('refuses 50 aliased __schema each spreading 50 aliased types', async () => {
    const types = Array.from({ length: 50 }, (_, i) => `t${i}:types{name fields{name}}`).join(' ');
    const query = `fragment T on __Schema{${types}} query{${Array.from({ length: 50 }, (_, i) => `s${i}:__schema{...T}`).join(' ')}}`;
    // 2,550 aliases, and over 5,000 selections once the fragment is expanded: the selection count refuses it first.
    expect(await expectRefusedQuickly({ query })).toMatch(/recursively requests too many selections/);
  });

  it('counts introspection in the cost: two full introspections in one request exceed it', async () => {
    const full = getIntrospectionQuery();
    const fragments = full.slice(full.indexOf('fragment FullType'));
    const query = `{ a: __schema { types { ...FullType } } b: __schema { types { ...FullType } } } ${fragments}`;
    expect(await expectRefusedQuickly({ query })).toMatch(/Query cost \d+ exceeds the limit of 50000/);
  });

  it('counts aliases on __typename like any other', async () => {
    expect((await post(app, { query: typenameAliases(30) })).errors).toBeUndefined();
    expect(await expectRefusedQuickly({ query: typenameAliases(31) })).toMatch(/Aliases limit of 30 exceeded, found 31/);
  });

  it('stops parsing 58,000 aliased __typename in 1 MB at the token limit', async () => {
    const query = typenameAliases(58_000);
    expect(query.length).toBeGreaterThan(900_000);
    expect(await expectRefusedQuickly({ query }, { code: 'GRAPHQL_PARSE_FAILED' })).toMatch(/more th.. 2000 tokens/);
  });
});

describe('list amplification (defect 6)', () => {
  const entity = { type: 'property', id: 'p1' };
  let reader: string;
  beforeAll(async () => {
    const tenant = newTenant('lim');
    const writer = await app.token(tenant);
    for (let i = 0; i < 2; i++) await ok(app.url, UploadDocument, { input: { file: pdf(1, `doc-${i}.pdf`), entity } }, { token: writer });
    reader = await app.token(tenant, { scopes: ['media:read'] });
  });

  it('refuses 200 refs of the same entity nesting media(first: 100) twice, with media:read only', async () => {
    const query = 'query($refs: [EntityInput!]!) { entities(refs: $refs) { media(first: 100) { nodes { entities { media(first: 100) { nodes { id url } } } } } } }';
    const message = await expectRefusedQuickly({ query, variables: { refs: Array.from({ length: 200 }, () => entity) } }, { token: reader });
    expect(message).toMatch(/Query cost \d+ exceeds the limit of 50000/);
  });

  it('costs each shape of the variables on its own: the same query text, cheap with 2 refs, is refused with 200', async () => {
    const query = 'query($refs: [EntityInput!]!, $n: Int) { entities(refs: $refs) { media(first: $n) { nodes { id url } } } }';
    const cheap = await post(app, { query, variables: { refs: [entity, entity], n: 10 } }, reader);
    expect(cheap.errors).toBeUndefined();
    // Other ids, same shape: answered (from the remembered cost).
    const otherIds = await post(app, { query, variables: { refs: [{ ...entity, id: 'other-1' }, { ...entity, id: 'other-2' }], n: 10 } }, reader);
    expect(otherIds.errors).toBeUndefined();
    await expectRefusedQuickly({ query, variables: { refs: Array.from({ length: 200 }, () => entity), n: 100 } }, { token: reader });
  });

  it('answers the same entities with a page that fits', async () => {
    const query = 'query($refs: [EntityInput!]!) { entities(refs: $refs) { media(first: 10) { nodes { id url } } } }';
    const r = await post(app, { query, variables: { refs: [entity, entity] } }, reader);
    expect(r.errors).toBeUndefined();
    const entities = (r.data as { entities: { media: { nodes: { id: string; url: string }[] } }[] }).entities;
    expect(entities.map((e) => e.media.nodes.length)).toEqual([2, 2]);
  });
});

describe('legitimate clients', () => {
  it("answers GraphiQL's introspection query (introspection is on outside production)", async () => {
    const r = await post(app, { query: getIntrospectionQuery(), operationName: 'IntrospectionQuery' });
    expect(r.errors).toBeUndefined();
    const schema = buildClientSchema(r.data as IntrospectionQuery);
    expect(Object.keys(schema.getQueryType()!.getFields())).toContain('entities');
  });
});

describe('with introspection off (the production default)', () => {
  let prod: TestApp;
  beforeAll(async () => {
    prod = await startTestApp({ env: { NODE_ENV: 'production' } });
  });
  afterAll(() => prod?.close());

  const both = async (body: unknown) => ({ dev: await post(app, body), prod: await post(prod, body) });

  it('refuses introspection', async () => {
    const r = await post(prod, { query: getIntrospectionQuery() });
    expect(r.status).toBe(400);
    expect(r.errors?.[0]?.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(r.errors?.[0]?.message).toMatch(/introspection/i);
  });

  it('suggests no field names in validation errors', async () => {
    const { dev, prod: p } = await both({ query: '{ mediaPolicie { entityType } }' });
    expect(dev.errors?.[0]?.message).toMatch(/Did you mean "mediaPolicies"/);
    expect(p.errors?.[0]?.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(p.errors?.[0]?.message).toBe('Cannot query field "mediaPolicie" on type "Query".');
  });

  it('names no input fields, enum values or suggestions in variable errors', async () => {
    const entityQuery = { query: 'query($e: EntityInput!) { mediaForEntity(entity: $e) { totalCount } }', variables: { e: { id: 'x', tipe: 'property' } } };
    const { dev, prod: p } = await both(entityQuery);
    expect(dev.errors?.map((e) => e.message).join(' ')).toMatch(/Field "type" of required type "String!" was not provided/);
    expect(p.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(p.errors?.map((e) => e.message)).toEqual(['Variable "$e" got invalid value { id: "x", tipe: "property" }.', 'Variable "$e" got invalid value { id: "x", tipe: "property" }.']);

    const roleQuery = { query: 'query($r: MediaRole!) { mediaByRole(entity: {type: "p", id: "1"}, role: $r) { id } }', variables: { r: 'AVATA' } };
    const roles = await both(roleQuery);
    expect(roles.dev.errors?.[0]?.message).toMatch(/Did you mean the enum value "AVATAR"/);
    expect(roles.prod.errors?.map((e) => e.message)).toEqual(['Variable "$r" got invalid value "AVATA".']);
    for (const e of [...(p.errors ?? []), ...(roles.prod.errors ?? [])]) expect(e.message).not.toMatch(/Did you mean|String!|AVATAR|"type"/);
  });
});
