import { chmod, mkdir, open, rm, type FileHandle } from 'node:fs/promises';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { FileStore } from '@tus/file-store';
import type { S3Store } from '@tus/s3-store';
import { ERRORS, type DataStore, type KvStore, type Upload } from '@tus/utils';
import { errors } from '../../errors/index.js';
import type { Logger } from '../../logger.js';
import type { Storage } from '../../storage/index.js';
import type { S3Storage } from '../../storage/s3.js';

import { TUS_PREFIX, tusIdOfKey } from './tus-keys.js';
import { giveBack } from './body-blocks.js';
import { MemoryPartsS3Store } from './s3-memory-parts.js';

export { TUS_PREFIX };

/** S3 part size of resumable uploads (tus's default; at least S3's 5 MiB minimum). */
const S3_PART_SIZE = 8 * 1024 * 1024;
/** Parts gathered or in flight at once per instance (each one buffer of S3_PART_SIZE: 64 MiB at most). */
const S3_PARTS_IN_FLIGHT = 8;
/** Upload records an instance keeps in memory (the S3 store re-reads a record it dropped). */
const S3_RECORDS_CACHED = 10_000;

/** The tus data store of the configured driver, with what the service needs beyond tus's interface. */
export interface TusBackend {
  /** The @tus/file-store or @tus/s3-store instance; it takes storeId(id) as ids. */
  readonly store: DataStore;
  storeId(id: string): string;
  /** Storage key of the upload's bytes: one object once they are complete. */
  dataKey(id: string): string;
  /** Makes the bytes of a complete upload the object at dataKey (S3: completes the multipart upload a crash left open). */
  assemble(id: string, length: number): Promise<void>;
  /** Removes everything the upload stored (bytes, parts, the store's record); idempotent. */
  purge(id: string): Promise<void>;
  /** The upload id of a storage key under TUS_PREFIX (the sweep lists them), or undefined. */
  idOfKey(key: string): string | undefined;
}

export function createTusBackend(storage: Storage, o: { blobRoot: string; logger: Logger }): TusBackend {
  return storage.driver === 's3' ? s3Backend(storage) : localBackend(o.blobRoot);
}

/**
 * @tus/file-store whose files are readable by the service's user only, like every
 * blob, and whose writer gives the body's blocks back once their bytes are in the
 * file (body-blocks.ts). One write in flight at a time, as FileStore's own
 * fs.WriteStream does; what was written before a failure stays (tus resumes from the
 * file's size).
 */
class PrivateFileStore extends FileStore {
  override async create(file: Upload): Promise<Upload> {
    const out = await super.create(file);
    await chmod(path.join(this.directory, file.id), 0o600);
    return out;
  }

  override async write(readable: Readable, id: string, offset: number): Promise<number> {
    let fh: FileHandle;
    try {
      fh = await open(path.join(this.directory, id), 'r+');
    } catch {
      throw ERRORS.FILE_NOT_FOUND;
    }
    let position = offset;
    try {
      for await (const chunk of readable) {
        const buf = chunk as Buffer;
        for (let done = 0; done < buf.length; ) {
          const { bytesWritten } = await fh.write(buf, done, buf.length - done, position + done);
          done += bytesWritten;
        }
        position += buf.length;
        giveBack(buf);
      }
    } catch {
      throw ERRORS.FILE_WRITE_ERROR;
    } finally {
      await fh.close().catch(() => undefined);
    }
    return position;
  }
}

function localBackend(blobRoot: string): TusBackend {
  const directory = path.join(blobRoot, TUS_PREFIX.slice(0, -1));
  // Before FileStore's constructor, which creates it world-writable (0777) in a
  // callback that would throw out of the event loop on failure.
  mkdirSync(directory, { recursive: true, mode: 0o700 });
  const store = new PrivateFileStore({ directory });
  return {
    store,
    storeId: (id) => id,
    dataKey: (id) => `${TUS_PREFIX}${id}`,
    // The file store writes without syncing: the bytes are on disk before a media row points at them.
    assemble: async (id) => {
      const fh = await open(path.join(directory, id), 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    },
    purge: async (id) => {
      await mkdir(directory, { recursive: true, mode: 0o700 });
      await rm(path.join(directory, id), { force: true });
      await rm(path.join(directory, `${id}.json`), { force: true });
    },
    idOfKey: tusIdOfKey,
  };
}

/** A KvStore in memory that forgets its oldest entries beyond `max` (S3Store's default cache never forgets). */
class BoundedKvStore<T> implements KvStore<T> {
  private readonly map = new Map<string, T>();
  constructor(private readonly max: number) {}
  async get(key: string): Promise<T | undefined> {
    return this.map.get(key);
  }
  async set(key: string, value: T): Promise<void> {
    this.map.delete(key);
    this.map.set(key, value);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value!);
  }
  async delete(key: string): Promise<void> {
    this.map.delete(key);
  }
}

/**
 * The S3 store is made on first use, with the client configuration of the S3
 * driver (S3Storage.clientConfig): a storage without one (a test's stand-in) starts
 * the service all the same, and only its resumable uploads are unavailable.
 */
function s3Backend(storage: Storage): TusBackend {
  const cache = new BoundedKvStore<never>(S3_RECORDS_CACHED);
  let made: S3Store | undefined;
  const s3Store = (): S3Store => {
    if (made) return made;
    const clientConfig = (storage as Partial<Pick<S3Storage, 'clientConfig'>>).clientConfig?.();
    if (!clientConfig) throw errors.storageUnavailable(new Error('resumable uploads need the S3 driver\'s client configuration (S3Storage.clientConfig)'));
    made = new MemoryPartsS3Store({
      s3ClientConfig: clientConfig,
      partSize: S3_PART_SIZE,
      partsInFlight: S3_PARTS_IN_FLIGHT,
      // Expiry is the service's (its rows and the sweep), not bucket lifecycle rules on tags.
      useTags: false,
      cache: cache as KvStore<never>,
    });
    return made;
  };
  const storeId = (id: string) => `${TUS_PREFIX}${id}`;
  return {
    get store() {
      return s3Store();
    },
    storeId,
    dataKey: storeId,
    assemble: async (id, length) => {
      if (await storage.head(storeId(id))) return;
      // All parts are there but the multipart upload was not completed (the writer stopped
      // in between): a write of nothing at the end completes it.
      await s3Store().write(Readable.from([]), storeId(id), length);
    },
    purge: async (id) => {
      const key = storeId(id);
      // Aborts the multipart upload its record names and deletes the object and the record;
      // a record already gone (completed, purged, or never written) leaves the rest to the deletes below.
      await s3Store().remove(key).catch((e: unknown) => {
        if (e !== ERRORS.FILE_NOT_FOUND && (e as { name?: string }).name !== 'NoSuchUpload' && (e as { name?: string }).name !== 'NoSuchKey') throw e;
      });
      await cache.delete(key);
      // The store's remove() leaves the incomplete part (`.part`) behind, and keeps everything when its record is gone.
      for (const k of [key, `${key}.info`, `${key}.part`]) await storage.delete(k);
    },
    idOfKey: tusIdOfKey,
  };
}
