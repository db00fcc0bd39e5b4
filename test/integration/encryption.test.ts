import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { AssignRoleDocument, MediaDocument, UploadDocument } from '../generated/graphql.js';
import { newTenant, S3_STORE, startTestApp, STORAGE_DRIVER, type TestApp } from '../helpers/app.js';
import { codeOf, gql, ok } from '../helpers/client.js';
import { jpeg, pdfBytes } from '../helpers/files.js';
import { radosBytes, rawGet } from '../helpers/sse-c.js';
import { decodeHeader } from '../../src/crypto/segmented-gcm.js';

/**
 * The mode this run's store must get: Ceph RGW enforces SSE-C; s3rver accepts the
 * headers and ignores them, and local disk has none, so both get application-side
 * AES-GCM segments. Tests that inspect or tamper with our own segment format only
 * exist in app mode; SSE-C mode has its own cases (and test/integration/rgw-sse-c.test.ts).
 */
const MODE: 'app' | 'sse-c' = STORAGE_DRIVER === 's3' && S3_STORE === 'rgw' ? 'sse-c' : 'app';
const STORE = STORAGE_DRIVER === 'local' ? 'local disk' : S3_STORE;

const MARKER = 'TOP-SECRET-LEASE-CLAUSE ';
/** A PDF of about 480 KB (eight 64 KiB segments) with a recognisable plaintext marker. */
const leasePdf = () => Buffer.concat([pdfBytes(2), Buffer.from('%' + MARKER.repeat(20_000) + '\n')]);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function raw(app: TestApp, key: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of await app.services.storage.get(key)) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** Writes an object as it is (`sseKey`: with that SSE-C customer key), bypassing the service's encryption. */
async function put(key: string, bytes: Buffer, sseKey?: Buffer): Promise<void> {
  await app.services.storage.put(key, Readable.from([bytes]), sseKey ? { sseKey } : {});
}

async function fetchContent(app: TestApp, id: string, token: string, headers: Record<string, string> = {}) {
  return fetch(`${app.url}/media/${id}/content`, { headers: { authorization: `Bearer ${token}`, ...headers } });
}

/** Reads a response body; null when the server aborted it (the client never gets a complete body). */
async function bodyOrAbort(res: Response): Promise<Buffer | null> {
  try {
    return Buffer.from(await res.arrayBuffer());
  } catch {
    return null;
  }
}

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(() => app?.close());

