import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { AssetRenderUrlDocument, RenderDeleteDocument, RenderUploadDocument, RenderUrlDocument, CreateAssetDocument } from '../generated/graphql.js';
import { startTestApp, newTenant, STORAGE_DRIVER, S3_STORE, type TestApp } from '../helpers/app.js';
import { codeOf, gql, ok } from '../helpers/client.js';
import { jpeg, pdf } from '../helpers/files.js';
import { storedKeys } from '../helpers/stored.js';
import { sweepTenant } from '../helpers/sweep.js';

// Renders on demand (issue 14, SPEC 16): GET /media/{id}/render and the named
// variants are made on their first request, stored beside the original and
// served from the store afterwards. Each test has its own tenant.

let app: TestApp;

beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  await app?.close();
});

const STORE = STORAGE_DRIVER === 'local' ? 'local disk' : S3_STORE;

async function upload(token: string, file: File, entityType = 'property') {
  return (await ok(app.url, RenderUploadDocument, { input: { file, entity: { type: entityType, id: 'p-1' } } }, { token })).upload;
}

function render(id: string, query: string, headers: Record<string, string> = {}, base = app.url) {
  return fetch(`${base}/media/${id}/render${query ? `?${query}` : ''}`, { headers });
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function imageOf(res: Response) {
  const bytes = Buffer.from(await res.arrayBuffer());
  return { bytes, meta: await sharp(bytes).metadata() };
}

async function rawStored(key: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of await app.services.storage.get(key)) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

const renderRows = (tenant: string) => app.db.prisma.imageRender.findMany({ where: { tenantId: tenant } });

/** A 1200 x 800 photo whose pixels are noise (so renders of it have real content). */
async function noisyJpeg(width = 1200, height = 800, options: { orientation?: number } = {}): Promise<File> {
  const raw = Buffer.alloc(width * height * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 2654435761) >>> 24;
  let s = sharp(raw, { raw: { width, height, channels: 3 } });
  s = s.withExif({ IFD0: { Copyright: 'SECRET-EXIF-MARKER' } });
  if (options.orientation) s = s.withMetadata({ orientation: options.orientation });
  return new File([await s.jpeg({ quality: 85 }).toBuffer()], 'photo.jpg', { type: 'image/jpeg' });
}

describe(`renders (${STORE})`, () => {
  it('an upload decodes nothing: variants are listed with their sizes and rendered on first request, at exactly those sizes', async () => {
    const tenant = newTenant('rn');
    const token = await app.token(tenant);
    const before = app.services.images.stats().peakRunning;
    const m = await upload(token, await noisyJpeg());
    expect(app.services.images.stats().peakRunning).toBe(before);
    expect(m).toMatchObject({ width: 1200, height: 800, mediaType: 'image/jpeg' });
    expect(m.variants.map((v) => [v.name, v.width, v.height])).toEqual([['THUMB', 160, 107], ['MEDIUM', 640, 427]]);
    // Nothing but the original is stored yet.
    expect((await storedKeys(app, tenant)).map((k) => k.split('/').pop())).toEqual(['original']);
    for (const v of m.variants) {
      const res = await fetch(v.url);
      expect(res.status).toBe(200);
      expect(res.headers.get('x-render-outcome')).toBe('rendered');
      const { meta } = await imageOf(res);
      expect([meta.format, meta.width, meta.height]).toEqual(['jpeg', v.width, v.height]);
    }
    const keys = await storedKeys(app, tenant);
    expect(keys).toHaveLength(3);
    expect(keys.every((k) => k.startsWith(`${tenant}/${m.id}/`))).toBe(true);
    // A render asking for the same thing as THUMB is THUMB.
    const same = await render(m.id, 'w=160&format=jpeg', bearer(token));
    expect(same.headers.get('x-render-outcome')).toBe('hit');
    expect((await storedKeys(app, tenant)).length).toBe(3);
  });

  it.each([
    ['w=300', 'jpeg', 300, 200],
    ['h=100', 'jpeg', 150, 100],
    ['w=300&h=300&fit=cover&format=webp', 'webp', 300, 300],
    ['w=300&h=300&fit=contain&format=png', 'png', 300, 300],
    ['w=300&h=300&fit=inside&format=png', 'png', 300, 200],
    ['w=120&format=avif&q=40', 'heif', 120, 80],
    ['w=4000', 'jpeg', 1200, 800],
    ['w=2400&h=600&fit=cover&format=webp', 'webp', 1200, 300],
    ['', 'jpeg', 1200, 800],
  ])('?%s renders %s at %i x %i (never upscaled)', async (query, format, width, height) => {
    const tenant = newTenant('rn');
    const token = await app.token(tenant);
    const m = await upload(token, await noisyJpeg());
    const res = await render(m.id, query, bearer(token));
    expect(res.status).toBe(200);
    const { meta } = await imageOf(res);
    expect([meta.format, meta.width, meta.height]).toEqual([format, width, height]);
    expect(res.headers.get('content-type')).toBe(format === 'heif' ? 'image/avif' : `image/${format}`);
    if (query.includes('contain')) expect(meta.hasAlpha).toBe(true);
  });

  it('applies the EXIF orientation and strips EXIF from renders', async () => {
    const tenant = newTenant('rn');
    const token = await app.token(tenant);
    // Stored 400 x 200, displayed turned (orientation 6): 200 x 400.
    const file = await noisyJpeg(400, 200, { orientation: 6 });
    // The original carries EXIF (the marker and the orientation).
    expect(Buffer.from(await file.arrayBuffer()).includes(Buffer.from('SECRET-EXIF-MARKER'))).toBe(true);
    expect((await sharp(Buffer.from(await file.arrayBuffer())).metadata()).orientation).toBe(6);
    const m = await upload(token, file);
    expect([m.width, m.height]).toEqual([200, 400]);
    expect(m.variants.map((v) => [v.name, v.width, v.height])).toEqual([['THUMB', 80, 160]]);
    const res = await render(m.id, 'w=100', bearer(token));
    const { bytes, meta } = await imageOf(res);
    expect([meta.width, meta.height]).toEqual([100, 200]);
    expect(meta.orientation).toBeUndefined();
    expect(meta.exif).toBeUndefined();
    expect(bytes.includes(Buffer.from('SECRET-EXIF-MARKER'))).toBe(false);
  });

  it('format=auto picks AVIF, then WebP, then the original from Accept, with Vary: Accept', async () => {
    const tenant = newTenant('rn');
    const token = await app.token(tenant);
    const m = await upload(token, await noisyJpeg());
    const cases: [string, string][] = [
      ['image/avif,image/webp,image/apng,image/*,*/*;q=0.8', 'image/avif'],
      ['image/webp,*/*', 'image/webp'],
      ['image/avif;q=0,image/webp', 'image/webp'],
      ['text/html,*/*;q=0.8', 'image/jpeg'],
      ['', 'image/jpeg'],
    ];
    const etags = new Set<string>();
    for (const [accept, type] of cases) {
      const res = await render(m.id, 'w=200&format=auto', { ...bearer(token), ...(accept ? { accept } : {}) });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe(type);
      expect(res.headers.get('vary')).toMatch(/Accept/);
      etags.add(`${type} ${res.headers.get('etag')}`);
      await res.arrayBuffer();
    }
    // One ETag per format (a cache keyed on Vary never mixes them).
    expect(new Set([...etags].map((e) => e.split(' ')[1])).size).toBe(3);
    // An explicit format does not depend on Accept.
    const webp = await render(m.id, 'w=200&format=webp', { ...bearer(token), accept: 'image/avif' });
    expect(webp.headers.get('content-type')).toBe('image/webp');
    expect(webp.headers.get('vary') ?? '').not.toMatch(/Accept/);
  });

  it('is served like the content: headers, ETag and 304 (without rendering), a second request from the store', async () => {
    const tenant = newTenant('rn');
    const token = await app.token(tenant);
    const m = await upload(token, await noisyJpeg());
    const first = await render(m.id, 'w=320&format=webp', bearer(token));
    expect(first.status).toBe(200);
    expect(first.headers.get('x-render-outcome')).toBe('rendered');
    expect(first.headers.get('cache-control')).toBe('private, no-cache');
    expect(first.headers.get('x-content-type-options')).toBe('nosniff');
    expect(first.headers.get('content-security-policy')).toBe("default-src 'none'; sandbox");
    expect(first.headers.get('content-disposition')).toBe('inline; filename=photo-320x213.webp');
    const etag = first.headers.get('etag')!;
    expect(etag).toMatch(/^"[0-9a-f]{64}-r[0-9a-f]{32}"$/);
    const body = Buffer.from(await first.arrayBuffer());
    expect(first.headers.get('content-length')).toBe(String(body.length));

    const second = await render(m.id, 'w=320&format=webp', bearer(token));
    expect(second.headers.get('x-render-outcome')).toBe('hit');
    expect(second.headers.get('etag')).toBe(etag);
    expect(Buffer.from(await second.arrayBuffer()).equals(body)).toBe(true);
    const rows = await renderRows(tenant);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ params: 'v1 320x213 inside webp q80', width: 320, height: 213, mediaType: 'image/webp', size: BigInt(body.length) });

    const revalidated = await render(m.id, 'w=320&format=webp', { ...bearer(token), 'if-none-match': etag, 'cache-control': 'max-age=0' });
    expect(revalidated.status).toBe(304);
    // A range of it, like any content.
    const part = await render(m.id, 'w=320&format=webp', { ...bearer(token), range: 'bytes=0-9' });
    expect(part.status).toBe(206);
    expect(Buffer.from(await part.arrayBuffer()).equals(body.subarray(0, 10))).toBe(true);

    // The ETag is known before the render: revalidating one never made is a 304 without work.
    const hash = createHash('sha256').update('v1 400x267 inside webp q80').digest('hex').slice(0, 32);
    const never = await render(m.id, 'w=400&format=webp', { ...bearer(token), 'if-none-match': `"${m.checksum}-r${hash}"`, 'cache-control': 'max-age=0' });
    expect(never.status).toBe(304);
    expect(await renderRows(tenant)).toHaveLength(1);
  });

  it('10 concurrent identical cold requests render once; the others wait for it', async () => {
    const tenant = newTenant('rn');
    const token = await app.token(tenant);
    const m = await upload(token, await noisyJpeg(2400, 1600));
    const counted = async () => (await app.services.metrics.renders.get()).values.filter((v) => v.labels['outcome'] === 'rendered').reduce((n, v) => n + v.value, 0);
    const renderedBefore = await counted();
    const results = await Promise.all(Array.from({ length: 10 }, () => render(m.id, 'w=800&format=webp', bearer(token))));
    const bodies = await Promise.all(results.map(async (r) => Buffer.from(await r.arrayBuffer())));
    expect(results.map((r) => r.status)).toEqual(Array(10).fill(200));
    const outcomes = results.map((r) => r.headers.get('x-render-outcome'));
    expect(outcomes.filter((o) => o === 'rendered')).toHaveLength(1);
    expect(outcomes.every((o) => o === 'rendered' || o === 'coalesced' || o === 'hit')).toBe(true);
    expect(await counted()).toBe(renderedBefore + 1);
    expect(bodies.every((b) => b.equals(bodies[0]!))).toBe(true);
    expect(await renderRows(tenant)).toHaveLength(1);
    expect(await storedKeys(app, tenant)).toHaveLength(2);
  });

  it('two instances asked for the same cold render at once render it once (the advisory lock)', async () => {
    const other = await startTestApp({ dataDir: app.dataDir });
    try {
      const tenant = newTenant('rn');
      const token = await app.token(tenant);
      const m = await upload(token, await noisyJpeg(2400, 1600));
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => render(m.id, 'w=900&format=webp', bearer(token), i % 2 === 0 ? app.url : other.url)),
      );
      await Promise.all(results.map((r) => r.arrayBuffer()));
      expect(results.map((r) => r.status)).toEqual(Array(8).fill(200));
      expect(results.filter((r) => r.headers.get('x-render-outcome') === 'rendered')).toHaveLength(1);
      expect(await renderRows(tenant)).toHaveLength(1);
      expect(await storedKeys(app, tenant)).toHaveLength(2);
    } finally {
      await other.close({ keepData: true });
    }
  });

  it('authenticates like the content route: a token of the tenant, or a signed renderUrl for exactly these parameters', async () => {
    const tenant = newTenant('rn');
    const token = await app.token(tenant);
    const m = await upload(token, await noisyJpeg());
    expect((await render(m.id, 'w=100')).status).toBe(401);
    expect((await render(m.id, 'w=100', bearer('not-a-token'))).status).toBe(401);
    // Another tenant's token: the media does not exist for it.
    expect((await render(m.id, 'w=100', bearer(await app.token(newTenant('rn'))))).status).toBe(404);
    expect((await render(m.id, 'w=100', bearer(await app.token(tenant, { scopes: ['media:write'] })))).status).toBe(403);
    expect(await renderRows(tenant)).toHaveLength(0);

    const url = (await ok(app.url, RenderUrlDocument, { id: m.id, width: 240, format: 'WEBP' as never, quality: 70 }, { token })).media!.renderUrl!;
    expect(url).toMatch(new RegExp(`^${app.url}/media/${m.id}/render\\?w=240&format=webp&q=70&token=`));
    const signed = await fetch(url);
    expect(signed.status).toBe(200);
    const { meta } = await imageOf(signed);
    expect([meta.format, meta.width]).toEqual(['webp', 240]);
    // The link covers its parameters: changed, added or dropped, it is refused.
    expect((await fetch(url.replace('w=240', 'w=2400'))).status).toBe(401);
    expect((await fetch(url.replace('q=70&', ''))).status).toBe(401);
    expect((await fetch(url.replace('?', '?h=10&'))).status).toBe(401);
    // …and its media: the same token on another media's path is refused.
    const n = await upload(token, await noisyJpeg(300, 200));
    expect((await fetch(url.replace(m.id, n.id))).status).toBe(401);
  });

  it('renderUrl is null for encrypted and for non-image media; its arguments are checked like the query', async () => {
    const tenant = newTenant('rn');
    const token = await app.token(tenant);
    const secret = await upload(token, await noisyJpeg(300, 200), 'person');
    expect(secret.encrypted).toBe(true);
    expect((await ok(app.url, RenderUrlDocument, { id: secret.id, width: 100 }, { token })).media!.renderUrl).toBeNull();
    const doc = (await ok(app.url, RenderUploadDocument, { input: { file: pdf(1), entity: { type: 'property', id: 'p-1' } } }, { token })).upload;
    expect((await ok(app.url, RenderUrlDocument, { id: doc.id, width: 100 }, { token })).media!.renderUrl).toBeNull();
    const photo = await upload(token, await noisyJpeg(300, 200));
    for (const args of [{ width: 0 }, { width: 4097 }, { height: -1 }, { quality: 0 }, { quality: 101 }]) {
      const r = await gql(app.url, RenderUrlDocument, { id: photo.id, ...args }, { token });
      expect(codeOf(r)).toBe('BAD_USER_INPUT');
      expect(r.errors?.[0]?.extensions?.['field']).toBe(Object.keys(args)[0]);
    }
  });

  it("an encrypted media's renders are encrypted at rest and served decrypted with a token only", async () => {
    const tenant = newTenant('rn');
    const token = await app.token(tenant);
    const m = await upload(token, await noisyJpeg(600, 400), 'person');
    expect(m.encrypted).toBe(true);
    // Its variant URLs carry no signature: the route needs a token.
    expect(m.variants[0]!.url).toBe(`${app.url}/media/${m.id}/variants/THUMB`);
    expect((await fetch(m.variants[0]!.url)).status).toBe(401);
    const res = await render(m.id, 'w=200&format=png', bearer(token));
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('private, no-store');
    const { bytes, meta } = await imageOf(res);
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 200, 133]);
    const thumb = await fetch(m.variants[0]!.url, { headers: bearer(token) });
    const thumbBytes = Buffer.from(await thumb.arrayBuffer());
    expect((await sharp(thumbBytes).metadata()).width).toBe(160);
    const rows = await renderRows(tenant);
    expect(rows).toHaveLength(2);
    for (const row of rows) {
      expect(row.encryptionKeyId).not.toBeNull();
      const atRest = await rawStored(row.storageKey).catch((e: unknown) => e);
      if (atRest instanceof Buffer) {
        // Application-side segments: neither image's bytes, nor even their magic numbers.
        expect(atRest.includes(bytes.subarray(0, 64))).toBe(false);
        expect(atRest.includes(thumbBytes.subarray(0, 64))).toBe(false);
        expect(atRest.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).toBe(false);
        expect(atRest.subarray(0, 3).equals(Buffer.from([0xff, 0xd8, 0xff]))).toBe(false);
      } else {
        // SSE-C: the store refuses the object without its customer key.
        expect(atRest).toMatchObject({ code: 'STORAGE_UNAVAILABLE' });
      }
    }
  });

  it('deleting the media removes its renders (objects and rows)', async () => {
    const tenant = newTenant('rn');
    const token = await app.token(tenant);
    const m = await upload(token, await noisyJpeg());
    for (const q of ['w=100', 'w=200&format=webp', 'w=50&h=50&fit=cover&format=png']) expect((await render(m.id, q, bearer(token))).status).toBe(200);
    expect((await fetch(m.variants[0]!.url)).status).toBe(200);
    expect(await storedKeys(app, tenant)).toHaveLength(5);
    expect(await renderRows(tenant)).toHaveLength(4);
    expect((await ok(app.url, RenderDeleteDocument, { id: m.id }, { token })).deleteMedia).toBe(true);
    expect(await storedKeys(app, tenant)).toEqual([]);
    expect(await renderRows(tenant)).toHaveLength(0);
    expect((await render(m.id, 'w=100', bearer(token))).status).toBe(404);
  });

  it('the sweep keeps live renders and removes renders left by a crash (object without row) and rows of an earlier original', async () => {
    const tenant = newTenant('rn');
    const token = await app.token(tenant);
    const m = await upload(token, await noisyJpeg());
    expect((await render(m.id, 'w=100', bearer(token))).status).toBe(200);
    const live = await storedKeys(app, tenant);
    // A render whose row never committed, and a row of a render of another original.
    const orphan = `${tenant}/${m.id}/r-${'a'.repeat(32)}`;
    await app.services.storage.put(orphan, Readable.from([Buffer.from('x')]));
    await app.db.prisma.$executeRaw`INSERT INTO image_render (tenant_id, owner_kind, owner_id, source_key, params_hash, params, storage_key, size, media_type, width, height, created_at)
      VALUES (${tenant}, 'media', ${m.id}::uuid, ${`${tenant}/${m.id}/original-old`}, ${'b'.repeat(32)}, 'v1 1x1 inside jpeg q80', ${`${tenant}/${m.id}/r-${'b'.repeat(32)}`}, 1, 'image/jpeg', 1, 1, now() - interval '1 hour')`;
    await new Promise((r) => setTimeout(r, 1100));
    const report = await sweepTenant(app, tenant, 1);
    expect(report).toMatchObject({ staleRendersRemoved: 1, staleMediaObjectsDeleted: 1, orphanGroupsDeleted: 0 });
    expect((await storedKeys(app, tenant)).sort()).toEqual(live.sort());
    expect(await renderRows(tenant)).toHaveLength(1);
    expect((await render(m.id, 'w=100', bearer(token))).headers.get('x-render-outcome')).toBe('hit');
  });

  it.each([
    ['w=0', 'w'],
    ['w=4097', 'w'],
    ['h=99999', 'h'],
    ['w=1.5', 'w'],
    ['w=-3', 'w'],
    ['w=abc', 'w'],
    ['q=0', 'q'],
    ['q=101', 'q'],
    ['fit=fill', 'fit'],
    ['format=gif', 'format'],
    ['format=svg', 'format'],
    ['width=100', 'width'],
    ['w=100&w=200', 'w'],
    ['w[]=1', 'w'],
  ])('refuses ?%s with BAD_USER_INPUT, and stores nothing', async (query, param) => {
    const tenant = newTenant('rn');
    const token = await app.token(tenant);
    const m = await upload(token, await noisyJpeg(300, 200));
    const res = await render(m.id, query, bearer(token));
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('BAD_USER_INPUT');
    expect(body.error.message).toContain(param);
    expect(await renderRows(tenant)).toHaveLength(0);
    expect(await storedKeys(app, tenant)).toHaveLength(1);
  });

  it('an image whose header reads but whose pixels do not decode: the upload takes it, its renders are 415 and store nothing', async () => {
    const tenant = newTenant('rn');
    const token = await app.token(tenant);
    const good = Buffer.from(await (await noisyJpeg(600, 400)).arrayBuffer());
    // Cut in the middle of its pixels: the header is whole, the image is not.
    const broken = good.subarray(0, Math.floor(good.length / 2));
    const m = await upload(token, new File([broken], 'broken.jpg', { type: 'image/jpeg' }));
    expect([m.width, m.height]).toEqual([600, 400]);
    const res = await render(m.id, 'w=100', bearer(token));
    expect(res.status).toBe(415);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect((await fetch(m.variants[0]!.url)).status).toBe(415);
    expect(await renderRows(tenant)).toHaveLength(0);
    expect(await storedKeys(app, tenant)).toHaveLength(1);
    expect(app.services.images.stats()).toMatchObject({ running: 0, memoryInUse: 0 });
  });

  it('a media that is not an image is UNSUPPORTED_MEDIA_TYPE (415)', async () => {
    const tenant = newTenant('rn');
    const token = await app.token(tenant);
    const doc = (await ok(app.url, RenderUploadDocument, { input: { file: pdf(1), entity: { type: 'property', id: 'p-1' } } }, { token })).upload;
    const res = await render(doc.id, 'w=100', bearer(token));
    expect(res.status).toBe(415);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
  });

  it('image assets render on the by-key route: a PUBLIC one for anyone, a PRIVATE one with a token of its tenant', async () => {
    const tenant = newTenant('rn');
    const token = await app.token(tenant);
    const file = await noisyJpeg(800, 600);
    const pub = (await ok(app.url, CreateAssetDocument, { input: { type: 'BLOB', access: 'PUBLIC', key: 'hero', file } }, { token })).createAsset;
    const res = await fetch(`${app.url}/tenants/${tenant}/assets/hero?w=200&format=webp`);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('public, max-age=2592000');
    const { meta } = await imageOf(res);
    expect([meta.format, meta.width, meta.height]).toEqual(['webp', 200, 150]);
    expect((await fetch(`${app.url}/tenants/${tenant}/assets/hero?w=200&format=webp`)).headers.get('x-render-outcome')).toBe('hit');
    // The download route sends a PUBLIC asset's render to its public URL.
    const moved = await fetch(`${app.url}/assets/${pub.id}/download?w=200&format=webp`, { headers: bearer(token), redirect: 'manual' });
    expect(moved.status).toBe(301);
    expect(moved.headers.get('location')).toBe(`${app.url}/tenants/${tenant}/assets/hero?w=200&format=webp&v=1`);

    // Asset.renderUrl names the same render.
    const named = (await ok(app.url, AssetRenderUrlDocument, { id: pub.id, width: 200, format: 'WEBP' as never }, { token })).asset!.renderUrl;
    expect(named).toBe(`${app.url}/tenants/${tenant}/assets/hero?w=200&format=webp&v=1`);
    expect((await fetch(named!)).headers.get('x-render-outcome')).toBe('hit');

    const inner = (await ok(app.url, CreateAssetDocument, { input: { type: 'BLOB', access: 'PRIVATE', key: 'inner', file } }, { token })).createAsset;
    const innerUrl = (await ok(app.url, AssetRenderUrlDocument, { id: inner.id, width: 100 }, { token })).asset!.renderUrl;
    expect(innerUrl).toBe(`${app.url}/assets/${inner.id}/download?w=100`);
    expect((await fetch(innerUrl!)).status).toBe(401);
    const viaDownload = await fetch(innerUrl!, { headers: bearer(token) });
    expect(viaDownload.status).toBe(200);
    expect((await imageOf(viaDownload)).meta.width).toBe(100);
    expect((await fetch(`${app.url}/tenants/${tenant}/assets/inner?w=100`)).status).toBe(401);
    expect((await fetch(`${app.url}/tenants/${tenant}/assets/inner?w=100`, { headers: bearer(await app.token(newTenant('rn'))) })).status).toBe(404);
    const priv = await fetch(`${app.url}/tenants/${tenant}/assets/inner?w=100`, { headers: bearer(token) });
    expect(priv.status).toBe(200);
    expect(priv.headers.get('cache-control')).toBe('private, no-store');
    expect((await imageOf(priv)).meta.width).toBe(100);
    expect((await fetch(`${app.url}/tenants/${tenant}/assets/hero?w=5000`)).status).toBe(400);
  });
});

