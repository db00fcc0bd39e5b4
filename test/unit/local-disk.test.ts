import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { chmod, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
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

describe('LocalDiskStorage durability and modes', () => {
  /** A driver whose file system calls are recorded in order: opens, syncs (of which path), renames, links. */
  function recording(extra: { link?: typeof fsp.link } = {}) {
    const events: string[] = [];
    const rel = (p: string) => path.relative(root, p).replace(/^\.tmp[\\/][^\\/]+$/, '.tmp/<file>') || '.';
    const fs = {
      open: (async (file: string, flags?: string | number, mode?: number) => {
        const fh = await fsp.open(file, flags, mode);
        const sync = fh.sync.bind(fh);
        fh.sync = async () => {
          await sync();
          events.push(`sync ${rel(file)}`);
        };
        return fh;
      }) as typeof fsp.open,
      rename: (async (from: string, to: string) => {
        await fsp.rename(from, to);
        events.push(`rename ${rel(from)} -> ${rel(to)}`);
      }) as typeof fsp.rename,
      link: (async (from: string, to: string) => {
        await (extra.link ?? fsp.link)(from, to);
        events.push(`link ${rel(from)} -> ${rel(to)}`);
      }) as typeof fsp.link,
    };
    return { events, storage: new LocalDiskStorage(root, { fs }) };
  }

  it('a put syncs the file before the rename, then every directory entry it added, before it resolves', async () => {
    const { events, storage: s } = recording();
    let resolved = false;
    const put = s.put(KEY, Readable.from([randomBytes(100_000)])).then(() => (resolved = true));
    await put;
    expect(resolved).toBe(true);
    // root, acme/ and acme/{id}/ were all created by this put: the directory of the
    // file, and the parents of each new directory, are synced after the rename.
    expect(events).toEqual([
      'sync .tmp/<file>',
      `rename .tmp/<file> -> ${KEY}`,
      'sync acme/0b5e7f8c-3d2a-4c1b-9e8f-7a6b5c4d3e2f',
      'sync acme',
      'sync .',
    ]);
    // A second object in the same folder: only that folder's entry is new.
    events.length = 0;
    await s.put(`${path.dirname(KEY)}/thumb`, Readable.from([Buffer.from('x')]));
    expect(events).toEqual(['sync .tmp/<file>', `rename .tmp/<file> -> ${path.dirname(KEY)}/thumb`, 'sync acme/0b5e7f8c-3d2a-4c1b-9e8f-7a6b5c4d3e2f']);
  });

  it('a failing put syncs and renames nothing', async () => {
    const { events, storage: s } = recording();
    await expect(s.put(KEY, failingSource(100_000))).rejects.toThrow(/client went away/);
    expect(events).toEqual([]);
  });

  it('a copy syncs the directory of its hard link before it resolves', async () => {
    const { events, storage: s } = recording();
    await s.put(KEY, Readable.from([Buffer.from('abc')]));
    events.length = 0;
    const to = 'acme/1c5e7f8c-3d2a-4c1b-9e8f-7a6b5c4d3e2f/original';
    await s.copy(KEY, to);
    expect(events).toEqual([`link ${KEY} -> ${to}`, 'sync acme/1c5e7f8c-3d2a-4c1b-9e8f-7a6b5c4d3e2f', 'sync acme']);
  });

  it('a copy without hard links syncs the copy before its rename and the directory after it, and makes it 0600', async () => {
    const exdev = (async () => {
      throw Object.assign(new Error('cross-device link'), { code: 'EXDEV' });
    }) as typeof fsp.link;
    const { events, storage: s } = recording({ link: exdev });
    await s.put(KEY, Readable.from([Buffer.from('abc')]));
    await chmod(path.join(root, KEY), 0o644); // a file written before blobs were 0600
    events.length = 0;
    const to = `${path.dirname(KEY)}/copy`;
    await s.copy(KEY, to);
    expect(events).toEqual(['sync .tmp/<file>', `rename .tmp/<file> -> ${to}`, 'sync acme/0b5e7f8c-3d2a-4c1b-9e8f-7a6b5c4d3e2f']);
    expect((await stat(path.join(root, to))).mode & 0o777).toBe(0o600);
    expect((await readAll(await s.get(to))).toString()).toBe('abc');
  });

  it('creates blob files 0600 and directories 0700, whatever the umask', async () => {
    const previous = process.umask(0);
    try {
      await storage.put(KEY, Readable.from([Buffer.from('secret bytes')]));
      await storage.copy(KEY, 'acme/1c5e7f8c-3d2a-4c1b-9e8f-7a6b5c4d3e2f/original');
    } finally {
      process.umask(previous);
    }
    const mode = async (p: string) => (await stat(path.join(root, p))).mode & 0o777;
    expect(await mode(KEY)).toBe(0o600);
    expect(await mode('acme/1c5e7f8c-3d2a-4c1b-9e8f-7a6b5c4d3e2f/original')).toBe(0o600);
    for (const dir of ['.', '.tmp', 'acme', 'acme/0b5e7f8c-3d2a-4c1b-9e8f-7a6b5c4d3e2f', 'acme/1c5e7f8c-3d2a-4c1b-9e8f-7a6b5c4d3e2f']) {
      expect([dir, await mode(dir)]).toEqual([dir, 0o700]);
    }
  });
});
