// Resident memory of the two ways to start the service, side by side in one run:
// `npm start` (node --import tsx src/main.ts, compiling TypeScript in the process)
// and `npm run start:prod` (NODE_ENV=production node dist/main.js, the output of
// `npm run build`). Both on their defaults: embedded PostgreSQL, blobs on local disk.
// For each: VmRSS of the service's node process (not its PostgreSQL children) at idle
// (/readyz answers, then --idle seconds), and its peak while a 1 GiB file streams in
// through GraphQL multipart (sampled every 25 ms), with the upload's throughput.
//
//   npm run bench:rss [-- --size 1024 --runs 3 --idle 5 --no-build]
//
// A start through the tsx CLI (what `npm start` ran before 2026-12-03) runs the
// service in a child node process and stays alive beside it; such a wrapper's own
// RSS is shown apart. npm's process, which `npm start` and `npm run start:prod` both
// keep alive, is in neither.
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, readlink, realpath, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { mintToken } from '../src/auth/tokens.js';
import { freePort, median, MiB, mp4File, multipartUpload, ROOT, rssOf, sampleRss, settle, sha256File, startChild, waitFor, type Child } from './lib.js';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '1024' },
    runs: { type: 'string', default: '3' },
    idle: { type: 'string', default: '5' },
    'no-build': { type: 'boolean', default: false },
    dir: { type: 'string' },
  },
});
const size = Number(values.size) * MiB;
const runs = Number(values.runs);
const idleSeconds = Number(values.idle);
const JWT_SECRET = 'bench-secret-bench-secret-bench-secret-0123';
const TENANT = 'bench';
const UPLOAD = `mutation($input: UploadInput!) { upload(input: $input) { id fileSize checksum } }`;
const DELETE = `mutation($id: ID!) { deleteMedia(id: $id) }`;

interface Mode {
  name: string;
  command: string;
  args: string[];
  env: Record<string, string>;
}

const MODES: Mode[] = [
  { name: 'tsx (npm start)', command: 'node --import tsx src/main.ts', args: ['--import', 'tsx', 'src/main.ts'], env: {} },
  { name: 'compiled (npm run start:prod)', command: 'NODE_ENV=production node dist/main.js', args: ['dist/main.js'], env: { NODE_ENV: 'production' } },
];

interface Running {
  mode: Mode;
  child: Child;
  /** The process that runs the service: the tsx CLI's child, or the child itself. */
  pid: number;
  /** The tsx CLI's own process, when there is one. */
  wrapperPid?: number;
  base: string;
  token: string;
  idleRss: number;
  wrapperRss?: number;
  peaks: number[];
  seconds: number[];
}

/**
 * The node processes whose parent is `pid` (PostgreSQL is the service's child, not
 * the wrapper's). Told by their executable: Node 24 names its main thread
 * "MainThread", so the command name in /proc/<pid>/stat is not always "node".
 */
async function nodeChildrenOf(pid: number): Promise<number[]> {
  const node = await realpath(process.execPath);
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const m = /^\d+ \(.*\) \S+ (\d+)/s.exec(stat);
    if (!m || Number(m[1]) !== pid) continue;
    if ((await readlink(`/proc/${entry}/exe`).catch(() => '')) === node) found.push(Number(entry));
  }
  return found;
}

async function start(mode: Mode, work: string): Promise<Running> {
  const port = await freePort();
  const env: Record<string, string> = {
    PORT: String(port),
    HOST: '127.0.0.1',
    DATA_DIR: path.join(work, `data-${MODES.indexOf(mode)}`),
    EMBEDDED_PG_PORT: String(await freePort()),
    JWT_SECRET,
    LOG_LEVEL: 'warn',
    MEDIA_KIND_LIMITS_MB: `VIDEO=${Math.ceil(size / MiB) + 1}`,
    ...mode.env,
  };
  const child = startChild(mode.args, env, mode.name);
  const base = `http://127.0.0.1:${port}`;
  await waitFor(`${base}/readyz`, 120_000);
  let pid = child.proc.pid!;
  let wrapperPid: number | undefined;
  const kids = await nodeChildrenOf(pid);
  if (kids.length === 1) {
    wrapperPid = pid;
    pid = kids[0]!;
  } else if (mode.args[0]!.includes('tsx')) {
    throw new Error(`${mode.name}: expected the tsx CLI to run the service in one child node process, found ${kids.length}`);
  }
  return { mode, child, pid, ...(wrapperPid !== undefined ? { wrapperPid } : {}), base, token: await mintToken(JWT_SECRET, { tenant: TENANT, expiresIn: '2h' }), idleRss: 0, peaks: [], seconds: [] };
}

