import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  AssetDocument,
  AssetsDocument,
  CreateAssetDocument,
  CreateDirectUploadDocument,
  DeleteAssetDocument,
  UpdateAssetDocument,
  type AssetFieldsFragment,
  type CreateAssetInput,
} from '../generated/graphql.js';
import { newTenant, startTestApp, STORAGE_DRIVER, type TestApp } from '../helpers/app.js';
import { sweepTenant } from '../helpers/sweep.js';
import { codeOf, gql, ok } from '../helpers/client.js';
import { htmlAsPng, jpeg, jpegOfSize, pdf, pdfBytes, png } from '../helpers/files.js';
import { htmlOfSize, openPut, serviceUploadUrl } from '../helpers/direct-put.js';
import { storedKeys } from '../helpers/stored.js';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp({ env: { SWEEP_INTERVAL_SECONDS: '0' } });
});
afterAll(() => app?.close());

const MiB = 1024 * 1024;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const bytesOf = async (f: Blob) => Buffer.from(await f.arrayBuffer());

async function create(token: string, input: CreateAssetInput): Promise<AssetFieldsFragment> {
  return (await ok(app.url, CreateAssetDocument, { input }, { token })).createAsset;
}

/** Asset rows of a tenant, deleted ones included. */
const rows = (tenant: string) => app.db.prisma.asset.count({ where: { tenantId: tenant } });

const sweep = (tenant: string) => sweepTenant(app, tenant);

/** A GET as a browser or a CDN would send it; redirects are not followed. */
const get = (path: string, headers: Record<string, string> = {}) =>
  fetch(path.startsWith('http') ? path : `${app.url}${path}`, { headers, redirect: 'manual' });
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
/** A conditional request as a browser revalidating sends it (fetch would add no-cache otherwise, see content-route.test.ts). */
const revalidate = (etag: string, token?: string) => ({ ...(token ? bearer(token) : {}), 'if-none-match': etag, 'cache-control': 'max-age=0' });

