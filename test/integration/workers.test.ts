import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { AssignRoleDocument, AttachMediaDocument, MediaDocument, UploadDocument, UploadSignedDocumentDocument, WorkerMediaDocument } from '../generated/graphql.js';
import { newTenant, startTestApp, STORAGE_DRIVER, type TestApp } from '../helpers/app.js';
import { codeOf, gql, ok } from '../helpers/client.js';
import { jpeg, mp4, pdfBytes } from '../helpers/files.js';
import { storedKeys } from '../helpers/stored.js';

const KEY = 'wk-sig-Nq4Zr8Tb2Xv6Lm0Pc5Hd9Jf3Gs7Kw1';
const OTHER_KEY = 'wk-ocr-Yt5Bn1Qe8Ru3Mz6Ci0Vx4Lo7Ha2Dk9';
// KEY is bound to these tenants only (each test takes fresh ones); OTHER_KEY to every tenant, by opt-in.
const TENANTS = Array.from({ length: 16 }, () => newTenant('w'));
let nextTenant = 0;
const boundTenant = () => TENANTS[nextTenant++]!;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const worker = (tenant: string, type = 'signature-processor', key = KEY) => ({
  headers: { authorization: `Bearer ${key}`, 'x-worker-type': type, 'x-tenant-id': tenant },
});

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp({
    env: { WORKER_API_KEYS: `${KEY}:signature-processor|otp-validator:${TENANTS.join('|')},${OTHER_KEY}:ocr:*`, WORKER_API_KEYS_ALLOW_ANY_TENANT: 'true' },
  });
});
afterAll(() => app?.close());

async function leaseWithOriginal(tenant: string) {
  const token = await app.token(tenant);
  const bytes = Buffer.concat([pdfBytes(3), Buffer.from('%' + 'original '.repeat(10_000))]);
  const { upload } = await ok(app.url, UploadDocument, { input: { file: new File([bytes], 'lease.pdf'), entity: { type: 'lease', id: 'L-7' }, role: 'LEASE_ORIGINAL' } }, { token });
  // Attached to a second entity too, where it holds no role.
  await ok(app.url, AttachMediaDocument, { id: upload.id, entity: { type: 'unit', id: 'U-1' } }, { token }).catch(() => undefined);
  return { token, bytes, original: upload };
}

