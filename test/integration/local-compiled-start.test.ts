// The production start: the service compiled by `npm run build` (tsc with
// tsconfig.build.json) and run by plain `node` with NODE_ENV=production, as
// `npm run start:prod` runs it. No tsx: decorator metadata comes from tsc, and the
// paths the service finds relative to its own files (prisma/migrations, the
// GraphiQL assets, the generated Prisma client) must hold for the compiled files.
// The build goes to a fresh directory beside dist/ (same depth, so relative paths
// resolve as they do from dist/; inside the package, so Node finds node_modules
// and package.json's "type": "module").
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'graphql';
import { UploadDocument } from '../generated/graphql.js';
import { ALL_USER_SCOPES, mintToken } from '../../src/auth/tokens.js';
import { TEST_JWT_SECRET } from '../helpers/app.js';
import { gql, ok } from '../helpers/client.js';
import { jpeg, pdf, sha256Hex } from '../helpers/files.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const dirs: string[] = [];
let outDir: string;
let child: ChildProcess | undefined;

beforeAll(async () => {
  outDir = await mkdtemp(path.join(ROOT, '.build-test-'));
  dirs.push(outDir);
  await promisify(execFile)(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--outDir', outDir], { cwd: ROOT });
}, 120_000);

afterAll(async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('the compiled service (npm run build, NODE_ENV=production node dist/main.js)', () => {
  it('starts on its embedded PostgreSQL, stores and serves an upload, and stops cleanly on SIGTERM', async () => {
    expect(existsSync(path.join(outDir, 'main.js'))).toBe(true);
    expect(existsSync(path.join(outDir, 'generated/prisma/client.js'))).toBe(true);
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'media-api-compiled-'));
    dirs.push(dataDir);
    // The defaults of `npm run start:prod`: no DATABASE_URL (embedded PostgreSQL), local disk.
    // EMBEDDED_PG_PORT=0: a free port (the fixed default would collide across parallel runs).
    const proc = spawn(process.execPath, [path.join(outDir, 'main.js')], {
      cwd: ROOT,
      env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? os.tmpdir(), NODE_ENV: 'production', PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, EMBEDDED_PG_PORT: '0', JWT_SECRET: TEST_JWT_SECRET, LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = proc;
    let out = '';
    proc.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    proc.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, sig) => resolve({ code, signal: sig })));
    const deadline = Date.now() + 90_000;
    while (!out.includes('media API listening')) {
      if (proc.exitCode !== null) throw new Error(`the compiled service exited before listening:\n${out}`);
      if (Date.now() > deadline) throw new Error(`the compiled service did not start:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(out).toContain('"migration":"20261123000000_init"');
    const url = /"url":"(http:[^"]+)\/graphql"/.exec(out)![1]!;
    expect((await fetch(`${url}/readyz`)).status).toBe(200);

    // GraphiQL's page and its assets, found from the compiled src/http/graphiql.js.
    const page = await fetch(`${url}/graphql`, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('/graphiql/assets/graphiql.min.js');
    expect((await fetch(`${url}/graphiql/assets/graphiql.min.css`)).status).toBe(200);

    // NODE_ENV=production took effect: introspection is off.
    const token = await mintToken(TEST_JWT_SECRET, { tenant: 'compiled', scopes: ALL_USER_SCOPES, subject: 'ops' });
    const intro = await gql(url, parse('{ __schema { queryType { name } } }'), {}, { token });
    expect(intro.errors?.length).toBeGreaterThan(0);

    // An image (sharp makes its variants) and a document, each read back byte for byte.
    const photo = await jpeg(1200, 900);
    const { upload } = await ok(url, UploadDocument, { input: { file: photo, entity: { type: 'property', id: 'p-1' }, tags: ['front'], role: 'PRIMARY_PHOTO' } }, { token });
    expect(upload).toMatchObject({ mediaType: 'image/jpeg', width: 1200, height: 900, fileSize: photo.size, checksum: await sha256Hex(photo), tags: ['front'] });
    expect(upload.variants.map((v) => v.name)).toEqual(['THUMB', 'MEDIUM']);
    const signed = await fetch(upload.url!);
    expect(signed.status).toBe(200);
    expect(await sha256Hex(Buffer.from(await signed.arrayBuffer()))).toBe(upload.checksum);
    const doc = pdf(2);
    const { upload: stored } = await ok(url, UploadDocument, { input: { file: doc, entity: { type: 'company', id: 'c-1' } } }, { token });
    const content = await fetch(`${url}${stored.contentPath}`, { headers: { authorization: `Bearer ${token}` } });
    expect(content.status).toBe(200);
    expect(content.headers.get('content-type')).toBe('application/pdf');
    expect(await sha256Hex(Buffer.from(await content.arrayBuffer()))).toBe(await sha256Hex(doc));

    proc.kill('SIGTERM');
    const killer = setTimeout(() => proc.kill('SIGKILL'), 25_000);
    const end = await exited;
    clearTimeout(killer);
    expect(end, out).toEqual({ code: 0, signal: null });
    expect(out).toContain('"msg":"shutting down"');
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
    // The embedded PostgreSQL was stopped cleanly (it removes its pid file).
    expect(existsSync(path.join(dataDir, 'pg', 'postmaster.pid'))).toBe(false);
  }, 180_000);
});
