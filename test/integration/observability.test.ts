import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { parse } from 'graphql';
import { sweepTenant } from '../helpers/sweep.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STORAGE_DRIVER, newTenant, startTestApp, type TestApp } from '../helpers/app.js';
import { gql } from '../helpers/client.js';
import { mp4, pdf } from '../helpers/files.js';
import type { Storage } from '../../src/storage/index.js';

const UPLOAD = parse('mutation ObsUpload($input: UploadInput!) { upload(input: $input) { id url contentPath fileSize } }');
const METRICS_TOKEN = 'metrics-token-that-is-long-enough-0123456789';

interface Uploaded {
  id: string;
  url: string | null;
  contentPath: string;
  fileSize: number;
}

/** The value of one series of a Prometheus text exposition (labels in any order), or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

const requestLines = (app: TestApp) => app.logs.filter((l) => l['msg'] === 'request');
const lineOf = (app: TestApp, requestId: string | null) => requestLines(app).filter((l) => l['requestId'] === requestId);

/** Waits until `check` holds (access lines are written when the response closes, which can trail the client). */
async function until(check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('logs and metrics of requests (METRICS_PORT)', () => {
  let app: TestApp;
  const tenant = newTenant('ob');
  let token: string;
  let failGets = false;
  let doc: Uploaded;
  const docFile = pdf(3, 'lease.pdf');

  beforeAll(async () => {
    app = await startTestApp({
      env: { METRICS_PORT: '0' },
      // A driver whose reads fail on demand (a 500 for the log levels).
      storage: (_dir, real) =>
        new Proxy(real, {
          get(target, prop) {
            if (prop === 'get') return (...args: Parameters<Storage['get']>) => (failGets ? Promise.reject(new Error('disk on fire')) : target.get(...args));
            const v = Reflect.get(target, prop, target) as unknown;
            return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
          },
        }),
    });
    token = await app.token(tenant, { subject: 'user-obs-1' });
    const r = await gql(app.url, UPLOAD, { input: { file: docFile, entity: { type: 'property', id: 'p-1' } } }, { token });
    expect(r.errors).toBeUndefined();
    doc = (r.data as { upload: Uploaded }).upload;
  });
  afterAll(() => app?.close());

  /** A signed link to the service's own content route (on S3, `url` is a presigned URL of the store instead). */
  const signedLink = () => `${app.url}${doc.contentPath}?token=${encodeURIComponent(app.services.links.sign(tenant, doc.contentPath, 600))}`;

  it('serves /metrics on METRICS_PORT only, and the counters move with an upload and downloads', async () => {
    expect(app.metricsUrl).toBeDefined();
    expect((await fetch(`${app.url}/metrics`)).status).toBe(404);
    expect((await fetch(`${app.metricsUrl}/other`)).status).toBe(404);

    const byToken = await fetch(`${app.url}${doc.contentPath}`, { headers: { authorization: `Bearer ${token}` } });
    expect(byToken.status).toBe(200);
    expect((await byToken.arrayBuffer()).byteLength).toBe(docFile.size);
    const byLink = await fetch(signedLink());
    expect(byLink.status).toBe(200);
    expect((await byLink.arrayBuffer()).byteLength).toBe(docFile.size);
    await until(() => lineOf(app, byLink.headers.get('x-request-id')).length === 1);
    // Retried while another test file's sweep holds the lock (one database for the run).
    await sweepTenant(app, tenant, 60);

    const res = await fetch(`${app.metricsUrl}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    const upload = { kind: 'DOCUMENT', driver: STORAGE_DRIVER, source: 'upload' };
    expect(sample(text, 'media_upload_bytes_total', upload)).toBe(docFile.size);
    expect(sample(text, 'media_uploads_total', upload)).toBe(1);
    expect(sample(text, 'media_upload_duration_seconds_count', upload)).toBe(1);
    const route = { route: '/media/:id/content' };
    expect(sample(text, 'media_downloads_total', { ...route, outcome: 'complete' })).toBe(2);
    expect(sample(text, 'media_download_bytes_total', route)).toBe(2 * docFile.size);
    expect(sample(text, 'graphql_operations_total', { operation: 'ObsUpload', outcome: 'ok' })).toBe(1);
    expect(sample(text, 'storage_operation_duration_seconds_count', { driver: STORAGE_DRIVER, operation: 'put', outcome: 'ok' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'storage_operation_duration_seconds_count', { driver: STORAGE_DRIVER, operation: 'get', outcome: 'ok' })).toBeGreaterThanOrEqual(2);
    expect(sample(text, 'pg_pool_connections')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'pg_pool_idle_connections')).toBeGreaterThanOrEqual(0);
    expect(sample(text, 'pg_pool_waiting_clients')).toBe(0);
    expect(sample(text, 'sweep_runs_total', { outcome: 'done' })).toBe(1);
    expect(sample(text, 'sweep_items_total', { item: 'orphanGroupsDeleted' })).toBe(0);
    expect(sample(text, 'http_requests_total', { method: 'GET', route: '/media/:id/content', status: '200' })).toBe(2);
    expect(sample(text, 'media_integrity_failures_total', { event: 'INTEGRITY_ERROR' })).toBe(0);
    expect(sample(text, 'media_integrity_failures_total', { event: 'KEY_MISMATCH' })).toBe(0);
  });

  it('writes one access line per request with who, what and how much, and no credential anywhere', async () => {
    const headers = { authorization: `Bearer ${token}` };
    const down = await fetch(`${app.url}${doc.contentPath}`, { headers });
    await down.arrayBuffer();
    const link = signedLink();
    const linked = await fetch(link);
    await linked.arrayBuffer();
    await until(() => lineOf(app, linked.headers.get('x-request-id')).length === 1);

    // Every request id has exactly one line.
    const ids = requestLines(app).map((l) => l['requestId']);
    expect(new Set(ids).size).toBe(ids.length);

    const [uploadLine] = requestLines(app).filter((l) => l['operation'] === 'ObsUpload');
    expect(uploadLine).toMatchObject({ level: 30, method: 'POST', route: '/graphql', status: 200, tenant, subject: 'user-obs-1', mediaIds: [doc.id] });
    expect(uploadLine!['bytesIn']).toBeGreaterThan(docFile.size);
    expect(uploadLine!['bytesOut']).toBeGreaterThan(0);
    expect(typeof uploadLine!['ms']).toBe('number');

    const [downLine] = lineOf(app, down.headers.get('x-request-id'));
    expect(downLine).toMatchObject({ level: 30, method: 'GET', route: '/media/:id/content', status: 200, bytesIn: 0, bytesOut: docFile.size, tenant, subject: 'user-obs-1', mediaIds: [doc.id] });
    expect(downLine).not.toHaveProperty('aborted');
    const [linkLine] = lineOf(app, linked.headers.get('x-request-id'));
    expect(linkLine).toMatchObject({ route: '/media/:id/content', status: 200, tenant, subject: 'signed-link', bytesOut: docFile.size });

    const linkToken = new URL(link).searchParams.get('token')!;
    expect(linkToken.length).toBeGreaterThan(10);
    for (const l of app.logs) {
      const s = JSON.stringify(l);
      expect(s).not.toContain(token);
      expect(s).not.toContain(linkToken);
      expect(s).not.toContain(token.split('.')[2]!);
      expect(s).not.toContain('?token=');
    }
  });

  it('logs 4xx at info and 5xx at error, with the error codes', async () => {
    const missing = await fetch(`${app.url}/media/${randomUUID()}/content`);
    expect(missing.status).toBe(401);
    const notFound = await fetch(`${app.url}/media/${randomUUID()}/content`, { headers: { authorization: `Bearer ${token}` } });
    expect(notFound.status).toBe(404);
    const parseError = await fetch(`${app.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: 'query Broken {', operationName: 'Broken' }) });
    expect(parseError.status).toBe(400);
    failGets = true;
    let failed: Response;
    try {
      failed = await fetch(`${app.url}${doc.contentPath}`, { headers: { authorization: `Bearer ${token}` } });
    } finally {
      failGets = false;
    }
    expect(failed.status).toBe(500);
    await until(() => lineOf(app, failed.headers.get('x-request-id')).length === 1);

    expect(lineOf(app, missing.headers.get('x-request-id'))).toEqual([expect.objectContaining({ level: 30, status: 401, errorCodes: ['UNAUTHENTICATED'] })]);
    expect(lineOf(app, notFound.headers.get('x-request-id'))).toEqual([expect.objectContaining({ level: 30, status: 404, errorCodes: ['NOT_FOUND'], tenant })]);
    expect(lineOf(app, parseError.headers.get('x-request-id'))).toEqual([
      expect.objectContaining({ level: 30, status: 400, route: '/graphql', operation: 'Broken', errorCodes: ['GRAPHQL_PARSE_FAILED'] }),
    ]);
    expect(lineOf(app, failed.headers.get('x-request-id'))).toEqual([expect.objectContaining({ level: 50, status: 500, errorCodes: ['INTERNAL_SERVER_ERROR'] })]);
    const text = await (await fetch(`${app.metricsUrl}/metrics`)).text();
    expect(sample(text, 'storage_operation_duration_seconds_count', { driver: STORAGE_DRIVER, operation: 'get', outcome: 'error' })).toBe(1);
  });

  it('a client that goes away mid-download is an aborted request at info, not an error', async () => {
    const big = mp4(16 * 1024 * 1024, 'big.mp4');
    const r = await gql(app.url, UPLOAD, { input: { file: big, entity: { type: 'property', id: 'p-2' } } }, { token });
    expect(r.errors).toBeUndefined();
    const video = (r.data as { upload: Uploaded }).upload;
    const before = app.logs.length;
    const requestId = await new Promise<string>((resolve, reject) => {
      const req = http.get(`${app.url}${video.contentPath}`, { headers: { authorization: `Bearer ${token}` } }, (res) => {
        let n = 0;
        res.on('data', (c: Buffer) => {
          n += c.length;
          if (n > 256 * 1024) {
            req.destroy();
            resolve(String(res.headers['x-request-id']));
          }
        });
        res.on('error', () => undefined);
      });
      req.on('error', (e) => (e.message.includes('socket hang up') || (e as { code?: string }).code === 'ECONNRESET' ? undefined : reject(e)));
    });
    await until(() => lineOf(app, requestId).length === 1);
    const [line] = lineOf(app, requestId);
    expect(line).toMatchObject({ level: 30, route: '/media/:id/content', status: 200, aborted: true, mediaIds: [video.id] });
    expect(line!['bytesOut']).toBeLessThan(big.size);
    // Give a late error line the chance to appear.
    await new Promise((r) => setTimeout(r, 200));
    const errors = app.logs.slice(before).filter((l) => Number(l['level']) >= 50);
    expect(errors).toEqual([]);
    const text = await (await fetch(`${app.metricsUrl}/metrics`)).text();
    expect(sample(text, 'media_downloads_total', { route: '/media/:id/content', outcome: 'aborted' })).toBe(1);
    expect(sample(text, 'media_upload_bytes_total', { kind: 'VIDEO', driver: STORAGE_DRIVER, source: 'upload' })).toBe(big.size);
  }, 60_000);
});

