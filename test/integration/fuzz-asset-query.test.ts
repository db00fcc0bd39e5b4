import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AssetsDocument, CreateAssetDocument } from '../generated/graphql.js';
import { startTestApp, newTenant, type TestApp } from '../helpers/app.js';
import { gql, ok } from '../helpers/client.js';
import { recordUncaught } from '../helpers/security.js';
import { CLIENT_CODES, expectHealthy, fuzzParameters } from '../helpers/fuzz.js';
import { ASSET_FIELDS } from '../../src/modules/assets/query-language.js';

// Property-based fuzzing of assets(q:, sort:) over HTTP against the real PostgreSQL
// (issue 10): whatever the query, the answer comes within a few seconds with data or
// client codes only (PostgreSQL's own refusals of a regular expression included),
// and the process stays healthy. The parser alone is fuzzed far more in
// test/unit/query-language-fuzz.test.ts; this checks what reaches the database.

let app: TestApp;
let token: string;
const uncaught = recordUncaught('all');

beforeAll(async () => {
  app = await startTestApp();
  const tenant = newTenant('fzq');
  token = await app.token(tenant);
  for (const [i, key] of ['hero', 'spring/sale', 'Docs.pdf'].entries()) {
    await ok(app.url, CreateAssetDocument, { input: { type: 'LINK', access: i ? 'PRIVATE' : 'PUBLIC', key, url: `https://cdn.example.com/${i}`, refIds: [{ id: `p-${i}`, type: 'PRODUCT' }], priority: i } }, { token });
  }
});
afterAll(async () => {
  await app?.close();
});

const fields = Object.keys(ASSET_FIELDS);
const value = fc.oneof(
  fc.constantFrom('PUBLIC', 'LINK', '1', '-5', '99999999999', 'null', 'exists', '"2021-05-18T07:27:27.455Z"', '"x y"', 'p-1', 'true'),
  fc.string({ maxLength: 12 }).filter((s) => !/[\s()":,]/.test(s) && s.length > 0),
);
const regex = fc.oneof(
  fc.constantFrom('^h', '(?i)SALE', '[', '(', 'a{2,1}', '\\', '(a)\\2', '^(.*)(.*)\\2\\1$', '[[:alpha:]]+', '(?=x)', 'x**', '.*'),
  fc.string({ maxLength: 20 }).filter((s) => !/[\s"]/.test(s) && s.length > 0),
);
const term = fc.oneof(
  fc.tuple(fc.constantFrom(...fields), value).map(([f, v]) => `${f}:${v}`),
  fc.tuple(fc.constantFrom(...fields), regex).map(([f, r]) => `${f}:~${r}`),
  fc.tuple(fc.constantFrom(...fields), fc.constantFrom('>', '<', '>=', '<='), value).map(([f, op, v]) => `${f}:${op}${v}`),
  fc.tuple(fc.constantFrom(...fields), fc.array(value, { minLength: 1, maxLength: 4 })).map(([f, vs]) => `${f}:(${vs.join(',')})`),
  fc.tuple(fc.constantFrom(...fields), regex).map(([f, r]) => `${f}:(~${r})`),
  fc.string({ maxLength: 30 }),
);
const sort = fc.option(
  fc.array(fc.tuple(fc.constantFrom(...fields, 'nope'), fc.constantFrom('', ':desc', ':DESC', ':x')), { maxLength: 4 }).map((k) => k.map(([f, d]) => `${f}${d}`).join(',')),
);

describe('fuzz: assets(q:, sort:) against PostgreSQL', () => {
  it('answers with data or client codes within a few seconds, the process healthy', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(term, { minLength: 1, maxLength: 4 }), sort, fc.integer({ min: 1, max: 3 }), async (terms, s, pageNumber) => {
        const q = terms.join(' ');
        const started = Date.now();
        const r = await gql(app.url, AssetsDocument, { q, sort: s, pageNumber, pageSize: 10 }, { token });
        expect(Date.now() - started, q).toBeLessThan(5000);
        expect(r.status, q).toBeLessThan(500);
        for (const e of r.errors ?? []) expect(CLIENT_CODES.has(e.extensions?.code ?? ''), `${q} ${JSON.stringify(r.errors)}`).toBe(true);
        if (!r.errors) expect(Array.isArray(r.data?.assets.items)).toBe(true);
        await expectHealthy(app, uncaught);
      }),
      fuzzParameters(150),
    );
  }, 240_000);
});
