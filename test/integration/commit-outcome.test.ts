// Nothing that fails after a commit may delete committed bytes (issue 12, item 5).
// The fault sits under the app, in pg's Client.query: the statement that makes a
// write durable (COMMIT of a transaction that wrote the table, or an autocommit
// write to it) really runs, and the app is told the connection dropped (its
// commit outcome is unknown to the app); or every query right after such a
// commit fails (a pool timeout, a reset). Each entry point may report an error,
// but the rows stay, and so do their objects: the content route serves them.
import { createHash } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CompleteDirectUploadDocument,
  CreateAssetDocument,
  CreateDirectUploadDocument,
  UpdateAssetDocument,
  UploadDocument,
  UploadManyDocument,
  UploadSignedDocumentDocument,
} from '../generated/graphql.js';
import { STORAGE_DRIVER, newTenant, startTestApp, type TestApp } from '../helpers/app.js';
import { gql, ok, type GqlResult } from '../helpers/client.js';
import { pdfBytes, png } from '../helpers/files.js';
import { storedKeys } from '../helpers/stored.js';

type Mode = 'commit-reply-lost' | 'next-queries-fail';
interface Fault {
  mode: Mode;
  /** A write to the table in question (matched on the SQL text). */
  writes: RegExp;
  fired: boolean;
  /** next-queries-fail: how many queries still fail after the commit. */
  failing: number;
}
let fault: Fault | null = null;

type TxState = { open: boolean; texts: string[] };
const lost = () => Object.assign(new Error('Connection terminated unexpectedly'), { code: 'ECONNRESET' });
// Patched before the app starts, so the pool's own wrapper (statement count) binds this one.
const realQuery = pg.Client.prototype.query as (...a: unknown[]) => unknown;
(pg.Client.prototype as unknown as { query: (...a: unknown[]) => unknown }).query = function (this: { __tx?: TxState }, ...args: unknown[]) {
  const config = args[0];
  const text = typeof config === 'string' ? config : (config as { text?: string } | undefined)?.text;
  const state = (this.__tx ??= { open: false, texts: [] });
  const f = fault;
  const cbAt = args.findIndex((a) => typeof a === 'function');
  if (f?.mode === 'next-queries-fail' && f.fired && f.failing > 0) {
    f.failing--;
    if (cbAt >= 0) {
      const cb = args[cbAt] as (err: Error) => void;
      process.nextTick(() => cb(lost()));
      return undefined;
    }
    return Promise.reject(lost());
  }
  let durable = false;
  if (text !== undefined) {
    if (/^\s*BEGIN\b/i.test(text)) state.open = true, (state.texts = []);
    else if (/^\s*COMMIT\b/i.test(text)) (durable = state.open && !!f && state.texts.some((t) => f.writes.test(t))), (state.open = false);
    else if (/^\s*ROLLBACK\b/i.test(text)) state.open = false;
    else if (state.open) state.texts.push(text);
    else durable = !!f && f.writes.test(text);
  }
  if (!f || f.fired || !durable) return realQuery.apply(this, args);
  f.fired = true;
  if (f.mode === 'next-queries-fail') return realQuery.apply(this, args);
  // The statement runs; its answer is lost.
  if (cbAt >= 0) {
    const cb = args[cbAt] as (err: unknown, res?: unknown) => void;
    args[cbAt] = (err: unknown) => cb(err ?? lost());
    return realQuery.apply(this, args);
  }
  return (realQuery.apply(this, args) as Promise<unknown>).then(() => {
    throw lost();
  });
};

const MEDIA_INSERT = /INSERT INTO\s+("public"\.)?"?media"?\s*\(/i;
const ASSET_WRITE = /(INSERT INTO|UPDATE)\s+("public"\.)?"?asset"?\s/i;

async function withFault<T>(mode: Mode, writes: RegExp, fn: () => Promise<T>): Promise<T> {
  const f: Fault = { mode, writes, fired: false, failing: 3 };
  fault = f;
  try {
    return await fn();
  } finally {
    fault = null;
    expect(f.fired, 'the fault fired').toBe(true);
  }
}

const KEY = 'wk-commit-outcome-7Qx2Lp9Vn4Rt8Zc3Hm6Jb1Yd5';
const worker = (tenant: string) => ({ headers: { authorization: `Bearer ${KEY}`, 'x-worker-type': 'signature-processor', 'x-tenant-id': tenant } });
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const bytesOf = async (f: Blob) => Buffer.from(await f.arrayBuffer());

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp({ env: { WORKER_API_KEYS: `${KEY}:signature-processor:*`, WORKER_API_KEYS_ALLOW_ANY_TENANT: 'true', SWEEP_INTERVAL_SECONDS: '0' } });
});
afterAll(async () => {
  await app?.close();
});

