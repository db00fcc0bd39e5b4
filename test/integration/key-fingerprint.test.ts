// Instances that share a database must share their secrets. Two rings can still
// name different keys alike (two instances that each generated one): media
// record the fingerprint of the key that encrypted them, and a ring holding
// another key under that name is reported as a key mismatch, never as corruption.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { MediaDocument, UploadDocument } from '../generated/graphql.js';
import { newTenant, startTestApp, TEST_JWT_SECRET, type TestApp } from '../helpers/app.js';
import { codeOf, gql, ok } from '../helpers/client.js';
import { pdfBytes } from '../helpers/files.js';
import { ConfigError, loadConfig } from '../../src/config.js';
import { KeyRing } from '../../src/crypto/key-ring.js';

const apps: TestApp[] = [];
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(apps.map((a) => a.close()));
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

const key = () => randomBytes(32).toString('base64');
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('secrets across instances', () => {
  it('a shared database or bucket needs explicit MEDIA_KEYS and JWT_SECRET, unless the development switch says otherwise', () => {
    const base = { DATA_DIR: '/tmp/x', DATABASE_URL: inject('databaseUrl') };
    const refused = (env: Record<string, string>) => {
      try {
        loadConfig(env);
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return (e as Error).message;
      }
      throw new Error('accepted');
    };
    const both = refused(base);
    expect(both).toMatch(/MEDIA_KEYS: required with DATABASE_URL/);
    expect(both).toMatch(/JWT_SECRET: required with DATABASE_URL/);
    expect(both).toMatch(/DEV_ALLOW_GENERATED_SECRETS=true/);
    expect(refused({ DATA_DIR: '/tmp/x', S3_BUCKET: 'media', JWT_SECRET: TEST_JWT_SECRET })).toMatch(/MEDIA_KEYS: required with S3_BUCKET/);
    expect(() => loadConfig({ ...base, MEDIA_KEYS: `k1:${key()}`, JWT_SECRET: TEST_JWT_SECRET })).not.toThrow();
    expect(() => loadConfig({ ...base, DEV_ALLOW_GENERATED_SECRETS: 'true' })).not.toThrow();
    // The embedded default (no DATABASE_URL, no bucket) generates them, as before.
    expect(() => loadConfig({ DATA_DIR: '/tmp/x' })).not.toThrow();
  });

  it('generated rings never share a key name', async () => {
    const a = await mkdtemp(path.join(os.tmpdir(), 'ring-a-'));
    const b = await mkdtemp(path.join(os.tmpdir(), 'ring-b-'));
    dirs.push(a, b);
    const ra = KeyRing.load(undefined, a);
    const rb = KeyRing.load(undefined, b);
    expect(ra.active.kid).toMatch(/^k\d{8}-[0-9a-f]{8}$/);
    expect(ra.active.kid).not.toBe(rb.active.kid);
    // Stable across loads of the same DATA_DIR.
    expect(KeyRing.load(undefined, a).active.kid).toBe(ra.active.kid);
    expect(ra.fingerprint(ra.active.kid)).toMatch(/^[0-9a-f]{16}$/);
  });

  it('an instance whose ring holds another key under a media\'s key name says so: KEY_MISMATCH, not INTEGRITY_ERROR', async () => {
    const tenant = newTenant();
    const a = await startTestApp({ env: { MEDIA_KEYS: `shared:${key()}`, SWEEP_INTERVAL_SECONDS: '0' } });
    apps.push(a);
    const token = await a.token(tenant);
    const bytes = Buffer.concat([pdfBytes(2), randomBytes(30_000)]);
    const m = (await ok(a.url, UploadDocument, { input: { file: new File([bytes], 'lease.pdf'), entity: { type: 'lease', id: 'l' } } }, { token })).upload;
    expect(m.encryptionKeyId).toBe('shared');
    const row = await a.db.prisma.media.findUniqueOrThrow({ where: { id: m.id } });
    expect(row.encryptionKeyFp).toBe(a.services.crypto.ring.fingerprint('shared'));

    // A second instance on the same database and store, its MEDIA_KEYS naming another key "shared".
    const b = await startTestApp({ env: { MEDIA_KEYS: `shared:${key()}`, SWEEP_INTERVAL_SECONDS: '0' }, dataDir: a.dataDir });
    apps.push(b);
    expect(b.logs.some((l) => l['event'] === 'KEY_MISMATCH' && l['kid'] === 'shared')).toBe(true);
    const res = await fetch(`${b.url}/media/${m.id}/content`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(503);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('STORAGE_UNAVAILABLE');
    expect(body.error.message).toMatch(/encrypted with another key named "shared"/);
    expect(body.error.message).toMatch(/not corrupt/);
    const q = await gql(b.url, MediaDocument, { id: m.id }, { token });
    expect(codeOf(q)).toBe('STORAGE_UNAVAILABLE');
    expect(b.logs.some((l) => l['event'] === 'INTEGRITY_ERROR')).toBe(false);
    expect(b.logs.some((l) => l['event'] === 'KEY_MISMATCH' && l['mediaId'] === m.id)).toBe(true);

    // The instance with the right key still reads it.
    const good = await fetch(`${a.url}/media/${m.id}/content`, { headers: { authorization: `Bearer ${token}` } });
    expect(sha(Buffer.from(await good.arrayBuffer()))).toBe(sha(bytes));
  });

  it('media encrypted before fingerprints were recorded get theirs at start, where their sealed checksum proves the key', async () => {
    const tenant = newTenant();
    const ring = `proof:${key()}`;
    const a = await startTestApp({ env: { MEDIA_KEYS: ring, SWEEP_INTERVAL_SECONDS: '0' } });
    apps.push(a);
    const token = await a.token(tenant);
    const m = (await ok(a.url, UploadDocument, { input: { file: new File([pdfBytes(1)], 'l.pdf'), entity: { type: 'lease', id: 'l' } } }, { token })).upload;
    await a.db.prisma.$executeRaw`UPDATE media SET encryption_key_fp = NULL WHERE id = ${m.id}::uuid`;
    const b = await startTestApp({ env: { MEDIA_KEYS: ring, SWEEP_INTERVAL_SECONDS: '0' }, dataDir: a.dataDir });
    apps.push(b);
    expect((await b.db.prisma.media.findUniqueOrThrow({ where: { id: m.id } })).encryptionKeyFp).toBe(b.services.crypto.ring.fingerprint('proof'));
  });
});
