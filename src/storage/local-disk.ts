import * as fsp from 'node:fs/promises';
import { rm, stat, access, readdir } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { errors } from '../errors/index.js';
import { ObjectChanged, type ByteRange, type CopyOptions, type GetOptions, type ListedObject, type ObjectInfo, type Storage } from './storage.js';

const KEY_RE = /^[a-z0-9][a-z0-9/_-]*$/i;

/** Blob files are readable by the service's user only, and so are the directories that hold them. */
const FILE_MODE = 0o600;
const DIR_MODE = 0o700;

/**
 * The file system calls that make a write durable. Tests replace them to see
 * the order of writes, syncs and renames; the service uses node:fs/promises.
 */
export interface LocalDiskFs {
  open: typeof fsp.open;
  mkdir: typeof fsp.mkdir;
  rename: typeof fsp.rename;
  link: typeof fsp.link;
  copyFile: typeof fsp.copyFile;
}

const nodeFs: LocalDiskFs = { open: fsp.open, mkdir: fsp.mkdir, rename: fsp.rename, link: fsp.link, copyFile: fsp.copyFile };

/**
 * A writable stream onto an open file handle that leaves the handle open when it
 * ends (fs.WriteStream on a FileHandle keeps a reference that only closing the
 * stream drops, and that close takes the handle with it): the caller syncs and
 * closes it. A large buffer lets chunks pile up while one write is in flight, so
 * they go out together (writev) instead of one thread-pool round trip per 64 KiB chunk.
 */
function handleWriter(fh: fsp.FileHandle): Writable {
  return new Writable({
    highWaterMark: 4 * 1024 * 1024,
    writev(chunks, done) {
      const write = async () => {
        let buffers = chunks.map((c) => c.chunk as Buffer);
        // writev may write less than asked (rare on files): send the rest.
        for (;;) {
          const { bytesWritten } = await fh.writev(buffers);
          let n = bytesWritten;
          while (buffers.length > 0 && n >= buffers[0]!.length) n -= buffers.shift()!.length;
          if (buffers.length === 0) return;
          buffers[0] = buffers[0]!.subarray(n);
        }
      };
      write().then(() => done(), done);
    },
  });
}

/**
 * Blobs as files under `root`. A put writes to `root/.tmp/` and renames into place
 * when the stream ended cleanly, so a failed or interrupted write never leaves a
 * partial object under its key. A put (and a copy) resolves only once the data is
 * on disk: the file is fsynced before its rename, and its directory (and any
 * directory the put created) after it, so a row committed after a put never
 * points at a file that a power cut takes away. Files are created 0600,
 * directories 0700.
 */
export class LocalDiskStorage implements Storage {
  readonly driver = 'local' as const;
  private readonly tmpDir: string;
  private readonly fs: LocalDiskFs;

  constructor(
    private readonly root: string,
    options: { fs?: Partial<LocalDiskFs> } = {},
  ) {
    this.tmpDir = path.join(root, '.tmp');
    this.fs = { ...nodeFs, ...options.fs };
  }

  /**
   * mkdir -p with mode 0700; returns the directories whose entries must be synced
   * for the new ones to survive a crash: the parent of every directory it created.
   */
  private async makeDir(dir: string): Promise<string[]> {
    const first = await this.fs.mkdir(dir, { recursive: true, mode: DIR_MODE });
    if (first === undefined) return [];
    const parents: string[] = [];
    for (let d = dir; ; d = path.dirname(d)) {
      parents.push(path.dirname(d));
      if (d === first || path.dirname(d) === d) break;
    }
    return parents;
  }

