// A PostgreSQL restart under a running service: every pooled connection is
// terminated (57P01 "terminating connection due to administrator command"). The
// service must not crash on the pool's error events; /readyz answers 503 while
// the database is down, and the service recovers by itself once it is back.
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MediaDocument, UploadDocument } from '../generated/graphql.js';
import { newTenant, startTestApp, type TestApp } from '../helpers/app.js';
import { gql, ok } from '../helpers/client.js';
import { pdf } from '../helpers/files.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../../src/db/embedded.js';
import { migrate } from '../../src/db/migrate.js';

let dir: string;
let port: number;
let pg: EmbeddedDatabase | undefined;
let app: TestApp | undefined;

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const p = (server.address() as net.AddressInfo).port;
  await new Promise((r) => server.close(r));
  return p;
}

const startPg = () => startEmbeddedPostgres({ dir: path.join(dir, 'pg'), database: 'media', port });

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'media-db-restart-'));
  port = await freePort();
  pg = await startPg();
  await migrate(pg.url);
  app = await startTestApp({ env: { DATABASE_URL: pg.url, SWEEP_INTERVAL_SECONDS: '0' } });
}, 120_000);

afterAll(async () => {
  await app?.close();
  await pg?.stop();
  await rm(dir, { recursive: true, force: true });
});

const ready = async () => (await fetch(`${app!.url}/readyz`)).status;

describe('a PostgreSQL restart under a running service', () => {
  it('answers 503 while the database is down, never crashes, and recovers by itself', { timeout: 120_000 }, async () => {
    const tenant = newTenant();
    const token = await app!.token(tenant);
    const before = (await ok(app!.url, UploadDocument, { input: { file: pdf(1), entity: { type: 'company', id: 'c' } } }, { token })).upload;
    // Every pool connection is busy-then-idle: the pool holds several when the server goes.
    await Promise.all(Array.from({ length: 6 }, () => ok(app!.url, MediaDocument, { id: before.id }, { token })));
    expect(await ready()).toBe(200);

    await pg!.stop();
    // The pool's idle connections were terminated under it: the process is still here and answers.
    expect(await ready()).toBe(503);
    const down = await gql(app!.url, MediaDocument, { id: before.id }, { token });
    expect(down.errors?.length).toBeGreaterThan(0);
    expect(app!.logs.some((l) => l['msg'] === 'database: an idle connection failed; it is replaced on next use')).toBe(true);

    pg = await startPg();
    // Back without a restart of the service: readiness, reads and writes.
    await expect.poll(ready, { timeout: 30_000, interval: 250 }).toBe(200);
    expect((await ok(app!.url, MediaDocument, { id: before.id }, { token })).media?.id).toBe(before.id);
    const after = (await ok(app!.url, UploadDocument, { input: { file: pdf(2), entity: { type: 'company', id: 'c' } } }, { token })).upload;
    expect(after.id).not.toBe(before.id);
  });
});
