import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { SecMediaUrlsDocument, SecUploadDocument, SecUploadManyDocument } from '../generated/graphql.js';
import { startTestApp, newTenant, type TestApp } from '../helpers/app.js';
import { ok } from '../helpers/client.js';
import { jpeg, pdf, pdfBytes, png, sha256Hex } from '../helpers/files.js';
import { multipartBody, rawPost } from '../helpers/security.js';

let app: TestApp;
let tenant: string;
let token: string;

interface Uploaded {
  id: string;
  fileName: string;
  checksum: string;
  fileSize: number;
  contentPath: string;
}

let photo: Uploaded;
let photoBytes: Buffer;
let doc: Uploaded;
let docBytes: Buffer;

/**
 * Uploads with a hand-written multipart body whose file part names the file with
 * RFC 5987 `filename*` (exact bytes: quotes, non-ASCII, control characters),
 * which a browser FormData would percent-escape or refuse.
 */
async function uploadNamed(name: string, data: Buffer, type: string): Promise<Uploaded> {
  const query = 'mutation ($input: UploadInput!) { upload(input: $input) { id fileName checksum fileSize contentPath } }';
  const { body, contentType } = multipartBody([
    { name: 'operations', value: JSON.stringify({ query, variables: { input: { file: null, entity: { type: 'property', id: 'p-1' } } } }) },
    { name: 'map', value: JSON.stringify({ 0: ['variables.input.file'] }) },
    { name: '0', filename: 'fallback.bin', filenameStar: `UTF-8''${rfc5987(name)}`, type, data },
  ]);
  const r = await rawPost(app, body, { 'content-type': contentType, authorization: `Bearer ${token}`, 'apollo-require-preflight': 'true' });
  const json = r.json as { data?: { upload: Uploaded }; errors?: unknown };
  if (!json?.data?.upload) throw new Error(`upload failed (${r.status}): ${r.text}`);
  return json.data.upload;
}

