import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID, createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { CompleteDirectUploadDocument, CreateDirectUploadDocument, UploadDocument } from '../generated/graphql.js';
import { newTenant, startTestApp, type TestApp } from '../helpers/app.js';
import { ok } from '../helpers/client.js';
import { jpeg, pdf, pdfBytes } from '../helpers/files.js';
import { storedKeys } from '../helpers/stored.js';
import { sweepTenant } from '../helpers/sweep.js';

let app: TestApp;
beforeAll(async () => {
  // The periodic sweep is off here: each test runs it when it wants to.
  app = await startTestApp({ env: { SWEEP_INTERVAL_SECONDS: '0' } });
});
afterAll(() => app?.close());

const put = (key: string, bytes: Buffer) => app.services.storage.put(key, Readable.from([bytes]));

describe('orphan sweep', () => {
  it('deletes objects no row points at, rows of deleted media whose objects remain, and dead direct uploads; keeps the living', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);

    // A live media (with variants) that must survive.
    const live = (await ok(app.url, UploadDocument, { input: { file: await jpeg(700, 500), entity: { type: 'property', id: 'p' } } }, { token })).upload;
    const liveKeys = await storedKeys(app, tenant);
    expect(liveKeys).toContain(`${tenant}/${live.id}/original`);

    // 1. The storage write succeeded, then the process died before the transaction: objects with no row.
    const orphanId = randomUUID();
    await put(`${tenant}/${orphanId}/original`, pdfBytes(1));
    await put(`${tenant}/${orphanId}/THUMB`, Buffer.from('x'));

    // 2. deleteMedia marked the row, then the process died before purging: a deleted row whose objects remain.
    const doomed = (await ok(app.url, UploadDocument, { input: { file: pdf(1), entity: { type: 'company', id: 'c' } } }, { token })).upload;
    await app.db.prisma.$executeRaw`UPDATE media SET deleted_at = now() - interval '1 minute' WHERE id = ${doomed.id}::uuid`;

    // 3. A direct upload whose bytes arrived but that was never completed, now expired.
    const bytes = pdfBytes(2);
    const t = (
      await ok(app.url, CreateDirectUploadDocument, {
        input: { filename: 'a.pdf', contentType: 'application/pdf', byteSize: bytes.length, checksum: createHash('sha256').update(bytes).digest('base64') },
      }, { token })
    ).createDirectUpload;
    await fetch(t.url, { method: 'PUT', headers: t.headers.all as Record<string, string>, body: bytes });
    const ticketId = t.key.split('/')[1]!;
    await app.db.prisma.$executeRaw`UPDATE direct_upload SET expires_at = now() - interval '1 minute' WHERE id = ${ticketId}::uuid`;

    // 4. A pending direct upload (not expired) must survive, and so must its bytes.
    const pending = (
      await ok(app.url, CreateDirectUploadDocument, {
        input: { filename: 'b.pdf', contentType: 'application/pdf', byteSize: bytes.length, checksum: createHash('sha256').update(bytes).digest('base64') },
      }, { token })
    ).createDirectUpload;
    await fetch(pending.url, { method: 'PUT', headers: pending.headers.all as Record<string, string>, body: bytes });

    const pendingId = pending.key.split('/')[1]!;
    // The object the pending ticket points at (its staging key, or the key the service's own PUT endpoint wrote).
    const pendingObject = (await app.db.prisma.directUpload.findFirstOrThrow({ where: { id: pendingId } })).storageKey;
    expect(pendingObject.startsWith(`${tenant}/${pendingId}/`)).toBe(true);

    // With a grace period longer than everything's age, nothing is touched.
    const gentle = await sweepTenant(app, tenant, 3600);
    expect(gentle).toMatchObject({ deletedMediaPurged: 0, directUploadsRemoved: 0, orphanGroupsDeleted: 0 });
    expect(await storedKeys(app, tenant)).toContain(`${tenant}/${orphanId}/original`);

    const report = await sweepTenant(app, tenant);
    expect(report).not.toBeNull();
    expect(report!.deletedMediaPurged).toBeGreaterThanOrEqual(1);
    expect(report!.directUploadsRemoved).toBeGreaterThanOrEqual(1);
    expect(report!.orphanGroupsDeleted).toBeGreaterThanOrEqual(1);
    // This test leaves no multipart upload (local disk has none; s3rver lists them through
    // test/helpers/s3rver-multipart.ts; rgw-multipart-leftovers.test.ts covers a real store).
    expect(report!.multipartUploadsAborted).toBe(0);

    const keys = await storedKeys(app, tenant);
    expect(keys.filter((k) => k.includes(orphanId))).toEqual([]);
    expect(keys.filter((k) => k.includes(doomed.id))).toEqual([]);
    expect(keys.filter((k) => k.includes(ticketId))).toEqual([]);
    expect(keys).toContain(pendingObject);
    expect(keys.filter((k) => k.includes(live.id)).sort()).toEqual(liveKeys.filter((k) => k.includes(live.id)).sort());

    // Rows: the deleted media and the expired ticket are gone; the live ones stay.
    expect(await app.db.prisma.media.findMany({ where: { tenantId: tenant }, select: { id: true } })).toEqual([{ id: live.id }]);
    const tickets = await app.db.prisma.directUpload.findMany({ where: { tenantId: tenant }, select: { id: true, storageKey: true } });
    expect(tickets).toEqual([{ id: pendingId, storageKey: pendingObject }]);

    // Nothing is left pointing at a missing object: every remaining media has its original.
    for (const m of await app.db.prisma.media.findMany({ where: { tenantId: tenant } })) {
      expect(await app.services.storage.head(m.storageKey)).not.toBeNull();
    }
  });

  it('deletes what reached a completed ticket\'s staging group after completion; the media it became (a fresh id) stays', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = pdfBytes(2);
    const t = (
      await ok(app.url, CreateDirectUploadDocument, {
        input: { filename: 'a.pdf', contentType: 'application/pdf', byteSize: bytes.length, checksum: createHash('sha256').update(bytes).digest('base64') },
      }, { token })
    ).createDirectUpload;
    expect((await fetch(t.url, { method: 'PUT', headers: t.headers.all as Record<string, string>, body: bytes })).status).toBe(200);
    const m = (await ok(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'company', id: 'c' } }, { token })).completeDirectUpload;
    const ticketId = t.key.split('/')[1]!;
    expect(m.id).not.toBe(ticketId);
    const mediaKeys = await storedKeys(app, tenant);
    expect(mediaKeys.every((k) => k.startsWith(`${tenant}/${m.id}/`))).toBe(true);
    // A late presigned PUT (it cannot be revoked) lands on the ticket's staging key.
    await put(t.key, Buffer.from('<html>late</html>'));

    const report = await sweepTenant(app, tenant);
    expect(report).toMatchObject({ directUploadsRemoved: 1 });
    expect(await storedKeys(app, tenant)).toEqual(mediaKeys);
    expect(await app.db.prisma.directUpload.count({ where: { tenantId: tenant } })).toBe(0);
    expect(Buffer.from(await (await fetch(m.url!)).arrayBuffer()).equals(bytes)).toBe(true);
  });

  it('keeps the objects of a media that took its ticket\'s id (tickets completed before the staging keys)', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const m = (await ok(app.url, UploadDocument, { input: { file: pdf(1), entity: { type: 'company', id: 'c' } } }, { token })).upload;
    const before = await storedKeys(app, tenant);
    await app.db.prisma.directUpload.create({
      data: {
        id: m.id,
        tenantId: tenant,
        storageKey: `${tenant}/${m.id}/original`,
        fileName: 'a.pdf',
        contentType: 'application/pdf',
        byteSize: 1n,
        checksum: 'x',
        expiresAt: new Date(Date.now() - 60_000),
        completedAt: new Date(Date.now() - 60_000),
      },
    });
    const report = await sweepTenant(app, tenant);
    expect(report).toMatchObject({ directUploadsRemoved: 1, orphanGroupsDeleted: 0 });
    expect(await storedKeys(app, tenant)).toEqual(before);
  });

  // Sweeps here are limited to the test's tenant: other test files share the database and the S3 bucket.
  it('is idempotent: a second run finds nothing more to do for the tenant', async () => {
    const tenant = newTenant();
    await put(`${tenant}/${randomUUID()}/original`, Buffer.from('orphan'));
    await sweepTenant(app, tenant);
    expect(await storedKeys(app, tenant)).toEqual([]);
    const again = await sweepTenant(app, tenant);
    expect(again).not.toBeNull();
    expect(await storedKeys(app, tenant)).toEqual([]);
  });
});