describe('/metrics on the public port with METRICS_TOKEN', () => {
  let app: TestApp;

  beforeAll(async () => {
    app = await startTestApp({ env: { METRICS_TOKEN } });
  });
  afterAll(() => app?.close());

  it('answers 401 without the token or with a wrong one, 200 with it, and never logs it', async () => {
    expect(app.metricsUrl).toBeUndefined();
    const none = await fetch(`${app.url}/metrics`);
    expect(none.status).toBe(401);
    expect(((await none.json()) as { error: { code: string } }).error.code).toBe('UNAUTHENTICATED');
    expect((await fetch(`${app.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}x` } })).status).toBe(401);
    expect((await fetch(`${app.url}/metrics`, { headers: { authorization: `Basic ${METRICS_TOKEN}` } })).status).toBe(401);
    const good = await fetch(`${app.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(good.status).toBe(200);
    expect(await good.text()).toMatch(/^http_requests_total\{/m);
    await until(() => lineOf(app, good.headers.get('x-request-id')).length === 1);
    expect(lineOf(app, none.headers.get('x-request-id'))).toEqual([expect.objectContaining({ level: 30, route: '/metrics', status: 401 })]);
    for (const l of app.logs) expect(JSON.stringify(l)).not.toContain(METRICS_TOKEN);
  });
});
