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
import { S3Storage, type S3StorageOptions } from '../../src/storage/s3.js';

/** The storage driver under test: the vitest project sets TEST_STORAGE (local | s3). */
export const STORAGE_DRIVER: 'local' | 's3' = process.env['TEST_STORAGE'] === 's3' ? 's3' : 'local';

/**
 * Which S3 store the S3 passes use: s3rver (npm test), or Ceph RGW (npm run
 * test:rgw), the reference store: it enforces SSE-C and validates Content-MD5.
 */
export const S3_STORE: 's3rver' | 'rgw' = process.env['TEST_S3'] === 'rgw' ? 'rgw' : 's3rver';

/** Request checksums of the run's S3 client (TEST_S3_CHECKSUMS; s3rver mishandles the SDK's defaults). */
export const S3_CHECKSUMS: 'WHEN_REQUIRED' | 'WHEN_SUPPORTED' =
  process.env['TEST_S3_CHECKSUMS'] === 'when_supported' ? 'WHEN_SUPPORTED' : process.env['TEST_S3_CHECKSUMS'] === 'when_required' || S3_STORE === 's3rver' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED';

/** The run's S3 store (s3rver or RGW, per S3_STORE). */
export function testS3Store(): { endpoint: string; bucket: string; credentials: { accessKeyId: string; secretAccessKey: string }; cephConf?: string } {
  if (S3_STORE === 'rgw') {
    const rgw = inject('rgw');
    if (!rgw) throw new Error('TEST_S3=rgw needs the run to start Ceph RGW: run it with npm run test:rgw');
    return rgw;
  }
  return inject('s3rver');
}

/** S3 driver options for the run's store, as S3_* configuration would give them. */
export function testS3Options(overrides: Partial<S3StorageOptions> = {}): S3StorageOptions {
  const store = testS3Store();
  return { bucket: store.bucket, endpoint: store.endpoint, forcePathStyle: true, checksums: S3_CHECKSUMS, credentials: store.credentials, ...overrides };
}

/**
 * RGW runs over plain http on loopback: the service uses SSE-C there only with
 * S3_SSE_C_OVER_HTTP=loopback, which every app of the rgw project gets (a test
 * overrides it with S3_SSE_C_OVER_HTTP: '' to see the default). s3rver does not
 * enforce SSE-C, so the setting would change nothing there.
 */
export const SSE_C_OVER_HTTP_ENV: Record<string, string> = S3_STORE === 'rgw' ? { S3_SSE_C_OVER_HTTP: 'loopback' } : {};

/** The service's environment (S3_* and AWS credentials) for the run's S3 store, for tests that start src/main.ts. */
export function testS3Env(): Record<string, string> {
  const store = testS3Store();
  return {
    ...SSE_C_OVER_HTTP_ENV,
    // One test instance per DATA_DIR: its generated secrets are its own (tests that need shared ones set them).
    DEV_ALLOW_GENERATED_SECRETS: 'true',
    S3_BUCKET: store.bucket,
    S3_ENDPOINT: store.endpoint,
    S3_FORCE_PATH_STYLE: 'true',
    AWS_ACCESS_KEY_ID: store.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: store.credentials.secretAccessKey,
    AWS_REGION: 'us-east-1',
  };
}

/** The driver of this run, as the app builds it from configuration (S3: the run's s3rver or RGW). */
export function testStorage(dataDir: string): Storage {
  if (STORAGE_DRIVER === 'local') return createStorage(loadConfig({ DATA_DIR: dataDir }));
  return new S3Storage(testS3Options());
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
    DEV_ALLOW_GENERATED_SECRETS: 'true',
    LOG_LEVEL: process.env['TEST_LOG_LEVEL'] ?? 'silent',
    ...(STORAGE_DRIVER === 's3' ? SSE_C_OVER_HTTP_ENV : {}),
    ...options.env,
  });
  const logs: Record<string, unknown>[] = [];
  const logger = createLogger(process.env['TEST_LOG_LEVEL'] ?? 'info', {
    write: (line: string) => {
      logs.push(JSON.parse(line) as Record<string, unknown>);
      if (process.env['TEST_LOG_LEVEL']) process.stderr.write(line);
    },
  });
  const db = createDatabase({ url: config.databaseUrl!, poolSize: 10, logger });
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
