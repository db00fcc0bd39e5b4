import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { CompleteDirectUploadDocument, CreateDirectUploadDocument } from '../generated/graphql.js';
import { newTenant, startTestApp, STORAGE_DRIVER, type TestApp } from '../helpers/app.js';
import { codeOf, gql, ok } from '../helpers/client.js';
import { jpeg, pdfBytes } from '../helpers/files.js';
import { storedKeys } from '../helpers/stored.js';
import { SignedIds } from '../../src/modules/direct-uploads/signed-id.js';
import { resolveSecrets } from '../../src/auth/secrets.js';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(() => app?.close());

const b64sha = (b: Buffer) => createHash('sha256').update(b).digest('base64');

async function ticket(token: string, bytes: Buffer, contentType: string, overrides: { byteSize?: number; checksum?: string; filename?: string } = {}) {
  const { createDirectUpload } = await ok(
    app.url,
    CreateDirectUploadDocument,
    {
      input: {
        filename: overrides.filename ?? 'file.bin',
        contentType,
        byteSize: overrides.byteSize ?? bytes.length,
        checksum: overrides.checksum ?? b64sha(bytes),
      },
    },
    { token },
  );
  return createDirectUpload;
}

/** The PUT a browser makes: the returned url with exactly the returned headers. */
async function put(t: { url: string; headers: { all: Record<string, unknown> } }, bytes: Buffer): Promise<Response> {
  return fetch(t.url, { method: 'PUT', headers: t.headers.all as Record<string, string>, body: bytes });
}

async function mediaRows(tenant: string): Promise<number> {
  return app.db.prisma.media.count({ where: { tenantId: tenant } });
}

