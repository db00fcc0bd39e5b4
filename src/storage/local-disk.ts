import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat, access, readdir, link, copyFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { errors } from '../errors/index.js';
import type { ByteRange, CopyOptions, ListedObject, ObjectInfo, Storage } from './storage.js';

const KEY_RE = /^[a-z0-9][a-z0-9/_-]*$/i;

/**
 * Blobs as files under `root`. A put writes to `root/.tmp/` and renames into place
 * when the stream ended cleanly, so a failed or interrupted write never leaves a
 * partial object under its key.
 */
export class LocalDiskStorage implements Storage {
  readonly driver = 'local' as const;
  private readonly tmpDir: string;

  constructor(private readonly root: string) {
    this.tmpDir = path.join(root, '.tmp');
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
    await mkdir(this.tmpDir, { recursive: true });
    // An errored or destroyed body emits nothing more: piping it would wait forever.
    if (failure !== undefined || body.errored || body.destroyed) {
      body.resume();
      throw failure ?? body.errored ?? new Error(`the body of ${key} was destroyed before it could be stored`);
    }
    const tmp = path.join(this.tmpDir, randomUUID());
    let size = 0;
    body.on('data', (c: Buffer) => {
      size += c.length;
    });
    // A large buffer lets chunks pile up while one write is in flight, so they go
    // out together (writev) instead of one thread-pool round trip per 64 KiB chunk.
    const out = createWriteStream(tmp, { flags: 'wx', highWaterMark: 4 * 1024 * 1024 });
    try {
      await pipeline(body, out);
      await mkdir(path.dirname(target), { recursive: true });
      await rename(tmp, target);
    } catch (e) {
      // pipeline can reject while the file is still being opened: wait for the
      // write stream to close, or the file appears after it was removed.
      if (!out.closed) await new Promise<void>((resolve) => out.once('close', () => resolve()));
      await rm(tmp, { force: true });
      throw e;
    }
    return { size };
  }

  async get(key: string, range?: ByteRange): Promise<Readable> {
    const file = this.pathOf(key);
    try {
      await access(file);
    } catch {
      throw errors.objectNotFound(key);
    }
    // 1 MiB reads: fewer, larger chunks through the decrypt and hash stages.
    return createReadStream(file, { highWaterMark: 1024 * 1024, ...(range ? { start: range.start, end: range.end } : {}) });
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
    await mkdir(path.dirname(target), { recursive: true });
    const hardLink = () => link(source, target);
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
        await mkdir(this.tmpDir, { recursive: true });
        await copyFile(source, tmp);
        await rename(tmp, target);
      } catch (err) {
        await rm(tmp, { force: true });
        throw (err as NodeJS.ErrnoException).code === 'ENOENT' ? errors.objectNotFound(from) : err;
      }
    }
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
    await mkdir(this.tmpDir, { recursive: true });
    await access(this.root);
  }
}
