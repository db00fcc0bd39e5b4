// The command-line tools as an operator runs them: --help, bad arguments, S3
// without credentials, and the progress output of keys:rotate and sweep when
// stderr is not a terminal. Nothing here starts the embedded default (every run
// has DATABASE_URL, or ends before it would need a database).
import { afterAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UploadDocument } from '../generated/graphql.js';
import { newTenant, startTestApp, STORAGE_DRIVER, S3_CHECKSUMS, testS3Env, TEST_JWT_SECRET, type TestApp } from '../helpers/app.js';
import { ok } from '../helpers/client.js';
import { pdfBytes } from '../helpers/files.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const STACK_FRAME = /^\s+at /m;

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(script: string, args: string[], env: Record<string, string | undefined>, timeoutMs = 90_000): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    });
  });
}

const tmp: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'media-cli-'));
  tmp.push(d);
  return d;
}
const apps: TestApp[] = [];
afterAll(async () => {
  for (const a of apps) await a.close().catch(() => undefined);
  for (const d of tmp) await rm(d, { recursive: true, force: true });
});

/** An environment that fails configuration if anything reads it, and would reach no database. */
function brokenEnv(dataDir: string): Record<string, string> {
  return {
    PATH: process.env['PATH'] ?? '',
    HOME: dataDir,
    DATA_DIR: dataDir,
    PORT: 'not-a-port',
    DATABASE_URL: 'postgresql://127.0.0.1:1/nothing',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  };
}

const COMMANDS = [
  ['src/main.ts', 'npm start'],
  ['src/cli/token.ts', 'npm run token'],
  ['src/cli/sweep.ts', 'npm run sweep'],
  ['src/cli/rotate-keys.ts', 'npm run keys:rotate'],
  ['bench/search.ts', 'npm run bench:search'],
  ['bench/reads.ts', 'npm run bench:reads'],
  ['bench/tenant-isolation.ts', 'npm run bench:isolation'],
  ['bench/upload.ts', 'npm run bench:upload'],
  ['bench/images.ts', 'npm run bench:images'],
  ['bench/image-bombs.ts', 'npm run bench:image-bombs'],
  ['bench/serve.ts', 'npm run bench:serve'],
  ['bench/query-limits.ts', 'npx tsx bench/query-limits.ts'],
  ['bench/assets-explain.ts', 'npx tsx bench/assets-explain.ts'],
] as const;

