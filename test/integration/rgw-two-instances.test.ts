// Two service instances, one database, one store (issue item 7): what one instance
// writes the other serves, role assignments racing across both instances keep one
// holder, the sweep runs on one instance at a time, and a key rotation on one
// instance loses no read served by the other. Real HTTP, the run's PostgreSQL and
// Ceph RGW (SSE-C enforced), so this file runs in the rgw project only.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FltAssignRoleDocument, FltMediaByRoleDocument, FltUploadManyDocument, MediaDocument, UploadDocument } from '../generated/graphql.js';
import { TEST_JWT_SECRET, newTenant, startTestApp, testS3Options, type TestApp } from '../helpers/app.js';
import { codeOf, gql, ok, type GqlResult } from '../helpers/client.js';
import { jpeg, pdfBytes, png } from '../helpers/files.js';
import type { Storage } from '../../src/storage/index.js';
import type { S3Storage } from '../../src/storage/s3.js';
import { ErrorCode } from '../../src/errors/codes.js';

const OLD = `old2i:${randomBytes(32).toString('base64')}`;
const NEW = `new2i:${randomBytes(32).toString('base64')}`;
/** Both instances: the same ring (new key active, old one kept to read what it sealed) and the same JWT secret. */
const SHARED_ENV = { MEDIA_KEYS: `${NEW},${OLD}`, JWT_SECRET: TEST_JWT_SECRET };
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** Codes a client may see and act on; INTERNAL_SERVER_ERROR is not one of them. */
const CLIENT_CODES = new Set<string>(Object.values(ErrorCode).filter((c) => c !== 'INTERNAL_SERVER_ERROR'));

/**
 * The sweep's listing of one tenant waits at a gate: whichever instance takes the
 * advisory lock first is held inside the sweep while the other one tries, so "at
 * once" does not depend on timing.
 */
class SweepGate {
  tenant: string | null = null;
  private release: (() => void) | null = null;
  private gate: Promise<void> = Promise.resolve();
  /** Resolves when a gated list() is waiting. */
  entered!: Promise<void>;
  private enter: (() => void) | null = null;

  arm(tenant: string): void {
    this.tenant = tenant;
    this.gate = new Promise((r) => (this.release = r));
    this.entered = new Promise((r) => (this.enter = r));
  }

  open(): void {
    this.tenant = null;
    this.release?.();
  }

  wrap(real: Storage): Storage {
    const list: Storage['list'] = async (prefix: string) => {
      if (this.tenant && prefix === `${this.tenant}/`) {
        this.enter?.();
        await this.gate;
      }
      return real.list(prefix);
    };
    return new Proxy(real, { get: (t, p, r) => (p === 'list' ? list : Reflect.get(t, p, r)) });
  }
}

const gate = new SweepGate();
let a: TestApp;
let b: TestApp;
beforeAll(async () => {
  [a, b] = await Promise.all([
    startTestApp({ env: SHARED_ENV, storage: (_d, real) => gate.wrap(real) }),
    startTestApp({ env: SHARED_ENV, storage: (_d, real) => gate.wrap(real) }),
  ]);
});
afterAll(async () => {
  gate.open();
  await Promise.all([a?.close(), b?.close()]);
});

async function fetchBytes(url: string, token?: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Buffer }> {
  const res = await fetch(url, { headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers } });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
}

