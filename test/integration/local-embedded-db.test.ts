// Processes that share one DATA_DIR with the embedded default (issue 13): a second
// `npm start` must refuse without touching the running cluster (it used to delete
// postmaster.pid, and the running PostgreSQL shut itself down about 60 s later, when it
// rechecks that file); maintenance commands connect to the running cluster; the token
// command reads DATA_DIR as the service does. Real processes, as `npm start` runs them.
// The local pass only: this is about the embedded cluster, not the storage driver.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parsePostmasterPid, startEmbeddedPostgres } from '../../src/db/embedded.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempDir(prefix: string): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), prefix));
  dirs.push(d);
  return d;
}

function baseEnv(dataDir: string): Record<string, string> {
  // No JWT_SECRET: the development secret under DATA_DIR, as `npm start` has it.
  // EMBEDDED_PG_PORT=0: a free port, so that parallel test files and other runs never collide.
  return { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? os.tmpdir(), DATA_DIR: dataDir, EMBEDDED_PG_PORT: '0', LOG_LEVEL: 'info' };
}

interface Run {
  child: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function run(script: string, args: string[], env: Record<string, string>): Run {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return { child, output: () => out, exited };
}

async function finished(r: Run, timeoutMs = 60_000): Promise<{ code: number | null; out: string }> {
  const killer = setTimeout(() => r.child.kill('SIGKILL'), timeoutMs);
  const { code } = await r.exited;
  clearTimeout(killer);
  return { code, out: r.output() };
}

function pidFile(dataDir: string) {
  return parsePostmasterPid(readFileSync(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8'));
}

describe('a second process on the DATA_DIR of a running service', () => {
  let dataDir: string;
  let service: Run;
  let url: string;
  let token: string;
  let postmaster: ReturnType<typeof pidFile>;

  beforeAll(async () => {
    dataDir = await tempDir('media-api-embedded-');
    service = run('src/main.ts', [], { ...baseEnv(dataDir), PORT: '0', HOST: '127.0.0.1' });
    const deadline = Date.now() + 90_000;
    while (!service.output().includes('media API listening')) {
      if (service.child.exitCode !== null) throw new Error(`the service exited before listening:\n${service.output()}`);
      if (Date.now() > deadline) throw new Error(`the service did not start:\n${service.output()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    url = /"url":"(http:[^"]+)\/graphql"/.exec(service.output())![1]!;
    postmaster = pidFile(dataDir);
    expect(postmaster?.port).toBeGreaterThan(0);
  }, 120_000);

  afterAll(async () => {
    if (!service || service.child.exitCode !== null) return;
    service.child.kill('SIGTERM');
    await finished(service, 30_000);
  }, 40_000);

  /** /readyz answers 200 and a GraphQL query that reads the database succeeds. */
  async function healthy(): Promise<void> {
    const ready = await fetch(`${url}/readyz`);
    expect(ready.status, await ready.clone().text()).toBe(200);
    const res = await fetch(`${url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query: '{ media(id: "00000000-0000-4000-8000-000000000000") { id } }' }),
    });
    const body = (await res.json()) as { data?: unknown; errors?: unknown };
    expect(body).toEqual({ data: { media: null } });
  }

  it('the banner prints the token command with this DATA_DIR, and the token it mints is accepted', async () => {
    expect(service.output()).toContain(`Development token:  DATA_DIR=${dataDir} npm run token -- --tenant demo`);
    const { code, out } = await finished(run('src/cli/token.ts', ['--tenant', 'demo'], baseEnv(dataDir)));
    expect(code, out).toBe(0);
    token = out.trim();
    await healthy();
  }, 60_000);

  it('the token command refuses a DATA_DIR no service has used, rather than mint a token nobody accepts', async () => {
    const other = await tempDir('media-api-embedded-other-');
    const { code, out } = await finished(run('src/cli/token.ts', ['--tenant', 'demo'], baseEnv(other)));
    expect(code).toBe(2);
    expect(out.trim().split('\n')).toHaveLength(1);
    expect(out).toContain(`no development secret at ${path.join(other, 'secrets', 'jwt-secret')}`);
  }, 60_000);

  let secondAt = 0;
  it('a second start exits non-zero with one line naming the running cluster, and leaves it alone', async () => {
    secondAt = Date.now();
    const { code, out } = await finished(run('src/main.ts', [], { ...baseEnv(dataDir), PORT: '0', HOST: '127.0.0.1' }));
    expect(code, out).not.toBe(0);
    expect(out).toContain(`refusing to start: the embedded PostgreSQL in ${path.join(dataDir, 'pg')} is already running (pid ${postmaster!.pid}, port ${postmaster!.port}`);
    expect(out).not.toMatch(/\n\s+at /); // no stack trace
    expect(pidFile(dataDir)).toEqual(postmaster);
    await healthy();
  }, 60_000);

  it('npm run sweep connects to the running cluster, succeeds, and the service stays healthy', async () => {
    const { code, out } = await finished(run('src/cli/sweep.ts', ['--grace-seconds', '60'], { ...baseEnv(dataDir), LOG_LEVEL: 'warn' }));
    expect(code, out).toBe(0);
    const report = JSON.parse(out.trim().split('\n').at(-1)!) as Record<string, unknown>;
    expect(report).toHaveProperty('directUploadsRemoved');
    expect(pidFile(dataDir)).toEqual(postmaster);
    await healthy();
  }, 60_000);

  // PostgreSQL rechecks postmaster.pid once a minute: the harm the old start did showed after about 60 s.
  it('the first service is still healthy 90 s after the second start', async () => {
    expect(secondAt).toBeGreaterThan(0);
    while (Date.now() - secondAt < 90_000) {
      await healthy();
      await new Promise((r) => setTimeout(r, 5_000));
    }
    await healthy();
    expect(pidFile(dataDir)).toEqual(postmaster);
    expect(service.child.exitCode).toBeNull();
  }, 150_000);
});

describe('starting the embedded cluster', () => {
  let dataDir: string;
  beforeAll(async () => {
    dataDir = await tempDir('media-api-embedded-lib-');
    const db = await startEmbeddedPostgres({ dir: path.join(dataDir, 'pg'), database: 'media' });
    await db.stop();
  }, 60_000);

  async function fakePidFile(pid: number): Promise<void> {
    await mkdir(path.join(dataDir, 'pg'), { recursive: true });
    await writeFile(path.join(dataDir, 'pg', 'postmaster.pid'), `${pid}\n${path.join(dataDir, 'pg')}\n1700000000\n54329\n\n127.0.0.1\n  1234567    8\nready   \n`);
  }

  async function startsOver(): Promise<void> {
    const db = await startEmbeddedPostgres({ dir: path.join(dataDir, 'pg'), database: 'media' });
    try {
      const now = parsePostmasterPid(await readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8'));
      expect(now?.pid).toBe(db.pid);
      expect(now?.port).toBe(db.port);
      const pg = (await import('pg')).default;
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      expect((await c.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      await c.end();
    } finally {
      await db.stop();
    }
  }

  it('a postmaster.pid of a process that is gone is replaced, and the start succeeds', async () => {
    const gone = spawn(process.execPath, ['-e', '']);
    await new Promise((r) => gone.once('exit', r));
    await fakePidFile(gone.pid!);
    await startsOver();
  }, 60_000);

  it('a postmaster.pid whose pid now belongs to another program is removed, and the start succeeds', async () => {
    // PostgreSQL itself refuses to start while the pid in the file is alive.
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    try {
      await fakePidFile(other.pid!);
      await startsOver();
    } finally {
      other.kill('SIGKILL');
    }
  }, 60_000);

  it('a fixed port another program listens on fails the start with a message naming EMBEDDED_PG_PORT', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      await expect(startEmbeddedPostgres({ dir: path.join(dataDir, 'pg'), database: 'media', port })).rejects.toThrow(
        `EMBEDDED_PG_PORT: port ${port} on 127.0.0.1 is in use by another program`,
      );
    } finally {
      blocker.close();
    }
  }, 60_000);

  it('a cluster created with the old fixed password gets the one of DATA_DIR/secrets at its next start', async () => {
    const db = await startEmbeddedPostgres({ dir: path.join(dataDir, 'pg'), database: 'media' });
    const pg = (await import('pg')).default;
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    await c.query(`ALTER ROLE postgres PASSWORD 'media-embedded'`);
    await c.end();
    await db.stop();
    await startsOver();
  }, 60_000);
});
