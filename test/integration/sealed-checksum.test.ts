// An encrypted media's SHA-256 is a fact about the document (with it, anyone who
// can read the database or see an ETag can confirm that a known file is stored):
// its row holds it sealed, its ETag is keyed, and only an authorised reader gets
// the plaintext checksum back (the GraphQL field, a worker's read).
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MediaDocument, UploadDocument } from '../generated/graphql.js';
import { newTenant, startTestApp, type TestApp } from '../helpers/app.js';
import { codeOf, gql, ok } from '../helpers/client.js';
import { pdfBytes } from '../helpers/files.js';
import { sealLegacyChecksums } from '../../src/crypto/sealed-checksum.js';
import { createLogger } from '../../src/logger.js';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp({ env: { SWEEP_INTERVAL_SECONDS: '0' } });
});
afterAll(() => app?.close());

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const lease = (n: number) => Buffer.concat([pdfBytes(2), Buffer.from(`%lease ${n} ${'x'.repeat(5000)}\n`)]);
const checksumColumn = async (id: string) => (await app.db.pool.query<{ checksum: string }>('SELECT checksum FROM media WHERE id = $1', [id])).rows[0]!.checksum;

async function upload(tenant: string, token: string, bytes: Buffer, entity = { type: 'lease', id: 'l1' }) {
  return (await ok(app.url, UploadDocument, { input: { file: new File([bytes], 'lease.pdf'), entity } }, { token })).upload;
}

describe('the checksum of encrypted media', () => {
  it('is sealed in its row; the GraphQL field, the content route and the ETag work from it, and nothing at rest or on the wire shows the SHA-256', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = lease(1);
    const m = await upload(tenant, token, bytes);
    expect(m).toMatchObject({ encrypted: true, checksum: sha(bytes) });
    const stored = await checksumColumn(m.id);
    expect(stored).toMatch(/^s1\.[A-Za-z0-9_-]+$/);
    expect(stored).not.toContain(sha(bytes));
    // Read back through every path that needs it.
    expect((await ok(app.url, MediaDocument, { id: m.id }, { token })).media?.checksum).toBe(sha(bytes));
    const res = await fetch(`${app.url}/media/${m.id}/content`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true);
    const etag = res.headers.get('etag')!;
    expect(etag).not.toContain(sha(bytes));
    expect(etag).not.toContain(Buffer.from(sha(bytes), 'hex').toString('base64url').slice(0, 16));
    // Revalidation still works with the keyed ETag. (Given explicitly: fetch adds
    // Cache-Control: no-cache to conditional requests, which always asks for the body.)
    const again = await fetch(`${app.url}/media/${m.id}/content`, { headers: { authorization: `Bearer ${token}`, 'if-none-match': etag, 'cache-control': 'max-age=0' } });
    expect(again.status).toBe(304);
    // Nothing in the database holds the plaintext SHA-256 of the document.
    const dump = await app.db.pool.query("SELECT row_to_json(m)::text AS j FROM media m WHERE id = $1", [m.id]);
    expect(dump.rows[0].j).not.toContain(sha(bytes));
  });

  it('a sealed checksum copied onto another media does not open there: INTEGRITY_ERROR, not its content', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const a = await upload(tenant, token, lease(2), { type: 'lease', id: 'a' });
    const b = await upload(tenant, token, lease(3), { type: 'lease', id: 'b' });
    await app.db.pool.query('UPDATE media SET checksum = $1 WHERE id = $2', [await checksumColumn(a.id), b.id]);
    const r = await gql(app.url, MediaDocument, { id: b.id }, { token });
    expect(codeOf(r)).toBe('INTEGRITY_ERROR');
    const res = await fetch(`${app.url}/media/${b.id}/content`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(502); // as for any stored content that fails verification
    expect(await res.json()).toMatchObject({ error: { code: 'INTEGRITY_ERROR' } });
    expect(app.logs.some((l) => l['event'] === 'INTEGRITY_ERROR' && l['mediaId'] === b.id)).toBe(true);
  });

  it('rows written before checksums were sealed are sealed at start, and read the same before and after', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = lease(4);
    const m = await upload(tenant, token, bytes);
    // As an earlier version wrote it: the plaintext hex SHA-256.
    await app.db.pool.query('UPDATE media SET checksum = $1 WHERE id = $2', [sha(bytes), m.id]);
    expect((await ok(app.url, MediaDocument, { id: m.id }, { token })).media?.checksum).toBe(sha(bytes));
    const sealed = await sealLegacyChecksums(app.db.prisma, app.services.crypto.ring, createLogger('silent'));
    expect(sealed).toBeGreaterThanOrEqual(1);
    expect(await checksumColumn(m.id)).toMatch(/^s1\./);
    expect((await ok(app.url, MediaDocument, { id: m.id }, { token })).media?.checksum).toBe(sha(bytes));
    const res = await fetch(`${app.url}/media/${m.id}/content`, { headers: { authorization: `Bearer ${token}` } });
    expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true);
    // Idempotent: a second pass has nothing of this tenant's left to seal.
    await sealLegacyChecksums(app.db.prisma, app.services.crypto.ring, createLogger('silent'));
    expect(await checksumColumn(m.id)).toMatch(/^s1\./);
  });

  it('a STANDARD media keeps its plain checksum (it is not encrypted, and its ETag is the checksum)', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = pdfBytes(1);
    const m = (await ok(app.url, UploadDocument, { input: { file: new File([bytes], 'a.pdf'), entity: { type: 'company', id: 'c' } } }, { token })).upload;
    expect(m.encrypted).toBe(false);
    expect(await checksumColumn(m.id)).toBe(sha(bytes));
  });
});
