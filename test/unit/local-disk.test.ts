import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors/index.js';
import { LocalDiskStorage } from '../../src/storage/local-disk.js';

let base: string;
let root: string;
let storage: LocalDiskStorage;

beforeEach(async () => {
  base = await mkdtemp(path.join(os.tmpdir(), 'local-disk-test-'));
  root = path.join(base, 'blobs');
  storage = new LocalDiskStorage(root);
});
afterEach(() => rm(base, { recursive: true, force: true }));

async function readAll(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** Every file under a directory, relative paths (dot-directories included). */
async function filesUnder(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name))).sort();
}

/** A source that yields `good` bytes in 16 KiB chunks, then fails. */
function failingSource(good: number, error = new Error('client went away')): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= good) {
        this.destroy(error);
        return;
      }
      const n = Math.min(16 * 1024, good - sent);
      sent += n;
      this.push(randomBytes(n));
    },
  });
}

const KEY = 'acme/0b5e7f8c-3d2a-4c1b-9e8f-7a6b5c4d3e2f/original';

describe('LocalDiskStorage', () => {
  it('puts a stream and gets the same bytes back, with its size', async () => {
    const data = randomBytes(300_000);
    const info = await storage.put(KEY, Readable.from([data.subarray(0, 100_000), data.subarray(100_000)]));
    expect(info.size).toBe(data.length);
    expect((await readAll(await storage.get(KEY))).equals(data)).toBe(true);
    expect(await readFile(path.join(root, KEY))).toEqual(data);
    expect(await storage.head(KEY)).toEqual({ size: data.length });
  });

  it('reads inclusive byte ranges', async () => {
    const data = Buffer.from('0123456789abcdef');
    await storage.put(KEY, Readable.from([data]));
    expect((await readAll(await storage.get(KEY, { start: 0, end: 0 }))).toString()).toBe('0');
    expect((await readAll(await storage.get(KEY, { start: 3, end: 7 }))).toString()).toBe('34567');
    expect((await readAll(await storage.get(KEY, { start: 10, end: 15 }))).toString()).toBe('abcdef');
  });

  it('replaces an object put again under the same key', async () => {
    await storage.put(KEY, Readable.from([Buffer.from('first version, longer')]));
    await storage.put(KEY, Readable.from([Buffer.from('second')]));
    expect((await readAll(await storage.get(KEY))).toString()).toBe('second');
  });

  it('a missing object: get is NOT_FOUND, head is null', async () => {
    const e = await storage.get(KEY).then(
      () => null,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(AppError);
    expect((e as AppError).extensions['code']).toBe('NOT_FOUND');
    expect(await storage.head(KEY)).toBeNull();
  });

  it('delete removes the object and is idempotent', async () => {
    await storage.put(KEY, Readable.from([Buffer.from('x')]));
    await storage.delete(KEY);
    expect(await storage.head(KEY)).toBeNull();
    await expect(storage.delete(KEY)).resolves.toBeUndefined();
  });

  it('deletePrefix removes a media with its variants and nothing else', async () => {
    const a = 'acme/11111111-1111-4111-8111-111111111111';
    const b = 'acme/22222222-2222-4222-8222-222222222222';
    for (const k of [`${a}/original`, `${a}/THUMB`, `${a}/MEDIUM`, `${b}/original`, 'other/33333333-3333-4333-8333-333333333333/original']) {
      await storage.put(k, Readable.from([Buffer.from(k)]));
    }
    await storage.deletePrefix(`${a}/`);
    expect(await filesUnder(root)).toEqual(['acme/22222222-2222-4222-8222-222222222222/original', 'other/33333333-3333-4333-8333-333333333333/original']);
    // Idempotent too.
    await expect(storage.deletePrefix(`${a}/`)).resolves.toBeUndefined();
  });

  it('lists the objects under a prefix, not the temporary files', async () => {
    await storage.put(KEY, Readable.from([Buffer.from('abc')]));
    await storage.put('acme/0b5e7f8c-3d2a-4c1b-9e8f-7a6b5c4d3e2f/THUMB', Readable.from([Buffer.from('t')]));
    await storage.put('zeta/0b5e7f8c-3d2a-4c1b-9e8f-7a6b5c4d3e2f/original', Readable.from([Buffer.from('z')]));
    const listed = await storage.list('acme/');
    expect(listed.map((o) => [o.key, o.size]).sort()).toEqual([
      ['acme/0b5e7f8c-3d2a-4c1b-9e8f-7a6b5c4d3e2f/THUMB', 1],
      [KEY, 3],
    ]);
  });

  it.each([
    ['before any byte', 0],
    ['after a few bytes', 100],
    ['after one chunk', 16 * 1024],
    ['after 1 MiB', 1024 * 1024],
  ])('a source failing %s: put rejects with its error, no object and no temporary file remain', async (_name, good) => {
    // Repeated: a put that fails while the temporary file is still being opened is a race.
    for (let i = 0; i < 20; i++) {
      const error = new Error('client went away');
      await expect(storage.put(KEY, failingSource(good, error))).rejects.toBe(error);
      expect(await storage.head(KEY)).toBeNull();
      expect(await filesUnder(root)).toEqual([]);
    }
    // Let late file-system callbacks run, then check again: nothing reappears in .tmp.
    await new Promise((r) => setTimeout(r, 50));
    expect(await filesUnder(root)).toEqual([]);
  });

  it('a failing put leaves the previous object under the key untouched', async () => {
    await storage.put(KEY, Readable.from([Buffer.from('the good one')]));
    await expect(storage.put(KEY, failingSource(64 * 1024))).rejects.toThrow('client went away');
    expect((await readAll(await storage.get(KEY))).toString()).toBe('the good one');
    expect(await filesUnder(path.join(root, '.tmp'))).toEqual([]);
  });

  it.each([
    ['../outside'],
    ['acme/../../outside'],
    ['acme/../acme/x'],
    ['/etc/passwd'],
    ['acme//x'],
    ['acme/./x'],
    ['.tmp/x'],
    ['acme/x/'],
    [''],
    ['acme/with space'],
    ['acme\\..\\x'],
    ['acme/x.jpg'],
  ])('refuses the key %j for every operation', async (key) => {
    await expect(storage.put(key, Readable.from([Buffer.from('evil')]))).rejects.toThrow(/invalid storage key/);
    await expect(storage.get(key)).rejects.toThrow(/invalid storage key/);
    await expect(storage.delete(key)).rejects.toThrow(/invalid storage key/);
    expect(await storage.head(key)).toBeNull();
    expect(existsSync(path.join(base, 'outside'))).toBe(false);
    expect((await filesUnder(base)).filter((f) => !f.startsWith(`blobs${path.sep}.tmp`))).toEqual([]);
  });

  it('deletePrefix refuses an empty or escaping prefix instead of removing the root', async () => {
    await storage.put(KEY, Readable.from([Buffer.from('keep me')]));
    await expect(storage.deletePrefix('')).rejects.toThrow(/invalid storage key/);
    await expect(storage.deletePrefix('/')).rejects.toThrow(/invalid storage key/);
    await expect(storage.deletePrefix('../')).rejects.toThrow(/invalid storage key/);
    expect(await storage.head(KEY)).toEqual({ size: 7 });
  });

  it('check creates the root and passes', async () => {
    await expect(storage.check()).resolves.toBeUndefined();
    expect(existsSync(path.join(root, '.tmp'))).toBe(true);
  });
});