describe(`direct uploads (${STORAGE_DRIVER})`, () => {
  it('create, PUT with the returned url and headers, complete: the media exists like an upload', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = Buffer.from(await (await jpeg(900, 600)).arrayBuffer());
    const t = await ticket(token, bytes, 'image/jpeg', { filename: 'front.jpg' });
    expect(t).toMatchObject({ filename: 'front.jpg', contentType: 'image/jpeg', byteSize: bytes.length, serviceName: STORAGE_DRIVER });
    expect(t.headers.all).toEqual({ 'Content-Type': 'image/jpeg' });
    expect(new Date(t.expiresAt).getTime()).toBeGreaterThan(Date.now());
    const res = await put(t, bytes);
    expect(res.status).toBe(200);

    const { completeDirectUpload: m } = await ok(
      app.url,
      CompleteDirectUploadDocument,
      { signedId: t.signedId, entity: { type: 'property', id: 'p1' }, tags: ['Direct'], role: 'PRIMARY_PHOTO' },
      { token },
    );
    expect(m).toMatchObject({ fileName: 'front.jpg', mediaType: 'image/jpeg', kind: 'IMAGE', fileSize: bytes.length, tags: ['direct'], width: 900, height: 600 });
    expect(m.checksum).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(m.roles.map((r) => r.role)).toEqual(['PRIMARY_PHOTO']);
    expect(m.variants.map((v) => v.name)).toEqual(['THUMB', 'MEDIUM']);
    const back = Buffer.from(await (await fetch(m.url!)).arrayBuffer());
    expect(back.equals(bytes)).toBe(true);

    // Usable once.
    const again = await gql(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'property', id: 'p2' } }, { token });
    expect(codeOf(again)).toBe('CONFLICT');
    expect(await mediaRows(tenant)).toBe(1);
  });

  it.each([
    // The local endpoint refuses the PUT itself; s3rver takes it and completion finds the size wrong.
    ['a size other than declared', 'BAD_USER_INPUT', { byteSize: pdfBytes(2).length + 10 }],
    ['a wrong checksum', 'INTEGRITY_ERROR', { checksum: b64sha(Buffer.from('something else')) }],
  ])('refuses %s at completion and leaves nothing behind', async (_name, code, overrides) => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = pdfBytes(2);
    const t = await ticket(token, bytes, 'application/pdf', overrides);
    const res = await put(t, bytes);
    if ('checksum' in overrides) expect(res.status).toBe(200);
    const r = await gql(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'company', id: 'c1' } }, { token });
    expect(codeOf(r)).toBe(code);
    expect(await mediaRows(tenant)).toBe(0);
    expect(await storedKeys(app, tenant)).toEqual([]);
  });

  it('names the media by its detected type, without bidi controls: "invoice\\u202Efdp.html" holding a PDF is invoicefdp.pdf', async () => {
    const token = await app.token(newTenant());
    const bytes = pdfBytes(1);
    const t = await ticket(token, bytes, 'application/pdf', { filename: 'invoice\u202Efdp.html' });
    expect((await put(t, bytes)).status).toBe(200);
    const { completeDirectUpload: m } = await ok(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'property', id: 'p1' } }, { token });
    expect(m.fileName).toBe('invoicefdp.pdf');
    const res = await fetch(m.url!);
    expect(res.headers.get('content-disposition')).toBe('attachment; filename=invoicefdp.pdf');
  });

  it('refuses content whose detected type is not the declared one (HTML declared as PNG)', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = Buffer.from('<!doctype html><html><body>hello</body></html>');
    const t = await ticket(token, bytes, 'image/png');
    expect((await put(t, bytes)).status).toBe(200);
    const r = await gql(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'property', id: 'p1' } }, { token });
    expect(codeOf(r)).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(await mediaRows(tenant)).toBe(0);
    expect(await storedKeys(app, tenant)).toEqual([]);
  });

  it('refuses a declared type that is not supported, and a size over the kind limit, at creation', async () => {
    const token = await app.token(newTenant());
    const svg = await gql(app.url, CreateDirectUploadDocument, { input: { filename: 'x.svg', contentType: 'image/svg+xml', byteSize: 10, checksum: b64sha(Buffer.from('x')) } }, { token });
    expect(codeOf(svg)).toBe('UNSUPPORTED_MEDIA_TYPE');
    const big = await gql(app.url, CreateDirectUploadDocument, { input: { filename: 'x.jpg', contentType: 'image/jpeg', byteSize: 10 * 1024 * 1024 + 1, checksum: b64sha(Buffer.from('x')) } }, { token });
    expect(codeOf(big)).toBe('PAYLOAD_TOO_LARGE');
    const sum = await gql(app.url, CreateDirectUploadDocument, { input: { filename: 'x.jpg', contentType: 'image/jpeg', byteSize: 10, checksum: 'abc' } }, { token });
    expect(codeOf(sum)).toBe('BAD_USER_INPUT');
  });

  it('refuses forged, expired and other tenants\' signed ids, and SENSITIVE entities', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = pdfBytes(1);
    const t = await ticket(token, bytes, 'application/pdf');
    expect((await put(t, bytes)).status).toBe(200);

    const forged = t.signedId.slice(0, -2) + (t.signedId.endsWith('AA') ? 'BB' : 'AA');
    expect(codeOf(await gql(app.url, CompleteDirectUploadDocument, { signedId: forged, entity: { type: 'company', id: 'c' } }, { token }))).toBe('BAD_USER_INPUT');

    const otherToken = await app.token(newTenant());
    expect(codeOf(await gql(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'company', id: 'c' } }, { token: otherToken }))).toBe('NOT_FOUND');

    const sensitive = await gql(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'person', id: 'x' } }, { token });
    expect(codeOf(sensitive)).toBe('BAD_USER_INPUT');
    const critical = await gql(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'property', id: 'x' }, role: 'ID_DOCUMENT' }, { token });
    expect(codeOf(critical)).toBe('BAD_USER_INPUT');

    // An expired id, signed with the service's own key (so only the expiry is wrong).
    const ids = new SignedIds(resolveSecrets(app.services.config).linkSigningKey);
    const payload = JSON.parse(Buffer.from(t.signedId.split('.')[0]!, 'base64url').toString()) as [string, string, number];
    const expired = ids.sign({ id: payload[0], tenant: payload[1], exp: Math.floor(Date.now() / 1000) - 5 });
    const r = await gql(app.url, CompleteDirectUploadDocument, { signedId: expired, entity: { type: 'company', id: 'c' } }, { token });
    expect(codeOf(r)).toBe('BAD_USER_INPUT');
    expect(r.errors?.[0]?.message).toMatch(/expired/);

    // None of the refusals consumed the ticket or created anything.
    expect(await mediaRows(tenant)).toBe(0);
    const done = await ok(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'company', id: 'c' } }, { token });
    expect(done.completeDirectUpload.fileSize).toBe(bytes.length);
  });

  // Only the local driver has the service's own PUT endpoint (S3 hands out presigned URLs).
  if (STORAGE_DRIVER === 'local') it('the local PUT endpoint refuses a forged URL, a wrong Content-Type and a body larger than declared', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = pdfBytes(1);
    const t = await ticket(token, bytes, 'application/pdf');
    const forgedUrl = t.url.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'));
    expect((await fetch(forgedUrl, { method: 'PUT', headers: { 'Content-Type': 'application/pdf' }, body: bytes })).status).toBe(403);
    expect((await fetch(t.url, { method: 'PUT', headers: { 'Content-Type': 'image/png' }, body: bytes })).status).toBe(400);
    const bigger = Buffer.concat([bytes, Buffer.from('extra')]);
    expect((await fetch(t.url, { method: 'PUT', headers: { 'Content-Type': 'application/pdf' }, body: bigger })).status).toBe(400);
    expect(await storedKeys(app, tenant)).toEqual([]);
  });
});
