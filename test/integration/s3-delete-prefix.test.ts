// deletePrefix on the S3 driver when the store answers DeleteObjects with per-key
// Errors (a 200 whose body lists keys it did not delete: AccessDenied under a
// bucket policy, InternalError on a busy cluster): the call fails, the callers
// keep their rows, a later sweep finishes, and a delete that never takes ends.
import { randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeleteObjectsCommandInput, DeleteObjectsCommandOutput, ListObjectsV2CommandInput, ListObjectsV2CommandOutput } from '@aws-sdk/client-s3';
import { AppError, ErrorCode } from '../../src/errors/index.js';
import { DeletePrefixError, S3Storage } from '../../src/storage/s3.js';
import { DeleteMediaDocument, UploadDocument } from '../generated/graphql.js';
import { newTenant, S3_STORE, startTestApp, testS3Options, type TestApp } from '../helpers/app.js';
import { sweepTenant } from '../helpers/sweep.js';
import { ok } from '../helpers/client.js';
import { pdf } from '../helpers/files.js';
import { storedKeys } from '../helpers/stored.js';

/**
 * Makes the store refuse to delete the keys `deny` matches: they are left out of
 * the DeleteObjects request and reported back in its answer's Errors, as a store
 * that refused them does. `noop` makes DeleteObjects delete nothing and report no
 * error (a store whose deletes do not take). Counts the DeleteObjects sent.
 */
function faulty(s: S3Storage) {
  const state = { deny: (_key: string) => false, noop: false, calls: 0 };
  s.client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName !== 'DeleteObjectsCommand') return next(args);
      state.calls++;
      const input = args.input as DeleteObjectsCommandInput;
      const all = input.Delete?.Objects ?? [];
      const denied = all.filter((o) => state.deny(o.Key!));
      const errors = denied.map((o) => ({ Key: o.Key, Code: 'AccessDenied', Message: 'Access Denied' }));
      const rest = all.filter((o) => !state.deny(o.Key!));
      if (state.noop || rest.length === 0) return { output: { $metadata: {}, ...(errors.length ? { Errors: errors } : {}) } as DeleteObjectsCommandOutput, response: {} } as never;
      const result = await next({ ...args, input: { ...input, Delete: { ...input.Delete, Objects: rest } } });
      const output = result.output as DeleteObjectsCommandOutput;
      if (errors.length) output.Errors = [...(output.Errors ?? []), ...errors];
      return result;
    },
    { step: 'initialize', name: 'deleteObjectsFaults' },
  );
  return state;
}

/**
 * s3rver answers a ListObjectsV2 whose MaxKeys is below the number of keys with an
 * InternalError: ask it for a full page and cut the answer to MaxKeys (enough for
 * deletePrefix, which reads one page per round).
 */
function smallPagesOnS3rver(s: S3Storage) {
  s.client.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as ListObjectsV2CommandInput;
      if (context.commandName !== 'ListObjectsV2Command' || (input.MaxKeys ?? 1000) >= 1000) return next(args);
      const result = await next({ ...args, input: { ...input, MaxKeys: 1000 } });
      const output = result.output as ListObjectsV2CommandOutput;
      if ((output.Contents?.length ?? 0) > input.MaxKeys!) {
        output.Contents = output.Contents!.slice(0, input.MaxKeys);
        output.IsTruncated = true;
      }
      return result;
    },
    { step: 'initialize', name: 's3rverSmallPages' },
  );
}

function storageError(e: unknown): AppError {
  expect(e).toBeInstanceOf(AppError);
  expect((e as AppError).code).toBe(ErrorCode.STORAGE_UNAVAILABLE);
  return e as AppError;
}

describe(`S3 deletePrefix with per-key errors (${S3_STORE})`, () => {
  it('fails with STORAGE_UNAVAILABLE naming the keys the store kept, after deleting the others', async () => {
    const s3 = new S3Storage(testS3Options());
    const faults = faulty(s3);
    const prefix = `deltest/${randomBytes(6).toString('hex')}/`;
    for (const n of ['a', 'b', 'c']) await s3.put(`${prefix}${n}`, Readable.from([Buffer.from(n)]), { size: 1 });
    faults.deny = (k) => k === `${prefix}b`;
    const e = storageError(await s3.deletePrefix(prefix).catch((x: unknown) => x));
    const cause = e.cause as DeletePrefixError;
    expect(cause).toBeInstanceOf(DeletePrefixError);
    expect(cause.failed).toEqual([{ key: `${prefix}b`, code: 'AccessDenied', message: 'Access Denied' }]);
    expect(cause.message).toContain(`${prefix}b (AccessDenied`);
    expect((await s3.list(prefix)).map((o) => o.key)).toEqual([`${prefix}b`]);
    // Once the store lets it go, the same call finishes.
    faults.deny = () => false;
    await s3.deletePrefix(prefix);
    expect(await s3.list(prefix)).toEqual([]);
  });

  it('a delete that keeps failing ends: one DeleteObjects per call when every key fails, and no endless rounds when deletes do not take', async () => {
    const s3 = new S3Storage(testS3Options({ deletePageSize: 2 }));
    if (S3_STORE === 's3rver') smallPagesOnS3rver(s3);
    const faults = faulty(s3);
    const prefix = `deltest/${randomBytes(6).toString('hex')}/`;
    for (const n of ['a', 'b', 'c', 'd', 'e']) await s3.put(`${prefix}${n}`, Readable.from([Buffer.from(n)]), { size: 1 });

    faults.deny = () => true;
    storageError(await s3.deletePrefix(prefix).catch((x: unknown) => x));
    expect(faults.calls).toBe(1);

    // The store answers "deleted" and keeps everything: the second round lists the
    // same page, and the call fails instead of listing and deleting it forever.
    faults.deny = () => false;
    faults.noop = true;
    faults.calls = 0;
    const e = storageError(await s3.deletePrefix(prefix).catch((x: unknown) => x));
    expect(String((e.cause as Error).message)).toMatch(/still lists them/);
    expect(faults.calls).toBe(1);
    expect((await s3.list(prefix)).length).toBe(5);

    // A working store: three pages of two, and done.
    faults.noop = false;
    faults.calls = 0;
    await s3.deletePrefix(prefix);
    expect(await s3.list(prefix)).toEqual([]);
    expect(faults.calls).toBe(3);
  });
});