describe('--help and bad arguments', () => {
  it('every command prints its usage for --help and exits 0, reading no configuration and starting nothing', async () => {
    const dir = await tempDir();
    // Two at a time: the machine's cores are shared.
    const results: Result[] = [];
    for (let i = 0; i < COMMANDS.length; i += 2) {
      results.push(...(await Promise.all(COMMANDS.slice(i, i + 2).map(([script], j) => run(script, [(i + j) % 2 ? '-h' : '--help'], brokenEnv(dir))))));
    }
    COMMANDS.forEach(([script, usage], i) => {
      const r = results[i]!;
      expect({ script, code: r.code, stderr: r.stderr }).toEqual({ script, code: 0, stderr: '' });
      expect(r.stdout, script).toContain(`Usage: ${usage}`);
      expect(r.stdout, script).toContain('--help');
    });
    expect(results[0]!.stdout).toContain('DATABASE_URL');
    expect(results[2]!.stdout).toContain('--grace-seconds N');
    expect(results[2]!.stdout).toContain('PROGRESS_INTERVAL_MS');
  }, 180_000);

  it('a bad argument is one line on stderr with the usage, exit code 2, no stack', async () => {
    const dir = await tempDir();
    const cases: [string, string[], RegExp][] = [
      ['src/cli/token.ts', ['--tenant', 'Demo_1'], /^--tenant "Demo_1" is not a tenant id: 3 to 16 lower-case letters and digits.*\(usage: npm run token/],
      ['src/cli/token.ts', ['--scope', 'media:reed'], /unknown scope "media:reed"/],
      ['src/cli/token.ts', ['--tenent', 'demo'], /^Unknown option '--tenent'.*\(usage: npm run token/],
      ['src/cli/sweep.ts', ['--grace-seconds', '5'], /^--grace-seconds must be an integer of at least 60/],
      ['src/cli/sweep.ts', ['--tenant', 'Demo_1'], /^--tenant "Demo_1" is not a tenant id/],
      ['src/cli/rotate-keys.ts', ['stray'], /^Unexpected argument 'stray'.*\(usage: npm run keys:rotate/],
      ['src/main.ts', ['--port', '4000'], /^Unknown option '--port'.*\(usage: npm start/],
      ['bench/search.ts', ['--rowz', '10'], /^Unknown option '--rowz'.*\(usage: npm run bench:search/],
    ];
    for (let i = 0; i < cases.length; i += 2) {
      const results = await Promise.all(cases.slice(i, i + 2).map(([script, args]) => run(script, args, brokenEnv(dir))));
      results.forEach((r, j) => {
        const [script, args, message] = cases[i + j]!;
        const what = `${script} ${args.join(' ')}`;
        expect({ what, code: r.code, stdout: r.stdout }).toEqual({ what, code: 2, stdout: '' });
        expect(r.stderr.trimEnd().split('\n'), what).toHaveLength(1);
        expect(r.stderr, what).toMatch(message);
        expect(r.stderr, what).not.toMatch(STACK_FRAME);
      });
    }
  }, 180_000);
});

describe('S3 without credentials', () => {
  it('the service and the commands end with one line naming the variables, before anything starts', async () => {
    const home = await tempDir();
    const env = {
      PATH: process.env['PATH'] ?? '',
      // No ~/.aws, no AWS_* variables, no instance metadata to ask.
      HOME: home,
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      DATA_DIR: path.join(home, 'data'),
      DATABASE_URL: 'postgresql://127.0.0.1:1/nothing',
      DEV_ALLOW_GENERATED_SECRETS: 'true',
      S3_BUCKET: 'media',
      S3_ENDPOINT: 'http://127.0.0.1:1',
      S3_FORCE_PATH_STYLE: 'true',
      PORT: '0',
    };
    const results = await Promise.all([run('src/main.ts', [], env), run('src/cli/sweep.ts', [], env)]);
    for (const [i, r] of results.entries()) {
      const out = `${r.stdout}${r.stderr}`.trimEnd();
      expect(r.code, out).toBe(2);
      expect(out.split('\n'), out).toHaveLength(1);
      expect(out, `${i}`).toMatch(/^S3 storage \(S3_BUCKET=media\) has no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE/);
      expect(out).not.toMatch(STACK_FRAME);
      expect(out).not.toContain('CredentialsProviderError');
    }
  }, 120_000);
});

describe('progress of the maintenance commands (stderr not a terminal)', () => {
  it('keys:rotate logs done/total and the rate every PROGRESS_INTERVAL_MS and a summary; sweep logs its summary', async () => {
    const OLD = `old:${randomBytes(32).toString('base64')}`;
    const NEW = `new:${randomBytes(32).toString('base64')}`;
    const tenant = newTenant();
    const a = await startTestApp({ env: { MEDIA_KEYS: OLD } });
    const token = await a.token(tenant);
    for (const id of ['l1', 'l2', 'l3']) {
      const m = (await ok(a.url, UploadDocument, { input: { file: new File([pdfBytes(1)], `${id}.pdf`), entity: { type: 'lease', id } } }, { token })).upload;
      expect(m.encryptionKeyId).toBe('old');
    }
    await a.close({ keepData: true });
    tmp.push(a.dataDir);

    const env: Record<string, string | undefined> = {
      PATH: process.env['PATH'],
      HOME: process.env['HOME'],
      DATABASE_URL: inject('databaseUrl'),
      DATA_DIR: a.dataDir,
      MEDIA_KEYS: `${NEW},${OLD}`,
      JWT_SECRET: TEST_JWT_SECRET,
      LOG_LEVEL: 'info',
      PROGRESS_INTERVAL_MS: '100',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      ...(STORAGE_DRIVER === 's3' ? { ...testS3Env(), S3_CHECKSUMS: S3_CHECKSUMS.toLowerCase() } : {}),
    };
    const lines = (r: Result) =>
      r.stdout
        .split('\n')
        .filter((l) => l.startsWith('{"level"'))
        .map((l) => JSON.parse(l) as { msg: string; progress?: { done: number; total?: number; ratePerSecond: number; elapsedSeconds: number } } & Record<string, unknown>);

    // The old objects outlive their rows' switch by 3 s: the run lasts that long at least, and logs meanwhile.
    const rotation = await run('src/cli/rotate-keys.ts', ['--tenant', tenant], env);
    expect(rotation.code, rotation.stderr + rotation.stdout).toBe(0);
    expect(rotation.stderr).toBe('');
    const logged = lines(rotation);
    const progress = logged.filter((l) => l.progress && l.msg.startsWith('key rotation: '));
    expect(progress.length, rotation.stdout).toBeGreaterThanOrEqual(2);
    expect(progress.at(-1)!.progress).toMatchObject({ done: 3, total: 3 });
    expect(progress.at(-1)!.msg).toMatch(/^key rotation: 3\/3 \(100 %\), [\d.]+\/s, \d+ s elapsed$/);
    const summary = logged.find((l) => l.msg.startsWith('key rotation: finished in '));
    expect(summary, rotation.stdout).toMatchObject({ msg: expect.stringMatching(/: 3 rotated to new, 0 failed$/), activeKey: 'new', rotated: 3, failed: 0 });
    // The report is the line that is not a log line (pino writes asynchronously: its lines may come after it).
    const reportOf = (r: Result) => JSON.parse(r.stdout.split('\n').filter((l) => l.startsWith('{') && !l.startsWith('{"level"')).at(-1)!) as Record<string, unknown>;
    const report = reportOf(rotation);
    expect(report).toEqual({ activeKey: 'new', rotated: 3, failed: [] });

    // The run shares one database: another test file's sweep may hold the lock (the command then says it skipped).
    let sweep = await run('src/cli/sweep.ts', ['--tenant', tenant, '--grace-seconds', '60'], env);
    for (let i = 0; i < 20 && sweep.stdout.includes('another sweep holds the lock'); i++) {
      await new Promise((r) => setTimeout(r, 250));
      sweep = await run('src/cli/sweep.ts', ['--tenant', tenant, '--grace-seconds', '60'], env);
    }
    expect(sweep.code, sweep.stderr + sweep.stdout).toBe(0);
    const done = lines(sweep).find((l) => l.msg.startsWith('sweep: finished in '));
    expect(done, sweep.stdout).toMatchObject({ sweep: { deletedMediaPurged: 0 } });
    expect(reportOf(sweep)).toMatchObject({ deletedMediaPurged: 0, orphanGroupsDeleted: 0 });
  }, 180_000);
});
