import path from 'node:path';
import type { Config } from '../config.js';
import { LocalDiskStorage } from './local-disk.js';
import { S3Storage } from './s3.js';
import type { Storage } from './storage.js';

export type { Storage, ByteRange, ObjectInfo, ListedObject, CopyOptions } from './storage.js';
export { objectKeys, variantKey } from './storage.js';

/** Picks the storage driver from configuration. */
export function createStorage(config: Config): Storage {
  if (config.s3) return new S3Storage(config.s3);
  return new LocalDiskStorage(localBlobRoot(config));
}

/** Where the local disk driver keeps blobs (resumable uploads keep their files beside them, for hard links). */
export function localBlobRoot(config: Pick<Config, 'dataDir'>): string {
  return path.join(config.dataDir, 'blobs');
}
