import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from 'esbuild';
import { chromium, type Browser, type Page } from 'playwright-core';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { newTenant, startTestApp, STORAGE_DRIVER, type TestApp } from '../helpers/app.js';

/**
 * CORS in a real browser (Debian's `chromium`, driven by playwright-core): a
 * front end on another loopback origin uploads through Apollo Client +
 * apollo-upload-client with a bearer token and shows the image through its
 * signed `url`; the same page on an origin that is not listed is refused.
 */

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];

/**
 * Chromium: CHROMIUM_PATH, else `chromium` on the PATH. Without it every test
 * here fails with this message, counted as failed (not skipped): CI installs it (.ci/run).
 */
function chromiumPath(): string | Error {
  const given = process.env['CHROMIUM_PATH'];
  const candidates = given ? [given] : (process.env['PATH'] ?? '').split(path.delimiter).filter(Boolean).map((dir) => path.join(dir, 'chromium'));
  return (
    candidates.find((p) => existsSync(p)) ??
    new Error(
      `Chromium is needed for the CORS browser test and was not found (${given ? `CHROMIUM_PATH=${given}` : '`chromium` on the PATH'}). ` +
        'Install it with `apt-get install -y chromium` (.ci/run does), or point CHROMIUM_PATH at a Chromium binary.',
    )
  );
}

/** The page's script with Apollo Client and apollo-upload-client, bundled for the browser, in memory. */
async function bundlePage(): Promise<string> {
  const out = await build({
    entryPoints: [path.join(ROOT, 'test/helpers/browser/upload-page.mjs')],
    absWorkingDir: ROOT,
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'chrome120',
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'silent',
  });
  return out.outputFiles[0]!.text;
}

const PAGE = '<!doctype html><meta charset="utf-8"><title>front end</title><input type="file" id="file" accept="image/*"><script type="module" src="/page.js"></script>';

/** A front end's origin: the HTML page and its script, on 127.0.0.1 and a port of its own. */
async function serveFrontEnd(script: string): Promise<{ origin: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    if (req.url === '/') return void res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
    if (req.url === '/page.js') return void res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(script);
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { origin, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

interface PageResult {
  ok: boolean;
  stage?: string;
  error?: string;
  media?: { id: string; url: string; contentPath: string; width: number; height: number };
  naturalWidth?: number;
  naturalHeight?: number;
  pixel?: number[] | null;
  ranged?: { status: number; etag: string | null; contentDisposition: string | null; contentRange: string | null; acceptRanges: string | null; requestId: string | null; bytes: number[] };
}

let app: TestApp;
let browser: Browser | Error;
let listed: Awaited<ReturnType<typeof serveFrontEnd>>;
let unlisted: Awaited<ReturnType<typeof serveFrontEnd>>;
let apiUrl: string;
let image: Buffer;

beforeAll(async () => {
  const executablePath = chromiumPath();
  const script = await bundlePage();
  [listed, unlisted] = await Promise.all([serveFrontEnd(script), serveFrontEnd(script)]);
  app = await startTestApp({ env: { CORS_ORIGINS: listed.origin } });
  // The app listens on 127.0.0.1 (its url names localhost, as do the signed urls it hands out).
  apiUrl = app.url.replace('//localhost:', '//127.0.0.1:');
  browser = executablePath instanceof Error ? executablePath : await chromium.launch({ executablePath, args: CHROMIUM_FLAGS });
  image = await sharp({ create: { width: 48, height: 32, channels: 4, background: { r: 10, g: 200, b: 30, alpha: 1 } } }).png().toBuffer();
});
afterAll(async () => {
  if (browser && !(browser instanceof Error)) await browser.close();
  await Promise.all([app?.close(), listed?.close(), unlisted?.close()]);
});

/** Opens the front end at `origin`, chooses the PNG in its file input, and runs its upload. */
async function runFrontEnd(origin: string, tenant: string): Promise<{ result: PageResult; console: string[]; page: Page }> {
  if (browser instanceof Error) throw browser;
  const page = await browser.newPage();
  const console: string[] = [];
  page.on('console', (m) => console.push(m.text()));
  page.on('pageerror', (e) => console.push(`pageerror: ${e.message}`));
  await page.goto(`${origin}/`);
  await page.waitForFunction(() => typeof (globalThis as { uploadAndShow?: unknown }).uploadAndShow === 'function');
  await page.setInputFiles('#file', { name: 'pixel.png', mimeType: 'image/png', buffer: image });
  const token = await app.token(tenant);
  const result = (await page.evaluate(
    (args) => (globalThis as unknown as { uploadAndShow(a: unknown): Promise<unknown> }).uploadAndShow(args),
    { api: apiUrl, token, entity: { type: 'property', id: 'browser-1' }, corsImage: STORAGE_DRIVER === 'local' },
  )) as PageResult;
  return { result, console, page };
}

describe(`CORS in Chromium (${STORAGE_DRIVER})`, () => {
  it('a front end on a listed origin uploads through apollo-upload-client and shows the image through its signed url', async () => {
    const tenant = newTenant('br');
    const { result, console, page } = await runFrontEnd(listed.origin, tenant);
    try {
      expect(result, console.join('\n')).toMatchObject({ ok: true, media: { width: 48, height: 32 } });
      expect(result.naturalWidth).toBe(48);
      expect(result.naturalHeight).toBe(32);
      if (STORAGE_DRIVER === 'local') {
        // The signed url is the service's content route: loaded in CORS mode and readable by a canvas, so it allowed the origin.
        expect(result.media!.url.startsWith(`${app.url}/media/${result.media!.id}/content?`)).toBe(true);
        expect(result.pixel).toEqual([10, 200, 30, 255]);
      } else {
        // On S3 it is a presigned URL of the store (CORS there is the bucket's configuration); the <img> shows it all the same.
        expect(result.media!.url.startsWith(app.url)).toBe(false);
      }
      // The content route with the token (a preflighted request): the exposed headers reach the script.
      const sha = createHash('sha256').update(image).digest('hex');
      expect(result.ranged).toMatchObject({
        status: 206,
        etag: `"${sha}"`,
        contentDisposition: 'inline; filename=pixel.png',
        contentRange: `bytes 0-7/${image.length}`,
        acceptRanges: 'bytes',
        bytes: [...image.subarray(0, 8)],
      });
      expect(result.ranged?.requestId).toMatch(/^[0-9a-f-]{36}$/);
      const stored = await app.db.prisma.media.findMany({ where: { tenantId: tenant } });
      expect(stored.map((m) => [m.id, m.checksum])).toEqual([[result.media!.id, sha]]);
    } finally {
      await page.close();
    }
  });

  it('the same front end on an origin that is not listed is refused, and nothing is stored', async () => {
    const tenant = newTenant('br');
    const { result, console, page } = await runFrontEnd(unlisted.origin, tenant);
    try {
      expect(result.ok, JSON.stringify(result)).toBe(false);
      expect(result.stage).toBe('upload');
      // fetch rejects without an answer to read: the preflight found no Access-Control-Allow-Origin.
      expect(result.error).toMatch(/Failed to fetch/);
      expect(console.join('\n')).toMatch(new RegExp(`from origin '${unlisted.origin}' has been blocked by CORS policy`));
      expect(await app.db.prisma.media.count({ where: { tenantId: tenant } })).toBe(0);
      expect(await app.services.storage.list(`${tenant}/`)).toEqual([]);
    } finally {
      await page.close();
    }
  });
});
