import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { MediaForEntityDocument, SearchByTagsDocument, SecEntityMediaDocument, SecUploadDocument, SecUploadLevelDocument, SecUploadManyDocument, type UploadInput } from '../generated/graphql.js';
import { startTestApp, newTenant, STORAGE_DRIVER, type TestApp } from '../helpers/app.js';
import { codeOf, gql, ok, type GqlResult } from '../helpers/client.js';
import { htmlAsPng, jpeg, jpegOfSize, mp4, pdf, png } from '../helpers/files.js';
import { expectNothingStored, expectResponsive, multipartBody, rawPost, recordUncaught, rowCounts, within } from '../helpers/security.js';
import { storedKeys } from '../helpers/stored.js';
import type { Storage } from '../../src/storage/index.js';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(() => app?.close());

const MiB = 1024 * 1024;
const property = (id = 'p-1') => ({ type: 'property', id });

/** One upload through the real multipart client, failing the test if it does not answer within 20 s. */
async function upload(token: string, input: UploadInput, options: { preflight?: boolean } = {}): Promise<GqlResult<unknown>> {
  return within(gql(app.url, SecUploadDocument, { input }, { token, ...options }), 20_000, 'upload');
}

/** Sends a refused upload, checks the code (and field), that nothing was stored and that the server still answers. */
async function expectRefused(input: UploadInput, code: string, field?: string | RegExp): Promise<GqlResult<unknown>> {
  const tenant = newTenant('bad');
  const token = await app.token(tenant);
  const r = await upload(token, input);
  expect(r.data ?? null, JSON.stringify(r.errors)).toBeNull();
  expect(r.errors).toHaveLength(1);
  expect(codeOf(r), JSON.stringify(r.errors)).toBe(code);
  if (field !== undefined) {
    const actual = r.errors?.[0]?.extensions?.field;
    if (typeof field === 'string') expect(actual).toBe(field);
    else expect(actual).toMatch(field);
  }
  await expectNothingStored(app, tenant);
  await expectResponsive(app, token);
  return r;
}