describe(`assets (${STORAGE_DRIVER})`, () => {
  describe('createAsset', () => {
    it('creates a PUBLIC image BLOB: sniffed details, checksum, variants, public URL by key with ?v=', async () => {
      const tenant = newTenant();
      const token = await app.token(tenant);
      const file = await jpeg(900, 600, 'hero.jpg');
      const bytes = await bytesOf(file);
      const a = await create(token, {
        type: 'BLOB',
        access: 'PUBLIC',
        key: 'catalog/spring/hero.jpg',
        refIds: [{ id: 'p-1', type: 'PRODUCT' }, { id: 'c-9', type: 'CATEGORY' }],
        priority: 7,
        file,
      });
      expect(a).toMatchObject({
        type: 'BLOB',
        access: 'PUBLIC',
        name: 'hero.jpg',
        key: 'catalog/spring/hero.jpg',
        refIds: [{ id: 'p-1', type: 'PRODUCT' }, { id: 'c-9', type: 'CATEGORY' }],
        details: { filename: 'hero.jpg', mimeType: 'image/jpeg', bytes: bytes.length, checksum: sha256(bytes) },
        priority: 7,
        active: true,
        downloadPath: `/assets/${a.id}/download`,
        publicUrl: `${app.url}/tenants/${tenant}/assets/catalog/spring/hero.jpg?v=1`,
      });
      expect(a.metadata.version).toBe(1);
      expect(a.metadata.createdAt).toBe(a.metadata.modifiedAt);
      expect(a.variants.map((v) => [v.name, v.width, v.height])).toEqual([['THUMB', 160, 107], ['MEDIUM', 640, 427]]);
      expect(a.variants[0]!.url).toBe(`${app.url}/tenants/${tenant}/assets/catalog/spring/hero.jpg?variant=THUMB&v=1`);

      // Only the original is stored by the upload: variants are rendered on their first request.
      const keys = await storedKeys(app, tenant);
      expect(keys).toHaveLength(1);
      expect(keys[0]!.startsWith(`${tenant}/${a.id}/v1-`)).toBe(true);
      expect(keys[0]!.split('/').pop()).toBe('original');

      // Anyone may fetch it, cacheable for 30 days.
      const res = await get(a.publicUrl!);
      expect(res.status).toBe(200);
      expect(res.headers.get('cache-control')).toBe('public, max-age=2592000');
      expect(res.headers.get('etag')).toBe(`"${sha256(bytes)}"`);
      expect(res.headers.get('content-type')).toBe('image/jpeg');
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('content-security-policy')).toBe("default-src 'none'; sandbox");
      expect(res.headers.get('content-disposition')).toBe('inline; filename=hero.jpg');
      expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true);

      const thumb = await get(a.variants[0]!.url);
      expect(thumb.status).toBe(200);
      expect(thumb.headers.get('content-type')).toBe('image/jpeg');
      expect(thumb.headers.get('content-disposition')).toBe('inline; filename=hero-thumb.jpg');
      expect(thumb.headers.get('cache-control')).toBe('public, max-age=2592000');
      expect(thumb.headers.get('x-render-outcome')).toBe('rendered');
      expect((await thumb.arrayBuffer()).byteLength).toBeGreaterThan(100);
      // Stored beside the original, in its revision folder.
      const after = await storedKeys(app, tenant);
      expect(after.map((k) => k.split('/').pop()).sort()).toEqual(['original', expect.stringMatching(/^r-[0-9a-f]{32}$/)]);
      expect(after.every((k) => k.startsWith(keys[0]!.slice(0, keys[0]!.lastIndexOf('/') + 1)))).toBe(true);
      expect((await get(a.variants[0]!.url)).headers.get('x-render-outcome')).toBe('hit');
    });

    it('creates a PRIVATE document BLOB with defaults: key = id, name = file name, no public URL, no variants', async () => {
      const tenant = newTenant();
      const token = await app.token(tenant);
      const file = pdf(3, 'spec sheet.pdf');
      const a = await create(token, { type: 'BLOB', access: 'PRIVATE', file });
      expect(a).toMatchObject({ key: a.id, name: 'spec sheet.pdf', publicUrl: null, variants: [], priority: 0, refIds: [] });
      expect(a.details).toEqual({ filename: 'spec sheet.pdf', mimeType: 'application/pdf', bytes: file.size, checksum: sha256(await bytesOf(file)) });
      expect(await storedKeys(app, tenant)).toHaveLength(1);
    });

    it('creates LINK assets with an absolute http(s) URL, PUBLIC or PRIVATE, storing nothing', async () => {
      const tenant = newTenant();
      const token = await app.token(tenant);
      const pub = await create(token, { type: 'LINK', access: 'PUBLIC', url: 'https://cdn.example.com/a b.png?x=1', key: 'logo', filename: 'logo.png' });
      expect(pub).toMatchObject({
        type: 'LINK',
        key: 'logo',
        name: 'logo.png',
        publicUrl: 'https://cdn.example.com/a%20b.png?x=1',
        details: { filename: 'logo.png', mimeType: null, bytes: null, checksum: null },
        variants: [],
      });
      const priv = await create(token, { type: 'LINK', access: 'PRIVATE', url: 'http://intranet.example/doc', name: 'Intranet' });
      expect(priv).toMatchObject({ name: 'Intranet', publicUrl: 'http://intranet.example/doc', details: { filename: null } });
      expect(await storedKeys(app, tenant)).toEqual([]);
      expect(await rows(tenant)).toBe(2);
    });

    it('creates a BLOB from a completed direct upload (signedId): same checks, usable once', async () => {
      const tenant = newTenant();
      // An asset manager may start a direct upload without media:create.
      const token = await app.token(tenant, { scopes: ['asset:manage', 'asset:read'] });
      const noScope = await gql(app.url, CreateDirectUploadDocument, { input: { filename: 'x.png', contentType: 'image/png', byteSize: 10, checksum: createHash('sha256').update('x').digest('base64') } }, { token: await app.token(tenant, { scopes: ['asset:read', 'media:read'] }) });
      expect(noScope.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', scopes: ['media:create', 'asset:manage'] });
      const bytes = await bytesOf(await png(400, 300));
      const ticket = (
        await ok(app.url, CreateDirectUploadDocument, {
          input: { filename: 'swatch.png', contentType: 'image/png', byteSize: bytes.length, checksum: createHash('sha256').update(bytes).digest('base64') },
        }, { token })
      ).createDirectUpload;
      expect((await fetch(ticket.url, { method: 'PUT', headers: ticket.headers.all as Record<string, string>, body: bytes })).status).toBe(200);

      // Another tenant cannot claim it.
      const other = await gql(app.url, CreateAssetDocument, { input: { type: 'BLOB', access: 'PUBLIC', signedId: ticket.signedId } }, { token: await app.token(newTenant()) });
      // Bound to the user who created it: another user of the same tenant gets NOT_FOUND.
      const colleagueTry = await gql(app.url, CreateAssetDocument, { input: { type: 'BLOB', access: 'PUBLIC', signedId: ticket.signedId } }, { token: await app.token(tenant, { subject: 'someone-else' }) });
      expect(codeOf(colleagueTry)).toBe('NOT_FOUND');
      expect(codeOf(other)).toBe('NOT_FOUND');

      const a = await create(token, { type: 'BLOB', access: 'PUBLIC', signedId: ticket.signedId, key: 'swatch' });
      // A fresh id: the ticket's object group is not the asset's.
      expect(a.id).not.toBe(ticket.key.split('/')[1]);
      expect(a).toMatchObject({ name: 'swatch.png', details: { filename: 'swatch.png', mimeType: 'image/png', bytes: bytes.length, checksum: sha256(bytes) } });
      expect(a.variants.map((v) => v.name)).toEqual(['THUMB']);
      const served = await get(a.publicUrl!);
      expect(Buffer.from(await served.arrayBuffer()).equals(bytes)).toBe(true);

      const again = await gql(app.url, CreateAssetDocument, { input: { type: 'BLOB', access: 'PUBLIC', signedId: ticket.signedId, key: 'swatch-2' } }, { token });
      expect(codeOf(again)).toBe('CONFLICT');
      expect(await rows(tenant)).toBe(1);

      // The verified bytes were copied into the asset's first revision folder, the
      // variant rendered beside them on its first request; the staged object is gone.
      expect((await get(a.variants[0]!.url)).status).toBe(200);
      const keys = await storedKeys(app, tenant);
      expect(keys).toHaveLength(2);
      expect(keys).toEqual(expect.arrayContaining([expect.stringMatching(new RegExp(`^${tenant}/${a.id}/v1-[0-9a-f]{8}/original$`)), expect.stringMatching(new RegExp(`^${tenant}/${a.id}/v1-[0-9a-f]{8}/r-[0-9a-f]{32}$`))]));
      // The sweep leaves the asset's objects alone once the ticket is done with.
      await sweep(tenant);
      expect(await storedKeys(app, tenant)).toEqual(keys);
      expect((await get(a.publicUrl!)).status).toBe(200);
    });

    it('names a blob by its detected type, without bidi controls: upload, given filename, direct upload, rename', async () => {
      const tenant = newTenant();
      const token = await app.token(tenant);
      const terms = await create(token, { type: 'BLOB', access: 'PUBLIC', file: new File([pdfBytes(1)], 'terms.html', { type: 'application/pdf' }), key: 'terms' });
      expect(terms).toMatchObject({ name: 'terms.pdf', details: { filename: 'terms.pdf', mimeType: 'application/pdf' } });
      expect((await get(terms.publicUrl!)).headers.get('content-disposition')).toBe('attachment; filename=terms.pdf');
      const logo = await create(token, { type: 'BLOB', access: 'PRIVATE', file: await png(40, 40, 'logo.png'), filename: 'logo\u202Egnp.exe' });
      expect(logo.details.filename).toBe('logognp.png');
      const dl = await get(logo.downloadPath, bearer(token));
      expect(dl.headers.get('content-disposition')).toBe('inline; filename=logognp.png');

      const bytes = pdfBytes(2);
      const { createDirectUpload: ticket } = await ok(
        app.url,
        CreateDirectUploadDocument,
        { input: { filename: 'from-browser.html', contentType: 'application/pdf', byteSize: bytes.length, checksum: createHash('sha256').update(bytes).digest('base64') } },
        { token },
      );
      expect((await fetch(ticket.url, { method: 'PUT', headers: ticket.headers.all as Record<string, string>, body: bytes })).status).toBe(200);
      const direct = await create(token, { type: 'BLOB', access: 'PUBLIC', signedId: ticket.signedId });
      expect(direct.details.filename).toBe('from-browser.pdf');

      const renamed = (await ok(app.url, UpdateAssetDocument, { id: terms.id, input: { version: 1, filename: 'conditions.exe' } }, { token })).updateAsset;
      expect(renamed.details.filename).toBe('conditions.pdf');
      // A row stored before these rules is served by them.
      await app.db.prisma.asset.update({ where: { tenantId_id: { tenantId: tenant, id: terms.id } }, data: { fileName: 'old\u202Efdp.html' } });
      expect((await get(renamed.publicUrl!)).headers.get('content-disposition')).toBe('attachment; filename=oldfdp.pdf');
    });

    it('bytes PUT after verification never reach a PUBLIC asset (a PUT racing createAsset)', async () => {
      const tenant = newTenant();
      const token = await app.token(tenant);
      const good = await bytesOf(await png(400, 300));
      const evil = htmlOfSize(good.length);
      const ticket = (
        await ok(app.url, CreateDirectUploadDocument, {
          input: { filename: 'hero.png', contentType: 'image/png', byteSize: good.length, checksum: createHash('sha256').update(good).digest('base64') },
        }, { token })
      ).createDirectUpload;
      expect((await fetch(ticket.url, { method: 'PUT', headers: ticket.headers.all as Record<string, string>, body: good })).status).toBe(200);
      const late = openPut(serviceUploadUrl(app.url, ticket.signedId), { 'content-type': 'image/png', 'content-length': String(good.length) });
      late.req.write(evil.subarray(0, good.length >> 1));
      await new Promise((r) => setTimeout(r, 500));
      const a = await create(token, { type: 'BLOB', access: 'PUBLIC', signedId: ticket.signedId, key: 'hero' });
      expect(a.details).toMatchObject({ mimeType: 'image/png', checksum: sha256(good) });
      late.req.end(evil.subarray(good.length >> 1));
      const res = await late.response;
      expect(res.status).toBe(409);
      expect(res.json?.error?.code).toBe('CONFLICT');
      // Anyone, by the public URL: the verified PNG, matching the row's checksum.
      const publicRes = await get(a.publicUrl!);
      expect(publicRes.status).toBe(200);
      expect(publicRes.headers.get('content-type')).toBe('image/png');
      const bytes = Buffer.from(await publicRes.arrayBuffer());
      expect(bytes.equals(good)).toBe(true);
      const row = await app.db.prisma.asset.findFirstOrThrow({ where: { tenantId: tenant, id: a.id } });
      expect(row.checksum).toBe(sha256(bytes));
      // And a PUT to the ticket's own url afterwards (a presigned URL cannot be revoked) changes nothing served.
      await fetch(ticket.url, { method: 'PUT', headers: ticket.headers.all as Record<string, string>, body: evil });
      expect(Buffer.from(await (await get(a.publicUrl!)).arrayBuffer()).equals(good)).toBe(true);
      expect((await storedKeys(app, tenant)).filter((k) => !k.startsWith(`${tenant}/${a.id}/`))).toEqual(STORAGE_DRIVER === 's3' ? [ticket.key] : []);
    });

    it('refuses a signedId whose content is not what was declared, and leaves nothing', async () => {
      const tenant = newTenant();
      const token = await app.token(tenant);
      const bytes = pdfBytes(1);
      const ticket = (
        await ok(app.url, CreateDirectUploadDocument, {
          input: { filename: 'a.pdf', contentType: 'application/pdf', byteSize: bytes.length, checksum: createHash('sha256').update('other').digest('base64') },
        }, { token })
      ).createDirectUpload;
      await fetch(ticket.url, { method: 'PUT', headers: ticket.headers.all as Record<string, string>, body: bytes });
      const r = await gql(app.url, CreateAssetDocument, { input: { type: 'BLOB', access: 'PRIVATE', signedId: ticket.signedId } }, { token });
      expect(codeOf(r)).toBe('INTEGRITY_ERROR');
      const forged = await gql(app.url, CreateAssetDocument, { input: { type: 'BLOB', access: 'PRIVATE', signedId: `${ticket.signedId}x` } }, { token });
      expect(forged.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.signedId' });
      expect(await rows(tenant)).toBe(0);
      // Only the PUT's own bytes, in the ticket's group (still usable; the sweep removes them once it expires).
      const ticketId = ticket.key.split('/')[1]!;
      expect((await storedKeys(app, tenant)).filter((k) => !k.startsWith(`${tenant}/${ticketId}/`))).toEqual([]);
      await app.db.prisma.$executeRaw`UPDATE direct_upload SET expires_at = now() - interval '1 second' WHERE id = ${ticketId}::uuid`;
      await sweep(tenant);
      expect(await storedKeys(app, tenant)).toEqual([]);
    });

    describe('bad input is refused with a clear code, and nothing is stored', () => {
      const cases: [string, () => Promise<CreateAssetInput>, string, string | undefined][] = [
        ['a LINK with a javascript: URL', async () => ({ type: 'LINK', access: 'PUBLIC', url: 'javascript:alert(1)' }), 'BAD_USER_INPUT', 'input.url'],
        ['a LINK with a javascript: URL hidden by a tab', async () => ({ type: 'LINK', access: 'PUBLIC', url: 'java\tscript:alert(1)' }), 'BAD_USER_INPUT', 'input.url'],
        ['a LINK with a relative URL', async () => ({ type: 'LINK', access: 'PUBLIC', url: '/images/logo.png' }), 'BAD_USER_INPUT', 'input.url'],
        ['a LINK with a protocol-relative URL', async () => ({ type: 'LINK', access: 'PUBLIC', url: '//evil.example/x' }), 'BAD_USER_INPUT', 'input.url'],
        ['a LINK with a data: URL', async () => ({ type: 'LINK', access: 'PUBLIC', url: 'data:text/html,<script>alert(1)</script>' }), 'BAD_USER_INPUT', 'input.url'],
        ['a LINK with an ftp: URL', async () => ({ type: 'LINK', access: 'PUBLIC', url: 'ftp://files.example/a' }), 'BAD_USER_INPUT', 'input.url'],
        ['a LINK with credentials in the URL', async () => ({ type: 'LINK', access: 'PUBLIC', url: 'https://user:pw@example.com/' }), 'BAD_USER_INPUT', 'input.url'],
        ['a LINK without a URL', async () => ({ type: 'LINK', access: 'PUBLIC' }), 'BAD_USER_INPUT', 'input.url'],
        ['a LINK with a file', async () => ({ type: 'LINK', access: 'PUBLIC', url: 'https://example.com/', file: await jpeg(300, 200) }), 'BAD_USER_INPUT', 'input.file'],
        ['a BLOB without a file', async () => ({ type: 'BLOB', access: 'PUBLIC' }), 'BAD_USER_INPUT', 'input.file'],
        ['a BLOB with a URL', async () => ({ type: 'BLOB', access: 'PUBLIC', file: pdf(1), url: 'https://example.com/' }), 'BAD_USER_INPUT', 'input.url'],
        ['a BLOB with both a file and a signedId', async () => ({ type: 'BLOB', access: 'PUBLIC', file: pdf(1), signedId: 'abc.def' }), 'BAD_USER_INPUT', 'input.signedId'],
        ['a key with a space', async () => ({ type: 'BLOB', access: 'PUBLIC', file: pdf(1), key: 'my file' }), 'BAD_USER_INPUT', 'input.key'],
        ['a key with a ".." segment', async () => ({ type: 'LINK', access: 'PUBLIC', url: 'https://example.com/', key: 'a/../b' }), 'BAD_USER_INPUT', 'input.key'],
        ['an empty name', async () => ({ type: 'LINK', access: 'PUBLIC', url: 'https://example.com/', name: '  ' }), 'BAD_USER_INPUT', 'input.name'],
        ['HTML wearing a PNG name', async () => ({ type: 'BLOB', access: 'PUBLIC', file: htmlAsPng() }), 'UNSUPPORTED_MEDIA_TYPE', 'file'],
        ['a file declared as PNG that is a JPEG', async () => ({ type: 'BLOB', access: 'PUBLIC', file: new File([await bytesOf(await jpeg(64, 64))], 'x.png', { type: 'image/png' }) }), 'UNSUPPORTED_MEDIA_TYPE', 'file'],
        ['an empty file', async () => ({ type: 'BLOB', access: 'PUBLIC', file: new File([], 'empty.pdf', { type: 'application/pdf' }) }), 'BAD_USER_INPUT', 'file'],
      ];
      it.each(cases)('%s', async (_name, input, code, field) => {
        const tenant = newTenant();
        const r = await gql(app.url, CreateAssetDocument, { input: await input() }, { token: await app.token(tenant) });
        expect(r.errors?.[0]?.extensions).toMatchObject({ code, ...(field ? { field } : {}) });
        expect(r.data).toBeNull();
        expect(await rows(tenant)).toBe(0);
        expect(await storedKeys(app, tenant)).toEqual([]);
      });

      // The service's origin answers 301 to a LINK: never into the viewer's own network.
      const NON_PUBLIC_URLS = [
        'http://127.0.0.1/',
        'http://169.254.169.254/latest/meta-data/',
        'http://[::1]/',
        'http://10.0.0.1/',
        'http://192.168.1.1/admin',
        'http://172.16.5.4:8080/',
        'http://localhost:4000/graphql',
        'http://LOCALHOST./',
        'http://printer.local/',
        'http://metadata.google.internal/',
        'http://intranet/',
        'http://[::ffff:127.0.0.1]/',
        'http://[::ffff:a9fe:a9fe]/',
        'http://[fe80::1]/',
        'http://[fd00::1]/',
        'http://2130706433/', // decimal 127.0.0.1
        'http://0x7f000001/', // hex
        'http://0177.0.0.1/', // octal
        'http://127.1/', // short form
        'http://0x7f.1/',
        'http://%31%32%37.0.0.1/', // percent-encoded
        'http://0.0.0.0/',
        'http://0/',
        'https://100.64.0.1/',
      ];
      it.each(NON_PUBLIC_URLS)('a LINK to the non-public host of %s is BAD_USER_INPUT on input.url', async (url) => {
        const tenant = newTenant();
        const r = await gql(app.url, CreateAssetDocument, { input: { type: 'LINK', access: 'PUBLIC', url } }, { token: await app.token(tenant) });
        expect(r.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.url' });
        expect(r.errors?.[0]?.message).toMatch(/public host/);
        expect(await rows(tenant)).toBe(0);
      });

      it('a LINK stored before non-public hosts were refused is never redirected to', async () => {
        const tenant = newTenant();
        const token = await app.token(tenant);
        const a = await create(token, { type: 'LINK', access: 'PUBLIC', key: 'old-link', url: 'https://example.com/ok' });
        await app.db.prisma.asset.update({ where: { tenantId_id: { tenantId: tenant, id: a.id } }, data: { linkUrl: 'http://169.254.169.254/latest/meta-data/' } });
        for (const res of [
          await fetch(`${app.url}/tenants/${tenant}/assets/old-link`, { redirect: 'manual' }),
          await fetch(`${app.url}/assets/${a.id}/download`, { redirect: 'manual', headers: { authorization: `Bearer ${token}` } }),
        ]) {
          expect(res.status).toBe(404);
          expect(res.headers.get('location')).toBeNull();
          expect(await res.text()).not.toContain('169.254');
        }
      });

      it('a file over 50 MB is PAYLOAD_TOO_LARGE', async () => {
        const tenant = newTenant();
        const r = await gql(app.url, CreateAssetDocument, { input: { type: 'BLOB', access: 'PUBLIC', file: await jpegOfSize(50 * MiB + 1) } }, { token: await app.token(tenant) });
        expect(r.errors?.[0]?.extensions).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', limit: 50 * MiB });
        expect(await rows(tenant)).toBe(0);
        expect(await storedKeys(app, tenant)).toEqual([]);
      }, 60_000);

      it('a duplicate key is CONFLICT, checked before the file is stored; a deleted asset frees its key', async () => {
        const tenant = newTenant();
        const token = await app.token(tenant);
        const first = await create(token, { type: 'BLOB', access: 'PUBLIC', key: 'brochure', file: pdf(1) });
        const before = await storedKeys(app, tenant);
        for (const input of [
          { type: 'BLOB', access: 'PRIVATE', key: 'brochure', file: pdf(2) },
          { type: 'LINK', access: 'PUBLIC', key: 'brochure', url: 'https://example.com/b.pdf' },
        ] as CreateAssetInput[]) {
          const r = await gql(app.url, CreateAssetDocument, { input }, { token });
          expect(r.errors?.[0]?.extensions).toMatchObject({ code: 'CONFLICT', field: 'input.key' });
        }
        expect(await rows(tenant)).toBe(1);
        expect(await storedKeys(app, tenant)).toEqual(before);

        // Keys are per tenant.
        await create(await app.token(newTenant()), { type: 'LINK', access: 'PUBLIC', key: 'brochure', url: 'https://example.com/' });

        await ok(app.url, DeleteAssetDocument, { id: first.id }, { token });
        const reused = await create(token, { type: 'LINK', access: 'PUBLIC', key: 'brochure', url: 'https://example.com/b.pdf' });
        expect(reused.key).toBe('brochure');
        const served = await get(`/tenants/${tenant}/assets/brochure`);
        expect(served.status).toBe(301);
        expect(served.headers.get('location')).toBe('https://example.com/b.pdf');
      });

      it('needs a token (UNAUTHENTICATED) with asset:manage (FORBIDDEN naming the scope)', async () => {
        const tenant = newTenant();
        const input: CreateAssetInput = { type: 'LINK', access: 'PUBLIC', url: 'https://example.com/' };
        expect(codeOf(await gql(app.url, CreateAssetDocument, { input }, {}))).toBe('UNAUTHENTICATED');
        const reader = await gql(app.url, CreateAssetDocument, { input }, { token: await app.token(tenant, { scopes: ['asset:read', 'media:create'] }) });
        expect(reader.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', scope: 'asset:manage' });
        const withFile = await gql(app.url, CreateAssetDocument, { input: { type: 'BLOB', access: 'PUBLIC', file: pdf(1) } }, { token: await app.token(tenant, { scopes: ['asset:read'] }) });
        expect(codeOf(withFile)).toBe('FORBIDDEN');
        expect(await rows(tenant)).toBe(0);
        expect(await storedKeys(app, tenant)).toEqual([]);
      });
    });
  });

  describe('updateAsset', () => {
    it('changes the given fields at the current version; version and modifiedAt move, the rest stays', async () => {
      const tenant = newTenant();
      const token = await app.token(tenant);
      const a = await create(token, { type: 'LINK', access: 'PUBLIC', url: 'https://example.com/a', name: 'A', refIds: [{ id: 'p1', type: 'PRODUCT' }], priority: 1 });
      const u = (
        await ok(app.url, UpdateAssetDocument, { id: a.id, input: { version: 1, name: 'A2', priority: 5, active: false, refIds: [{ id: 'c1', type: 'CATEGORY' }], url: 'http://example.org/b' } }, { token })
      ).updateAsset;
      expect(u).toMatchObject({ id: a.id, type: 'LINK', access: 'PUBLIC', key: a.key, name: 'A2', priority: 5, active: false, refIds: [{ id: 'c1', type: 'CATEGORY' }], publicUrl: 'http://example.org/b' });
      expect(u.metadata.version).toBe(2);
      expect(u.metadata.createdAt).toBe(a.metadata.createdAt);
      expect(new Date(u.metadata.modifiedAt).getTime()).toBeGreaterThanOrEqual(new Date(a.metadata.modifiedAt).getTime());
      // Fields left out keep their value; refIds: [] clears.
      const v = (await ok(app.url, UpdateAssetDocument, { id: a.id, input: { version: 2, refIds: [] } }, { token })).updateAsset;
      expect(v).toMatchObject({ name: 'A2', priority: 5, active: false, refIds: [], metadata: { version: 3 } });
      expect((await ok(app.url, AssetDocument, { id: a.id }, { token })).asset).toEqual(v);
    });

    it('a stale version is CONFLICT and changes nothing (a file sent with it is not stored)', async () => {
      const tenant = newTenant();
      const token = await app.token(tenant);
      const a = await create(token, { type: 'BLOB', access: 'PUBLIC', file: pdf(1), name: 'Original' });
      await ok(app.url, UpdateAssetDocument, { id: a.id, input: { version: 1, name: 'Second' } }, { token });
      const keys = await storedKeys(app, tenant);
      const before = (await ok(app.url, AssetDocument, { id: a.id }, { token })).asset;
      for (const input of [{ version: 1, name: 'Stale' }, { version: 1, file: pdf(4) }, { version: 3, priority: 9 }]) {
        const r = await gql(app.url, UpdateAssetDocument, { id: a.id, input }, { token });
        expect(r.errors?.[0]?.extensions).toMatchObject({ code: 'CONFLICT', field: 'input.version' });
      }
      expect((await ok(app.url, AssetDocument, { id: a.id }, { token })).asset).toEqual(before);
      expect(await storedKeys(app, tenant)).toEqual(keys);
    });

    it('type and access cannot change (not part of the input)', async () => {
      const tenant = newTenant();
      const token = await app.token(tenant);
      const a = await create(token, { type: 'LINK', access: 'PRIVATE', url: 'https://example.com/' });
      for (const extra of [{ type: 'BLOB' }, { access: 'PUBLIC' }]) {
        const r = await gql(app.url, UpdateAssetDocument, { id: a.id, input: { version: 1, ...extra } as never }, { token });
        expect(codeOf(r)).toBe('BAD_USER_INPUT');
      }
      expect((await ok(app.url, AssetDocument, { id: a.id }, { token })).asset).toMatchObject({ type: 'LINK', access: 'PRIVATE', metadata: { version: 1 } });
    });

    it('a new file replaces the old object, purged once the row points at the new one; the public URL changes', async () => {
      const tenant = newTenant();
      const token = await app.token(tenant);
      const a = await create(token, { type: 'BLOB', access: 'PUBLIC', key: 'hero', file: await jpeg(800, 600, 'old.jpg') });
      // A variant and a render of the old original exist: they go with it.
      expect((await get(a.variants[0]!.url)).status).toBe(200);
      expect((await get(`${a.publicUrl!}&w=300&format=webp`)).headers.get('content-type')).toBe('image/webp');
      const oldKeys = await storedKeys(app, tenant);
      expect(oldKeys).toHaveLength(3);
      const next = await png(300, 200, 'new.png');
      const u = (await ok(app.url, UpdateAssetDocument, { id: a.id, input: { version: 1, file: next } }, { token })).updateAsset;
      expect(u).toMatchObject({
        name: 'old.jpg',
        details: { filename: 'new.png', mimeType: 'image/png', bytes: next.size, checksum: sha256(await bytesOf(next)) },
        publicUrl: `${app.url}/tenants/${tenant}/assets/hero?v=2`,
        metadata: { version: 2 },
      });
      expect(u.variants.map((v) => v.name)).toEqual(['THUMB']);
      const newKeys = await storedKeys(app, tenant);
      expect(newKeys).toHaveLength(1);
      expect(newKeys.some((k) => oldKeys.includes(k))).toBe(false);
      expect(await app.db.prisma.imageRender.count({ where: { tenantId: tenant } })).toBe(0);
      // The new original's THUMB is rendered from the new file.
      const thumb = await get(u.variants[0]!.url);
      expect(thumb.headers.get('content-type')).toBe('image/png');
      expect(thumb.headers.get('etag')).toContain(u.details.checksum);
      expect(newKeys.every((k) => k.startsWith(`${tenant}/${a.id}/v2-`))).toBe(true);
      // Both URLs (old ?v=1 and new ?v=2) name the key: the content is the new file.
      for (const url of [a.publicUrl!, u.publicUrl!]) {
        const res = await get(url);
        expect(res.headers.get('etag')).toBe(`"${u.details.checksum}"`);
        expect(Buffer.from(await res.arrayBuffer()).equals(await bytesOf(next))).toBe(true);
      }
      // filename alone renames details.filename.
      const renamed = (await ok(app.url, UpdateAssetDocument, { id: a.id, input: { version: 2, filename: 'banner.png' } }, { token })).updateAsset;
      expect(renamed.details).toMatchObject({ filename: 'banner.png', checksum: u.details.checksum });
      expect((await get(renamed.publicUrl!)).headers.get('content-disposition')).toBe('inline; filename=banner.png');
    });

    it.each([
      ['a file for a LINK', 'LINK', async () => ({ file: pdf(1) }), 'input.file'],
      ['a URL for a BLOB', 'BLOB', async () => ({ url: 'https://example.com/' }), 'input.url'],
      ['a javascript: URL for a LINK', 'LINK', async () => ({ url: 'javascript:alert(1)' }), 'input.url'],
      ['a loopback URL for a LINK', 'LINK', async () => ({ url: 'http://127.0.0.1:9200/_cat' }), 'input.url'],
      ['a link-local URL for a LINK', 'LINK', async () => ({ url: 'http://169.254.169.254/' }), 'input.url'],
      ['an IPv4-mapped loopback URL for a LINK', 'LINK', async () => ({ url: 'http://[::ffff:7f00:1]/' }), 'input.url'],
      ['an empty name', 'LINK', async () => ({ name: '' }), 'input.name'],
      ['version 0', 'LINK', async () => ({ version: 0 }), 'input.version'],
    ] as const)('refuses %s with BAD_USER_INPUT and changes nothing', async (_name, type, extra, field) => {
      const tenant = newTenant();
      const token = await app.token(tenant);
      const a = await create(token, type === 'LINK' ? { type, access: 'PUBLIC', url: 'https://example.com/x' } : { type, access: 'PUBLIC', file: pdf(1) });
      const keys = await storedKeys(app, tenant);
      const r = await gql(app.url, UpdateAssetDocument, { id: a.id, input: { version: 1, ...(await extra()) } }, { token });
      expect(r.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field });
      expect((await ok(app.url, AssetDocument, { id: a.id }, { token })).asset).toEqual(a);
      expect(await storedKeys(app, tenant)).toEqual(keys);
    });

    it('10 parallel updates with the same version: exactly one wins, nine CONFLICT, the stored state is the winner\'s', async () => {
      const tenant = newTenant();
      const token = await app.token(tenant);
      const a = await create(token, { type: 'BLOB', access: 'PUBLIC', file: await png(200, 100, 'start.png') });
      const files = await Promise.all(Array.from({ length: 10 }, (_, i) => png(100 + i * 10, 80, `v${i}.png`)));
      const results = await Promise.all(
        files.map((file, i) => gql(app.url, UpdateAssetDocument, { id: a.id, input: { version: 1, name: `name-${i}`, priority: i, file } }, { token })),
      );
      const winners = results.filter((r) => !r.errors);
      expect(winners).toHaveLength(1);
      expect(results.filter((r) => codeOf(r) === 'CONFLICT')).toHaveLength(9);
      const won = winners[0]!.data!.updateAsset;
      const i = Number(won.name.slice('name-'.length));
      expect(won).toMatchObject({ priority: i, metadata: { version: 2 }, details: { filename: `v${i}.png`, checksum: sha256(await bytesOf(files[i]!)) } });
      const stored = (await ok(app.url, AssetDocument, { id: a.id }, { token })).asset;
      expect(stored).toEqual(won);
      // Only the winner's objects remain: the losers' files were deleted, and so was the original it replaced.
      const keys = await storedKeys(app, tenant);
      expect(keys).toHaveLength(1);
      expect(keys[0]!).toMatch(/\/v2-[0-9a-f]{8}\/original$/);
      const served = await get(stored!.publicUrl!);
      expect(Buffer.from(await served.arrayBuffer()).equals(await bytesOf(files[i]!))).toBe(true);
    }, 60_000);
  });

  describe('deleteAsset', () => {
    it('is soft: the asset vanishes from every read, its objects are purged, the row stays as a tombstone', async () => {
      const tenant = newTenant();
      const token = await app.token(tenant);
      const a = await create(token, { type: 'BLOB', access: 'PUBLIC', key: 'gone', file: await jpeg(300, 300) });
      expect((await get(a.variants[0]!.url)).status).toBe(200);
      expect(await storedKeys(app, tenant)).toHaveLength(2);
      expect((await ok(app.url, DeleteAssetDocument, { id: a.id }, { token })).deleteAsset).toBe(true);
      expect((await ok(app.url, AssetDocument, { id: a.id }, { token })).asset).toBeNull();
      expect((await ok(app.url, AssetsDocument, {}, { token })).assets).toMatchObject({ items: [], totalCount: 0 });
      expect((await get(`/assets/${a.id}/download`, bearer(token))).status).toBe(404);
      expect((await get(a.publicUrl!)).status).toBe(404);
      expect(await storedKeys(app, tenant)).toEqual([]);
      expect(await app.db.prisma.imageRender.count({ where: { tenantId: tenant } })).toBe(0);
      const row = await app.db.prisma.asset.findFirst({ where: { tenantId: tenant, id: a.id } });
      expect(row).toMatchObject({ key: 'gone', storageKey: null, version: 2 });
      expect(row!.deletedAt).toBeInstanceOf(Date);
      // Once only.
      expect(codeOf(await gql(app.url, DeleteAssetDocument, { id: a.id }, { token }))).toBe('NOT_FOUND');
      expect(codeOf(await gql(app.url, UpdateAssetDocument, { id: a.id, input: { version: 2, name: 'x' } }, { token }))).toBe('NOT_FOUND');
    });
  });

  describe('the sweep', () => {
    const put = (key: string, body: Buffer) => app.services.storage.put(key, Readable.from([body]));

    it('keeps live assets\' objects, deletes replaced ones left behind, and purges deleted assets whose purge failed', async () => {
      const tenant = newTenant();
      const token = await app.token(tenant);
      const live = await create(token, { type: 'BLOB', access: 'PUBLIC', file: await jpeg(400, 300) });
      const liveKeys = await storedKeys(app, tenant);
      // An update whose clean-up of the replaced file failed.
      await put(`${tenant}/${live.id}/v1-deadbeef/original`, pdfBytes(1));
      // A deleted asset whose objects could not be purged.
      const doomed = await create(token, { type: 'BLOB', access: 'PRIVATE', file: pdf(1) });
      await app.db.prisma.$executeRaw`UPDATE asset SET deleted_at = now() - interval '1 minute' WHERE tenant_id = ${tenant} AND id = ${doomed.id}::uuid`;
      expect((await storedKeys(app, tenant)).filter((k) => k.includes(doomed.id))).toHaveLength(1);

      await new Promise((r) => setTimeout(r, 20));
      const report = await sweep(tenant);
      expect(report).toMatchObject({ deletedAssetsPurged: 1, staleAssetObjectsDeleted: 1, orphanGroupsDeleted: 0 });
      expect((await storedKeys(app, tenant)).sort()).toEqual(liveKeys.sort());
      expect((await get(live.publicUrl!)).status).toBe(200);
      expect(await app.db.prisma.asset.findFirst({ where: { tenantId: tenant, id: doomed.id } })).toMatchObject({ storageKey: null });
    });
  });

  describe('queries: asset(id) and assets(q, sort, pageNumber, pageSize) against PostgreSQL', () => {
    const tenant = newTenant('tq');
    let token: string;
    /** Seeded assets, by their key. */
    const seeded = new Map<string, AssetFieldsFragment>();
    const keysOf = (items: { key: string }[]) => items.map((x) => x.key);
    const query = async (vars: { q?: string; sort?: string; pageNumber?: number; pageSize?: number }) => (await ok(app.url, AssetsDocument, vars, { token })).assets;
    const q = async (text: string) => keysOf((await query({ q: text, sort: 'key', pageSize: 100 })).items);

    beforeAll(async () => {
      token = await app.token(tenant);
      const inputs: CreateAssetInput[] = [
        { key: 'k01', type: 'LINK', access: 'PUBLIC', url: 'https://example.com/1', name: 'Spring Sale 2024', priority: 10, refIds: [{ id: 'p1', type: 'PRODUCT' }] },
        { key: 'k02', type: 'LINK', access: 'PRIVATE', url: 'https://example.com/2', name: 'Spring catalogue', priority: 5, refIds: [{ id: 'p2', type: 'PRODUCT' }, { id: 'c1', type: 'CATEGORY' }] },
        { key: 'k03', type: 'LINK', access: 'PUBLIC', url: 'https://example.com/3', name: 'Autumn Sale 2024', priority: 5, filename: 'autumn.html' },
        { key: 'k04', type: 'BLOB', access: 'PUBLIC', file: pdf(1, 'one.pdf'), name: 'Datasheet A', priority: 1, refIds: [{ id: 'p1', type: 'PRODUCT' }] },
        { key: 'k05', type: 'BLOB', access: 'PRIVATE', file: pdf(4, 'four.pdf'), name: 'Datasheet B', priority: 1 },
        { key: 'k06', type: 'BLOB', access: 'PUBLIC', file: pdf(9, 'nine.pdf'), name: 'datasheet c', priority: 0, refIds: [{ id: 'c1', type: 'CATEGORY' }] },
        { key: 'k07', type: 'LINK', access: 'PUBLIC', url: 'https://example.com/7', name: 'Winter', priority: -3 },
        { key: 'k08', type: 'LINK', access: 'PRIVATE', url: 'https://example.com/8', name: 'Summer', priority: 20, refIds: [{ id: 'x9', type: 'BRAND' }] },
      ];
      for (const input of inputs) seeded.set(input.key!, await create(token, input));
      // One inactive, one deleted (never listed), and another tenant's (never listed).
      await ok(app.url, UpdateAssetDocument, { id: seeded.get('k07')!.id, input: { version: 1, active: false } }, { token });
      const gone = await create(token, { key: 'k09', type: 'LINK', access: 'PUBLIC', url: 'https://example.com/9', name: 'Spring deleted' });
      await ok(app.url, DeleteAssetDocument, { id: gone.id }, { token });
      await create(await app.token(newTenant()), { key: 'k10', type: 'LINK', access: 'PUBLIC', url: 'https://example.com/10', name: 'Spring elsewhere' });
    });

    it('asset(id) reads one asset; an unknown or malformed id is null', async () => {
      const a = seeded.get('k04')!;
      expect((await ok(app.url, AssetDocument, { id: a.id }, { token })).asset).toEqual(a);
      expect((await ok(app.url, AssetDocument, { id: '00000000-0000-4000-8000-000000000000' }, { token })).asset).toBeNull();
      expect((await ok(app.url, AssetDocument, { id: 'not-a-uuid' }, { token })).asset).toBeNull();
    });

    it('without q: every live asset of the tenant, newest first, with totalCount', async () => {
      const page = await query({});
      expect(page).toMatchObject({ totalCount: 8, pageNumber: 1, pageSize: 60 });
      expect(keysOf(page.items)).toEqual(['k08', 'k07', 'k06', 'k05', 'k04', 'k03', 'k02', 'k01']);
    });

    it('equality, lists, enums and booleans', async () => {
      expect(await q('access:PUBLIC')).toEqual(['k01', 'k03', 'k04', 'k06', 'k07']);
      expect(await q('type:LINK access:PRIVATE')).toEqual(['k02', 'k08']);
      expect(await q(`id:(${seeded.get('k02')!.id},${seeded.get('k05')!.id})`)).toEqual(['k02', 'k05']);
      expect(await q('id:not-an-id')).toEqual([]);
      expect(await q('key:k03')).toEqual(['k03']);
      expect(await q('name:"Spring catalogue"')).toEqual(['k02']);
      expect(await q('priority:(5,20)')).toEqual(['k02', 'k03', 'k08']);
      expect(await q('active:false')).toEqual(['k07']);
      expect(await q('metadata.version:2')).toEqual(['k07']);
      expect(await q('details.mimeType:application/pdf access:PRIVATE')).toEqual(['k05']);
    });

    it('comparisons and ranges on numbers', async () => {
      const size = (k: string) => seeded.get(k)!.details.bytes!;
      expect(size('k04')).toBeLessThan(size('k05'));
      expect(size('k05')).toBeLessThan(size('k06'));
      expect(await q(`details.bytes:>${size('k04')}`)).toEqual(['k05', 'k06']);
      expect(await q(`details.bytes:>=${size('k04')}`)).toEqual(['k04', 'k05', 'k06']);
      expect(await q(`details.bytes:<${size('k06')}`)).toEqual(['k04', 'k05']);
      expect(await q(`details.bytes:<=${size('k05')} access:PUBLIC`)).toEqual(['k04']);
      expect(await q(`details.bytes:(>=${size('k05')} AND <=${size('k06')})`)).toEqual(['k05', 'k06']);
      expect(await q(`details.bytes:(>${size('k04')} AND <${size('k06')})`)).toEqual(['k05']);
      expect(await q('priority:>=5 priority:<20')).toEqual(['k01', 'k02', 'k03']);
      expect(await q('priority:<0')).toEqual(['k07']);
    });

    it('comparisons and ranges on quoted dates', async () => {
      const at = (k: string) => seeded.get(k)!.metadata.createdAt;
      expect(await q(`metadata.createdAt:(>="${at('k03')}" AND <"${at('k06')}")`)).toEqual(['k03', 'k04', 'k05']);
      expect(await q(`metadata.createdAt:>"${at('k07')}"`)).toEqual(['k08']);
      expect(await q(`metadata.createdAt:"${at('k02')}"`)).toEqual(['k02']);
      expect(await q(`metadata.modifiedAt:>"${at('k08')}"`)).toEqual(['k07']);
      expect(await q('metadata.createdAt:<"2000-01-01"')).toEqual([]);
    });

    it('null, exists and the details object', async () => {
      expect(await q('details.filename:null')).toEqual(['k01', 'k02', 'k07', 'k08']);
      expect(await q('details.filename:exists')).toEqual(['k03', 'k04', 'k05', 'k06']);
      expect(await q('details:exists')).toEqual(['k03', 'k04', 'k05', 'k06']);
      expect(await q('details:null')).toEqual(['k01', 'k02', 'k07', 'k08']);
      expect(await q('details.bytes:exists type:LINK')).toEqual([]);
      expect(await q('refIds:null')).toEqual(['k03', 'k05', 'k07']);
      expect(await q('refIds.id:exists')).toEqual(['k01', 'k02', 'k04', 'k06', 'k08']);
    });

    it('references', async () => {
      expect(await q('refIds.id:p1')).toEqual(['k01', 'k04']);
      expect(await q('refIds.type:CATEGORY')).toEqual(['k02', 'k06']);
      expect(await q('refIds.id:(p2,x9)')).toEqual(['k02', 'k08']);
      expect(await q('refIds.type:PRODUCT refIds.id:c1')).toEqual(['k02']);
      expect(await q('refIds.id:~^p')).toEqual(['k01', 'k02', 'k04']);
    });

    it('regular expressions (PostgreSQL ~, case-sensitive unless the pattern says otherwise)', async () => {
      expect(await q('name:~^Spring')).toEqual(['k01', 'k02']);
      expect(await q('name:(~Sale 2024)')).toEqual(['k01', 'k03']);
      expect(await q('name:~"Sale 2024$" access:PUBLIC priority:>5')).toEqual(['k01']);
      expect(await q('name:~^[Dd]atasheet')).toEqual(['k04', 'k05', 'k06']);
      expect(await q('name:~(?i)^datasheet')).toEqual(['k04', 'k05', 'k06']);
      expect(await q('name:~datasheet')).toEqual(['k06']);
      expect(await q('type:~^BL access:~^PRI')).toEqual(['k05']);
    });

    it('an invalid regular expression, an unknown field or a malformed term is BAD_USER_INPUT naming the term', async () => {
      for (const [text, term] of [
        ['access:PUBLIC name:~(unclosed', 'name:~(unclosed'],
        ['name:~a{2,1}', 'name:~a{2,1}'],
        ['colour:red', 'colour:red'],
        ['details.bytes:>big', 'details.bytes:>big'],
        ['name:(a b)', 'name:(a b)'],
        [`name:~${'a'.repeat(201)}`, undefined],
      ] as const) {
        const r = await gql(app.url, AssetsDocument, { q: text }, { token });
        expect(r.errors?.[0]?.extensions, text).toMatchObject({ code: 'BAD_USER_INPUT', field: 'q', ...(term ? { term } : {}) });
        if (term) expect(r.errors?.[0]?.message).toContain(term);
      }
    });

    it('sorts by several fields, ascending unless desc/DESC; an unknown field is BAD_USER_INPUT', async () => {
      const all = [...seeded.values()];
      const page = await query({ sort: 'priority:desc,name' });
      const expected = [...all].sort((x, y) => y.priority - x.priority || (x.name < y.name ? -1 : x.name > y.name ? 1 : 0)).map((x) => x.key);
      expect(keysOf(page.items)).toEqual(expected);
      expect(keysOf(page.items)).toEqual(['k08', 'k01', 'k03', 'k02', 'k04', 'k05', 'k06', 'k07']);
      expect(keysOf((await query({ sort: 'key:DESC' })).items)).toEqual(['k08', 'k07', 'k06', 'k05', 'k04', 'k03', 'k02', 'k01']);
      expect(keysOf((await query({ sort: 'metadata.createdAt' })).items)).toEqual(['k01', 'k02', 'k03', 'k04', 'k05', 'k06', 'k07', 'k08']);
      expect(keysOf((await query({ sort: 'details.bytes:desc,key', q: 'type:BLOB' })).items)).toEqual(['k06', 'k05', 'k04']);
      expect(keysOf((await query({ sort: 'access,type:desc,key' })).items)).toEqual(['k01', 'k03', 'k07', 'k04', 'k06', 'k02', 'k08', 'k05']);
      const bad = await gql(app.url, AssetsDocument, { sort: 'name,colour:desc' }, { token });
      expect(bad.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'sort', term: 'colour:desc' });
    });

    it('pages: pageNumber and pageSize with a constant totalCount, no overlap, nothing skipped', async () => {
      const seen: string[] = [];
      for (const pageNumber of [1, 2, 3]) {
        const page = await query({ pageNumber, pageSize: 3, sort: 'priority:desc,name', q: 'priority:>-100' });
        expect(page).toMatchObject({ totalCount: 8, pageNumber, pageSize: 3 });
        expect(page.items.length).toBe(pageNumber < 3 ? 3 : 2);
        seen.push(...keysOf(page.items));
      }
      expect(seen).toEqual(['k08', 'k01', 'k03', 'k02', 'k04', 'k05', 'k06', 'k07']);
      expect(await query({ pageNumber: 4, pageSize: 3 })).toMatchObject({ items: [], totalCount: 8 });
      expect(await query({ pageSize: 2, q: 'access:PUBLIC' })).toMatchObject({ totalCount: 5 });
      for (const vars of [{ pageNumber: 0 }, { pageSize: 0 }, { pageSize: 101 }]) {
        const r = await gql(app.url, AssetsDocument, vars, { token });
        expect(r.errors?.[0]?.extensions, JSON.stringify(vars)).toMatchObject({ code: 'BAD_USER_INPUT', field: Object.keys(vars)[0] });
      }
    });

    it('needs asset:read', async () => {
      const r = await gql(app.url, AssetsDocument, {}, { token: await app.token(tenant, { scopes: ['media:read', 'asset:manage'] }) });
      expect(r.errors?.[0]?.extensions).toMatchObject({ code: 'FORBIDDEN', scope: 'asset:read' });
      expect(codeOf(await gql(app.url, AssetDocument, { id: seeded.get('k01')!.id }, {}))).toBe('UNAUTHENTICATED');
    });
  });

  describe('downloads', () => {
    const tenant = newTenant('td');
    let token: string;
    let pub: AssetFieldsFragment;
    let priv: AssetFieldsFragment;
    let link: AssetFieldsFragment;
    let pubLink: AssetFieldsFragment;
    let pubBytes: Buffer;
    let privBytes: Buffer;

    beforeAll(async () => {
      token = await app.token(tenant);
      const photo = await jpeg(700, 500, 'photo.jpg');
      pubBytes = await bytesOf(photo);
      pub = await create(token, { type: 'BLOB', access: 'PUBLIC', key: 'img/photo', file: photo });
      const doc = pdf(2, 'contract.pdf');
      privBytes = await bytesOf(doc);
      priv = await create(token, { type: 'BLOB', access: 'PRIVATE', key: 'docs/contract', file: doc });
      link = await create(token, { type: 'LINK', access: 'PRIVATE', key: 'ext', url: 'https://example.com/x?y=1' });
      pubLink = await create(token, { type: 'LINK', access: 'PUBLIC', key: 'ext-public', url: 'https://example.com/public' });
    });

    it('GET /assets/{id}/download: 301 to the public URL for PUBLIC blobs and LINKs', async () => {
      const res = await get(pub.downloadPath, bearer(token));
      expect(res.status).toBe(301);
      expect(res.headers.get('location')).toBe(pub.publicUrl);
      expect(res.headers.get('cache-control')).toBe('no-store');
      const thumb = await get(`${pub.downloadPath}?variant=THUMB`, bearer(token));
      expect(thumb.headers.get('location')).toBe(pub.variants.find((v) => v.name === 'THUMB')!.url);
      const l = await get(link.downloadPath, bearer(token));
      expect(l.status).toBe(301);
      expect(l.headers.get('location')).toBe('https://example.com/x?y=1');
      expect((await get(`${pub.downloadPath}?variant=LARGE_2X`, bearer(token))).status).toBe(404);
    });

    it('GET /assets/{id}/download: the bytes of a PRIVATE blob, with Range, ETag and If-None-Match', async () => {
      const res = await get(priv.downloadPath, bearer(token));
      expect(res.status).toBe(200);
      expect(res.headers.get('cache-control')).toBe('private, no-store');
      expect(res.headers.get('content-type')).toBe('application/pdf');
      expect(res.headers.get('content-disposition')).toBe('attachment; filename=contract.pdf');
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('etag')).toBe(`"${priv.details.checksum}"`);
      expect(Buffer.from(await res.arrayBuffer()).equals(privBytes)).toBe(true);

      const part = await get(priv.downloadPath, { ...bearer(token), range: 'bytes=5-14' });
      expect(part.status).toBe(206);
      expect(part.headers.get('content-range')).toBe(`bytes 5-14/${privBytes.length}`);
      expect(Buffer.from(await part.arrayBuffer()).equals(privBytes.subarray(5, 15))).toBe(true);

      expect((await get(priv.downloadPath, revalidate(`"${priv.details.checksum}"`, token))).status).toBe(304);
      expect((await get(priv.downloadPath, { ...bearer(token), range: `bytes=${privBytes.length + 10}-` })).status).toBe(416);
    });

    it('GET /assets/{id}/download needs a token with asset:read of the asset\'s tenant', async () => {
      const anonymous = await get(priv.downloadPath);
      expect(anonymous.status).toBe(401);
      expect(await anonymous.json()).toMatchObject({ error: { code: 'UNAUTHENTICATED' } });
      const noScope = await get(priv.downloadPath, bearer(await app.token(tenant, { scopes: ['media:read'] })));
      expect(noScope.status).toBe(403);
      expect(await noScope.json()).toMatchObject({ error: { code: 'FORBIDDEN' } });
      const other = await get(priv.downloadPath, bearer(await app.token(newTenant())));
      expect(other.status).toBe(404);
      expect(await other.json()).toMatchObject({ error: { code: 'NOT_FOUND' } });
      expect((await get(pub.downloadPath, bearer(await app.token(newTenant())))).status).toBe(404);
    });

    it('GET /tenants/{tenant}/assets/{key}: a PUBLIC blob to anyone, cacheable, with ETag, 304 and Range', async () => {
      const res = await get(`/tenants/${tenant}/assets/img/photo`);
      expect(res.status).toBe(200);
      expect(res.headers.get('cache-control')).toBe('public, max-age=2592000');
      expect(res.headers.get('accept-ranges')).toBe('bytes');
      const etag = res.headers.get('etag')!;
      expect(etag).toBe(`"${sha256(pubBytes)}"`);
      expect(Buffer.from(await res.arrayBuffer()).equals(pubBytes)).toBe(true);

      const again = await get(`/tenants/${tenant}/assets/img/photo?v=1`, revalidate(etag));
      expect(again.status).toBe(304);
      expect(again.headers.get('cache-control')).toBe('public, max-age=2592000');
      expect((await get(`/tenants/${tenant}/assets/img/photo`, revalidate('"something-else"'))).status).toBe(200);

      const part = await get(`/tenants/${tenant}/assets/img/photo`, { range: 'bytes=0-99' });
      expect(part.status).toBe(206);
      expect(part.headers.get('content-range')).toBe(`bytes 0-99/${pubBytes.length}`);
      expect(Buffer.from(await part.arrayBuffer()).equals(pubBytes.subarray(0, 100))).toBe(true);

      const head = await fetch(`${app.url}/tenants/${tenant}/assets/img/photo`, { method: 'HEAD' });
      expect(head.status).toBe(200);
      expect(head.headers.get('content-length')).toBe(String(pubBytes.length));
    });

    it('GET /tenants/{tenant}/assets/{key}: a PRIVATE blob only with a token of that tenant with asset:read', async () => {
      const path = `/tenants/${tenant}/assets/docs/contract`;
      expect((await get(path)).status).toBe(401);
      expect((await get(path, bearer(await app.token(newTenant())))).status).toBe(404);
      expect((await get(path, bearer(await app.token(tenant, { scopes: ['asset:manage'] })))).status).toBe(403);
      const res = await get(path, bearer(token));
      expect(res.status).toBe(200);
      expect(res.headers.get('cache-control')).toBe('private, no-store');
      expect(Buffer.from(await res.arrayBuffer()).equals(privBytes)).toBe(true);
    });

    it('GET /tenants/{tenant}/assets/{key}: a PUBLIC LINK answers 301 to its URL to anyone', async () => {
      const res = await get(`/tenants/${tenant}/assets/ext-public`);
      expect(res.status).toBe(301);
      expect(res.headers.get('location')).toBe(pubLink.publicUrl);
      expect(res.headers.get('cache-control')).toBe('no-store');
    });

    it('GET /tenants/{tenant}/assets/{key}: a PRIVATE LINK answers its 301 only to a token of its tenant with asset:read, like a PRIVATE blob', async () => {
      const path = `/tenants/${tenant}/assets/ext`;
      const refused = [
        [await get(path), 401, 'UNAUTHENTICATED'],
        [await get(path, bearer(await app.token(newTenant()))), 404, 'NOT_FOUND'],
        [await get(path, bearer(await app.token(tenant, { scopes: ['asset:manage', 'media:read'] }))), 403, 'FORBIDDEN'],
      ] as const;
      for (const [res, status, code] of refused) {
        expect(res.status).toBe(status);
        expect(res.headers.get('location')).toBeNull();
        const text = await res.text();
        expect(text).not.toContain('example.com');
        expect(JSON.parse(text)).toMatchObject({ error: { code } });
      }
      expect((await get(`${path}?handleError=true`, bearer(await app.token(newTenant())))).status).toBe(204);
      const res = await get(path, bearer(token));
      expect(res.status).toBe(301);
      expect(res.headers.get('location')).toBe('https://example.com/x?y=1');
      expect(res.headers.get('cache-control')).toBe('no-store');
    });

    it('a missing key is 404 with a JSON body, or an empty 204 with ?handleError=true; another tenant\'s key is missing', async () => {
      const missing = await get(`/tenants/${tenant}/assets/nope`);
      expect(missing.status).toBe(404);
      expect(await missing.json()).toMatchObject({ error: { code: 'NOT_FOUND' } });
      const quiet = await get(`/tenants/${tenant}/assets/nope?handleError=true`);
      expect(quiet.status).toBe(204);
      expect(await quiet.text()).toBe('');
      expect((await get(`/tenants/${newTenant()}/assets/img/photo`)).status).toBe(404);
      expect((await get(`/tenants/NOT_A_TENANT/assets/img/photo?handleError=true`)).status).toBe(204);
      expect((await get(`/tenants/${tenant}/assets/img/photo?variant=NOPE`)).status).toBe(404);
      // A PRIVATE asset asked for with another tenant's token is missing too (204 with handleError).
      expect((await get(`/tenants/${tenant}/assets/docs/contract?handleError=true`, bearer(await app.token(newTenant())))).status).toBe(204);
    });
  });

  describe('with ASSET_LINKS_ALLOW_PRIVATE_HOSTS=true', () => {
    let intranet: TestApp;
    beforeAll(async () => {
      intranet = await startTestApp({ env: { SWEEP_INTERVAL_SECONDS: '0', ASSET_LINKS_ALLOW_PRIVATE_HOSTS: 'true' } });
    });
    afterAll(() => intranet?.close());

    it('LINKs may name loopback, private and local-network hosts (an intranet deployment)', async () => {
      const token = await intranet.token(newTenant());
      for (const url of ['http://10.0.0.1/wiki', 'http://intranet/', 'http://[::1]:8080/']) {
        const { createAsset } = await ok(intranet.url, CreateAssetDocument, { input: { type: 'LINK', access: 'PRIVATE', url } }, { token });
        expect(createAsset.publicUrl).toBe(url);
      }
      // Everything else about a URL is still checked.
      const r = await gql(intranet.url, CreateAssetDocument, { input: { type: 'LINK', access: 'PUBLIC', url: 'javascript:alert(1)' } }, { token });
      expect(r.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.url' });
    });
  });

  describe('tenant isolation', () => {
    it("another tenant's ids and keys are NOT_FOUND (null for asset(id)), and nothing of A changes", async () => {
      const A = newTenant('ta');
      const B = newTenant('tb');
      const tokenA = await app.token(A);
      const tokenB = await app.token(B);
      const a = await create(tokenA, { type: 'BLOB', access: 'PRIVATE', key: 'secret', file: pdf(1), refIds: [{ id: 'p1', type: 'PRODUCT' }] });
      const keys = await storedKeys(app, A);

      expect((await ok(app.url, AssetDocument, { id: a.id }, { token: tokenB })).asset).toBeNull();
      expect((await ok(app.url, AssetsDocument, { q: `id:${a.id}` }, { token: tokenB })).assets).toMatchObject({ items: [], totalCount: 0 });
      expect((await ok(app.url, AssetsDocument, { q: 'key:secret' }, { token: tokenB })).assets.totalCount).toBe(0);
      expect(codeOf(await gql(app.url, UpdateAssetDocument, { id: a.id, input: { version: 1, name: 'pwned' } }, { token: tokenB }))).toBe('NOT_FOUND');
      expect(codeOf(await gql(app.url, UpdateAssetDocument, { id: a.id, input: { version: 1, file: pdf(2) } }, { token: tokenB }))).toBe('NOT_FOUND');
      expect(codeOf(await gql(app.url, DeleteAssetDocument, { id: a.id }, { token: tokenB }))).toBe('NOT_FOUND');
      expect((await get(a.downloadPath, bearer(tokenB))).status).toBe(404);
      expect((await get(`/tenants/${A}/assets/secret`, bearer(tokenB))).status).toBe(404);
      expect((await get(`/tenants/${B}/assets/secret`, bearer(tokenB))).status).toBe(404);

      expect((await ok(app.url, AssetDocument, { id: a.id }, { token: tokenA })).asset).toEqual(a);
      expect(await storedKeys(app, A)).toEqual(keys);
      expect(await storedKeys(app, B)).toEqual([]);
      expect(await rows(B)).toBe(0);
    });
  });
});