describe(`renders restricted to an allow-list of sizes (${STORE})`, () => {
  let limited: TestApp;
  beforeAll(async () => {
    limited = await startTestApp({ env: { RENDER_SIZES: '160,320, 640' } });
  });
  afterAll(async () => {
    await limited?.close();
  });

  it('refuses other sizes with BAD_USER_INPUT naming the allowed ones; the named variants always work', async () => {
    const tenant = newTenant('rn');
    const token = await limited.token(tenant);
    const m = (await ok(limited.url, RenderUploadDocument, { input: { file: await noisyJpeg(), entity: { type: 'property', id: 'p-1' } } }, { token })).upload;
    const refused = await render(m.id, 'w=300', bearer(token), limited.url);
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toBe('w=300 is not an allowed render size; allowed: 160, 320, 640');
    expect((await render(m.id, 'w=320&h=160&fit=cover', bearer(token), limited.url)).status).toBe(200);
    const r = await gql(limited.url, RenderUrlDocument, { id: m.id, width: 300 }, { token });
    expect(r.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'width' });
    for (const v of m.variants) expect((await fetch(v.url)).status).toBe(200);
  });
});

describe(`THUMBs warmed after the upload (RENDER_WARM_THUMBS, ${STORE})`, () => {
  let warm: TestApp;
  beforeAll(async () => {
    warm = await startTestApp({ env: { RENDER_WARM_THUMBS: 'true' } });
  });
  afterAll(async () => {
    await warm?.close();
  });

  it('renders THUMB in the background once the upload has answered; its first request is a hit', async () => {
    const tenant = newTenant('rn');
    const token = await warm.token(tenant);
    const m = (await ok(warm.url, RenderUploadDocument, { input: { file: await noisyJpeg(), entity: { type: 'property', id: 'p-1' } } }, { token })).upload;
    const deadline = Date.now() + 20_000;
    while ((await warm.db.prisma.imageRender.count({ where: { tenantId: tenant } })) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const rows = await warm.db.prisma.imageRender.findMany({ where: { tenantId: tenant } });
    expect(rows.map((r) => r.params)).toEqual(['v1 160x107 inside jpeg q80']);
    const thumb = await fetch(m.variants[0]!.url);
    expect(thumb.status).toBe(200);
    expect(thumb.headers.get('x-render-outcome')).toBe('hit');
    // Only THUMB: the other variants wait for their first request.
    expect((await fetch(m.variants[1]!.url)).headers.get('x-render-outcome')).toBe('rendered');
  });
});

describe(`renders and key rotation (${STORE})`, () => {
  const OLD = `old:${randomBytes(32).toString('base64')}`;
  const NEW = `new:${randomBytes(32).toString('base64')}`;

  it('a render made while a rotation retires the old objects survives it (its object is named after the new original)', async () => {
    const a = await startTestApp({ env: { MEDIA_KEYS: OLD } });
    const dataDir = a.dataDir;
    const tenant = newTenant('rr');
    let id: string;
    try {
      const token = await a.token(tenant);
      id = (await ok(a.url, RenderUploadDocument, { input: { file: await noisyJpeg(600, 400), entity: { type: 'person', id: 'p-1' } } }, { token })).upload.id;
      expect((await fetch(`${a.url}/media/${id}/variants/THUMB`, { headers: bearer(token) })).status).toBe(200);
    } finally {
      await a.close({ keepData: true });
    }
    const b = await startTestApp({ dataDir, env: { MEDIA_KEYS: `${NEW},${OLD}` } });
    try {
      const token = await b.token(tenant);
      const run = b.services.rotation.run({ tenant });
      // Once the row names the new key, and before the old objects are deleted (3 s later), the THUMB is asked for again.
      const deadline = Date.now() + 20_000;
      while ((await b.db.prisma.media.findFirst({ where: { tenantId: tenant, id: id! } }))?.encryptionKeyId !== 'new' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const during = await fetch(`${b.url}/media/${id!}/variants/THUMB`, { headers: bearer(token) });
      expect(during.status).toBe(200);
      expect(during.headers.get('x-render-outcome')).toBe('rendered');
      await during.arrayBuffer();
      expect(await run).toEqual({ rotated: 1, failed: [] });
      const after = await fetch(`${b.url}/media/${id!}/variants/THUMB`, { headers: bearer(token) });
      expect(after.status).toBe(200);
      expect(after.headers.get('x-render-outcome')).toBe('hit');
      expect((await sharp(Buffer.from(await after.arrayBuffer())).metadata()).width).toBe(160);
      const rows = await b.db.prisma.imageRender.findMany({ where: { tenantId: tenant } });
      expect(rows.map((r) => r.encryptionKeyId)).toEqual(['new']);
    } finally {
      await b.close();
    }
  });
});