describe('refused uploads store nothing and leave the server responsive', () => {
  it('HTML wearing a .png name and image/png type is UNSUPPORTED_MEDIA_TYPE', async () => {
    await expectRefused({ file: htmlAsPng('innocent.png'), entity: property() }, 'UNSUPPORTED_MEDIA_TYPE', 'file');
  });

  it('an SVG (script-capable) image is UNSUPPORTED_MEDIA_TYPE', async () => {
    const svg = new File(['<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'], 'logo.svg', { type: 'image/svg+xml' });
    await expectRefused({ file: svg, entity: property() }, 'UNSUPPORTED_MEDIA_TYPE');
  });

  it('a PNG declared as image/jpeg is UNSUPPORTED_MEDIA_TYPE', async () => {
    const r = await expectRefused({ file: await png(320, 200, 'photo.jpg', 'image/jpeg'), entity: property() }, 'UNSUPPORTED_MEDIA_TYPE', 'file');
    expect(r.errors?.[0]?.message).toMatch(/image\/jpeg/);
    expect(r.errors?.[0]?.message).toMatch(/image\/png/);
  });

  it('an empty file is BAD_USER_INPUT', async () => {
    await expectRefused({ file: new File([], 'empty.jpg', { type: 'image/jpeg' }), entity: property() }, 'BAD_USER_INPUT', 'file');
  });

  it('a JPEG of exactly 10 MiB is stored on a STANDARD entity; one byte more is PAYLOAD_TOO_LARGE', async () => {
    const tenant = newTenant('lim');
    const token = await app.token(tenant);
    const atLimit = await jpegOfSize(10 * MiB, 'at-limit.jpg');
    const r = await upload(token, { file: atLimit, entity: property() });
    expect(r.errors).toBeUndefined();
    expect((r.data as { upload: { fileSize: number; mediaType: string } }).upload).toMatchObject({ fileSize: 10 * MiB, mediaType: 'image/jpeg' });
    expect(await rowCounts(app, tenant)).toEqual({ media: 1, attachments: 1, roles: 0 });

    const over = await expectRefused({ file: await jpegOfSize(10 * MiB + 1, 'over.jpg'), entity: property() }, 'PAYLOAD_TOO_LARGE', 'file');
    expect(over.errors?.[0]?.extensions?.['limit']).toBe(10 * MiB);
  });

  it('33 tags are BAD_USER_INPUT on the tags field; 32 are accepted', async () => {
    const tags = Array.from({ length: 33 }, (_, i) => `tag${i}`);
    const r = await expectRefused({ file: await jpeg(64, 64), entity: property(), tags }, 'BAD_USER_INPUT', 'input.tags');
    expect(r.errors?.[0]?.message).toMatch(/33/);
    // The boundary: duplicates and comma-separated pieces count once, 32 distinct tags pass.
    const tenant = newTenant('tags');
    const token = await app.token(tenant);
    const ok32 = await upload(token, { file: await jpeg(64, 64), entity: property(), tags: [...tags.slice(0, 31).map((t) => t.toUpperCase()), 'tag0,tag31', ' tag5 '] });
    expect(ok32.errors).toBeUndefined();
    expect((ok32.data as { upload: { tags: string[] } }).upload.tags).toHaveLength(32);
  });

  it.each([
    ['bad tag!', 'bad tag!'],
    ['<script>', '<script>'],
    ['a'.repeat(65), 'a'.repeat(65)],
    ['ok,caf\u00e9', 'caf\u00e9'],
  ])('a tag with bad characters (%s) is BAD_USER_INPUT naming it', async (tag, named) => {
    const r = await expectRefused({ file: await jpeg(64, 64), entity: property(), tags: ['fine', tag] }, 'BAD_USER_INPUT', 'input.tags');
    expect(r.errors?.[0]?.message).toContain(`"${named}"`);
  });

  it('an unknown entity type is BAD_USER_INPUT', async () => {
    const r = await expectRefused({ file: await jpeg(64, 64), entity: { type: 'spaceship', id: 'x1' } }, 'BAD_USER_INPUT', 'input.entity.type');
    expect(r.errors?.[0]?.message).toContain('spaceship');
  });

  it('an MP4 on a company (which does not allow video) is UNSUPPORTED_MEDIA_TYPE', async () => {
    const r = await expectRefused({ file: mp4(), entity: { type: 'company', id: 'c-1' } }, 'UNSUPPORTED_MEDIA_TYPE', 'file');
    expect(r.errors?.[0]?.message).toContain('video/mp4');
  });

  // SPEC 4/9: SENSITIVE and CRITICAL content is stored encrypted, never in plaintext.
  // While encryption is not available the server must refuse it (BAD_USER_INPUT,
  // nothing stored); once it is, the content must be stored encrypted. Either way,
  // plaintext never reaches storage and no credential-free url is handed out.
  it.each([
    ['a SENSITIVE entity (person)', 'SENSITIVE', async (): Promise<UploadInput> => ({ file: await jpeg(64, 64), entity: { type: 'person', id: 'u-1' } })],
    ['a CRITICAL entity (lease)', 'CRITICAL', async (): Promise<UploadInput> => ({ file: pdf(1, 'lease.pdf'), entity: { type: 'lease', id: 'l-1' } })],
    ['role ID_DOCUMENT on a property', 'CRITICAL', async (): Promise<UploadInput> => ({ file: await jpeg(64, 64), entity: property(), role: 'ID_DOCUMENT' })],
    ['role LEASE_ORIGINAL on a property', 'CRITICAL', async (): Promise<UploadInput> => ({ file: pdf(1), entity: property(), role: 'LEASE_ORIGINAL' })],
    ['a raised level (SENSITIVE) on a property', 'SENSITIVE', async (): Promise<UploadInput> => ({ file: await jpeg(64, 64), entity: property(), securityLevel: 'SENSITIVE' })],
  ] as const)('%s is never stored in plaintext: refused with BAD_USER_INPUT storing nothing, or stored encrypted', async (_label, level, makeInput) => {
    const tenant = newTenant('sec');
    const token = await app.token(tenant);
    const input = await makeInput();
    const plain = Buffer.from(await (input.file as File).arrayBuffer());
    const r = await within(gql(app.url, SecUploadLevelDocument, { input }, { token }), 20_000, 'upload');
    if (r.errors) {
      expect(r.errors).toHaveLength(1);
      expect(codeOf(r)).toBe('BAD_USER_INPUT');
      expect(r.errors[0]!.message).toMatch(/encrypt/i);
      await expectNothingStored(app, tenant);
    } else {
      const m = r.data!.upload;
      expect(m).toMatchObject({ securityLevel: level, encrypted: true, url: null });
      expect(m.encryptionKeyId).toBeTruthy();
      if (STORAGE_DRIVER === 'local') {
        const stored = await readFile(path.join(app.dataDir, 'blobs', tenant, m.id, 'original'));
        expect(stored.equals(plain)).toBe(false);
        expect(stored.includes(plain.subarray(0, 48))).toBe(false);
      }
      const res = await fetch(`${app.url}${m.contentPath}`, { headers: { authorization: `Bearer ${token}` } });
      expect(res.status).toBe(200);
      expect(res.headers.get('cache-control')).toBe('private, no-store');
      expect(Buffer.from(await res.arrayBuffer()).equals(plain)).toBe(true);
    }
    await expectResponsive(app, token);
  });

  it('asking a lower securityLevel than the policy gives is BAD_USER_INPUT on securityLevel', async () => {
    const r = await expectRefused({ file: await jpeg(64, 64), entity: { type: 'person', id: 'u-1' }, securityLevel: 'STANDARD' }, 'BAD_USER_INPUT', 'input.securityLevel');
    expect(r.errors?.[0]?.message).toMatch(/SENSITIVE/);
    await expectRefused({ file: pdf(1), entity: { type: 'lease', id: 'l-1' }, securityLevel: 'SENSITIVE' }, 'BAD_USER_INPUT', 'input.securityLevel');
  });

  it('an upload whose variables fail validation is refused before the resolver and does not wedge the server', async () => {
    const tenant = newTenant('val');
    const token = await app.token(tenant);
    // A 2 MiB file, so that the body is far larger than any socket buffer.
    const file = await jpegOfSize(2 * MiB);
    const r = await within(
      gql(app.url, SecUploadDocument, { input: { file, entity: { type: 'property' } } } as never, { token }),
      20_000,
      'invalid-variables upload',
    );
    expect(r.status).toBe(400);
    expect(codeOf(r)).toBe('BAD_USER_INPUT');
    await expectNothingStored(app, tenant);
    await expectResponsive(app, token);
  });
});

