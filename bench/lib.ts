// Shared pieces of the benchmarks: child processes for the service and s3rver,
// RSS sampling, test files, medians.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { open, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { once } from 'node:events';
import http from 'node:http';
import type { ParseArgsConfig } from 'node:util';
import { freePort } from '../src/db/embedded.js';
import { parseCliArgs, type CommandHelp } from '../src/cli/args.js';
import { progressRenderer, type ProgressRenderer } from '../src/cli/progress.js';
import { formatDuration } from '../src/util/progress.js';
import { startRgw } from '../test/helpers/rgw.js';

export const ROOT = path.resolve(import.meta.dirname, '..');
export const MiB = 1024 * 1024;

/**
 * A benchmark's arguments: `--help` prints the usage and exits 0 before anything
 * starts; a bad or unknown option is one line on stderr and exit code 2.
 */
export function benchArgs<const O extends NonNullable<ParseArgsConfig['options']>>(options: O, help: CommandHelp) {
  return parseCliArgs(options, help);
}

/**
 * Progress of a benchmark's slow set-up (seeding, uploads, rounds) on stderr, so
 * that the results on stdout stay clean: one line redrawn on a terminal, a line
 * every 10 s otherwise.
 */
/** `--env KEY=VALUE` options (repeatable) as an environment for the service under test. */
export function envArgs(pairs: readonly string[]): Record<string, string> {
  return Object.fromEntries(
    pairs.map((kv) => {
      const i = kv.indexOf('=');
      if (i < 1) throw new Error(`--env takes KEY=VALUE, not ${kv}`);
      return [kv.slice(0, i), kv.slice(i + 1)];
    }),
  );
}

export function benchProgress(label: string): ProgressRenderer {
  return progressRenderer({ label, log: (_fields, message) => console.error(message), intervalMs: 10_000 });
}

/** A slow step without units (one SQL statement, VACUUM): a line when it starts and one with its time when it ends, on stderr. */
export async function benchStep<T>(label: string, work: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  console.error(`${label}…`);
  const out = await work();
  console.error(`${label}: done in ${formatDuration(performance.now() - t0)}`);
  return out;
}

/** The p-th percentile (nearest rank) of `xs`. */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * Flushes dirty pages to disk before a timed run, so that no run pays for the
 * writeback of the one before it. Without it, a 1 GiB local write measured
 * anywhere from 330 to 960 MB/s depending on what the previous run left behind.
 */
export async function settle(): Promise<void> {
  spawnSync('sync');
  await new Promise((r) => setTimeout(r, 100));
}

export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(file, { highWaterMark: 4 * MiB })) h.update(c as Buffer);
  return h.digest('hex');
}

/** An MP4-looking file (ftyp header, then random bytes) of `size` bytes, made once. */
export async function mp4File(dir: string, size: number): Promise<string> {
  const file = path.join(dir, `bench-${size}.mp4`);
  if (existsSync(file) && (await stat(file)).size === size) return file;
  const out = createWriteStream(file);
  const header = Buffer.alloc(32, 0);
  Buffer.from([0, 0, 0, 0x18]).copy(header, 0);
  Buffer.from('ftypisom\0\0\x02\0isomiso2', 'latin1').copy(header, 4);
  Buffer.from([0, 0, 0, 8]).copy(header, 24);
  Buffer.from('free', 'latin1').copy(header, 28);
  out.write(header);
  let left = size - header.length;
  const block = randomBytes(4 * MiB);
  while (left > 0) {
    const n = Math.min(left, block.length);
    if (!out.write(n === block.length ? block : block.subarray(0, n))) await once(out, 'drain');
    left -= n;
    block[0] = (block[0]! + 1) & 0xff; // not the same 4 MiB over and over
  }
  out.end();
  await once(out, 'finish');
  return file;
}

export interface Child {
  proc: ChildProcess;
  stop(): Promise<void>;
}

