import 'reflect-metadata';
import { ApolloServer } from '@apollo/server';
import { getIntrospectionQuery, getNamedType, getNullableType, isListType, isObjectType, parse, type GraphQLSchema } from 'graphql';
import { getComplexity } from 'graphql-query-complexity';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { buildAppSchema } from '../../src/graphql/schema.js';
import {
  ApolloServerPluginQueryCost,
  costEstimator,
  FIELD_COSTS,
  introspectionSizes,
  LIST_SIZES,
  QUERY_LIMITS,
  queryLimitOptions,
} from '../../src/graphql/query-limits.js';

// Counts the cost library's visits: every call of an estimator is one field it costed.
const visits = vi.hoisted(() => ({ n: 0 }));
vi.mock('graphql-query-complexity', async (importOriginal) => {
  const real = await importOriginal<typeof import('graphql-query-complexity')>();
  return {
    ...real,
    getComplexity: (options: Parameters<typeof real.getComplexity>[0]) =>
      real.getComplexity({ ...options, estimators: options.estimators.map((e) => (a: Parameters<typeof e>[0]) => (visits.n++, e(a))) }),
  };
});

let schema: GraphQLSchema;
let server: ApolloServer;
beforeAll(async () => {
  schema = await buildAppSchema();
  server = new ApolloServer({ schema, ...queryLimitOptions(), plugins: [ApolloServerPluginQueryCost()] });
  await server.start();
});
afterAll(() => server?.stop());
beforeEach(() => {
  visits.n = 0;
});

const cost = (query: string, variables: Record<string, unknown> = {}) =>
  getComplexity({ schema, query: parse(query), variables, estimators: [costEstimator(schema)] });

/** `fragment F0 on Query { __typename }`, F<i> spreading F<i-1> twice, `query { ...F<n> }`: 2^n fields once expanded. */
function fragmentBomb(n: number): string {
  let s = 'fragment F0 on Query { __typename }\n';
  for (let i = 1; i <= n; i++) s += `fragment F${i} on Query { ...F${i - 1} ...F${i - 1} }\n`;
  return `${s}query { ...F${n} }`;
}

async function run(query: string, variables?: Record<string, unknown>) {
  const r = await server.executeOperation({ query, ...(variables ? { variables } : {}) });
  if (r.body.kind !== 'single') throw new Error('expected a single result');
  return { status: r.http.status, ...r.body.singleResult };
}

describe('the cost model', () => {
  it('sizes every list field of the schema, introspection included, and names only real fields', () => {
    const sizes = { ...LIST_SIZES, ...introspectionSizes(schema) };
    const lists: string[] = [];
    for (const type of Object.values(schema.getTypeMap())) {
      if (!isObjectType(type)) continue;
      for (const f of Object.values(type.getFields())) if (isListType(getNullableType(f.type))) lists.push(`${type.name}.${f.name}`);
    }
    expect(lists.filter((k) => !(k in sizes))).toEqual([]);
    const fieldOf = (key: string) => {
      const [t, f] = key.split('.') as [string, string];
      const type = schema.getType(t);
      return isObjectType(type) ? type.getFields()[f] : undefined;
    };
    expect(Object.keys(sizes).filter((k) => !fieldOf(k))).toEqual([]);
    expect(Object.keys(FIELD_COSTS).filter((k) => !fieldOf(k))).toEqual([]);
    // A size on a non-list field must be a page (its list is inside), never a plain object.
    for (const key of Object.keys(LIST_SIZES)) {
      const f = fieldOf(key)!;
      if (!isListType(getNullableType(f.type))) expect(Object.keys((getNamedType(f.type) as never as { getFields(): object }).getFields()), key).toEqual(expect.arrayContaining([expect.stringMatching(/^(nodes|items)$/)]));
    }
  });

  it('multiplies list fields by first, pageSize and the number of refs, from literals and variables', () => {
    // entities: 3 refs × (1 + media: 7 × (1 + nodes: 1 + id 1))
    expect(cost('{ entities(refs: [{type: "p", id: "1"}, {type: "p", id: "1"}, {type: "p", id: "2"}]) { media(first: 7) { nodes { id } } } }')).toBe(3 * (1 + 7 * (1 + 2)));
    const q = 'query($refs: [EntityInput!]!, $n: Int) { entities(refs: $refs) { media(first: $n) { nodes { id } } } }';
    const refs = Array.from({ length: 200 }, () => ({ type: 'property', id: 'p1' }));
    expect(cost(q, { refs, n: 100 })).toBe(200 * (1 + 100 * 3));
    // The schema's default (50) when first is left out; the cap (100) when it is null.
    expect(cost(q, { refs: refs.slice(0, 1) })).toBe(1 + 50 * 3);
    expect(cost(q, { refs: refs.slice(0, 1), n: null })).toBe(1 + 100 * 3);
    expect(cost('{ assets(pageSize: 20) { items { id } } mediaLibrary(pageSize: 5) { items { id } } }')).toBe(20 * 3 + 5 * 3);
    // Media.tags: at most 32; Media.variants: 4 sizes, each signed (10); a signed url: 10.
    expect(cost('{ media(id: "x") { tags variants { name } url } }')).toBe(1 + 32 + 4 * (10 + 1) + 10);
  });

  it('counts __typename and introspection like any other field', () => {
    expect(cost('{ __typename a: __typename b: __typename }')).toBe(3);
    const types = introspectionSizes(schema)['__Schema.types']!;
    expect(types).toBe(Object.keys(schema.getTypeMap()).length);
    expect(cost('{ __schema { types { name } } }')).toBe(1 + types * 2);
    expect(cost('{ a: __schema { types { name } } b: __schema { types { name } } }')).toBe(2 * (1 + types * 2));
  });

  it('charges a worker document (read whole, base64) far more than a value', () => {
    expect(cost('{ a: workerMedia(id: "1") { documentName } b: workerMedia(id: "2") { documentName } }')).toBeLessThanOrEqual(QUERY_LIMITS.maxCost);
    expect(cost('{ a: workerMedia(id: "1") { documentName } b: workerMedia(id: "2") { documentName } c: workerMedia(id: "3") { documentName } }')).toBeGreaterThan(QUERY_LIMITS.maxCost);
  });
});

