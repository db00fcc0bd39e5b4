import { createRequire } from 'node:module';
import { configDefaults, defineConfig } from 'vitest/config';

// Node loads graphql's CommonJS build (it has no "exports" map), and so do Apollo
// and type-graphql; vite would hand our own files the ESM build ("module" field),
// giving two graphql-js copies in tests that production never has.
const graphqlCjs = createRequire(import.meta.url).resolve('graphql');

// Unit tests once; the integration suite twice, once per storage driver
// (local disk, and S3 on the s3rver that the global setup starts on loopback).
// Files named s3-*.test.ts test the S3 driver itself and run in the S3 passes only.
// With TEST_RGW=1 (npm run test:rgw) a third pass runs the integration suite on a
// single-node Ceph RGW that the global setup starts (test/helpers/rgw.ts); files
// named rgw-*.test.ts need a store that behaves like production and run there only;
// files named local-*.test.ts test the embedded default (local disk, embedded
// PostgreSQL of the service's own) and run in the local pass only.
const rgw = process.env['TEST_RGW'] === '1';
export default defineConfig({
  resolve: { alias: [{ find: /^graphql$/, replacement: graphqlCjs }] },
  test: {
    globalSetup: ['test/helpers/global-setup.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      {
        extends: true,
        test: { name: 'local', include: ['test/integration/**/*.test.ts'], exclude: [...configDefaults.exclude, 'test/integration/**/s3-*.test.ts', 'test/integration/**/rgw-*.test.ts'], env: { TEST_STORAGE: 'local' } },
      },
      {
        extends: true,
        test: { name: 's3', include: ['test/integration/**/*.test.ts'], exclude: [...configDefaults.exclude, 'test/integration/**/rgw-*.test.ts', 'test/integration/**/local-*.test.ts'], env: { TEST_STORAGE: 's3' } },
      },
      ...(rgw ? [{ extends: true as const, test: { name: 'rgw', include: ['test/integration/**/*.test.ts'], exclude: [...configDefaults.exclude, 'test/integration/**/local-*.test.ts'], env: { TEST_STORAGE: 's3', TEST_S3: 'rgw' } } }] : []),
    ],
  },
});