describe(`worker API (${STORAGE_DRIVER})`, () => {
  it('workerMedia returns the decrypted, verified content as base64', async () => {
    const tenant = boundTenant();
    const { bytes, original } = await leaseWithOriginal(tenant);
    const { workerMedia } = await ok(app.url, WorkerMediaDocument, { id: original.id }, worker(tenant, 'otp-validator'));
    expect(workerMedia).toMatchObject({ documentName: 'lease.pdf', contentType: 'application/pdf', fileSize: bytes.length, checksum: sha(bytes), securityLevel: 'CRITICAL' });
    expect(Buffer.from(workerMedia.contentBase64, 'base64').equals(bytes)).toBe(true);
  });

  it('uploadSignedDocument stores a CRITICAL encrypted PDF where the original is attached, with LEASE_SIGNED where it holds LEASE_ORIGINAL', async () => {
    const tenant = boundTenant();
    const { token, original } = await leaseWithOriginal(tenant);
    const signed = Buffer.concat([pdfBytes(4), Buffer.from('%signed')]);
    const { uploadSignedDocument: m } = await ok(
      app.url,
      UploadSignedDocumentDocument,
      { mediaId: original.id, file: new File([signed], 'lease-signed.pdf', { type: 'application/pdf' }) },
      worker(tenant),
    );
    expect(m).toMatchObject({ mediaType: 'application/pdf', securityLevel: 'CRITICAL', encrypted: true, url: null, createdBy: 'worker:signature-processor' });
    const { media: orig } = await ok(app.url, MediaDocument, { id: original.id }, { token });
    expect(new Set(m.entities.map((e) => `${e.type}/${e.id}`))).toEqual(new Set(orig!.entities.map((e) => `${e.type}/${e.id}`)));
    expect(m.roles).toEqual([{ role: 'LEASE_SIGNED', entity: { type: 'lease', id: 'L-7' } }]);
    // The user reads it back decrypted.
    const res = await fetch(`${app.url}/media/${m.id}/content`, { headers: { authorization: `Bearer ${token}` } });
    expect(sha(Buffer.from(await res.arrayBuffer()))).toBe(sha(signed));
  });

  it('uploadSignedDocument names the document by its type, without bidi controls', async () => {
    const tenant = boundTenant();
    const { token, original } = await leaseWithOriginal(tenant);
    const file = new File([pdfBytes(1)], 'lease\u202Efdp.exe', { type: 'application/pdf' });
    const { uploadSignedDocument: m } = await ok(app.url, UploadSignedDocumentDocument, { mediaId: original.id, file }, worker(tenant));
    const res = await fetch(`${app.url}/media/${m.id}/content`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.headers.get('content-disposition')).toBe('attachment; filename=leasefdp.pdf');
    const { media } = await ok(app.url, MediaDocument, { id: m.id }, { token });
    expect(media!.fileName).toBe('leasefdp.pdf');
  });

  it('uploadSignedDocument accepts only PDFs and stores nothing otherwise', async () => {
    const tenant = boundTenant();
    const { original } = await leaseWithOriginal(tenant);
    const before = await storedKeys(app, tenant);
    const r = await gql(app.url, UploadSignedDocumentDocument, { mediaId: original.id, file: await jpeg(50, 50) }, worker(tenant));
    expect(codeOf(r)).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(await storedKeys(app, tenant)).toEqual(before);
    expect(await app.db.prisma.media.count({ where: { tenantId: tenant } })).toBe(1);
  });

  it('workerMedia refuses content other than PDFs and images', async () => {
    const tenant = boundTenant();
    const token = await app.token(tenant);
    const { upload } = await ok(app.url, UploadDocument, { input: { file: mp4(), entity: { type: 'property', id: 'p' } } }, { token });
    expect(codeOf(await gql(app.url, WorkerMediaDocument, { id: upload.id }, worker(tenant)))).toBe('UNSUPPORTED_MEDIA_TYPE');
  });

  it('keeps workers and users apart, and refuses unknown worker types and other tenants', async () => {
    const tenant = boundTenant();
    const { token, original } = await leaseWithOriginal(tenant);
    // User tokens never reach the worker operations.
    expect(codeOf(await gql(app.url, WorkerMediaDocument, { id: original.id }, { token }))).toBe('FORBIDDEN');
    expect(codeOf(await gql(app.url, UploadSignedDocumentDocument, { mediaId: original.id, file: new File([pdfBytes(1)], 's.pdf') }, { token }))).toBe('FORBIDDEN');
    // Worker keys reach nothing else: GraphQL or the content route.
    expect(codeOf(await gql(app.url, MediaDocument, { id: original.id }, worker(tenant)))).toBe('FORBIDDEN');
    expect(codeOf(await gql(app.url, AssignRoleDocument, { entity: { type: 'lease', id: 'x' }, mediaId: original.id, role: 'LEASE_SIGNED' }, worker(tenant)))).toBe('FORBIDDEN');
    expect((await fetch(`${app.url}/media/${original.id}/content`, worker(tenant))).status).toBe(403);
    // A worker type the key is not bound to, an unknown key, no tenant header.
    expect(codeOf(await gql(app.url, WorkerMediaDocument, { id: original.id }, worker(tenant, 'ocr')))).toBe('UNAUTHENTICATED');
    expect(codeOf(await gql(app.url, WorkerMediaDocument, { id: original.id }, worker(tenant, 'signature-processor', 'no-such-key-Nq4Zr8Tb2Xv6Lm0Pc5Hd9')))).toBe('UNAUTHENTICATED');
    expect(codeOf(await gql(app.url, WorkerMediaDocument, { id: original.id }, worker(tenant, 'signature-processor', KEY.slice(0, -1))))).toBe('UNAUTHENTICATED');
    expect(codeOf(await gql(app.url, WorkerMediaDocument, { id: original.id }, { headers: { authorization: `Bearer ${KEY}`, 'x-worker-type': 'otp-validator' } }))).toBe('UNAUTHENTICATED');
    // For another tenant the key is bound to, this tenant's media is not found, and nothing is stored for a refused upload.
    const other = boundTenant();
    expect(codeOf(await gql(app.url, WorkerMediaDocument, { id: original.id }, worker(other)))).toBe('NOT_FOUND');
    expect(codeOf(await gql(app.url, UploadSignedDocumentDocument, { mediaId: original.id, file: new File([pdfBytes(1)], 's.pdf') }, worker(other)))).toBe('NOT_FOUND');
    expect(await storedKeys(app, other)).toEqual([]);
    // The OCR key works for its own type.
    const { workerMedia } = await ok(app.url, WorkerMediaDocument, { id: original.id }, worker(tenant, 'ocr', OTHER_KEY));
    expect(workerMedia.checksum).toBe(original.checksum);
  });

  it('a key bound to tenant A cannot act for tenant B: no decrypted CRITICAL document, no upload', async () => {
    const tenantA = boundTenant();
    const tenantB = newTenant('victim'); // not among KEY's tenants
    const { bytes, original } = await leaseWithOriginal(tenantB);
    // OCR's key (every tenant, opted in) reads it, so the refusal below is about KEY's tenants only.
    expect((await ok(app.url, WorkerMediaDocument, { id: original.id }, worker(tenantB, 'ocr', OTHER_KEY))).workerMedia.checksum).toBe(sha(bytes));
    for (const type of ['signature-processor', 'otp-validator']) {
      const r = await gql(app.url, WorkerMediaDocument, { id: original.id }, worker(tenantB, type));
      expect(codeOf(r), type).toBe('UNAUTHENTICATED');
      expect(r.errors?.[0]?.message).toBe('Worker key is not valid for this X-Tenant-ID');
      expect(JSON.stringify(r)).not.toContain(Buffer.from(bytes).toString('base64').slice(0, 64));
    }
    const before = await storedKeys(app, tenantB);
    const up = await gql(app.url, UploadSignedDocumentDocument, { mediaId: original.id, file: new File([pdfBytes(1)], 's.pdf', { type: 'application/pdf' }) }, worker(tenantB));
    expect(codeOf(up)).toBe('UNAUTHENTICATED');
    expect(await storedKeys(app, tenantB)).toEqual(before);
    expect(await app.db.prisma.media.count({ where: { tenantId: tenantB } })).toBe(1);
    // The same key still works for its own tenant.
    const own = await leaseWithOriginal(tenantA);
    expect((await ok(app.url, WorkerMediaDocument, { id: own.original.id }, worker(tenantA))).workerMedia.checksum).toBe(sha(own.bytes));
  });
});

describe('worker keys at startup', () => {
  it('refuses to start with a key of the old format (no tenants), explaining the new one', async () => {
    await expect(startTestApp({ env: { WORKER_API_KEYS: `${KEY}:signature-processor` } })).rejects.toThrow(/WORKER_API_KEYS: entry 1 names no tenants.*key:type1\|type2:tenant1\|tenant2/s);
  });

  it('refuses to start with a low-entropy key', async () => {
    await expect(startTestApp({ env: { WORKER_API_KEYS: `${'a'.repeat(40)}:ocr:acme` } })).rejects.toThrow(/WORKER_API_KEYS: entry 1: the key is not random enough/);
  });
});