describe(`purges keep their rows when the store keeps an object (${S3_STORE})`, () => {
  let app: TestApp;
  let faults: ReturnType<typeof faulty>;
  beforeAll(async () => {
    app = await startTestApp({
      env: { SWEEP_INTERVAL_SECONDS: '0' },
      storage: (_dir: string, real) => {
        faults = faulty(real as S3Storage);
        return real;
      },
    });
  });
  afterAll(() => app?.close());

  it('deleteMedia: the objects stay, so does the row (marked deleted); a later sweep finishes both', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const media = (await ok(app.url, UploadDocument, { input: { file: pdf(1), entity: { type: 'company', id: 'c' } } }, { token })).upload;
    expect((await storedKeys(app, tenant)).length).toBeGreaterThan(0);

    faults.deny = (k) => k.startsWith(`${tenant}/${media.id}/`);
    // The client is told the media is gone (it is: marked deleted, invisible); the purge is left for the sweep.
    await ok(app.url, DeleteMediaDocument, { id: media.id }, { token });
    const row = await app.db.prisma.media.findFirst({ where: { id: media.id } });
    expect(row?.deletedAt).toBeInstanceOf(Date);
    expect((await storedKeys(app, tenant)).some((k) => k.startsWith(`${tenant}/${media.id}/`))).toBe(true);
    expect(app.logs.some((l) => l['msg'] === 'purge of deleted media failed; left for the sweep' && String((l['err'] as { message?: string })?.message).includes('could not delete'))).toBe(true);

    // The sweep while the store still refuses: nothing purged, the row stays, the sweep itself completes.
    const refused = await sweepTenant(app, tenant);
    expect(refused).toMatchObject({ deletedMediaPurged: 0 });
    expect(await app.db.prisma.media.findFirst({ where: { id: media.id } })).not.toBeNull();

    faults.deny = () => false;
    const report = await sweepTenant(app, tenant);
    expect(report).toMatchObject({ deletedMediaPurged: 1 });
    expect(await app.db.prisma.media.findFirst({ where: { id: media.id } })).toBeNull();
    expect(await storedKeys(app, tenant)).toEqual([]);
  });

  it('deleteAsset: storage_key stays set while the store keeps an object; a later sweep clears it', async () => {
    const tenant = newTenant();
    // An asset row with an object, as a BLOB asset has (written here, not through the API, to keep the test short).
    const id = randomUUID();
    const key = `${tenant}/${id}/v1-00000000/original`;
    await app.services.storage.put(key, Readable.from([Buffer.from('asset bytes')]), { size: 11 });
    await app.db.prisma.$executeRaw`INSERT INTO asset (tenant_id, id, type, access, name, key, storage_key, deleted_at, variants)
      VALUES (${tenant}, ${id}::uuid, 'BLOB', 'PRIVATE', 'doc', 'doc', ${key}, now() - interval '1 minute', '[]'::jsonb)`;
    faults.deny = (k) => k === key;
    expect(await sweepTenant(app, tenant)).toMatchObject({ deletedAssetsPurged: 0 });
    expect((await app.db.prisma.$queryRaw<{ storage_key: string | null }[]>`SELECT storage_key FROM asset WHERE id = ${id}::uuid`)[0]?.storage_key).toBe(key);
    faults.deny = () => false;
    expect(await sweepTenant(app, tenant)).toMatchObject({ deletedAssetsPurged: 1 });
    expect((await app.db.prisma.$queryRaw<{ storage_key: string | null }[]>`SELECT storage_key FROM asset WHERE id = ${id}::uuid`)[0]?.storage_key).toBeNull();
    expect(await storedKeys(app, tenant)).toEqual([]);
  });
});