describe('two instances sharing one database and one RGW', () => {
  it('both detect SSE-C on RGW', () => {
    expect([a.services.crypto.mode, b.services.crypto.mode]).toEqual(['sse-c', 'sse-c']);
  });

  it('a STANDARD and a CRITICAL file uploaded on A are served by B, byte-identical', async () => {
    const tenant = newTenant('ti');
    const [tokenA, tokenB] = [await a.token(tenant), await b.token(tenant)];
    const photo = await jpeg(900, 600);
    const photoBytes = Buffer.from(await photo.arrayBuffer());
    const lease = Buffer.concat([pdfBytes(2), Buffer.from('%' + 'CLAUSE-7 '.repeat(200_000) + '\n')]);

    const std = (await ok(a.url, UploadDocument, { input: { file: photo, entity: { type: 'property', id: 'p1' } } }, { token: tokenA })).upload;
    const crit = (await ok(a.url, UploadDocument, { input: { file: new File([lease], 'lease.pdf'), entity: { type: 'lease', id: 'l1' }, role: 'LEASE_ORIGINAL' } }, { token: tokenA })).upload;
    expect(std).toMatchObject({ securityLevel: 'STANDARD', encrypted: false });
    expect(crit).toMatchObject({ securityLevel: 'CRITICAL', encrypted: true, encryptionKeyId: 'new2i', url: null });

    // The CRITICAL object is SSE-C on RGW: without the customer key the store refuses it.
    const s3 = (a.services.storage as unknown as S3Storage).client;
    const refused = await s3.send(new GetObjectCommand({ Bucket: testS3Options().bucket, Key: `${tenant}/${crit.id}/original` })).then(
      () => null,
      (e: { $metadata?: { httpStatusCode?: number } }) => e.$metadata?.httpStatusCode ?? 0,
    );
    expect(refused).toBeGreaterThanOrEqual(400);
    expect(refused).toBeLessThan(500);

    // B serves both through its content route, with B's own token.
    const s = await fetchBytes(`${b.url}/media/${std.id}/content`, tokenB);
    expect(s.status).toBe(200);
    expect(s.body.equals(photoBytes)).toBe(true);
    const c = await fetchBytes(`${b.url}/media/${crit.id}/content`, tokenB);
    expect(c.status).toBe(200);
    expect(sha(c.body)).toBe(sha(lease));
    expect(c.body.equals(lease)).toBe(true);
    // A range of the SSE-C object through B.
    const r = await fetchBytes(`${b.url}/media/${crit.id}/content`, tokenB, { range: 'bytes=1000000-1000099' });
    expect(r.status).toBe(206);
    expect(r.body.equals(lease.subarray(1_000_000, 1_000_100))).toBe(true);
    // The variants A made, through B.
    const thumb = await fetchBytes(`${b.url}/media/${std.id}/variants/THUMB`, tokenB);
    expect(thumb.status).toBe(200);
    expect(thumb.body.equals((await fetchBytes(`${a.url}/media/${std.id}/variants/THUMB`, tokenA)).body)).toBe(true);

    // A signed URL that A handed out works against B (links are signed with the shared secret).
    if (std.url) {
      const u = new URL(std.url);
      const viaB = u.origin === new URL(a.url).origin ? `${b.url}${u.pathname}${u.search}` : std.url;
      const l = await fetchBytes(viaB);
      expect(l.status).toBe(200);
      expect(l.body.equals(photoBytes)).toBe(true);
    }
    // And B's GraphQL sees what A wrote.
    const { media } = await ok(b.url, MediaDocument, { id: crit.id }, { token: tokenB });
    expect(media).toMatchObject({ id: crit.id, checksum: sha(lease), encrypted: true, roles: [{ role: 'LEASE_ORIGINAL' }] });
  });

  it('20 concurrent assignRole calls split across A and B end with one holder and no INTERNAL error', async () => {
    const tenant = newTenant('tr');
    const token = await a.token(tenant);
    const entity = { type: 'property', id: 'house-2i' };
    const ids: string[] = [];
    for (let start = 0; start < 20; start += 10) {
      const inputs = await Promise.all(Array.from({ length: 10 }, async (_, i) => ({ file: await png(24 + start + i, 16, `m${start + i}.png`), entity })));
      ids.push(...(await ok((start === 0 ? a : b).url, FltUploadManyDocument, { inputs }, { token })).uploadMany.map((m) => m.id));
    }
    const holders = async () =>
      a.db.prisma.mediaRoleAssignment.findMany({ where: { tenantId: tenant, entityType: entity.type, entityId: entity.id, role: 'PRIMARY_PHOTO' } });
    const check = (results: GqlResult<unknown>[]) => {
      const internal = results.filter((r) => r.errors?.length && !CLIENT_CODES.has(codeOf(r) ?? ''));
      expect(internal.map((r) => r.errors), 'no INTERNAL or unknown error').toEqual([]);
      return results.filter((r) => !r.errors?.length && r.data).length;
    };

    // Round 1: 20 different media, alternately on A and B.
    const round1 = await Promise.all(ids.map((mediaId, i) => gql((i % 2 ? b : a).url, FltAssignRoleDocument, { entity, mediaId, role: 'PRIMARY_PHOTO' }, { token })));
    const succeeded = check(round1 as GqlResult<unknown>[]);
    expect(succeeded, 'last-writer-wins upserts: every call succeeds').toBe(20);
    let rows = await holders();
    expect(rows).toHaveLength(1);
    expect(ids).toContain(rows[0]!.mediaId);
    for (const app of [a, b]) expect((await ok(app.url, FltMediaByRoleDocument, { entity, role: 'PRIMARY_PHOTO' }, { token })).mediaByRole?.id).toBe(rows[0]!.mediaId);

    // Round 2: the same two media named 20 times, contended from an existing holder.
    const round2 = await Promise.all(
      Array.from({ length: 20 }, (_, i) => gql((i % 2 ? a : b).url, FltAssignRoleDocument, { entity, mediaId: ids[i % 2]!, role: 'PRIMARY_PHOTO' }, { token })),
    );
    expect(check(round2 as GqlResult<unknown>[])).toBe(20);
    rows = await holders();
    expect(rows).toHaveLength(1);
    expect([ids[0], ids[1]]).toContain(rows[0]!.mediaId);
    // No attachment was duplicated by the race.
    expect(await a.db.prisma.mediaAttachment.count({ where: { tenantId: tenant } })).toBe(20);
  });

  it('the sweep started on both instances at once runs once', async () => {
    const tenant = newTenant('ts');
    // An orphaned object group: objects no row claims.
    const orphan = `${tenant}/${randomUUID()}/original`;
    await a.services.storage.put(orphan, Readable.from([Buffer.from('orphan bytes')]), { size: 12 });
    // Older than "now" at the store's one-second resolution.
    await new Promise((r) => setTimeout(r, 1100));

    let reports: Awaited<ReturnType<TestApp['services']['sweep']['run']>>[] = [];
    // Another test file of the run may hold the sweep lock for a moment: then neither of ours runs; try again.
    for (let attempt = 0; attempt < 20; attempt++) {
      gate.arm(tenant);
      const runs = [a.services.sweep.run({ graceSeconds: 0, tenant }), b.services.sweep.run({ graceSeconds: 0, tenant })];
      // The first to take the lock waits in its listing; the other finishes (null) meanwhile.
      const first = await Promise.race([gate.entered.then(() => 'entered' as const), Promise.all(runs).then(() => 'both-done' as const)]);
      if (first === 'entered') await Promise.race(runs.map((p) => p.then((v) => (v === null ? undefined : new Promise(() => undefined)))));
      gate.open();
      reports = await Promise.all(runs);
      if (reports.some((r) => r !== null)) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const ran = reports.filter((r) => r !== null);
    expect(ran, 'exactly one instance ran the sweep').toHaveLength(1);
    expect(ran[0]!.orphanGroupsDeleted).toBe(1);
    expect(await a.services.storage.head(orphan)).toBeNull();
    const deletions = [...a.logs, ...b.logs].filter((l) => l['msg'] === 'sweep: deleted orphaned objects' && l['tenant'] === tenant);
    expect(deletions).toHaveLength(1);
  });

  // Public behaviour only (content-route reads), so it holds for any rotation that
  // keeps old objects readable until the row moves. The rotation of 622a9c8 re-seals
  // each object in place under the same storage key, with the row moved last: in
  // SSE-C mode a read in between asks RGW with the old key and gets a 400, which the
  // service answers 503 STORAGE_UNAVAILABLE (a few reads in every run fail).
  it('a key rotation on A while B serves continuous reads of encrypted media loses no read', async () => {
    const tenant = newTenant('tk');
    // Media sealed under the old key, by an instance that knew only that key.
    const seeder = await startTestApp({ env: { MEDIA_KEYS: OLD, JWT_SECRET: TEST_JWT_SECRET } });
    const files: { id: string; bytes: Buffer; path: string }[] = [];
    try {
      const token = await seeder.token(tenant);
      for (let i = 0; i < 6; i++) {
        const bytes = Buffer.concat([pdfBytes(1 + (i % 3)), Buffer.from('%' + `LEASE-${i}-`.repeat(150_000 + i * 20_000) + '\n')]);
        const up = (await ok(seeder.url, UploadDocument, { input: { file: new File([bytes], `lease-${i}.pdf`), entity: { type: 'lease', id: `l${i}` } } }, { token })).upload;
        expect(up).toMatchObject({ encrypted: true, encryptionKeyId: 'old2i' });
        files.push({ id: up.id, bytes, path: `/media/${up.id}/content` });
      }
      const photo = await jpeg(1200, 800);
      const pic = (await ok(seeder.url, UploadDocument, { input: { file: photo, entity: { type: 'person', id: 'p1' }, role: 'AVATAR' } }, { token })).upload;
      expect(pic).toMatchObject({ encrypted: true, encryptionKeyId: 'old2i' });
      files.push({ id: pic.id, bytes: Buffer.from(await photo.arrayBuffer()), path: `/media/${pic.id}/content` });
      const thumb = await fetchBytes(`${seeder.url}/media/${pic.id}/variants/THUMB`, token);
      expect(thumb.status).toBe(200);
      files.push({ id: pic.id, bytes: thumb.body, path: `/media/${pic.id}/variants/THUMB` });
    } finally {
      await seeder.close();
    }

    const token = await b.token(tenant);
    // Every item reads back through B before the rotation.
    for (const f of files) {
      const r = await fetchBytes(`${b.url}${f.path}`, token);
      expect([r.status, r.body.equals(f.bytes)], f.path).toEqual([200, true]);
    }

    const failures: string[] = [];
    let reads = 0;
    let stop = false;
    const reader = async (n: number) => {
      for (let i = n; !stop; i++) {
        const f = files[i % files.length]!;
        const ranged = i % 3 === 2;
        const start = ranged ? Math.floor(f.bytes.length / 3) : 0;
        const end = ranged ? start + 4095 : f.bytes.length - 1;
        try {
          const r = await fetchBytes(`${b.url}${f.path}`, token, ranged ? { range: `bytes=${start}-${end}` } : {});
          reads++;
          const want = f.bytes.subarray(start, end + 1);
          if (r.status !== (ranged ? 206 : 200) || !r.body.equals(want)) {
            failures.push(`${f.path}${ranged ? ` range ${start}-${end}` : ''}: ${r.status}${r.body.equals(want) ? '' : ` (${r.body.length} bytes, ${r.body.subarray(0, 160).toString('utf8').replace(/\s+/g, ' ')})`}`);
          }
        } catch (e) {
          reads++;
          failures.push(`${f.path}: ${(e as Error).message}`);
        }
      }
    };
    const readers = Array.from({ length: 6 }, (_, n) => reader(n));
    // Let the readers get going, rotate on A, keep reading a little after it finished.
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    const report = await a.services.rotation.run({ tenant });
    const rotationMs = Date.now() - t0;
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await Promise.all(readers);

    expect(report).toEqual({ rotated: 7, failed: [] });
    const rows = await a.db.prisma.media.findMany({ where: { tenantId: tenant }, select: { encryptionKeyId: true } });
    expect(new Set(rows.map((r) => r.encryptionKeyId))).toEqual(new Set(['new2i']));
    expect(reads).toBeGreaterThan(20);
    expect(failures, `${failures.length} of ${reads} reads during a ${rotationMs} ms rotation failed:\n${failures.slice(0, 15).join('\n')}`).toEqual([]);
    // And after it, every item still reads back identical through both instances.
    for (const app of [a, b]) {
      for (const f of files) {
        const r = await fetchBytes(`${app.url}${f.path}`, token);
        expect([r.status, r.body.equals(f.bytes)], f.path).toEqual([200, true]);
      }
    }
  });
});
