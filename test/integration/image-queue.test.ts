import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UploadDocument } from '../generated/graphql.js';
import { startTestApp, newTenant, type TestApp } from '../helpers/app.js';
import { gql, ok } from '../helpers/client.js';
import { png } from '../helpers/files.js';
import { expectNothingStored, rowCounts, within } from '../helpers/security.js';
import { storedKeys } from '../helpers/stored.js';

// Image work is bounded (issue 10): a PNG of 8900 x 8900 pixels in one colour is
// a few hundred KB on the wire and 79 megapixels to decode; before the fix every
// upload decoded at once (as many as libuv has threads), each taking seconds and
// hundreds of MiB. Since issue 14 uploads decode nothing (the header only) and
// the decoding happens when a render is first asked for: those are bounded here.
// Timings are correctness bounds, not performance targets.

const SIDE = 8900;
let huge: File;

beforeAll(async () => {
  huge = await png(SIDE, SIDE, 'huge.png');
}, 60_000);

const upload = (app: TestApp, token: string, file: File, id: string) => gql(app.url, UploadDocument, { input: { file, entity: { type: 'property', id } } }, { token });
const render = (app: TestApp, token: string, id: string, query: string) => fetch(`${app.url}/media/${id}/render?${query}`, { headers: { authorization: `Bearer ${token}` } });

