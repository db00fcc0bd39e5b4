import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UploadDocument, MediaDocument } from '../generated/graphql.js';
import { startTestApp, newTenant, type TestApp } from '../helpers/app.js';
import { ok } from '../helpers/client.js';
import { jpeg, pdf, sha256Hex } from '../helpers/files.js';
import { storedKeys } from '../helpers/stored.js';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(() => app?.close());

describe('upload', () => {
  it('stores a JPEG with tags, role, metadata and variants, and serves it byte-identical', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant, { subject: 'alice' });
    const file = await jpeg(1600, 1200);
    const { upload } = await ok(
      app.url,
      UploadDocument,
      { input: { file, entity: { type: 'property', id: 'p-1' }, tags: [' Front ', 'garden,FRONT', 'sunny'], role: 'PRIMARY_PHOTO' } },
      { token },
    );
    expect(upload).toMatchObject({
      fileName: 'photo.jpg',
      mediaType: 'image/jpeg',
      kind: 'IMAGE',
      fileSize: file.size,
      checksum: await sha256Hex(file),
      securityLevel: 'STANDARD',
      encrypted: false,
      encryptionKeyId: null,
      tags: ['front', 'garden', 'sunny'],
      width: 1600,
      height: 1200,
      createdBy: 'alice',
      version: 1,
      entities: [{ type: 'property', id: 'p-1' }],
      roles: [{ role: 'PRIMARY_PHOTO', entity: { type: 'property', id: 'p-1' } }],
    });
    // Never upscaled: 1600 px long edge gives THUMB, MEDIUM and LARGE, not LARGE_2X.
    expect(upload.variants.map((v) => [v.name, v.width, v.height])).toEqual([
      ['THUMB', 160, 120],
      ['MEDIUM', 640, 480],
      ['LARGE', 1280, 960],
    ]);
    expect(upload.contentPath).toBe(`/media/${upload.id}/content`);

    // The signed url works without a token and returns the same bytes.
    const res = await fetch(upload.url!);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/jpeg');
    const body = Buffer.from(await res.arrayBuffer());
    expect(await sha256Hex(body)).toBe(upload.checksum);

    const thumb = await fetch(upload.variants[0]!.url);
    expect(thumb.status).toBe(200);
    expect(thumb.headers.get('content-type')).toBe('image/jpeg');

    const { media } = await ok(app.url, MediaDocument, { id: upload.id }, { token });
    expect(media?.id).toBe(upload.id);
  });

  it('counts the pages of a PDF and stores it under a key built from tenant and id', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const { upload } = await ok(app.url, UploadDocument, { input: { file: pdf(3, '../../etc/passwd.pdf'), entity: { type: 'company', id: 'c1' } } }, { token });
    expect(upload).toMatchObject({ mediaType: 'application/pdf', kind: 'DOCUMENT', pageCount: 3, fileName: 'passwd.pdf', variants: [] });
    expect(await storedKeys(app, tenant)).toEqual([`${tenant}/${upload.id}/original`]);
  });
});