async function content(path: string, token: string): Promise<{ status: number; body: Buffer }> {
  const res = await fetch(`${app.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
}

/** The tenant's media rows in creation order. */
async function mediaOf(tenant: string) {
  return app.db.prisma.media.findMany({ where: { tenantId: tenant }, orderBy: { createdAt: 'asc' } });
}

/** The committed media is whole: its row, its objects, and the content route serving exactly `bytes`. */
async function expectServed(tenant: string, token: string, id: string, bytes: Buffer): Promise<void> {
  expect(await storedKeys(app, tenant)).toContain(`${tenant}/${id}/original`);
  const res = await content(`/media/${id}/content`, token);
  expect(res.status).toBe(200);
  expect(sha(res.body)).toBe(sha(bytes));
}

/** An error, if any, says nothing of the driver. */
function expectQuietError(r: GqlResult<unknown>): void {
  for (const e of r.errors ?? []) expect(e.message).not.toMatch(/Connection terminated|ECONNRESET/);
}

const MODES: Mode[] = ['commit-reply-lost', 'next-queries-fail'];

describe.each(MODES)(`after the commit, %s (${STORAGE_DRIVER})`, (mode) => {
  it('upload: the row, attachment, role and object stay; the role moved to the new media', async () => {
    const tenant = newTenant('co');
    const token = await app.token(tenant);
    const entity = { type: 'property', id: 'p1' };
    const before = await ok(app.url, UploadDocument, { input: { file: await png(60, 40, 'old.png'), entity, role: 'PRIMARY_PHOTO' } }, { token });
    const file = await png(64, 48, 'new.png');
    const r = await withFault(mode, MEDIA_INSERT, () => gql(app.url, UploadDocument, { input: { file, entity, role: 'PRIMARY_PHOTO' } }, { token }));
    expectQuietError(r);
    const rows = await mediaOf(tenant);
    expect(rows).toHaveLength(2);
    const id = rows[1]!.id;
    expect(id).not.toBe(before.upload.id);
    if (r.data?.upload) expect(r.data.upload.id).toBe(id);
    expect(await app.db.prisma.mediaAttachment.count({ where: { tenantId: tenant, mediaId: id, entityType: 'property', entityId: 'p1' } })).toBe(1);
    const roles = await app.db.prisma.mediaRoleAssignment.findMany({ where: { tenantId: tenant, role: 'PRIMARY_PHOTO' } });
    expect(roles.map((x) => x.mediaId)).toEqual([id]);
    await expectServed(tenant, token, id, await bytesOf(file));
  });

  it('uploadMany: every row and object of the batch stays', async () => {
    const tenant = newTenant('co');
    const token = await app.token(tenant);
    const files = [await png(30, 20, 'a.png'), new File([pdfBytes(2)], 'b.pdf', { type: 'application/pdf' })];
    const r = await withFault(mode, MEDIA_INSERT, () =>
      gql(app.url, UploadManyDocument, { inputs: files.map((file, i) => ({ file, entity: { type: 'property', id: `p${i}` } })) }, { token }),
    );
    expectQuietError(r);
    const rows = await mediaOf(tenant);
    expect(rows).toHaveLength(2);
    for (const [i, file] of files.entries()) {
      const row = rows.find((m) => m.fileName === file.name)!;
      expect(await app.db.prisma.mediaAttachment.count({ where: { tenantId: tenant, mediaId: row.id, entityId: `p${i}` } })).toBe(1);
      await expectServed(tenant, token, row.id, await bytesOf(file));
    }
  });

  it('completeDirectUpload: the media, its attachment and object stay, the ticket is completed', async () => {
    const tenant = newTenant('co');
    const token = await app.token(tenant);
    const bytes = pdfBytes(3);
    const { createDirectUpload: t } = await ok(
      app.url,
      CreateDirectUploadDocument,
      { input: { filename: 'd.pdf', contentType: 'application/pdf', byteSize: bytes.length, checksum: createHash('sha256').update(bytes).digest('base64') } },
      { token },
    );
    expect((await fetch(t.url, { method: 'PUT', headers: t.headers.all as Record<string, string>, body: bytes })).status).toBe(200);
    const r = await withFault(mode, MEDIA_INSERT, () =>
      gql(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'property', id: 'p1' }, tags: ['plan'] }, { token }),
    );
    expectQuietError(r);
    const rows = await mediaOf(tenant);
    expect(rows).toHaveLength(1);
    const id = rows[0]!.id;
    expect(await app.db.prisma.mediaAttachment.count({ where: { tenantId: tenant, mediaId: id, entityType: 'property', entityId: 'p1' } })).toBe(1);
    const ticket = await app.db.prisma.directUpload.findFirst({ where: { tenantId: tenant } });
    expect(ticket?.completedAt).not.toBeNull();
    await expectServed(tenant, token, id, bytes);
  });

  it('uploadSignedDocument: the signed media keeps its object and LEASE_SIGNED', async () => {
    const tenant = newTenant('co');
    const token = await app.token(tenant);
    const { upload: original } = await ok(
      app.url,
      UploadDocument,
      { input: { file: new File([pdfBytes(2)], 'lease.pdf', { type: 'application/pdf' }), entity: { type: 'lease', id: 'L-7' }, role: 'LEASE_ORIGINAL' } },
      { token },
    );
    const signed = Buffer.concat([pdfBytes(4), Buffer.from('%signed')]);
    const r = await withFault(mode, MEDIA_INSERT, () =>
      gql(app.url, UploadSignedDocumentDocument, { mediaId: original.id, file: new File([signed], 'lease-signed.pdf', { type: 'application/pdf' }) }, worker(tenant)),
    );
    expectQuietError(r);
    const rows = await mediaOf(tenant);
    expect(rows).toHaveLength(2);
    const id = rows.find((m) => m.id !== original.id)!.id;
    const roles = await app.db.prisma.mediaRoleAssignment.findMany({ where: { tenantId: tenant, role: 'LEASE_SIGNED' } });
    expect(roles.map((x) => x.mediaId)).toEqual([id]);
    await expectServed(tenant, token, id, signed);
  });

  it('createAsset with a file: the row and its objects stay', async () => {
    const tenant = newTenant('co');
    const token = await app.token(tenant);
    const file = await png(50, 50, 'logo.png');
    const r = await withFault(mode, ASSET_WRITE, () => gql(app.url, CreateAssetDocument, { input: { type: 'BLOB', access: 'PRIVATE', file, key: 'logo' } }, { token }));
    expectQuietError(r);
    const rows = await app.db.prisma.asset.findMany({ where: { tenantId: tenant } });
    expect(rows).toHaveLength(1);
    expect(await storedKeys(app, tenant)).toContain(rows[0]!.storageKey);
    const res = await content(`/assets/${rows[0]!.id}/download`, token);
    expect(res.status).toBe(200);
    expect(sha(res.body)).toBe(sha(await bytesOf(file)));
  });

  it('createAsset with a signedId: the row and its objects stay', async () => {
    const tenant = newTenant('co');
    const token = await app.token(tenant);
    const bytes = pdfBytes(2);
    const { createDirectUpload: t } = await ok(
      app.url,
      CreateDirectUploadDocument,
      { input: { filename: 'a.pdf', contentType: 'application/pdf', byteSize: bytes.length, checksum: createHash('sha256').update(bytes).digest('base64') } },
      { token },
    );
    expect((await fetch(t.url, { method: 'PUT', headers: t.headers.all as Record<string, string>, body: bytes })).status).toBe(200);
    const r = await withFault(mode, ASSET_WRITE, () => gql(app.url, CreateAssetDocument, { input: { type: 'BLOB', access: 'PRIVATE', signedId: t.signedId } }, { token }));
    expectQuietError(r);
    const rows = await app.db.prisma.asset.findMany({ where: { tenantId: tenant } });
    expect(rows).toHaveLength(1);
    expect(await storedKeys(app, tenant)).toContain(rows[0]!.storageKey);
    const res = await content(`/assets/${rows[0]!.id}/download`, token);
    expect(res.status).toBe(200);
    expect(sha(res.body)).toBe(sha(bytes));
  });

  it('updateAsset with a file: the row points at the new objects and they stay', async () => {
    const tenant = newTenant('co');
    const token = await app.token(tenant);
    const { createAsset: a } = await ok(app.url, CreateAssetDocument, { input: { type: 'BLOB', access: 'PRIVATE', file: await png(40, 40, 'v1.png') } }, { token });
    const next = await png(70, 30, 'v2.png');
    const r = await withFault(mode, ASSET_WRITE, () => gql(app.url, UpdateAssetDocument, { id: a.id, input: { version: 1, file: next } }, { token }));
    expectQuietError(r);
    const row = await app.db.prisma.asset.findFirstOrThrow({ where: { tenantId: tenant, id: a.id } });
    expect(row.version).toBe(2);
    expect(await storedKeys(app, tenant)).toContain(row.storageKey);
    const res = await content(`/assets/${a.id}/download`, token);
    expect(res.status).toBe(200);
    expect(sha(res.body)).toBe(sha(await bytesOf(next)));
  });
});