/** Samples what runs while `work` does: image jobs (the queue's and libvips's own count) and /healthz latency. */
async function watch<T>(app: TestApp, work: Promise<T>) {
  const seen = { running: 0, sharpProcessing: 0, memoryInUse: 0, slowestHealthMs: 0, healthChecks: 0 };
  let done = false;
  const sampler = (async () => {
    while (!done) {
      const s = app.services.images?.stats();
      seen.running = Math.max(seen.running, s?.running ?? 0);
      seen.memoryInUse = Math.max(seen.memoryInUse, s?.memoryInUse ?? 0);
      // sharp's own count of pipelines on libuv threads: independent of the queue's bookkeeping.
      seen.sharpProcessing = Math.max(seen.sharpProcessing, sharp.counters().process);
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  const health = (async () => {
    while (!done) {
      const t0 = performance.now();
      const r = await within(fetch(`${app.url}/healthz`), 5000, '/healthz');
      expect(r.status).toBe(200);
      seen.slowestHealthMs = Math.max(seen.slowestHealthMs, performance.now() - t0);
      seen.healthChecks++;
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  try {
    return { result: await work, seen };
  } finally {
    done = true;
    await Promise.all([sampler, health]);
  }
}

describe('concurrent renders of huge images', () => {
  let app: TestApp;
  const tenant = newTenant('iq');
  let token: string;

  beforeAll(async () => {
    // Two jobs at once; memory enough for two of these (393 MiB each by the estimate).
    app = await startTestApp({ env: { IMAGE_CONCURRENCY: '2', IMAGE_MEMORY_MB: '1024', METRICS_PORT: '0' } });
    token = await app.token(tenant);
  });
  afterAll(async () => {
    await app?.close();
  });

  it('uploads decode nothing; renders all succeed, never more than the bound decode at once, and /healthz answers promptly throughout', async () => {
    const uploads = await Promise.all(Array.from({ length: 4 }, (_, i) => within(upload(app, token, huge, `p-${i}`), 60_000, `upload ${i}`)));
    for (const r of uploads) {
      expect(r.errors).toBeUndefined();
      expect(r.data?.upload).toMatchObject({ width: SIDE, height: SIDE, mediaType: 'image/png' });
      expect(r.data?.upload.variants.map((v) => [v.name, v.width])).toEqual([['THUMB', 160], ['MEDIUM', 640], ['LARGE', 1280], ['LARGE_2X', 2560]]);
    }
    // Nothing was decoded by the uploads.
    expect(app.services.images.stats().peakRunning).toBe(0);
    const ids = uploads.map((r) => r.data!.upload.id);
    const { result, seen } = await watch(
      app,
      Promise.all(ids.map((id, i) => within(render(app, token, id, `w=${300 + i}&format=png`), 120_000, `render ${i}`))),
    );
    for (const [i, r] of result.entries()) {
      expect(r.status).toBe(200);
      expect(await sharp(Buffer.from(await r.arrayBuffer())).metadata()).toMatchObject({ width: 300 + i, height: 300 + i, format: 'png' });
    }
    expect(seen.running).toBeLessThanOrEqual(2);
    expect(seen.sharpProcessing).toBeLessThanOrEqual(2);
    expect(app.services.images.stats()).toMatchObject({ running: 0, waiting: 0, memoryInUse: 0 });
    expect(app.services.images.stats().peakRunning).toBe(2);
    expect(seen.memoryInUse).toBeLessThanOrEqual(1024 * 1024 * 1024);
    expect(seen.healthChecks).toBeGreaterThan(3);
    expect(seen.slowestHealthMs).toBeLessThan(1000);
    const metrics = await (await fetch(`${app.metricsUrl}/metrics`)).text();
    expect(metrics).toMatch(/^image_jobs_running 0$/m);
    expect(metrics).toMatch(/^image_jobs_refused_total\{reason="queue-full"\} 0$/m);
    expect(metrics).toMatch(/^media_renders_total\{source="media",outcome="rendered"\} 4$/m);
  }, 180_000);
});

describe('limits of the image queue', () => {
  let small: TestApp;
  let single: TestApp;

  beforeAll(async () => {
    [small, single] = await Promise.all([
      startTestApp({ env: { IMAGE_MEMORY_MB: '64' } }),
      startTestApp({ env: { IMAGE_CONCURRENCY: '1', IMAGE_QUEUE_LENGTH: '1' } }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([small?.close(), single?.close()]);
  });

  it('an image that alone needs more memory than the budget is PAYLOAD_TOO_LARGE, and nothing is kept', async () => {
    const tenant = newTenant('iq');
    const token = await small.token(tenant);
    // 4500 x 4500 RGBA: about 100 MiB decoded with the margin, over the 64 MiB budget.
    const r = await upload(small, token, await png(4500, 4500, 'wide.png'), 'p-1');
    expect(r.errors?.[0]?.extensions).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', field: 'file', limit: 64 * 1024 * 1024 });
    expect(r.errors?.[0]?.message).toMatch(/Image of 4500 x 4500 pixels \(4 bands of uchar\) needs about \d+ MiB to decode, more than the 64 MiB allowed/);
    await expectNothingStored(small, tenant);
    // A smaller one passes.
    expect((await ok(small.url, UploadDocument, { input: { file: await png(1000, 1000), entity: { type: 'property', id: 'p-2' } } }, { token })).upload.width).toBe(1000);
  }, 60_000);

  it('beyond the queue a render is 503 SERVICE_BUSY with Retry-After, naming the queue, and the refused ones keep nothing', async () => {
    const tenant = newTenant('iq');
    const token = await single.token(tenant);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await ok(single.url, UploadDocument, { input: { file: huge, entity: { type: 'property', id: `p-${i}` } } }, { token })).upload.id);
    const before = await storedKeys(single, tenant);
    expect(before).toHaveLength(4);
    // One decodes, one waits, the other two find the queue full.
    const results = await Promise.all(ids.map((id, i) => within(render(single, token, id, 'w=200'), 120_000, `render ${i}`)));
    const statuses = results.map((r) => r.status).sort();
    expect(statuses).toEqual([200, 200, 503, 503]);
    for (const r of results.filter((x) => x.status === 503)) {
      expect(r.headers.get('retry-after')).toBe('5');
      const body = (await r.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('SERVICE_BUSY');
      expect(body.error.message).toMatch(/Too many images are being processed at once/);
    }
    // Two renders stored; nothing of the refused ones (no object, no row).
    expect((await storedKeys(single, tenant)).length).toBe(6);
    expect(await single.db.prisma.imageRender.count({ where: { tenantId: tenant } })).toBe(2);
    expect(single.services.images.stats()).toMatchObject({ running: 0, waiting: 0, peakRunning: 1, refused: { 'queue-full': 2, 'wait-timeout': 0 } });
  }, 180_000);
});