/** RFC 5987 ext-value characters: percent-encode everything but attr-char. */
function rfc5987(name: string): string {
  return encodeURIComponent(name).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

const auth = () => ({ authorization: `Bearer ${token}` });

/**
 * Headers of a conditional request as a browser revalidating its cache sends them.
 * (fetch() adds `Cache-Control: no-cache` to any request carrying If-None-Match
 * unless the caller sets Cache-Control; with no-cache a server must send the full
 * response, so the test sets what browsers send on a normal reload.)
 */
const revalidate = (etag: string) => ({ ...auth(), 'if-none-match': etag, 'cache-control': 'max-age=0' });

beforeAll(async () => {
  app = await startTestApp();
  tenant = newTenant('cr');
  token = await app.token(tenant);
  const file = await jpeg(1000, 700, 'photo 1.jpg');
  photoBytes = Buffer.from(await file.arrayBuffer());
  photo = (await ok(app.url, SecUploadDocument, { input: { file, entity: { type: 'property', id: 'p-1' } } }, { token })).upload;
  docBytes = pdfBytes(3);
  doc = await uploadNamed('Bail signé "final".pdf', docBytes, 'application/pdf');
});
afterAll(() => app?.close());

/** RFC 6266 grammar for what this service sends: type, a quoted-string filename, optionally filename*. */
const DISPOSITION = /^(inline|attachment); filename="((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"(?:; filename\*=UTF-8''([A-Za-z0-9!#$&+.^_`|~%-]+))?$/;

describe('GET /media/{id}/content', () => {
  it('serves an image inline with the security headers, the exact length and the checksum as ETag', async () => {
    const res = await fetch(`${app.url}${photo.contentPath}`, { headers: auth() });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/jpeg');
    expect(res.headers.get('content-length')).toBe(String(photoBytes.length));
    expect(res.headers.get('etag')).toBe(`"${await sha256Hex(photoBytes)}"`);
    expect(res.headers.get('etag')).toBe(`"${photo.checksum}"`);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('content-security-policy')).toBe("default-src 'none'; sandbox");
    expect(res.headers.get('accept-ranges')).toBe('bytes');
    expect(res.headers.get('cache-control')).toMatch(/\bprivate\b/);
    expect(res.headers.get('content-disposition')).toBe('inline; filename="photo 1.jpg"');
    expect(Buffer.from(await res.arrayBuffer()).equals(photoBytes)).toBe(true);
  });

  it('serves a PDF as an attachment whose name (spaces, quotes, non-ASCII) is encoded per RFC 6266', async () => {
    expect(doc.fileName).toBe('Bail signé "final".pdf');
    const res = await fetch(`${app.url}${doc.contentPath}`, { headers: auth() });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/pdf');
    expect(res.headers.get('content-length')).toBe(String(docBytes.length));
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('content-security-policy')).toBe("default-src 'none'; sandbox");
    const cd = res.headers.get('content-disposition')!;
    expect(cd).toBe(`attachment; filename="Bail sign? \\"final\\".pdf"; filename*=UTF-8''Bail%20sign%C3%A9%20%22final%22.pdf`);
    const m = DISPOSITION.exec(cd);
    expect(m, cd).not.toBeNull();
    expect(decodeURIComponent(m![3]!)).toBe('Bail signé "final".pdf');
    expect(cd).not.toMatch(/[\r\n]/);
    expect(Buffer.from(await res.arrayBuffer()).equals(docBytes)).toBe(true);
  });

  it('keeps a name with non-Latin characters readable through filename* and ASCII-only in filename', async () => {
    const up = await uploadNamed('契約 🏠 (copie).pdf', pdfBytes(1), 'application/pdf');
    const res = await fetch(`${app.url}${up.contentPath}`, { headers: auth() });
    expect(res.status).toBe(200);
    const cd = res.headers.get('content-disposition')!;
    const m = DISPOSITION.exec(cd);
    expect(m, cd).not.toBeNull();
    expect(m![1]).toBe('attachment');
    expect(m![2]).toMatch(/^[\x20-\x7e]*$/);
    expect(decodeURIComponent(m![3]!)).toBe('契約 🏠 (copie).pdf');
  });

  it('never lets CR/LF or a quote from the file name break the header', async () => {
    const up = await uploadNamed('evil"\r\nX-Injected: 1\r\n\r\n.pdf', pdfBytes(1), 'application/pdf');
    expect(up.fileName).not.toMatch(/[\r\n]/);
    const res = await fetch(`${app.url}${up.contentPath}`, { headers: auth() });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-injected')).toBeNull();
    const cd = res.headers.get('content-disposition')!;
    expect(cd).not.toMatch(/[\r\n]/);
    expect(DISPOSITION.exec(cd), cd).not.toBeNull();
  });

  it('keeps UTF-8 file names sent by a browser FormData (apollo-upload-client wire format)', async () => {
    const { upload } = await ok(app.url, SecUploadDocument, { input: { file: pdf(1, 'Relevé café.pdf'), entity: { type: 'property', id: 'p-1' } } }, { token });
    expect(upload.fileName).toBe('Relevé café.pdf');
    const res = await fetch(`${app.url}${upload.contentPath}`, { headers: auth() });
    expect(res.headers.get('content-disposition')).toContain(`filename*=UTF-8''Relev%C3%A9%20caf%C3%A9.pdf`);
  });

  describe('Range', () => {
    const range = (r: string, path = photo.contentPath) => fetch(`${app.url}${path}`, { headers: { ...auth(), range: r } });

    it('bytes=0-99 is 206 with Content-Range and exactly those bytes', async () => {
      const res = await range('bytes=0-99');
      expect(res.status).toBe(206);
      expect(res.headers.get('content-range')).toBe(`bytes 0-99/${photoBytes.length}`);
      expect(res.headers.get('content-length')).toBe('100');
      expect(res.headers.get('content-type')).toBe('image/jpeg');
      expect(Buffer.from(await res.arrayBuffer()).equals(photoBytes.subarray(0, 100))).toBe(true);
    });

    it('bytes=-10 is the last 10 bytes', async () => {
      const n = photoBytes.length;
      const res = await range('bytes=-10');
      expect(res.status).toBe(206);
      expect(res.headers.get('content-range')).toBe(`bytes ${n - 10}-${n - 1}/${n}`);
      expect(res.headers.get('content-length')).toBe('10');
      expect(Buffer.from(await res.arrayBuffer()).equals(photoBytes.subarray(n - 10))).toBe(true);
    });

    it('bytes=100- is everything from byte 100', async () => {
      const n = photoBytes.length;
      const res = await range('bytes=100-');
      expect(res.status).toBe(206);
      expect(res.headers.get('content-range')).toBe(`bytes 100-${n - 1}/${n}`);
      expect(res.headers.get('content-length')).toBe(String(n - 100));
      expect(Buffer.from(await res.arrayBuffer()).equals(photoBytes.subarray(100))).toBe(true);
    });

    it('a range that ends past the end is cut at the end', async () => {
      const n = docBytes.length;
      const res = await range(`bytes=${n - 5}-${n + 1000}`, doc.contentPath);
      expect(res.status).toBe(206);
      expect(res.headers.get('content-range')).toBe(`bytes ${n - 5}-${n - 1}/${n}`);
      expect(Buffer.from(await res.arrayBuffer()).equals(docBytes.subarray(n - 5))).toBe(true);
    });

    it('an unsatisfiable range is 416 with Content-Range bytes */size', async () => {
      const n = photoBytes.length;
      for (const r of [`bytes=${n}-`, `bytes=${n + 10}-${n + 20}`]) {
        const res = await range(r);
        expect(res.status, r).toBe(416);
        expect(res.headers.get('content-range')).toBe(`bytes */${n}`);
        expect((await res.arrayBuffer()).byteLength).toBe(0);
      }
    });
  });

  it('If-None-Match with the ETag is 304 without a body; another ETag gets the content', async () => {
    const etag = `"${photo.checksum}"`;
    const res = await fetch(`${app.url}${photo.contentPath}`, { headers: revalidate(etag) });
    expect(res.status).toBe(304);
    expect(res.headers.get('etag')).toBe(etag);
    expect((await res.arrayBuffer()).byteLength).toBe(0);
    const other = await fetch(`${app.url}${photo.contentPath}`, { headers: revalidate(`"${doc.checksum}"`) });
    expect(other.status).toBe(200);
    expect(Buffer.from(await other.arrayBuffer()).equals(photoBytes)).toBe(true);
  });

  it('HEAD returns the headers without a body', async () => {
    const res = await fetch(`${app.url}${doc.contentPath}`, { method: 'HEAD', headers: auth() });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe(String(docBytes.length));
    expect(res.headers.get('content-type')).toBe('application/pdf');
    expect(res.headers.get('etag')).toBe(`"${doc.checksum}"`);
    expect(res.headers.get('content-disposition')).toMatch(/^attachment;/);
    expect((await res.arrayBuffer()).byteLength).toBe(0);
  });

  it('an unknown or malformed media id is 404 JSON', async () => {
    for (const id of ['00000000-0000-4000-8000-000000000000', 'not-a-uuid', "1' OR '1'='1"]) {
      const res = await fetch(`${app.url}/media/${encodeURIComponent(id)}/content`, { headers: auth() });
      expect(res.status, id).toBe(404);
      expect(await res.json()).toMatchObject({ error: { code: 'NOT_FOUND' } });
    }
  });

  it('a media whose stored object is gone is 404 without naming the storage key', async () => {
    const bytes = pdfBytes(1);
    const { upload } = await ok(app.url, SecUploadDocument, { input: { file: new File([bytes], 'gone.pdf'), entity: { type: 'property', id: 'p-gone' } } }, { token });
    await app.services.storage.deletePrefix(`${tenant}/${upload.id}/`);
    const res = await fetch(`${app.url}/media/${upload.id}/content`, { headers: auth() });
    expect(res.status).toBe(404);
    const text = await res.text();
    expect(JSON.parse(text)).toMatchObject({ error: { code: 'NOT_FOUND', message: 'Stored content not found' } });
    expect(text).not.toContain(tenant);
    expect(text).not.toContain('original');
  });
});

describe('GET /media/{id}/variants/{name}', () => {
  it('serves THUMB as a 160 px JPEG with the same security headers', async () => {
    const res = await fetch(`${app.url}/media/${photo.id}/variants/THUMB`, { headers: auth() });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/jpeg');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('content-security-policy')).toBe("default-src 'none'; sandbox");
    expect(res.headers.get('content-disposition')).toMatch(/^inline; filename="photo 1-thumb\.jpg"/);
    const etag = res.headers.get('etag');
    expect(etag).toMatch(/^"[^"]+"$/);
    expect(etag).not.toBe(`"${photo.checksum}"`);
    const body = Buffer.from(await res.arrayBuffer());
    expect(res.headers.get('content-length')).toBe(String(body.length));
    const meta = await sharp(body).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['jpeg', 160, 112]);
    // Conditional and HEAD work on variants too.
    expect((await fetch(`${app.url}/media/${photo.id}/variants/THUMB`, { headers: revalidate(etag!) })).status).toBe(304);
    const head = await fetch(`${app.url}/media/${photo.id}/variants/THUMB`, { method: 'HEAD', headers: auth() });
    expect(head.headers.get('content-length')).toBe(String(body.length));
  });

  it('an unknown variant, one not produced, or a variant of a PDF is 404 JSON', async () => {
    for (const path of [`/media/${photo.id}/variants/HUGE`, `/media/${photo.id}/variants/thumb`, `/media/${photo.id}/variants/LARGE_2X`, `/media/${doc.id}/variants/THUMB`]) {
      const res = await fetch(`${app.url}${path}`, { headers: auth() });
      expect(res.status, path).toBe(404);
      expect(await res.json()).toMatchObject({ error: { code: 'NOT_FOUND' } });
    }
  });
});

describe('signed urls', () => {
  it('the url serves the bytes without a token; so do the variant urls', async () => {
    const { media } = await ok(app.url, SecMediaUrlsDocument, { id: photo.id }, { token });
    const res = await fetch(media!.url!);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/jpeg');
    expect(Buffer.from(await res.arrayBuffer()).equals(photoBytes)).toBe(true);
    const thumb = media!.variants.find((v) => v.name === 'THUMB')!;
    const t = await fetch(thumb.url);
    expect(t.status).toBe(200);
    expect((await sharp(Buffer.from(await t.arrayBuffer())).metadata()).width).toBe(160);
  });

  it('a signed link to the content route serves with the same headers; tampered or expired it is 401', async () => {
    const links = app.services.links;
    const good = links.sign(tenant, doc.contentPath, 60);
    const res = await fetch(`${app.url}${doc.contentPath}?token=${encodeURIComponent(good)}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-disposition')).toContain(`filename*=UTF-8''Bail%20sign%C3%A9%20%22final%22.pdf`);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(Buffer.from(await res.arrayBuffer()).equals(docBytes)).toBe(true);

    const tampered = good.slice(0, -3) + (good.endsWith('xyz') ? 'abc' : 'xyz');
    const expired = links.sign(tenant, doc.contentPath, -5);
    for (const [label, t] of [['tampered', tampered], ['expired', expired]] as const) {
      const r = await fetch(`${app.url}${doc.contentPath}?token=${encodeURIComponent(t)}`);
      expect(r.status, label).toBe(401);
      expect(await r.json()).toMatchObject({ error: { code: 'UNAUTHENTICATED' } });
    }
    // A bad link is refused even when a valid Bearer token is also sent: the link is what the request claims.
    const both = await fetch(`${app.url}${doc.contentPath}?token=${encodeURIComponent(expired)}`, { headers: auth() });
    expect(both.status).toBe(401);
  });

  it('a signed link works for Range and HEAD too', async () => {
    const t = app.services.links.sign(tenant, photo.contentPath, 60);
    const res = await fetch(`${app.url}${photo.contentPath}?token=${encodeURIComponent(t)}`, { headers: { range: 'bytes=0-9' } });
    expect(res.status).toBe(206);
    expect(Buffer.from(await res.arrayBuffer()).equals(photoBytes.subarray(0, 10))).toBe(true);
    const head = await fetch(`${app.url}${photo.contentPath}?token=${encodeURIComponent(t)}`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(photoBytes.length));
  });
});

describe('served file names: what is shown is what it is', () => {
  const bytesOf = async (f: Blob) => Buffer.from(await f.arrayBuffer());
  const dispositionOf = async (path: string) => (await fetch(`${app.url}${path}`, { headers: auth() })).headers.get('content-disposition');

  it('strips bidi controls: "invoice\\u202Egnp.exe" (shown as "invoiceexe.png") is stored and served as what it is', async () => {
    const up = await uploadNamed('invoice\u202Egnp.exe', await bytesOf(await png(40, 40)), 'image/png');
    expect(up.fileName).toBe('invoicegnp.png');
    expect(await dispositionOf(up.contentPath)).toBe('inline; filename=invoicegnp.png');
    expect(await dispositionOf(`/media/${up.id}/variants/THUMB`)).toBe('inline; filename=invoicegnp-thumb.png');
    const zw = await uploadNamed('re\u200Bport\u2066.pdf\u2069', pdfBytes(1), 'application/pdf');
    expect(zw.fileName).toBe('report.pdf');
  });

  it('a PDF uploaded as invoice.html is stored and downloads as invoice.pdf, through every link', async () => {
    const { upload } = await ok(app.url, SecUploadDocument, { input: { file: new File([pdfBytes(1)], 'invoice.html', { type: 'application/pdf' }), entity: { type: 'property', id: 'p-1' } } }, { token });
    expect(upload.fileName).toBe('invoice.pdf');
    expect(await dispositionOf(upload.contentPath)).toBe('attachment; filename=invoice.pdf');
    const { media } = await ok(app.url, SecMediaUrlsDocument, { id: upload.id }, { token });
    const viaUrl = await fetch(media!.url!);
    expect(viaUrl.status).toBe(200);
    expect(viaUrl.headers.get('content-disposition')).toBe('attachment; filename=invoice.pdf');
  });

  it('uploadMany names every file by its detected type', async () => {
    const inputs = [
      { file: new File([pdfBytes(1)], 'a.html', { type: 'application/pdf' }), entity: { type: 'property', id: 'p-1' } },
      { file: new File([await bytesOf(await jpeg(32, 32))], 'b\u202Egpj.exe', { type: 'image/jpeg' }), entity: { type: 'property', id: 'p-1' } },
    ];
    const { uploadMany } = await ok(app.url, SecUploadManyDocument, { inputs }, { token });
    expect(uploadMany.map((m) => m.fileName)).toEqual(['a.pdf', 'bgpj.jpg']);
  });

  it('rows stored before these rules are served by them', async () => {
    const up = await uploadNamed('legacy.pdf', pdfBytes(1), 'application/pdf');
    await app.db.prisma.media.update({ where: { tenantId_id: { tenantId: tenant, id: up.id } }, data: { fileName: 'legacy\u202Efdp.html' } });
    const { media } = await ok(app.url, SecMediaUrlsDocument, { id: up.id }, { token });
    expect(media!.fileName).toBe('legacyfdp.pdf');
    expect(await dispositionOf(up.contentPath)).toBe('attachment; filename=legacyfdp.pdf');
  });

  it('DOC and XLS (one container format, told apart by the extension) keep their names and types', async () => {
    const cfb = Buffer.concat([Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]), Buffer.alloc(4096, 1)]);
    const company = { type: 'company', id: 'c-1' };
    const doc = await ok(app.url, SecUploadDocument, { input: { file: new File([cfb], 'Report.DOC'), entity: company } }, { token });
    const xls = await ok(app.url, SecUploadDocument, { input: { file: new File([cfb], 'bud\u200Bget.xls'), entity: company } }, { token });
    expect([doc.upload.fileName, doc.upload.mediaType]).toEqual(['Report.DOC', 'application/msword']);
    expect([xls.upload.fileName, xls.upload.mediaType]).toEqual(['budget.xls', 'application/vnd.ms-excel']);
  });
});
