import { afterAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import sharp from 'sharp';
import { UploadDocument } from '../generated/graphql.js';
import { newTenant, startTestApp, STORAGE_DRIVER, type TestApp } from '../helpers/app.js';
import { ok } from '../helpers/client.js';
import { jpeg, pdfBytes } from '../helpers/files.js';
import { decodeHeader } from '../../src/crypto/segmented-gcm.js';

const OLD = `old:${randomBytes(32).toString('base64')}`;
const NEW = `new:${randomBytes(32).toString('base64')}`;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function raw(app: TestApp, key: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of await app.services.storage.get(key)) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

async function content(app: TestApp, token: string, path: string): Promise<Buffer> {
  const res = await fetch(`${app.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
  expect(res.status, path).toBe(200);
  return Buffer.from(await res.arrayBuffer());
}

const apps: TestApp[] = [];
afterAll(async () => {
  for (const a of apps) await a.close().catch(() => undefined);
});

describe(`key rotation (${STORAGE_DRIVER})`, () => {
  it('old media stays readable with a new active key, new media uses it, and the rotation command moves everything to it', async () => {
    const tenant = newTenant();
    const lease = Buffer.concat([pdfBytes(2), Buffer.from('%' + 'clause '.repeat(30_000))]);
    const photo = await jpeg(900, 700);

    // 1. Uploads under the old key.
    const a = await startTestApp({ env: { MEDIA_KEYS: OLD } });
    const dataDir = a.dataDir;
    const tokenA = await a.token(tenant);
    const doc = (await ok(a.url, UploadDocument, { input: { file: new File([lease], 'lease.pdf'), entity: { type: 'lease', id: 'l1' } } }, { token: tokenA })).upload;
    const pic = (await ok(a.url, UploadDocument, { input: { file: photo, entity: { type: 'person', id: 'p1' } } }, { token: tokenA })).upload;
    expect([doc.encryptionKeyId, pic.encryptionKeyId]).toEqual(['old', 'old']);
    const thumbBefore = await content(a, tokenA, `/media/${pic.id}/variants/THUMB`);
    await a.close({ keepData: true });

    // 2. A new active key in front of the old one.
    const b = await startTestApp({ dataDir, env: { MEDIA_KEYS: `${NEW},${OLD}` } });
    apps.push(b);
    const token = await b.token(tenant);
    expect(sha(await content(b, token, `/media/${doc.id}/content`))).toBe(sha(lease));
    const fresh = (await ok(b.url, UploadDocument, { input: { file: new File([pdfBytes(1)], 'n.pdf'), entity: { type: 'lease', id: 'l2' } } }, { token })).upload;
    expect(fresh.encryptionKeyId).toBe('new');

    // 3. An interrupted earlier run: the original of `doc` was re-sealed, its row not yet updated.
    await b.services.crypto.seal(b.services.storage, `${tenant}/${doc.id}/original`, createReadStream(await tmpWrite(lease)));
    expect(decodeHeader(await raw(b, `${tenant}/${doc.id}/original`)).kid).toBe('new');
    expect(sha(await content(b, token, `/media/${doc.id}/content`))).toBe(sha(lease));

    const report = await b.services.rotation.run({ tenant });
    expect(report).toEqual({ rotated: 2, failed: [] });
    const rows = await b.db.prisma.media.findMany({ where: { tenantId: tenant }, select: { id: true, encryptionKeyId: true } });
    expect(new Set(rows.map((r) => r.encryptionKeyId))).toEqual(new Set(['new']));
    for (const key of [`${tenant}/${doc.id}/original`, `${tenant}/${pic.id}/original`, `${tenant}/${pic.id}/THUMB`, `${tenant}/${pic.id}/MEDIUM`]) {
      expect(decodeHeader(await raw(b, key)).kid, key).toBe('new');
    }
    expect(await b.services.rotation.run({ tenant })).toEqual({ rotated: 0, failed: [] });
    await b.close({ keepData: true });
    apps.pop();

    // 4. With the old key gone from the ring, everything still reads back identical.
    const c = await startTestApp({ dataDir, env: { MEDIA_KEYS: NEW } });
    apps.push(c);
    const tokenC = await c.token(tenant);
    expect(sha(await content(c, tokenC, `/media/${doc.id}/content`))).toBe(sha(lease));
    expect(sha(await content(c, tokenC, `/media/${pic.id}/content`))).toBe(sha(Buffer.from(await photo.arrayBuffer())));
    const thumbAfter = await content(c, tokenC, `/media/${pic.id}/variants/THUMB`);
    expect(thumbAfter.equals(thumbBefore)).toBe(true);
    expect((await sharp(thumbAfter).metadata()).width).toBe(160);
  });

  it('refuses a malformed key ring at start, naming MEDIA_KEYS and never echoing key material', async () => {
    const secret = Buffer.alloc(16, 7).toString('base64');
    await expect(startTestApp({ env: { MEDIA_KEYS: `short:${secret}` } })).rejects.toThrow(/MEDIA_KEYS/);
    await expect(startTestApp({ env: { MEDIA_KEYS: `short:${secret}` } })).rejects.not.toThrow(secret);
  });
});

async function tmpWrite(b: Buffer): Promise<string> {
  const { mkdtemp, writeFile } = await import('node:fs/promises');
  const os = await import('node:os');
  const path = await import('node:path');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rot-'));
  const file = path.join(dir, 'plain');
  await writeFile(file, b);
  return file;
}
