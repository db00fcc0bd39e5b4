import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { MAX_OPERATION_NAMES, Metrics, operationNameOf } from '../../src/http/metrics.js';
import { bearerMatches } from '../../src/http/metrics-server.js';
import { RequestFacts, MAX_LOGGED_MEDIA_IDS } from '../../src/http/request-facts.js';
import { instrumentStorage, type StorageOutcome } from '../../src/storage/instrumented.js';
import { errors } from '../../src/errors/index.js';
import type { ListedObject, Storage } from '../../src/storage/index.js';
import { loadConfig } from '../../src/config.js';

async function series(m: Metrics, name: string): Promise<{ labels: Record<string, string | number>; value: number }[]> {
  const metric = await m.registry.getSingleMetric(name)!.get();
  return metric.values.map((v) => ({ labels: v.labels as Record<string, string | number>, value: v.value }));
}

describe('graphql_operations_total', () => {
  it('labels well-formed names, at most MAX_OPERATION_NAMES of them; the rest is "other"', async () => {
    const m = new Metrics();
    for (let i = 0; i < MAX_OPERATION_NAMES + 50; i++) m.graphqlOperation(`Op${i}`, []);
    m.graphqlOperation('Op0', ['NOT_FOUND']);
    m.graphqlOperation('not a name!', []);
    m.graphqlOperation('x'.repeat(65), []);
    m.graphqlOperation(undefined, []);
    m.graphqlOperation('Op1', ['weird code']);
    const values = await series(m, 'graphql_operations_total');
    const names = new Set(values.map((v) => v.labels['operation']));
    expect(names.size).toBe(MAX_OPERATION_NAMES + 2); // + other, anonymous
    expect(values.find((v) => v.labels['operation'] === 'other' && v.labels['outcome'] === 'ok')?.value).toBe(50 + 2);
    expect(values.find((v) => v.labels['operation'] === 'anonymous')?.value).toBe(1);
    expect(values.find((v) => v.labels['operation'] === 'Op0' && v.labels['outcome'] === 'NOT_FOUND')?.value).toBe(1);
    expect(values.find((v) => v.labels['operation'] === 'Op1' && v.labels['outcome'] === 'other')?.value).toBe(1);
  });

  it('logs only well-formed names', () => {
    expect(operationNameOf('GetMedia')).toBe('GetMedia');
    expect(operationNameOf('<script>')).toBe('invalid');
    expect(operationNameOf(null)).toBeUndefined();
  });
});

describe('RequestFacts', () => {
  it('keeps the first media ids and says when there were more', () => {
    const f = new RequestFacts();
    for (let i = 0; i < MAX_LOGGED_MEDIA_IDS + 5; i++) f.touchMedia(`m${i}`);
    f.touchMedia('m0');
    expect(f.mediaIds.size).toBe(MAX_LOGGED_MEDIA_IDS);
    expect(f.mediaIdsTruncated).toBe(true);
  });

  it('names a worker by its type, never its key', () => {
    const f = new RequestFacts();
    f.principal({ kind: 'worker', tenant: 'acme', workerType: 'esign' });
    expect({ tenant: f.tenant, subject: f.subject }).toEqual({ tenant: 'acme', subject: 'worker:esign' });
  });
});

describe('instrumentStorage', () => {
  const base = {
    driver: 'local' as const,
    put: async (_k: string, body: Readable) => {
      body.resume();
      return { size: 1 };
    },
    get: async (key: string) => {
      if (key === 'missing') throw errors.notFound('Object', key);
      throw new Error('down');
    },
    head: async () => null,
    copy: async () => undefined,
    delete: async () => undefined,
    deletePrefix: async () => undefined,
    list: async () => [],
    check: async () => undefined,
  };

  it('times calls by operation and outcome, and leaves optional methods absent', async () => {
    const seen: [string, StorageOutcome][] = [];
    const s = instrumentStorage(base as Storage, (op, outcome) => seen.push([op, outcome]));
    expect(s.driver).toBe('local');
    expect(s.listPages).toBeUndefined();
    expect(s.presignGet).toBeUndefined();
    expect('now' in s).toBe(false);
    await s.put('k', Readable.from([Buffer.from('x')]));
    await expect(s.get('missing')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(s.get('other')).rejects.toThrow('down');
    expect(seen).toEqual([
      ['put', 'ok'],
      ['get', 'not_found'],
      ['get', 'error'],
    ]);
  });

  it('times listPages page by page and passes driver-specific members through', async () => {
    const seen: string[] = [];
    class Driver {
      readonly driver = 's3' as const;
      readonly client = { name: 'sdk' };
      #pages = [[{ key: 'a', size: 1, lastModified: new Date() }], [{ key: 'b', size: 1, lastModified: new Date() }]];
      async *listPages(): AsyncIterable<ListedObject[]> {
        for (const p of this.#pages) yield p;
      }
    }
    const d = new Driver();
    const wrapped = instrumentStorage(d as unknown as Storage, (op) => seen.push(op));
    expect(wrapped instanceof Driver).toBe(true);
    expect((wrapped as unknown as Driver).client.name).toBe('sdk');
    const keys: string[] = [];
    for await (const page of wrapped.listPages!('')) keys.push(...page.map((o) => o.key));
    expect(keys).toEqual(['a', 'b']);
    expect(seen).toEqual(['listPages', 'listPages', 'listPages']);
  });
});

describe('METRICS_TOKEN', () => {
  it('matches exactly one bearer token', () => {
    const token = 't'.repeat(16) + 'u'.repeat(16);
    expect(bearerMatches(`Bearer ${token}`, token)).toBe(true);
    expect(bearerMatches(`bearer ${token}`, token)).toBe(true);
    expect(bearerMatches(`Bearer ${token}x`, token)).toBe(false);
    expect(bearerMatches(token, token)).toBe(false);
    expect(bearerMatches(undefined, token)).toBe(false);
    expect(bearerMatches('Bearer ', token)).toBe(false);
  });

  it('is configured through METRICS_PORT and METRICS_TOKEN', () => {
    expect(loadConfig({}).metrics).toEqual({ port: undefined, token: undefined });
    expect(loadConfig({ METRICS_PORT: '9464' }).metrics.port).toBe(9464);
    expect(() => loadConfig({ METRICS_PORT: '4000' })).toThrow(/METRICS_PORT: must differ from PORT/);
    expect(() => loadConfig({ METRICS_PORT: 'x' })).toThrow(/METRICS_PORT/);
    expect(() => loadConfig({ METRICS_TOKEN: 'short' })).toThrow(/METRICS_TOKEN: must be at least 32 characters/);
  });
});