  /** fsync of a directory, so that the entries renamed or linked into it are on disk. */
  private async syncDir(dir: string): Promise<void> {
    // Windows cannot open a directory for fsync; its file system orders metadata itself.
    if (process.platform === 'win32') return;
    const fh = await this.fs.open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  /** fsync of the target's directory, then of the directories above it that this write created. */
  private async syncDirs(target: string, created: string[]): Promise<void> {
    const dirs = [path.dirname(target), ...created.filter((d) => d !== path.dirname(target))];
    for (const d of dirs) await this.syncDir(d);
  }

  private pathOf(key: string): string {
    if (!KEY_RE.test(key) || key.split('/').some((p) => p === '..' || p === '.' || p === '')) {
      throw new Error(`invalid storage key: ${key}`);
    }
    return path.join(this.root, key);
  }

  async put(key: string, body: Readable): Promise<ObjectInfo> {
    // The body can fail while we still await mkdir (a size limit upstream, the client
    // gone): listen before the first await, so that its error becomes this call's
    // rejection and never an unhandled 'error' event. The listener stays for the
    // body's life: a later error must not crash the process either.
    let failure: unknown;
    body.on('error', (e) => (failure ??= e));
    const target = this.pathOf(key);
    const bail = () => {
      // An errored or destroyed body emits nothing more: piping it would wait forever.
      if (failure !== undefined || body.errored || body.destroyed) {
        body.resume();
        throw failure ?? body.errored ?? new Error(`the body of ${key} was destroyed before it could be stored`);
      }
    };
    await this.makeDir(this.tmpDir);
    bail();
    const tmp = path.join(this.tmpDir, randomUUID());
    const fh = await this.fs.open(tmp, 'wx', FILE_MODE);
    let size = 0;
    try {
      bail();
      body.on('data', (c: Buffer) => {
        size += c.length;
      });
      await pipeline(body, handleWriter(fh));
      await fh.sync();
      await fh.close();
      const created = await this.makeDir(path.dirname(target));
      await this.fs.rename(tmp, target);
      await this.syncDirs(target, created);
    } catch (e) {
      await fh.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw e;
    }
    return { size };
  }

  /**
   * The file is opened before get resolves, and the stream reads that open file:
   * a put or delete of the key afterwards (a rename over it, an unlink) never
   * changes the bytes of a read under way, and a missing file is NOT_FOUND here,
   * not a stream error later. With a pin the open file's identity is recorded, or
   * compared with the recorded one (ObjectChanged when another file is there now).
   */
  async get(key: string, range?: ByteRange, options: GetOptions = {}): Promise<Readable> {
    const file = this.pathOf(key);
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(file, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw errors.objectNotFound(key);
      throw e;
    }
    if (options.pin) {
      try {
        const s = await fh.stat({ bigint: true });
        const version = `${s.dev}:${s.ino}:${s.size}:${s.ctimeNs}:${s.mtimeNs}`;
        if (options.pin.version === undefined) options.pin.version = version;
        else if (options.pin.version !== version) throw new ObjectChanged(`${key} was replaced since it was first read`);
      } catch (e) {
        await fh.close().catch(() => undefined);
        throw e;
      }
    }
    // 1 MiB reads: fewer, larger chunks through the decrypt and hash stages. The stream closes the file when it ends or is destroyed.
    return fh.createReadStream({ highWaterMark: 1024 * 1024, ...(range ? { start: range.start, end: range.end } : {}) });
  }

  async head(key: string): Promise<ObjectInfo | null> {
    try {
      const s = await stat(this.pathOf(key));
      return { size: s.size };
    } catch {
      return null;
    }
  }

  /**
   * A hard link: atomic, no bytes copied, and safe because nothing here writes a
   * file in place (put writes a new file and renames it over the key), so later
   * puts to `from` leave `to` untouched. Where the file system has no hard links, a
   * copy written under .tmp and renamed into place. The SSE-C options mean nothing
   * here (local disk content is encrypted by the application, if at all).
   */
  async copy(from: string, to: string, _options?: CopyOptions): Promise<void> {
    const source = this.pathOf(from);
    const target = this.pathOf(to);
    const created = await this.makeDir(path.dirname(target));
    const hardLink = () => this.fs.link(source, target);
    try {
      await hardLink().catch(async (e: NodeJS.ErrnoException) => {
        if (e.code !== 'EEXIST') throw e;
        await rm(target, { force: true });
        await hardLink();
      });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw errors.objectNotFound(from);
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EXDEV' && code !== 'EMLINK') throw e;
      const tmp = path.join(this.tmpDir, randomUUID());
      try {
        await this.makeDir(this.tmpDir);
        await this.fs.copyFile(source, tmp);
        // copyFile gives the copy its source's mode: a file from before 0600 must not widen it.
        const fh = await this.fs.open(tmp, 'r+');
        try {
          await fh.chmod(FILE_MODE);
          await fh.sync();
        } finally {
          await fh.close();
        }
        await this.fs.rename(tmp, target);
      } catch (err) {
        await rm(tmp, { force: true });
        throw (err as NodeJS.ErrnoException).code === 'ENOENT' ? errors.objectNotFound(from) : err;
      }
    }
    // The new name (link or renamed copy) is on disk before the row that points at it commits.
    await this.syncDirs(target, created);
  }

  async delete(key: string): Promise<void> {
    await rm(this.pathOf(key), { force: true });
  }

  async deletePrefix(prefix: string): Promise<void> {
    const trimmed = prefix.replace(/\/+$/, '');
    await rm(this.pathOf(trimmed), { recursive: true, force: true });
  }

  async list(prefix: string): Promise<ListedObject[]> {
    const out: ListedObject[] = [];
    const walk = async (dir: string, rel: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        if (rel === '' && e.name === '.tmp') continue;
        const key = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) {
          if (key.startsWith(prefix) || prefix.startsWith(key + '/')) await walk(path.join(dir, e.name), key);
        } else if (key.startsWith(prefix)) {
          const s = await stat(path.join(dir, e.name)).catch(() => null);
          if (s) out.push({ key, size: s.size, lastModified: s.mtime });
        }
      }
    };
    await walk(this.root, '');
    return out.sort((a, b) => a.key.localeCompare(b.key));
  }

  /** Pages of at most 1000 objects, walking directories in name order (a group's objects come together). */
  async *listPages(prefix: string): AsyncIterable<ListedObject[]> {
    let page: ListedObject[] = [];
    async function* walk(dir: string, rel: string): AsyncGenerator<ListedObject> {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const e of entries) {
        if (rel === '' && e.name === '.tmp') continue;
        const key = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) {
          if (key.startsWith(prefix) || prefix.startsWith(key + '/')) yield* walk(path.join(dir, e.name), key);
        } else if (key.startsWith(prefix)) {
          const s = await stat(path.join(dir, e.name)).catch(() => null);
          if (s) yield { key, size: s.size, lastModified: s.mtime };
        }
      }
    }
    for await (const o of walk(this.root, '')) {
      page.push(o);
      if (page.length >= 1000) {
        yield page;
        page = [];
      }
    }
    if (page.length > 0) yield page;
  }

  /** Object times are this machine's file times. */
  async now(): Promise<Date> {
    return new Date();
  }

  async sweepTemporary(olderThan: Date): Promise<number> {
    let removed = 0;
    for (const name of await readdir(this.tmpDir).catch(() => [] as string[])) {
      const file = path.join(this.tmpDir, name);
      const s = await stat(file).catch(() => null);
      if (s && s.mtime < olderThan) {
        await rm(file, { force: true });
        removed++;
      }
    }
    return removed;
  }

  async check(): Promise<void> {
    await this.makeDir(this.tmpDir);
    await access(this.root);
  }
}