describe(`encryption at rest (${STORE}, ${MODE} mode)`, () => {
  if (MODE === 'app') {
    it('falls back to application-side encryption where the store does not enforce SSE-C, and says so once', () => {
      // s3rver accepts SSE-C headers and ignores them: the start-up probe must catch that.
      expect(app.services.crypto.mode).toBe('app');
      const notes = app.logs.filter((l) => String(l['msg']).startsWith('encryption at rest'));
      expect(notes).toHaveLength(1);
      // One line with the mode and why (s3rver: the keyless probe GET returned the object).
      expect(notes[0]).toMatchObject({ mode: 'app', reason: STORAGE_DRIVER === 's3' ? 'store does not enforce SSE-C (keyless GET answered 200)' : 'storage driver local (SSE-C is an S3 feature)' });
    });
  } else {
    it('uses SSE-C where the store enforces customer keys (Ceph RGW), and says so once', () => {
      expect(app.services.crypto.mode).toBe('sse-c');
      const notes = app.logs.filter((l) => String(l['msg']).startsWith('encryption at rest'));
      expect(notes.map((l) => l['msg'])).toEqual(['encryption at rest: SSE-C (the store enforces customer keys)']);
      expect(notes[0]).toMatchObject({ level: 30, active: app.services.crypto.ring.active.kid, mode: 'sse-c', reason: 'store enforces SSE-C over http: on loopback (S3_SSE_C_OVER_HTTP=loopback)' });
      expect(app.logs.some((l) => String(l['msg']).includes('does not enforce SSE-C'))).toBe(false);
    });
  }

  it('logs key ids, never key material', () => {
    // The embedded default generated the ring under DATA_DIR.
    const [kid, material] = readFileSync(path.join(app.dataDir, 'secrets', 'media-keys'), 'utf8').trim().split(':');
    expect(kid).toBe(app.services.crypto.ring.active.kid);
    expect(JSON.stringify(app.logs)).toContain(kid);
    expect(JSON.stringify(app.logs)).not.toContain(material!.slice(0, 16));
  });

  it('stores a CRITICAL lease PDF encrypted (no plaintext in storage) and serves it decrypted, byte-identical', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = leasePdf();
    const { upload } = await ok(
      app.url,
      UploadDocument,
      { input: { file: new File([bytes], 'lease.pdf', { type: 'application/pdf' }), entity: { type: 'lease', id: 'l-1' }, role: 'LEASE_ORIGINAL' } },
      { token },
    );
    expect(upload).toMatchObject({ securityLevel: 'CRITICAL', encrypted: true, url: null, fileSize: bytes.length, checksum: sha(bytes), pageCount: 2 });
    expect(upload.encryptionKeyId).toBe(app.services.crypto.ring.active.kid);

    const key = `${tenant}/${upload.id}/original`;
    if (MODE === 'app') {
      const stored = await raw(app, key);
      expect(stored.includes(Buffer.from(MARKER))).toBe(false);
      expect(stored.includes(Buffer.from('%PDF'))).toBe(false);
      expect(decodeHeader(stored).kid).toBe(upload.encryptionKeyId);
    } else {
      // The store refuses the object without its key (to the service's own driver too)…
      await expect(raw(app, key)).rejects.toMatchObject({ code: 'STORAGE_UNAVAILABLE' });
      const without = await rawGet(key);
      expect(without.status).toBeGreaterThanOrEqual(400);
      expect(without.status).toBeLessThan(500);
      // …returns exactly the plaintext with it (S3 decrypts: not our segment format)…
      const withKey = await rawGet(key, app.services.crypto.ring.objectKey(upload.encryptionKeyId!, key));
      expect(withKey).toMatchObject({ status: 200, algorithm: 'AES256' });
      expect(withKey.body!.equals(bytes)).toBe(true);
      // …and keeps no plaintext at rest.
      const atRest = await radosBytes(key);
      expect(atRest.length).toBeGreaterThanOrEqual(bytes.length);
      expect(atRest.includes(Buffer.from(MARKER))).toBe(false);
      expect(atRest.includes(Buffer.from('%PDF'))).toBe(false);
    }

    const res = await fetchContent(app, upload.id, token);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('private, no-store');
    expect(res.headers.get('content-length')).toBe(String(bytes.length));
    // Keyed, not the plaintext SHA-256 (which would confirm a known document to anyone who sees it).
    expect(res.headers.get('etag')).not.toContain(sha(bytes));
    expect((await bodyOrAbort(res))!.equals(bytes)).toBe(true);
  });

  it('the ETag of encrypted content is keyed, not the plaintext SHA-256, and stable', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = leasePdf();
    const { upload } = await ok(app.url, UploadDocument, { input: { file: new File([bytes], 'l.pdf'), entity: { type: 'lease', id: 'l' } } }, { token });
    const first = await fetchContent(app, upload.id, token);
    const etag = first.headers.get('etag')!;
    await first.arrayBuffer();
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{32}"$/);
    expect(etag).not.toContain(sha(bytes));
    expect(etag).not.toContain(Buffer.from(sha(bytes), 'hex').toString('base64url').slice(0, 16));
    // Stable across requests (it is derived, not random).
    const again = await fetchContent(app, upload.id, token);
    await again.arrayBuffer();
    expect(again.headers.get('etag')).toBe(etag);
  });

  it('serves byte ranges of encrypted content, across segment boundaries, decrypting only what it needs', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = leasePdf();
    const { upload } = await ok(app.url, UploadDocument, { input: { file: new File([bytes], 'l.pdf'), entity: { type: 'lease', id: 'l' } } }, { token });
    const S = 64 * 1024;
    for (const [start, end] of [
      [0, 0],
      [0, 99],
      [S - 10, S + 10],
      [3 * S, 3 * S],
      [S, 2 * S - 1],
      [bytes.length - 50, bytes.length - 1],
      [12345, bytes.length - 1],
    ] as const) {
      const res = await fetchContent(app, upload.id, token, { range: `bytes=${start}-${end}` });
      expect(res.status, `${start}-${end}`).toBe(206);
      expect(res.headers.get('content-range')).toBe(`bytes ${start}-${end}/${bytes.length}`);
      expect((await bodyOrAbort(res))!.equals(bytes.subarray(start, end + 1)), `${start}-${end}`).toBe(true);
    }
    const suffix = await fetchContent(app, upload.id, token, { range: 'bytes=-7' });
    expect((await bodyOrAbort(suffix))!.equals(bytes.subarray(bytes.length - 7))).toBe(true);
  });

  it('encrypts SENSITIVE images and their variants; variants decrypt to real images', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const { upload } = await ok(app.url, UploadDocument, { input: { file: await jpeg(1400, 900), entity: { type: 'person', id: 'p-1' }, role: 'AVATAR' } }, { token });
    expect(upload).toMatchObject({ securityLevel: 'SENSITIVE', encrypted: true, url: null, width: 1400, height: 900 });
    expect(upload.variants.map((v) => v.name)).toEqual(['THUMB', 'MEDIUM', 'LARGE']);
    // Variant URLs of encrypted media need credentials: no signed token in them.
    expect(upload.variants[0]!.url).not.toContain('token=');
    // Rendered on its first request, sealed like the original.
    const res = await fetch(`${app.url}/media/${upload.id}/variants/THUMB`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('private, no-store');
    const meta = await sharp(Buffer.from(await res.arrayBuffer())).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['jpeg', 160, 103]);
    const [row] = await app.db.prisma.imageRender.findMany({ where: { tenantId: tenant, ownerId: upload.id } });
    expect(row).toMatchObject({ encryptionMode: MODE, width: 160, height: 103 });
    const thumbKey = row!.storageKey;
    expect(thumbKey).toMatch(new RegExp(`^${tenant}/${upload.id}/r-[0-9a-f]{32}$`));
    if (MODE === 'app') {
      await expect(sharp(await raw(app, thumbKey)).metadata()).rejects.toThrow();
    } else {
      const without = await rawGet(thumbKey);
      expect(without.status).toBeGreaterThanOrEqual(400);
      expect(without.status).toBeLessThan(500);
      const withKey = await rawGet(thumbKey, app.services.crypto.ring.objectKey(row!.encryptionKeyId!, thumbKey));
      expect(withKey.algorithm).toBe('AES256');
      expect((await sharp(withKey.body!).metadata()).width).toBe(160);
      await expect(sharp(await radosBytes(thumbKey)).metadata()).rejects.toThrow();
    }
  });

  it('an ID_DOCUMENT role makes a property upload CRITICAL and encrypted; assigning it to plaintext media is refused', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const { upload } = await ok(app.url, UploadDocument, { input: { file: new File([pdfBytes(1)], 'id.pdf'), entity: { type: 'property', id: 'p' }, role: 'ID_DOCUMENT' } }, { token });
    expect(upload).toMatchObject({ securityLevel: 'CRITICAL', encrypted: true });
    const plain = (await ok(app.url, UploadDocument, { input: { file: new File([pdfBytes(1)], 'x.pdf'), entity: { type: 'property', id: 'p' } } }, { token })).upload;
    const r = await gql(app.url, AssignRoleDocument, { entity: { type: 'property', id: 'p' }, mediaId: plain.id, role: 'ID_DOCUMENT' }, { token });
    expect(codeOf(r)).toBe('BAD_USER_INPUT');
    const { media } = await ok(app.url, MediaDocument, { id: upload.id }, { token });
    expect(media?.roles.map((x) => x.role)).toEqual(['ID_DOCUMENT']);
  });

  // Our segment format exists only in app mode: on an SSE-C store the object holds
  // plaintext that S3 encrypts, so these corruptions have SSE-C counterparts below.
  if (MODE === 'app') {
    it.each([
      ['a flipped byte in the first segment', (b: Buffer) => { const c = Buffer.from(b); c[100] = c[100]! ^ 0xff; return c; }],
      ['a flipped byte in the last segment', (b: Buffer) => { const c = Buffer.from(b); c[c.length - 20] = c[c.length - 20]! ^ 0x01; return c; }],
      ['the last segment cut off', (b: Buffer) => b.subarray(0, b.length - 1000)],
      ['two segments swapped', (b: Buffer) => {
        const h = decodeHeader(b).raw.length;
        const seg = 64 * 1024 + 16;
        return Buffer.concat([b.subarray(0, h), b.subarray(h + seg, h + 2 * seg), b.subarray(h, h + seg), b.subarray(h + 2 * seg)]);
      }],
    ])('app mode: never answers successfully with wrong content: %s (of our AES-GCM segments)', async (_name, corrupt) => {
      const tenant = newTenant();
      const token = await app.token(tenant);
      const bytes = leasePdf();
      const { upload } = await ok(app.url, UploadDocument, { input: { file: new File([bytes], 'l.pdf'), entity: { type: 'lease', id: 'l' } } }, { token });
      const key = `${tenant}/${upload.id}/original`;
      await app.services.storage.put(key, Readable.from([corrupt(await raw(app, key))]));
      const logged = app.logs.length;

      const res = await fetchContent(app, upload.id, token);
      const body = await bodyOrAbort(res);
      // Either an INTEGRITY_ERROR answer before any byte, or a response cut short: never the full, wrong content.
      if (res.status === 200) {
        expect(body === null || body.length < bytes.length).toBe(true);
      } else {
        expect(res.status).toBe(502);
        expect(JSON.parse(body!.toString())).toMatchObject({ error: { code: 'INTEGRITY_ERROR' } });
      }
      await expect.poll(() => app.logs.slice(logged).some((l) => l['event'] === 'INTEGRITY_ERROR' && l['mediaId'] === upload.id)).toBe(true);
    });
  }

  if (MODE === 'sse-c') {
    const sseCases: [string, (plain: Buffer, key: string, sseKey: Buffer) => Promise<void>][] = [
      ['a flipped byte, re-written under the object key', (p, key, sseKey) => { const c = Buffer.from(p); c[100] = c[100]! ^ 0xff; return put(key, c, sseKey); }],
      ['the last bytes cut off, re-written under the object key', (p, key, sseKey) => put(key, p.subarray(0, p.length - 1000), sseKey)],
      ['replaced by other bytes written without a customer key (RGW then ignores the key on GET)', (p, key) => { const c = Buffer.from(p); c[200] = c[200]! ^ 0x01; return put(key, c); }],
      ['replaced by the same plaintext written without a customer key', (p, key) => put(key, p)],
    ];
    it.each(sseCases)('sse-c mode: never answers successfully with wrong or unencrypted content: %s', async (_name, tamper) => {
      const tenant = newTenant();
      const token = await app.token(tenant);
      const bytes = leasePdf();
      const { upload } = await ok(app.url, UploadDocument, { input: { file: new File([bytes], 'l.pdf'), entity: { type: 'lease', id: 'l' } } }, { token });
      const key = `${tenant}/${upload.id}/original`;
      await tamper(bytes, key, app.services.crypto.ring.objectKey(upload.encryptionKeyId!, key));
      const logged = app.logs.length;

      const res = await fetchContent(app, upload.id, token);
      const body = await bodyOrAbort(res);
      if (res.status === 200) {
        expect(body === null || body.length < bytes.length).toBe(true);
      } else {
        expect(res.status).toBe(502);
        expect(JSON.parse(body!.toString())).toMatchObject({ error: { code: 'INTEGRITY_ERROR' } });
      }
      await expect.poll(() => app.logs.slice(logged).some((l) => l['event'] === 'INTEGRITY_ERROR' && l['mediaId'] === upload.id)).toBe(true);
    });

    it('sse-c mode: a range of an object stored without its customer key is refused (a checksum cannot check a range)', async () => {
      const tenant = newTenant();
      const token = await app.token(tenant);
      const bytes = leasePdf();
      const { upload } = await ok(app.url, UploadDocument, { input: { file: new File([bytes], 'l.pdf'), entity: { type: 'lease', id: 'l' } } }, { token });
      await put(`${tenant}/${upload.id}/original`, Buffer.alloc(bytes.length, 0x41));
      const res = await fetchContent(app, upload.id, token, { range: 'bytes=10-99' });
      expect(res.status).toBe(502);
      expect(await res.json()).toMatchObject({ error: { code: 'INTEGRITY_ERROR' } });
    });

    it('sse-c mode: an object re-written under another customer key is never served', async () => {
      const tenant = newTenant();
      const token = await app.token(tenant);
      const bytes = leasePdf();
      const { upload } = await ok(app.url, UploadDocument, { input: { file: new File([bytes], 'l.pdf'), entity: { type: 'lease', id: 'l' } } }, { token });
      await put(`${tenant}/${upload.id}/original`, bytes, randomBytes(32));
      const res = await fetchContent(app, upload.id, token);
      // Not "storage unavailable, try again": the store holds content its key cannot open.
      expect(res.status).toBe(502);
      const body = Buffer.from(await res.arrayBuffer());
      expect(body.includes(Buffer.from(MARKER))).toBe(false);
      expect(JSON.parse(body.toString())).toMatchObject({ error: { code: 'INTEGRITY_ERROR' } });
      expect(app.logs.some((l) => JSON.stringify(l).includes('cannot be read with its SSE-C customer key'))).toBe(true);
    });
  }

  it('refuses content whose stored ciphertext is intact but whose checksum does not match, before its last bytes', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = leasePdf();
    const { upload } = await ok(app.url, UploadDocument, { input: { file: new File([bytes], 'l.pdf'), entity: { type: 'lease', id: 'l' } } }, { token });
    await app.db.prisma.$executeRaw`UPDATE media SET checksum = ${sha(randomBytes(8))} WHERE id = ${upload.id}::uuid`;
    const res = await fetchContent(app, upload.id, token);
    const body = await bodyOrAbort(res);
    expect(body === null || body.length < bytes.length).toBe(true);
  });
});
