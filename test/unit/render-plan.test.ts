import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import sharp from 'sharp';
import { isAppError } from '../../src/errors/index.js';
import { canonicalQuery, formatFor, parseRenderQuery, planPreset, planRender, presetVariants, MAX_RENDER_SIDE } from '../../src/modules/renders/render-plan.js';
import { ImageHeaderProbe, readHeader } from '../../src/ingest/image-header.js';
import { fuzzParameters } from '../helpers/fuzz.js';

const photo = { width: 4000, height: 3000, mediaType: 'image/jpeg' };

describe('render plans', () => {
  it('fits inside, never upscales, and keeps the aspect ratio', () => {
    expect(planRender(parseRenderQuery({ w: '400' }), photo)).toMatchObject({ width: 400, height: 300, fit: 'inside', format: 'jpeg', quality: 80 });
    expect(planRender(parseRenderQuery({ w: '400', h: '400' }), photo)).toMatchObject({ width: 400, height: 300 });
    expect(planRender(parseRenderQuery({ w: '4096', h: '4096' }), photo)).toMatchObject({ width: 4000, height: 3000 });
    expect(planRender(parseRenderQuery({}), { width: 6000, height: 1000, mediaType: 'image/png' })).toMatchObject({ width: 4096, height: 683, format: 'png', quality: undefined });
    expect(planRender(parseRenderQuery({ w: '300', h: '300', fit: 'cover' }), photo)).toMatchObject({ width: 300, height: 300, fit: 'cover' });
    // A box bigger than the image: the largest box of that shape it fills.
    expect(planRender(parseRenderQuery({ w: '4000', h: '4000', fit: 'cover' }), photo)).toMatchObject({ width: 3000, height: 3000, fit: 'cover' });
    expect(planRender(parseRenderQuery({ w: '4000', h: '4000', fit: 'contain' }), photo)).toMatchObject({ width: 4000, height: 4000, fit: 'contain' });
    // A box of the image's own shape is the inside render.
    expect(planRender(parseRenderQuery({ w: '400', h: '300', fit: 'cover' }), photo).params).toBe(planRender(parseRenderQuery({ w: '400' }), photo).params);
  });

  it('shares one render between requests that would produce the same bytes', () => {
    const a = planRender(parseRenderQuery({ w: '160', format: 'jpeg' }), photo);
    const b = planPreset('THUMB', photo);
    const c = planRender(parseRenderQuery({ w: '160', h: '999', q: '80' }), photo, 'text/html');
    expect(a.params).toBe('v1 160x120 inside jpeg q80');
    expect(b.params).toBe(a.params);
    expect(c.params).toBe(a.params);
    expect(c.varyAccept).toBe(true);
    expect(a.hash).toMatch(/^[0-9a-f]{32}$/);
    expect(planRender(parseRenderQuery({ w: '160', format: 'webp' }), photo).hash).not.toBe(a.hash);
  });

  it('lists the variants an image has, with the sizes they render at', () => {
    expect(presetVariants(photo).map((v) => [v.name, v.width, v.height])).toEqual([['THUMB', 160, 120], ['MEDIUM', 640, 480], ['LARGE', 1280, 960], ['LARGE_2X', 2560, 1920]]);
    expect(presetVariants({ width: 100, height: 50, mediaType: 'image/gif' })).toEqual([{ name: 'THUMB', width: 100, height: 50, mediaType: 'image/gif' }]);
    expect(presetVariants({ width: 100, height: 50, mediaType: 'application/pdf' })).toEqual([]);
  });

  it.each([
    ['image/avif,image/webp,*/*', 'avif'],
    ['image/webp', 'webp'],
    ['IMAGE/WEBP;q=0.5', 'webp'],
    ['image/avif;q=0, image/webp;q=0.9', 'webp'],
    ['image/*,*/*', 'jpeg'],
    ['', 'jpeg'],
  ] as const)('format=auto with Accept %j is %s', (accept, format) => {
    expect(formatFor(accept, 'jpeg')).toBe(format);
  });

  it('a canonical query reads back as the same request', () => {
    const r = parseRenderQuery({ q: '70', format: 'webp', h: '20', w: '10', fit: 'cover' });
    expect(canonicalQuery(r)).toBe('w=10&h=20&fit=cover&format=webp&q=70');
    expect(parseRenderQuery(Object.fromEntries(new URLSearchParams(canonicalQuery(r))))).toEqual(r);
    expect(canonicalQuery(parseRenderQuery({ fit: 'inside', format: 'auto' }))).toBe('');
  });

  it('fuzz: any query is a valid request or BAD_USER_INPUT, and any valid request plans within the limits', () => {
    const key = fc.oneof(fc.constantFrom('w', 'h', 'fit', 'format', 'q', 'token'), fc.string({ maxLength: 8 }));
    const value = fc.oneof(fc.integer({ min: -10, max: 10_000 }).map(String), fc.constantFrom('cover', 'contain', 'inside', 'auto', 'webp', 'avif', 'jpeg', 'png', 'gif'), fc.string({ maxLength: 12 }), fc.array(fc.string({ maxLength: 3 }), { maxLength: 2 }));
    const source = fc.record({ width: fc.integer({ min: 1, max: 20_000 }), height: fc.integer({ min: 1, max: 20_000 }), mediaType: fc.constantFrom('image/jpeg', 'image/png', 'image/webp', 'image/gif') });
    fc.assert(
      fc.property(fc.dictionary(key, value, { maxKeys: 6 }), source, fc.string({ maxLength: 40 }), (query, src, accept) => {
        let request;
        try {
          request = parseRenderQuery(query, { ignore: ['token'] });
        } catch (e) {
          expect(isAppError(e) && e.code === 'BAD_USER_INPUT').toBe(true);
          return;
        }
        const plan = planRender(request, src, accept);
        expect(plan.width).toBeGreaterThanOrEqual(1);
        expect(plan.height).toBeGreaterThanOrEqual(1);
        expect(plan.width).toBeLessThanOrEqual(Math.min(MAX_RENDER_SIDE, request.width ?? MAX_RENDER_SIDE, Math.max(src.width, plan.fit === 'inside' ? 0 : request.width ?? 0)));
        expect(plan.height).toBeLessThanOrEqual(MAX_RENDER_SIDE);
        if (plan.fit === 'inside') {
          expect(plan.width).toBeLessThanOrEqual(src.width);
          expect(plan.height).toBeLessThanOrEqual(src.height);
        }
      }),
      fuzzParameters(2000),
    );
  });

  it('refuses sizes outside the allow-list, naming the allowed ones', () => {
    expect(() => parseRenderQuery({ w: '300' }, { allowedSizes: [160, 320] })).toThrow('w=300 is not an allowed render size; allowed: 160, 320');
    expect(parseRenderQuery({ w: '320', h: '160' }, { allowedSizes: [160, 320] })).toMatchObject({ width: 320, height: 160 });
  });
});

