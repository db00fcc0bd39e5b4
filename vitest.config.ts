import { defineConfig } from 'vitest/config';

// Unit tests once; the integration suite twice, once per storage driver
// (local disk, and S3 on the s3rver that the global setup starts on loopback).
export default defineConfig({
  test: {
    globalSetup: ['test/helpers/global-setup.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      { extends: true, test: { name: 'local', include: ['test/integration/**/*.test.ts'], env: { TEST_STORAGE: 'local' } } },
      { extends: true, test: { name: 's3', include: ['test/integration/**/*.test.ts'], env: { TEST_STORAGE: 's3' } } },
    ],
  },
});