describe('the limits in the Apollo pipeline', () => {
  it('lets GraphiQL introspection through, with every option graphql 16 has', async () => {
    for (const query of [getIntrospectionQuery(), getIntrospectionQuery({ descriptions: true, specifiedByUrl: true, directiveIsRepeatable: true, schemaDescription: true, inputValueDeprecation: true, oneOf: true })]) {
      const r = await run(query);
      expect(r.errors).toBeUndefined();
      expect((r.data as { __schema: { types: unknown[] } }).__schema.types.length).toBeGreaterThan(40);
    }
  });

  it('refuses fragment bombs before anything expands them: the cost library never visits them', async () => {
    // F40 expands to 2^40 fields: any step that walked spreads one by one would never finish.
    for (const n of [10, 21, 40]) {
      visits.n = 0;
      const r = await run(fragmentBomb(n));
      expect(r.data).toBeUndefined();
      expect(r.errors?.[0]?.extensions?.['code']).toBe('GRAPHQL_VALIDATION_FAILED');
      expect(r.errors?.[0]?.message).toMatch(/recursively requests too many selections/);
      expect(visits.n).toBe(0);
    }
  });

  it('costs an accepted document with shared fragments in at most maxSelections visits', async () => {
    // F8: 256 fields and 510 spreads once expanded, within the 1000 selections allowed.
    const r = await run(fragmentBomb(8));
    expect(r.errors).toBeUndefined();
    expect(r.data).toEqual({ __typename: 'Query' });
    expect(visits.n).toBe(256);
    expect(visits.n).toBeLessThanOrEqual(QUERY_LIMITS.maxSelections);
  });

  it('refuses with GRAPHQL_VALIDATION_FAILED and a 400: depth, aliases (on __typename too), directives, cost', async () => {
    const deep = `{ __schema { types { ${'ofType { '.repeat(14)}name${' }'.repeat(14)} } } }`;
    const aliases = (n: number) => `{ ${Array.from({ length: n }, (_, i) => `a${i}: __typename`).join(' ')} }`;
    const directives = (n: number) => `{ ${Array.from({ length: n }, () => '__typename @include(if: true)').join(' ')} }`;
    expect((await run(aliases(QUERY_LIMITS.maxAliases))).errors).toBeUndefined();
    expect((await run(directives(QUERY_LIMITS.maxDirectives))).errors).toBeUndefined();
    const cases: [string, RegExp][] = [
      [deep, /depth limit of 15 exceeded, found 17/],
      [aliases(QUERY_LIMITS.maxAliases + 1), /Aliases limit of 30 exceeded, found 31/],
      [directives(QUERY_LIMITS.maxDirectives + 1), /Directives limit of 20 exceeded, found 21/],
      ['query($n: Int) { entities(refs: [{type: "p", id: "1"}]) { media(first: $n) { nodes { entities { media(first: $n) { nodes { id } } } } } } }', /Query cost 602201 exceeds the limit of 50000/],
    ];
    for (const [query, message] of cases) {
      const r = await run(query, { n: 100 });
      expect(r.data, query).toBeUndefined();
      expect(r.status, query).toBe(400);
      expect(r.errors?.[0]?.extensions?.['code'], query).toBe('GRAPHQL_VALIDATION_FAILED');
      expect(r.errors?.[0]?.message, query).toMatch(message);
    }
  });

  it('stops parsing at maxTokens', async () => {
    const r = await run(`{ ${'__typename '.repeat(QUERY_LIMITS.maxTokens)} }`);
    expect(r.status).toBe(400);
    expect(r.errors?.[0]?.extensions?.['code']).toBe('GRAPHQL_PARSE_FAILED');
    expect(r.errors?.[0]?.message).toMatch(/Document contains more th.. 2000 tokens/);
  });

  it('leaves invalid variables to execution, which refuses them as BAD_USER_INPUT', async () => {
    const r = await run('query($n: Int) { mediaPolicies { entityType } entity(type: "p", id: "1") { media(first: $n) { totalCount } } }', { n: 'many' });
    expect(r.errors?.[0]?.extensions?.['code']).toBe('BAD_USER_INPUT');
    expect(r.errors?.[0]?.message).toMatch(/^Variable "\$n" got invalid value "many"/);
  });
});
