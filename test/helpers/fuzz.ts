import fc from 'fast-check';
import { expect } from 'vitest';
import type { TestApp } from './app.js';
import { STORAGE_DRIVER } from './app.js';
import { stagedFiles } from './security.js';
import type { RawExchange } from './raw-http.js';
import { errorCode } from './raw-http.js';

/**
 * Settings of the fuzz runs: FUZZ_RUNS cases per property (default small enough for
 * CI), FUZZ_SEED to replay a failure (fast-check prints the seed and path of the
 * failing case). `npm run test:fuzz` runs the fuzz files with more cases.
 */
export function fuzzParameters(defaultRuns: number): fc.Parameters<unknown> {
  const runs = Number(process.env['FUZZ_RUNS'] ?? defaultRuns);
  const seed = process.env['FUZZ_SEED'];
  const path = process.env['FUZZ_PATH'];
  return {
    numRuns: Number.isFinite(runs) && runs > 0 ? runs : defaultRuns,
    ...(seed !== undefined ? { seed: Number(seed) } : {}),
    ...(path !== undefined ? { path } : {}),
    endOnFailure: true,
  };
}

/** Codes that are the client's: a fuzzed request may get these and nothing else. */
export const CLIENT_CODES = new Set(['BAD_USER_INPUT', 'BAD_REQUEST', 'GRAPHQL_PARSE_FAILED', 'GRAPHQL_VALIDATION_FAILED', 'UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'CONFLICT', 'PAYLOAD_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE', 'TOO_MANY_REQUESTS']);

/**
 * What every fuzzed request must get: an answer (not a dropped connection) with a
 * status below 500, and only client codes in its errors (HTTP body or GraphQL errors).
 */
export function expectClientAnswer(r: RawExchange, what: string): void {
  expect(r.ended, `${what}: the server answered`).toBe('response');
  expect(r.status ?? 0, `${what}: ${r.text.slice(0, 400)}`).toBeLessThan(500);
  if (r.status !== null && r.status >= 400) {
    expect(CLIENT_CODES.has(errorCode(r) ?? ''), `${what}: a client code in ${r.text.slice(0, 400)}`).toBe(true);
  }
  const gqlErrors = (r.json as { errors?: { extensions?: { code?: string } }[] } | undefined)?.errors ?? [];
  for (const e of gqlErrors) expect(CLIENT_CODES.has(e.extensions?.code ?? ''), `${what}: ${r.text.slice(0, 400)}`).toBe(true);
}

/** The process is healthy: nothing unhandled, /healthz within a second, no half-written file left. */
export async function expectHealthy(app: TestApp, uncaught: readonly unknown[]): Promise<void> {
  expect(uncaught.map(String)).toEqual([]);
  const r = await fetch(`${app.url}/healthz`, { signal: AbortSignal.timeout(1000) });
  expect(r.status).toBe(200);
  if (STORAGE_DRIVER === 'local') expect(await stagedFiles(app)).toEqual([]);
}
