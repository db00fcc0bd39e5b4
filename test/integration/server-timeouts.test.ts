import net from 'node:net';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, newTenant, type TestApp } from '../helpers/app.js';
import type { Readable } from 'node:stream';
import type { PutOptions } from '../../src/storage/storage.js';
import { pdfBytes, png } from '../helpers/files.js';
import { expectNothingStored, expectResponsive, multipartBody, rowCounts } from '../helpers/security.js';
import { rawRequest } from '../helpers/raw-http.js';

// Server timeouts (issue 10): a stalled upload body is cut, one that keeps moving is
// not, however long it takes; slow headers are cut. Short limits make the test quick.

let app: TestApp;
/** While set, storing a render takes this long: the service works on a request it has wholly received. */
let renderDelayMs = 0;
/** Render objects whose write was slowed. */
const slowed: string[] = [];
beforeAll(async () => {
  app = await startTestApp({
    env: { HTTP_IDLE_TIMEOUT_SECONDS: '2', HTTP_HEADERS_TIMEOUT_SECONDS: '2' },
    storage: (_dir, real) =>
      new Proxy(real, {
        get(target, prop) {
          if (prop === 'put') {
            return async (key: string, body: Readable, options?: PutOptions) => {
              if (renderDelayMs && /\/r-[0-9a-f]{32}$/.test(key)) {
                slowed.push(key);
                await new Promise((ok) => setTimeout(ok, renderDelayMs));
              }
              return target.put(key, body, options);
            };
          }
          const v: unknown = Reflect.get(target, prop, target);
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      }),
  });
});
afterAll(() => app?.close());

const KiB = 1024;
const UPLOAD = 'mutation($input: UploadInput!) { upload(input: $input) { id fileSize } }';

async function uploadBody(size: number) {
  const ops = JSON.stringify({ query: UPLOAD, variables: { input: { file: null, entity: { type: 'property', id: 'p-1' } } } });
  const data = Buffer.concat([pdfBytes(3), Buffer.alloc(size, 0x20)]);
  return { ...multipartBody([{ name: 'operations', value: ops }, { name: 'map', value: '{"0":["variables.input.file"]}' }, { name: '0', filename: 'slow.pdf', type: 'application/pdf', data }]), size: data.length };
}

describe('server timeouts', () => {
  it('an upload body that stalls is cut after the idle timeout, and nothing is stored', async () => {
    const tenant = newTenant('tos');
    const token = await app.token(tenant);
    const { body, contentType } = await uploadBody(256 * KiB);
    const r = await rawRequest(app.url, {
      headers: { 'apollo-require-preflight': 'true', authorization: `Bearer ${token}`, 'content-type': contentType },
      chunks: [body.subarray(0, 100 * KiB)],
      end: false,
      timeoutMs: 15_000,
    });
    expect(r.ended).toBe('closed');
    expect(r.ms).toBeGreaterThanOrEqual(1500);
    await new Promise((ok) => setTimeout(ok, 200));
    await expectNothingStored(app, tenant);
    await expectResponsive(app, token);
  });

  it('an upload that keeps moving is never cut, though it lasts several idle timeouts', async () => {
    const tenant = newTenant('tom');
    const token = await app.token(tenant);
    const { body, contentType, size } = await uploadBody(256 * KiB);
    // Eight pieces, 1.1 s apart: each gap is below the 2 s idle limit, the whole is well above it.
    const step = Math.ceil(body.length / 8);
    const chunks: (Buffer | number)[] = [];
    for (let i = 0; i < body.length; i += step) chunks.push(...(i ? [1100] : []), body.subarray(i, i + step));
    const r = await rawRequest(app.url, { headers: { 'apollo-require-preflight': 'true', authorization: `Bearer ${token}`, 'content-type': contentType }, chunks, timeoutMs: 30_000 });
    expect(r.ended).toBe('response');
    const j = r.json as { data?: { upload?: { fileSize: number } }; errors?: unknown };
    expect(j.errors, r.text).toBeUndefined();
    expect(j.data?.upload?.fileSize).toBe(size);
    expect(r.ms).toBeGreaterThan(2 * 2000);
    expect((await rowCounts(app, tenant)).media).toBe(1);
  });

  it('a request the service is still working on (an image step longer than the idle timeout) is answered, not cut', async () => {
    const tenant = newTenant('tow');
    const token = await app.token(tenant);
    const ops = JSON.stringify({ query: 'mutation($input: UploadInput!) { upload(input: $input) { id variants { name } } }', variables: { input: { file: null, entity: { type: 'property', id: 'p-1' } } } });
    const { body, contentType } = multipartBody([
      { name: 'operations', value: ops },
      { name: 'map', value: '{"0":["variables.input.file"]}' },
      { name: '0', filename: 'p.png', type: 'image/png', data: Buffer.from(await (await png(300, 200)).arrayBuffer()) },
    ]);
    const up = await rawRequest(app.url, { headers: { 'apollo-require-preflight': 'true', authorization: `Bearer ${token}`, 'content-type': contentType }, chunks: [body], timeoutMs: 20_000 });
    const uploaded = up.json as { data?: { upload?: { id: string; variants: { name: string }[] } }; errors?: unknown };
    expect(uploaded.errors, up.text).toBeUndefined();
    expect(uploaded.data?.upload?.variants.map((v) => v.name)).toContain('THUMB');
    const id = uploaded.data!.upload!.id;
    // The image work happens when the variant is first asked for: its render is stored slowly.
    renderDelayMs = 4500;
    let r;
    try {
      r = await rawRequest(app.url, { method: 'GET', path: `/media/${id}/variants/THUMB`, headers: { authorization: `Bearer ${token}` }, chunks: [], timeoutMs: 20_000 });
    } finally {
      renderDelayMs = 0;
    }
    expect(slowed.filter((k) => k.startsWith(`${tenant}/${id}/`))).toHaveLength(1);
    expect(r.ended).toBe('response');
    expect(r.ms).toBeGreaterThan(4000);
    expect(r.status, r.text).toBe(200);
    expect(r.headers['x-render-outcome']).toBe('rendered');
    expect(r.headers['content-type']).toBe('image/png');
    // What it answered is the render, stored whole: served again from the store, the same size, a real image.
    const again = await fetch(`${app.url}/media/${id}/variants/THUMB`, { headers: { authorization: `Bearer ${token}` } });
    expect(again.headers.get('x-render-outcome')).toBe('hit');
    const bytes = Buffer.from(await again.arrayBuffer());
    expect(String(bytes.length)).toBe(r.headers['content-length']);
    expect(await sharp(bytes).metadata()).toMatchObject({ format: 'png', width: 160 });
  });

  it('headers that never end are cut after the headers timeout', async () => {
    const started = Date.now();
    const closed = await new Promise<string>((resolve, reject) => {
      const s = net.connect(Number(new URL(app.url).port), '127.0.0.1');
      let answer = '';
      s.on('data', (c) => (answer += c.toString('latin1')));
      s.on('error', () => undefined);
      s.on('close', () => resolve(answer));
      s.write('POST /graphql HTTP/1.1\r\nHost: localhost\r\nX-Slow: ');
      setTimeout(() => {
        reject(new Error('the connection was still open after 15 s'));
        s.destroy();
      }, 15_000);
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1500);
    // Node answers 408 before closing, or just closes.
    if (closed) expect(closed).toMatch(/^HTTP\/1\.1 408/);
  });
});
