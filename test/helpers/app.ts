import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { startApp, type RunningApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createDatabase, type Database } from '../../src/db/prisma.js';
import { createLogger } from '../../src/logger.js';
import { createStorage } from '../../src/storage/index.js';
import { mintToken, ALL_USER_SCOPES } from '../../src/auth/tokens.js';
import type { Storage } from '../../src/storage/index.js';
import { S3Storage } from '../../src/storage/s3.js';
import { S3RVER_CREDENTIALS, TEST_BUCKET } from './s3rver.js';

/** The storage driver under test: the vitest project sets TEST_STORAGE (local | s3). */
export const STORAGE_DRIVER: 'local' | 's3' = process.env['TEST_STORAGE'] === 's3' ? 's3' : 'local';

/** The driver of this run, as the app builds it from configuration (S3: the run's s3rver). */
export function testStorage(dataDir: string): Storage {
  if (STORAGE_DRIVER === 'local') return createStorage(loadConfig({ DATA_DIR: dataDir }));
  return new S3Storage({
    bucket: TEST_BUCKET,
    endpoint: inject('s3Endpoint'),
    forcePathStyle: true,
    checksums: 'WHEN_REQUIRED',
    credentials: S3RVER_CREDENTIALS,
  });
}

export const TEST_JWT_SECRET = 'test-secret-that-is-long-enough-for-hs256-0123456789';

export interface TestApp extends RunningApp {
  readonly db: Database;
  readonly dataDir: string;
  /** Every log line the app wrote, parsed (tests look for events such as INTEGRITY_ERROR). */
  readonly logs: Record<string, unknown>[];
  /** A user token for a tenant (all scopes unless given). */
  token(tenant: string, options?: { scopes?: string[]; expiresIn?: string | number; subject?: string }): Promise<string>;
  close(): Promise<void>;
}

/** A fresh tenant name per call, so tests never see each other's rows. */
export function newTenant(prefix = 't'): string {
  return `${prefix}${randomBytes(6).toString('hex')}`.slice(0, 16);
}

/**
 * Starts the real app on an ephemeral port against the run's embedded
 * PostgreSQL, with its own DATA_DIR, on the storage driver of the vitest project
 * (local disk under DATA_DIR, or the run's s3rver). `storage` replaces the driver
 * for fault-injection tests (it gets the DATA_DIR and the run's real driver).
 */
export async function startTestApp(
  options: {
    storage?: (dataDir: string, real: Storage) => Storage;
    env?: Record<string, string>;
    /** Reuse a DATA_DIR (and so local blobs and generated secrets) of an app that was closed with keepData. */
    dataDir?: string;
  } = {},
): Promise<TestApp & { close(options?: { keepData?: boolean }): Promise<void> }> {
  const dataDir = options.dataDir ?? (await mkdtemp(path.join(os.tmpdir(), 'media-api-app-')));
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    DATABASE_URL: inject('databaseUrl'),
    JWT_SECRET: TEST_JWT_SECRET,
    LOG_LEVEL: process.env['TEST_LOG_LEVEL'] ?? 'silent',
    ...options.env,
  });
  const logs: Record<string, unknown>[] = [];
  const logger = createLogger(process.env['TEST_LOG_LEVEL'] ?? 'info', {
    write: (line: string) => {
      logs.push(JSON.parse(line) as Record<string, unknown>);
      if (process.env['TEST_LOG_LEVEL']) process.stderr.write(line);
    },
  });
  const db = createDatabase({ url: config.databaseUrl!, poolSize: 10 });
  const real = testStorage(dataDir);
  let app: RunningApp;
  try {
    app = await startApp({ config, logger, db, storage: options.storage ? options.storage(dataDir, real) : real });
  } catch (e) {
    await db.close();
    if (!options.dataDir) await rm(dataDir, { recursive: true, force: true });
    throw e;
  }
  return {
    ...app,
    db,
    dataDir,
    logs,
    token: (tenant, o = {}) =>
      mintToken(TEST_JWT_SECRET, { tenant, scopes: o.scopes ?? ALL_USER_SCOPES, ...(o.expiresIn !== undefined ? { expiresIn: o.expiresIn } : {}), ...(o.subject ? { subject: o.subject } : {}) }),
    close: async (o: { keepData?: boolean } = {}) => {
      await app.stop();
      await db.close();
      if (!o.keepData) await rm(dataDir, { recursive: true, force: true });
    },
  };
}