describe('refusals while the storage backend is still setting up the write', () => {
  // A driver that takes a moment before it reads the body (S3 creating a multipart
  // upload, a slow disk): the content is refused while nobody consumes the stream yet.
  let slow: TestApp;
  beforeAll(async () => {
    slow = await startTestApp({
      storage: (_dataDir, real) =>
        new Proxy(real, {
          get(target, p, receiver) {
            if (p === 'put') {
              return async (...args: Parameters<Storage['put']>) => {
                await new Promise((r) => setTimeout(r, 150));
                return target.put(...args);
              };
            }
            const v = Reflect.get(target, p, receiver);
            return typeof v === 'function' ? v.bind(target) : v;
          },
        }),
    });
  });
  afterAll(() => slow?.close());

  // In production an uncaught exception ends the process; here vitest would only report it.
  const uncaught = recordUncaught();

  it.each([
    ['HTML named .png', () => htmlAsPng(), 'UNSUPPORTED_MEDIA_TYPE'],
    ['an empty file', () => new File([], 'empty.jpg', { type: 'image/jpeg' }), 'BAD_USER_INPUT'],
    ['a PNG declared as JPEG', () => new File([Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489', 'hex')], 'x.jpg', { type: 'image/jpeg' }), 'UNSUPPORTED_MEDIA_TYPE'],
  ] as const)('%s is refused with its code, nothing stored, the process unharmed', async (_label, file, code) => {
    const tenant = newTenant('slow');
    const token = await slow.token(tenant);
    const r = await within(gql(slow.url, SecUploadDocument, { input: { file: file(), entity: property() } }, { token }), 20_000, 'upload');
    expect(codeOf(r), JSON.stringify(r.errors)).toBe(code);
    await expectNothingStored(slow, tenant);
    await expectResponsive(slow, token);
    // The same server still stores a good file afterwards.
    const good = await within(gql(slow.url, SecUploadDocument, { input: { file: await jpeg(64, 64), entity: property() } }, { token }), 20_000, 'upload');
    expect(good.errors).toBeUndefined();
    expect(uncaught).toEqual([]);
  });
});

describe('uploadMany is all or nothing', () => {
  it('a bad content at the 3rd of 4 inputs fails with index 2; none of the 4 is stored', async () => {
    const tenant = newTenant('many');
    const token = await app.token(tenant);
    const inputs: UploadInput[] = [
      { file: await jpeg(300, 200, 'a.jpg'), entity: property(), tags: ['a'] },
      { file: pdf(2, 'b.pdf'), entity: property(), role: 'PRIMARY_PHOTO' },
      { file: htmlAsPng('c.png'), entity: property() },
      { file: await jpeg(200, 300, 'd.jpg'), entity: property() },
    ];
    const r = await within(gql(app.url, SecUploadManyDocument, { inputs }, { token }), 20_000, 'uploadMany');
    expect(r.data ?? null).toBeNull();
    expect(codeOf(r)).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(r.errors?.[0]?.extensions?.index).toBe(2);
    await expectNothingStored(app, tenant);
    await expectResponsive(app, token);
  });

  it('an over-size file at input 1 of 3 fails with index 1 and PAYLOAD_TOO_LARGE; nothing is stored', async () => {
    const tenant = newTenant('many');
    const token = await app.token(tenant);
    const inputs: UploadInput[] = [
      { file: await jpeg(300, 200, 'a.jpg'), entity: property() },
      { file: await jpegOfSize(10 * MiB + 1, 'big.jpg'), entity: property() },
      { file: await jpeg(200, 300, 'c.jpg'), entity: property() },
    ];
    const r = await within(gql(app.url, SecUploadManyDocument, { inputs }, { token }), 20_000, 'uploadMany');
    expect(codeOf(r)).toBe('PAYLOAD_TOO_LARGE');
    expect(r.errors?.[0]?.extensions?.index).toBe(1);
    await expectNothingStored(app, tenant);
    await expectResponsive(app, token);
  });

  it('bad tags in input 1 fail with index 1 (field named) before any byte is stored', async () => {
    const tenant = newTenant('many');
    const token = await app.token(tenant);
    const inputs: UploadInput[] = [
      { file: await jpeg(300, 200, 'a.jpg'), entity: property() },
      { file: await jpeg(300, 200, 'b.jpg'), entity: property(), tags: ['ok', 'no spaces allowed'] },
      { file: await jpeg(300, 200, 'c.jpg'), entity: property() },
    ];
    const r = await within(gql(app.url, SecUploadManyDocument, { inputs }, { token }), 20_000, 'uploadMany');
    expect(codeOf(r)).toBe('BAD_USER_INPUT');
    expect(r.errors?.[0]?.extensions?.index).toBe(1);
    expect(r.errors?.[0]?.extensions?.field).toBe('inputs.1.tags');
    expect(r.errors?.[0]?.message).toContain('"no spaces allowed"');
    await expectNothingStored(app, tenant);
    await expectResponsive(app, token);
  });

  it('the same batch without the bad input stores all of them, in input order', async () => {
    const tenant = newTenant('many');
    const token = await app.token(tenant);
    const { uploadMany } = await ok(
      app.url,
      SecUploadManyDocument,
      { inputs: [{ file: await jpeg(300, 200, 'a.jpg'), entity: property() }, { file: pdf(1, 'b.pdf'), entity: property() }, { file: await jpeg(20, 30, 'c.jpg'), entity: property() }] },
      { token },
    );
    expect(uploadMany.map((m) => m.fileName)).toEqual(['a.jpg', 'b.pdf', 'c.jpg']);
    expect((await rowCounts(app, tenant)).media).toBe(3);
    expect((await storedKeys(app, tenant)).filter((k) => k.endsWith('/original'))).toHaveLength(3);
  });
});

describe('malformed multipart requests', () => {
  it('a multipart upload without Apollo-Require-Preflight is refused with 400 and stores nothing', async () => {
    const tenant = newTenant('csrf');
    const token = await app.token(tenant);
    const r = await upload(token, { file: await jpeg(64, 64), entity: property() }, { preflight: false });
    expect(r.status).toBe(400);
    expect(r.data ?? null).toBeNull();
    expect(r.errors?.[0]?.message).toMatch(/Apollo-Require-Preflight/);
    await expectNothingStored(app, tenant);
    await expectResponsive(app, token);
  });

  const UPLOAD_QUERY = 'mutation ($input: UploadInput!) { upload(input: $input) { id } }';
  const operations = JSON.stringify({ query: UPLOAD_QUERY, variables: { input: { file: null, entity: { type: 'property', id: 'p-1' } } } });

  /**
   * `statuses`: what the HTTP status may be. Errors found by the multipart parser
   * answer 400 before GraphQL runs; errors a resolver finds while reading the file
   * follow the GraphQL convention (200 with the error's code).
   */
  async function expectMalformed(parts: Parameters<typeof multipartBody>[0], statuses: number[], message?: RegExp) {
    const tenant = newTenant('mal');
    const token = await app.token(tenant);
    const { body, contentType } = multipartBody(parts);
    const r = await rawPost(app, body, { 'content-type': contentType, authorization: `Bearer ${token}`, 'apollo-require-preflight': 'true' });
    expect(statuses, `status ${r.status}: ${r.text}`).toContain(r.status);
    const json = r.json as { errors?: { message: string; extensions?: { code?: string } }[]; data?: unknown };
    expect(json?.errors?.[0]?.extensions?.code, r.text).toBe('BAD_USER_INPUT');
    if (message) expect(json.errors?.[0]?.message).toMatch(message);
    expect(json.errors?.[0]?.message).not.toMatch(/Internal server error/);
    await expectNothingStored(app, tenant);
    await expectResponsive(app, token);
    return r;
  }

  it('operations that are not JSON: 400 with a clear message', async () => {
    await expectMalformed([{ name: 'operations', value: '{not json' }, { name: 'map', value: '{"0":["variables.input.file"]}' }], [400], /operations/);
  });

  it('a map that is not JSON: 400', async () => {
    await expectMalformed([{ name: 'operations', value: operations }, { name: 'map', value: '[[' }], [400], /map/);
  });

  it('a map entry pointing to a file part that is not in the request: a 4xx error naming the missing file', async () => {
    await expectMalformed(
      [
        { name: 'operations', value: operations },
        { name: 'map', value: '{"0":["variables.input.file"]}' },
      ],
      [200, 400],
      /missing|broken/i,
    );
  });

  it('files before the map (misordered fields): 400', async () => {
    await expectMalformed(
      [
        { name: 'operations', value: operations },
        { name: '0', filename: 'a.jpg', type: 'image/jpeg', data: Buffer.from(await (await jpeg(32, 32)).arrayBuffer()) },
        { name: 'map', value: '{"0":["variables.input.file"]}' },
      ],
      [400],
      /map/,
    );
  });

  it('a multipart body with no fields at all: a 4xx error, not a 500', async () => {
    await expectMalformed([], [400], /multipart/i);
  });

  it('a multipart content type without a boundary: a 4xx error, not a 500', async () => {
    const tenant = newTenant('mal');
    const token = await app.token(tenant);
    const r = await rawPost(app, 'garbage', { 'content-type': 'multipart/form-data; charset=utf-8', authorization: `Bearer ${token}`, 'apollo-require-preflight': 'true' });
    expect(r.status, r.text).toBe(400);
    expect((r.json as { errors?: { extensions?: { code?: string } }[] })?.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    await expectResponsive(app, token);
  });

  it('a body cut off in the middle of the file part: a 4xx error and nothing stored', async () => {
    const tenant = newTenant('mal');
    const token = await app.token(tenant);
    const { body, contentType } = multipartBody([
      { name: 'operations', value: operations },
      { name: 'map', value: '{"0":["variables.input.file"]}' },
      { name: '0', filename: 'a.jpg', type: 'image/jpeg', data: Buffer.from(await (await jpeg(200, 200)).arrayBuffer()) },
    ]);
    const cut = body.subarray(0, body.length - 600);
    const r = await rawPost(app, cut, { 'content-type': contentType, authorization: `Bearer ${token}`, 'apollo-require-preflight': 'true' });
    expect([200, 400], r.text).toContain(r.status);
    const code = (r.json as { errors?: { extensions?: { code?: string } }[] })?.errors?.[0]?.extensions?.code;
    expect(code, r.text).toBe('BAD_USER_INPUT');
    await expectNothingStored(app, tenant);
    await expectResponsive(app, token);
  });
});

describe('bad pagination arguments', () => {
  it('an invalid cursor is BAD_USER_INPUT on after', async () => {
    const token = await app.token(newTenant('pg'));
    for (const after of ['not-a-cursor', Buffer.from('["yesterday","x"]').toString('base64url'), Buffer.from('{}').toString('base64url')]) {
      const r = await gql(app.url, MediaForEntityDocument, { entity: property(), after }, { token });
      expect(codeOf(r), after).toBe('BAD_USER_INPUT');
      expect(r.errors?.[0]?.extensions?.field).toBe('after');
    }
    const s = await gql(app.url, SearchByTagsDocument, { tags: ['a'], after: 'zzz' }, { token });
    expect(codeOf(s)).toBe('BAD_USER_INPUT');
    const e = await gql(app.url, SecEntityMediaDocument, { type: 'property', id: 'p-1', after: '%%%' }, { token });
    expect(codeOf(e)).toBe('BAD_USER_INPUT');
  });

  it.each([0, 101, -1])('first=%i is BAD_USER_INPUT on first', async (first) => {
    const token = await app.token(newTenant('pg'));
    const r = await gql(app.url, MediaForEntityDocument, { entity: property(), first }, { token });
    expect(codeOf(r)).toBe('BAD_USER_INPUT');
    expect(r.errors?.[0]?.extensions?.field).toBe('first');
    const s = await gql(app.url, SearchByTagsDocument, { tags: ['a'], first }, { token });
    expect(codeOf(s)).toBe('BAD_USER_INPUT');
    const e = await gql(app.url, SecEntityMediaDocument, { type: 'property', id: 'p-1', first }, { token });
    expect(codeOf(e)).toBe('BAD_USER_INPUT');
  });

  it('first=1 and first=100 are accepted', async () => {
    const token = await app.token(newTenant('pg'));
    for (const first of [1, 100]) {
      const r = await ok(app.url, MediaForEntityDocument, { entity: property(), first }, { token });
      expect(r.mediaForEntity.totalCount).toBe(0);
    }
  });
});