async function upload(r: Running, file: string, sha: string): Promise<void> {
  await settle();
  const sampler = sampleRss(r.pid);
  const t0 = performance.now();
  const json = (await multipartUpload(`${r.base}/graphql`, r.token, file, size, UPLOAD, { type: 'property', id: 'bench' })) as { data?: { upload: { id: string; fileSize: number; checksum: string } }; errors?: unknown[] };
  r.seconds.push((performance.now() - t0) / 1000);
  r.peaks.push(await sampler.stop());
  if (!json.data) throw new Error(`${r.mode.name}: upload failed: ${JSON.stringify(json.errors)}`);
  if (json.data.upload.fileSize !== size || json.data.upload.checksum !== sha) throw new Error(`${r.mode.name}: API reported ${json.data.upload.fileSize} bytes / ${json.data.upload.checksum}`);
  const del = await fetch(`${r.base}/graphql`, { method: 'POST', headers: { authorization: `Bearer ${r.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ query: DELETE, variables: { id: json.data.upload.id } }) });
  if (!del.ok) throw new Error(`${r.mode.name}: delete answered ${del.status}`);
}

const mib = (bytes: number) => `${(bytes / MiB).toFixed(0)} MiB`;

async function main(): Promise<void> {
  if (!values['no-build']) {
    console.log('building dist/ (npm run build)…');
    execFileSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
  }
  const work = values.dir ?? (await mkdtemp(path.join(os.tmpdir(), 'media-bench-rss-')));
  const file = await mp4File(work, size);
  const sha = await sha256File(file);
  const running: Running[] = [];
  try {
    // Started one after the other (two embedded PostgreSQL start-ups at once would
    // only slow both), then left idle together.
    for (const mode of MODES) running.push(await start(mode, work));
    await new Promise((r) => setTimeout(r, idleSeconds * 1000));
    for (const r of running) {
      const samples: number[] = [];
      for (let i = 0; i < 5; i++) {
        samples.push(await rssOf(r.pid));
        await new Promise((res) => setTimeout(res, 200));
      }
      r.idleRss = median(samples);
      if (r.wrapperPid !== undefined) r.wrapperRss = await rssOf(r.wrapperPid);
    }
    // Uploads alternate between the two, one at a time, the order swapped each round.
    for (let i = 0; i < runs; i++) {
      for (const r of i % 2 ? [...running].reverse() : running) await upload(r, file, sha);
    }
  } finally {
    for (const r of running) await r.child.stop();
    if (!values.dir) await rm(work, { recursive: true, force: true });
  }

  console.log(`\nService RSS (VmRSS of its node process, PostgreSQL excluded), Node ${process.version}, ${size / MiB} MiB upload through GraphQL multipart to local disk, ${runs} runs each`);
  console.log('start mode                    | command                               | idle RSS | peak RSS during upload | upload MB/s (median) | tsx wrapper');
  console.log('------------------------------|---------------------------------------|----------|------------------------|----------------------|------------');
  for (const r of running) {
    const mbps = size / 1e6 / median(r.seconds);
    console.log(
      `${r.mode.name.padEnd(29)} | ${r.mode.command.padEnd(37)} | ${mib(r.idleRss).padStart(8)} | ${mib(Math.max(...r.peaks)).padStart(22)} | ${mbps.toFixed(0).padStart(20)} | ${r.wrapperRss !== undefined ? `+${mib(r.wrapperRss)}` : '-'}`,
    );
  }
  const [tsx, compiled] = running as [Running, Running];
  const ratio = (a: number, b: number) => (a / b).toFixed(2);
  console.log(
    `\ncompiled / tsx: idle RSS ${ratio(compiled.idleRss, tsx.idleRss)}, peak RSS ${ratio(Math.max(...compiled.peaks), Math.max(...tsx.peaks))}, ` +
      `upload throughput ${ratio(median(tsx.seconds), median(compiled.seconds))}; ` +
      `with the tsx CLI's own process counted, idle ${ratio(compiled.idleRss, tsx.idleRss + (tsx.wrapperRss ?? 0))}`,
  );
  console.log(
    JSON.stringify({
      bench: 'rss',
      node: process.version,
      sizeMiB: size / MiB,
      runs,
      modes: running.map((r) => ({ mode: r.mode.name, idleRssMiB: r.idleRss / MiB, wrapperRssMiB: r.wrapperRss !== undefined ? r.wrapperRss / MiB : undefined, peakRssMiB: r.peaks.map((p) => p / MiB), seconds: r.seconds })),
    }),
  );
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