describe('image headers', () => {
  it('reads the size from the first bytes only, orientation applied', async () => {
    const jpeg = await sharp({ create: { width: 400, height: 200, channels: 3, background: '#345' } }).withMetadata({ orientation: 6 }).jpeg().toBuffer();
    expect(await readHeader(jpeg.subarray(0, 2048))).toMatchObject({ width: 400, height: 200, displayWidth: 200, displayHeight: 400, format: 'jpeg' });
    expect(await readHeader(Buffer.from('not an image at all'))).toBeUndefined();
  });

  it('finds a header past the first 64 KiB (large EXIF segments), and holds at most 1 MiB', async () => {
    // A JPEG whose application segments (three APP12 of 60000 bytes, as a camera's
    // maker data or a Photoshop file may have) push the frame header to about 180 KiB.
    const plain = await sharp({ create: { width: 320, height: 240, channels: 3, background: '#345' } }).jpeg().toBuffer();
    const app12 = () => Buffer.concat([Buffer.from([0xff, 0xec, 0xea, 0x62]), Buffer.alloc(60_000, 0x41)]);
    const jpeg = Buffer.concat([plain.subarray(0, 2), app12(), app12(), app12(), plain.subarray(2)]);
    expect(await readHeader(jpeg.subarray(0, 64 * 1024))).toBeUndefined();
    const probe = new ImageHeaderProbe();
    for (let i = 0; i < jpeg.length; i += 7000) probe.feed(jpeg.subarray(i, i + 7000));
    expect(await probe.finish()).toMatchObject({ width: 320, height: 240 });
    // Garbage: nothing found, and the probe stopped keeping bytes at 1 MiB.
    const junk = new ImageHeaderProbe();
    for (let i = 0; i < 40; i++) junk.feed(Buffer.alloc(64 * 1024, i));
    expect((junk as unknown as { length: number }).length).toBe(1024 * 1024);
    expect(await junk.finish()).toBeUndefined();
  });
});