export function startChild(args: string[], env: Record<string, string>, label: string): Child {
  const proc = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  const keep = (c: Buffer) => {
    tail = (tail + c.toString()).slice(-4000);
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  proc.on('exit', (code) => {
    if (code && code !== 0 && code !== 143) console.error(`${label} exited with ${code}:\n${tail}`);
  });
  return {
    proc,
    stop: async () => {
      if (proc.exitCode !== null) return;
      proc.kill('SIGTERM');
      await Promise.race([once(proc, 'exit'), new Promise((r) => setTimeout(r, 10_000))]);
      if (proc.exitCode === null) proc.kill('SIGKILL');
    },
  };
}

export async function waitFor(url: string, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not come up`);
}

/** Resident set size of a process in bytes (Linux). */
export async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

/** CPU seconds (user + system) of a process's threads so far, by thread name (Linux). */
export async function cpuOf(pid: number): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const tick = 100; // USER_HZ
  for (const tid of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8').catch(() => '');
    const m = /^\d+ \((.*)\) (.*)$/s.exec(stat);
    if (!m) continue;
    const fields = m[2]!.split(' ');
    const seconds = (Number(fields[11]) + Number(fields[12])) / tick;
    const name = tid === String(pid) ? 'main' : 'other threads';
    out.set(name, (out.get(name) ?? 0) + seconds);
  }
  return out;
}

/** Samples RSS every `ms` until stopped; returns the peak. */
export function sampleRss(pid: number, ms = 25): { stop(): Promise<number> } {
  let peak = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      peak = Math.max(peak, await rssOf(pid).catch(() => 0));
      await new Promise((r) => setTimeout(r, ms));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return peak;
    },
  };
}

/** s3rver in its own process, so it does not share an event loop with the client or the service. */
export async function startS3rverProcess(dir: string, bucket: string): Promise<{ endpoint: string; child: Child }> {
  const port = await freePort();
  const child = startChild(['--import', 'tsx', path.join(ROOT, 'bench/s3rver-process.ts')], { S3RVER_DIR: dir, S3RVER_PORT: String(port), S3RVER_BUCKET: bucket }, 's3rver');
  const endpoint = `http://127.0.0.1:${port}`;
  await waitFor(`${endpoint}/${bucket}`);
  return { endpoint, child };
}

/** The S3 store of a benchmark: s3rver in its own process, or a single-node Ceph RGW (test/helpers/rgw.ts). */
export interface BenchStore {
  endpoint: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** The service's environment for this store. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

export async function startBenchStore(driver: 's3' | 'rgw', dir: string, bucket: string): Promise<BenchStore> {
  let endpoint: string;
  let credentials: { accessKeyId: string; secretAccessKey: string };
  let stop: () => Promise<void>;
  if (driver === 'rgw') {
    // Objects live in the OSD's memory (memstore): room for the largest runs, whose deleted objects RGW collects after a few seconds.
    const rgw = await startRgw(dir, { bucket, memoryBytes: 10 * 1024 ** 3 });
    ({ endpoint, credentials } = rgw);
    stop = () => rgw.close();
  } else {
    const s3 = await startS3rverProcess(dir, bucket);
    endpoint = s3.endpoint;
    credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
    stop = () => s3.child.stop();
  }
  return {
    endpoint,
    credentials,
    env: {
      DEV_ALLOW_GENERATED_SECRETS: 'true',
      S3_BUCKET: bucket,
      S3_ENDPOINT: endpoint,
      S3_FORCE_PATH_STYLE: 'true',
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      AWS_REGION: 'us-east-1',
      // RGW runs over plain http on loopback: SSE-C there needs the explicit allowance.
      ...(driver === 'rgw' ? { S3_SSE_C_OVER_HTTP: 'loopback' } : {}),
    },
    stop,
  };
}

export { freePort };

/**
 * A GraphQL multipart request (operations, map, file) written straight onto an
 * HTTP request: the same bytes on the wire as apollo-upload-client sends, without
 * a browser-style FormData encoder in the way of the measurement.
 *
 * The file is read in 1 MiB blocks into a few buffers that are reused once the
 * socket has taken them. The client shares the machine's cores with the service;
 * a stream of fresh 1 MiB buffers cost it about 1.3 s of garbage collection and
 * page faults per GiB, time taken from the service under test. A real client (a
 * browser, another machine) does not load the service's cores at all.
 */
export function multipartUpload(
  url: string,
  token: string,
  file: string,
  size: number,
  query: string,
  entity: { type: string; id: string },
  part: { filename: string; type: string } = { filename: 'bench.mp4', type: 'video/mp4' },
): Promise<unknown> {
  // A boundary like a browser's FormData (WebKit: 16 random characters after a fixed prefix).
  const boundary = `----WebKitFormBoundary${randomBytes(12).toString('base64url').slice(0, 16)}`;
  const operations = JSON.stringify({ query, variables: { input: { file: null, entity } } });
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="operations"\r\n\r\n${operations}\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="map"\r\n\r\n{"0":["variables.input.file"]}\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="0"; filename="${part.filename}"\r\nContent-Type: ${part.type}\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'apollo-require-preflight': 'true',
        'content-type': `multipart/form-data; boundary=${boundary}`,
        'content-length': String(head.length + size + tail.length),
      },
    });
    let answered = false;
    req.on('error', reject);
    req.on('response', (res) => {
      answered = true;
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(parts).toString()));
        } catch (e) {
          reject(e);
        }
      });
    });
    req.write(head);
    sendFile(req, file, () => answered).then(() => req.end(tail), (e: unknown) => {
      req.destroy();
      reject(e as Error);
    });
  });
}

/**
 * Writes a file (or `range.length` bytes of it from `range.start`) onto a request
 * from a ring of reused buffers; a buffer is refilled only after the socket took it.
 */
export async function sendFile(req: http.ClientRequest, file: string, stop: () => boolean, range?: { start: number; length: number }): Promise<void> {
  const BLOCK = MiB;
  const free = Array.from({ length: 4 }, () => Buffer.allocUnsafe(BLOCK));
  let waiting: (() => void) | null = null;
  let failed: Error | null = null;
  const fh = await open(file, 'r');
  const end = range ? range.start + range.length : Infinity;
  try {
    for (let pos = range?.start ?? 0; !stop() && pos < end; ) {
      while (free.length === 0 && !failed) await new Promise<void>((r) => (waiting = r));
      if (failed) throw failed;
      const buf = free.pop()!;
      const { bytesRead } = await fh.read(buf, 0, Math.min(BLOCK, end - pos), pos);
      if (bytesRead === 0) break;
      pos += bytesRead;
      req.write(buf.subarray(0, bytesRead), (e) => {
        if (e) failed = e;
        else free.push(buf);
        const w = waiting;
        waiting = null;
        w?.();
      });
    }
  } finally {
    await fh.close();
  }
}
