// The storage contract that direct uploads rely on, for the run's driver (local
// disk, or S3 on s3rver): put copes with a body that fails before it is read or has
// already failed (a rejection, never an unhandled 'error' event), a body shorter
// than its declared size is refused promptly, and copy makes an object of its own.
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors/index.js';
import type { Storage } from '../../src/storage/index.js';
import { STORAGE_DRIVER, newTenant, testStorage } from '../helpers/app.js';
import { recordUncaught, within } from '../helpers/security.js';

let dir: string;
let storage: Storage;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'storage-driver-'));
  storage = testStorage(dir);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

// In production an uncaught exception ends the process; here vitest would only report it.
const uncaught = recordUncaught();

const keyOf = (tenant: string, name = 'original') => `${tenant}/${randomUUID()}/${name}`;
async function readAll(key: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of await storage.get(key)) parts.push(c as Buffer);
  return Buffer.concat(parts);
}
const listed = async (tenant: string) => (await storage.list(`${tenant}/`)).map((o) => o.key);
const settle = () => new Promise((r) => setTimeout(r, 50));

describe(`Storage contract (${STORAGE_DRIVER})`, () => {
  it.each([
    ['with a declared size', { size: 10 }],
    ['without a size', {}],
  ])('put (%s) of a body that fails before the driver reads it rejects with that error and stores nothing', async (_label, options) => {
    const tenant = newTenant('drv');
    const body = new PassThrough(); // no error listener of its own, as a limit stream fresh from the caller
    const failure = new AppError('BAD_USER_INPUT', 'Body is larger than the declared 10 bytes');
    const pending = storage.put(keyOf(tenant), body, options);
    body.destroy(failure); // while the driver still awaits its set-up (mkdir, connection)
    await expect(within(pending, 5000, 'put')).rejects.toBe(failure);
    await settle();
    expect(uncaught).toEqual([]);
    expect(await listed(tenant)).toEqual([]);
  });

  it('put of a body that has already failed rejects at once with its error', async () => {
    const tenant = newTenant('drv');
    const body = new PassThrough();
    body.on('error', () => undefined);
    const failure = new Error('client went away');
    body.destroy(failure);
    await settle();
    await expect(within(storage.put(keyOf(tenant), body, { size: 5 }), 5000, 'put')).rejects.toBe(failure);
    await expect(within(storage.put(keyOf(tenant), body), 5000, 'put')).rejects.toBe(failure);
    expect(uncaught).toEqual([]);
    expect(await listed(tenant)).toEqual([]);
  });

  it('put of a body shorter than its declared size fails promptly and stores nothing (local disk: reports the short size)', async () => {
    const tenant = newTenant('drv');
    const key = keyOf(tenant);
    const result = await within(storage.put(key, Readable.from([Buffer.from('12345')]), { size: 10 }).then((r) => r, (e: unknown) => e), 5000, 'put');
    if (STORAGE_DRIVER === 'local') {
      // Local disk writes what came and says how much: the caller compares and deletes.
      expect(result).toEqual({ size: 5 });
      await storage.delete(key);
    } else {
      expect(result).toBeInstanceOf(Error);
      expect(String(result)).toMatch(/ended after 5 of its 10 bytes/);
    }
    expect(await listed(tenant)).toEqual([]);
  });

  it('copy makes an object of its own: later writes to the source leave it as it was', async () => {
    const tenant = newTenant('drv');
    const from = keyOf(tenant, 'staging');
    const to = keyOf(tenant);
    await storage.put(from, Readable.from([Buffer.from('verified bytes')]), { contentType: 'image/png' });
    await storage.copy(from, to);
    expect((await readAll(to)).toString()).toBe('verified bytes');
    await storage.put(from, Readable.from([Buffer.from('swapped in later')]));
    await storage.delete(from);
    expect((await readAll(to)).toString()).toBe('verified bytes');
    expect(await storage.head(to)).toMatchObject({ size: 14 });
    // Over an existing object, copy replaces it.
    await storage.put(from, Readable.from([Buffer.from('v2')]));
    await storage.copy(from, to);
    expect((await readAll(to)).toString()).toBe('v2');
  });

  it('copy of a missing object is NOT_FOUND and creates nothing', async () => {
    const tenant = newTenant('drv');
    const e = await storage.copy(keyOf(tenant, 'staging'), keyOf(tenant)).then(() => null, (x: unknown) => x);
    expect(e).toBeInstanceOf(AppError);
    expect((e as AppError).code).toBe('NOT_FOUND');
    expect(await listed(tenant)).toEqual([]);
  });
});
