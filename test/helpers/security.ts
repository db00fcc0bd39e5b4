import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, expect } from 'vitest';
import { STORAGE_DRIVER, type TestApp } from './app.js';
import { storedKeys } from './stored.js';

/** Every file under `<dataDir>/blobs/<tenant>`, recursively, as relative paths (empty when the directory is absent). */
export async function storedFiles(app: TestApp, tenant: string): Promise<string[]> {
  const root = path.join(app.dataDir, 'blobs', tenant);
  const out: string[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(path.join(dir, e.name), r);
      else out.push(r);
    }
  };
  await walk(root, '');
  return out.sort();
}

/** Files left in the local-disk driver's staging directory (an interrupted write must not leave one). */
export async function stagedFiles(app: TestApp): Promise<string[]> {
  try {
    return await readdir(path.join(app.dataDir, 'blobs', '.tmp'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

export interface RowCounts {
  media: number;
  attachments: number;
  roles: number;
}

/** Rows of a tenant in every media table (deleted-but-not-purged media rows included). */
export async function rowCounts(app: TestApp, tenant: string): Promise<RowCounts> {
  const p = app.services.db.prisma;
  const [media, attachments, roles] = await Promise.all([
    p.media.count({ where: { tenantId: tenant } }),
    p.mediaAttachment.count({ where: { tenantId: tenant } }),
    p.mediaRoleAssignment.count({ where: { tenantId: tenant } }),
  ]);
  return { media, attachments, roles };
}

/**
 * No row and no object for the tenant on the run's storage driver; on local disk
 * also no file under `<dataDir>/blobs/<tenant>` and nothing half-written in the
 * staging directory.
 */
export async function expectNothingStored(app: TestApp, tenant: string): Promise<void> {
  expect(await rowCounts(app, tenant)).toEqual({ media: 0, attachments: 0, roles: 0 });
  expect(await storedKeys(app, tenant)).toEqual([]);
  if (STORAGE_DRIVER === 'local') {
    expect(await storedFiles(app, tenant)).toEqual([]);
    expect(await stagedFiles(app)).toEqual([]);
  }
}

/** Rejects when `p` does not settle within `ms` (a hung request fails with a clear message, not the test timeout). */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
    }),
  ]);
}

/**
 * The server still answers promptly after a refused request: a plain GraphQL
 * query and a small multipart upload (the upload parser is not wedged) both
 * complete within a few seconds.
 */
export async function expectResponsive(app: TestApp, token: string): Promise<void> {
  const res = await within(
    fetch(`${app.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query: '{ mediaPolicies { entityType } }' }),
      signal: AbortSignal.timeout(5000),
    }).then(async (r) => ({ status: r.status, body: (await r.json()) as { data?: { mediaPolicies: { entityType: string }[] } } })),
    5000,
    'follow-up query',
  );
  expect(res.status).toBe(200);
  expect(res.body.data?.mediaPolicies.map((p) => p.entityType)).toContain('property');
}

export interface RawResponse {
  status: number;
  headers: Headers;
  text: string;
  json: unknown;
}

/** POSTs a hand-made body to /graphql and reads the whole answer, within `ms`. */
export async function rawPost(app: TestApp, body: string | Uint8Array, headers: Record<string, string>, ms = 10_000): Promise<RawResponse> {
  return within(
    (async () => {
      const res = await fetch(`${app.url}/graphql`, { method: 'POST', headers, body, signal: AbortSignal.timeout(ms) });
      const text = await res.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      return { status: res.status, headers: res.headers, text, json };
    })(),
    ms,
    'raw POST /graphql',
  );
}

/**
 * A multipart/form-data body written byte by byte, so tests control what a
 * FormData would normalise (file names with quotes, CR/LF, RFC 5987 names,
 * missing parts, broken JSON).
 */
export function multipartBody(
  parts: ({ name: string; value: string } | { name: string; filename?: string; filenameStar?: string; type: string; data: Buffer })[],
  boundary = `----sec${Math.random().toString(16).slice(2)}`,
): { body: Buffer; contentType: string } {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    chunks.push(Buffer.from(`--${boundary}\r\n`));
    if ('value' in p) {
      chunks.push(Buffer.from(`Content-Disposition: form-data; name="${p.name}"\r\n\r\n${p.value}\r\n`, 'utf8'));
    } else {
      const fn = [p.filename !== undefined ? `; filename="${p.filename}"` : '', p.filenameStar !== undefined ? `; filename*=${p.filenameStar}` : ''].join('');
      chunks.push(Buffer.from(`Content-Disposition: form-data; name="${p.name}"${fn}\r\nContent-Type: ${p.type}\r\n\r\n`, 'utf8'));
      chunks.push(p.data);
      chunks.push(Buffer.from('\r\n'));
    }
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}

/**
 * Errors that nothing handled while the tests run (each one would end a real
 * process; vitest only reports them): registers its own hooks, for every test
 * (`each`, emptied before each) or for the whole file or block (`all`).
 */
export function recordUncaught(scope: 'each' | 'all' = 'each'): unknown[] {
  const errors: unknown[] = [];
  const record = (e: unknown) => void errors.push(e);
  const start = () => {
    if (scope === 'each') errors.length = 0;
    process.on('uncaughtException', record);
    process.on('unhandledRejection', record);
  };
  const stop = () => {
    process.off('uncaughtException', record);
    process.off('unhandledRejection', record);
  };
  if (scope === 'each') {
    beforeEach(start);
    afterEach(stop);
  } else {
    beforeAll(start);
    afterAll(stop);
  }
  return errors;
}
