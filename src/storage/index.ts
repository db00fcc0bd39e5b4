import path from 'node:path';
import type { Config } from '../config.js';
import { LocalDiskStorage } from './local-disk.js';
import type { Storage } from './storage.js';

export type { Storage, ByteRange, ObjectInfo } from './storage.js';
export { objectKeys } from './storage.js';

/** Picks the storage driver from configuration. */
export function createStorage(config: Config): Storage {
  if (config.s3) {
    // The S3 driver lands with the S3 issue; refusing beats silently writing to disk.
    throw new Error('S3_BUCKET is set but the S3 storage driver is not available in this version');
  }
  return new LocalDiskStorage(path.join(config.dataDir, 'blobs'));
}
