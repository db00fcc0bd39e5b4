// Malware scanning while passing a stream through (src/scan/clamd.ts ScanStream)
// against plain piping of the same bytes, into a null sink and into a file,
// alternating, medians of N runs. clamd is started for the run with the EICAR
// test database of the tests (test/helpers/clamd.ts; needs
// apt-get install -y --no-install-recommends clamav-daemon). With ClamAV's own
// database (millions of signatures) clamd scans slower than with this one line.
//
// Then (b) the cost of scanning end to end: the same MP4 through `upload` on two
// services side by side (local disk, each with its embedded PostgreSQL), one with
// CLAMD_URL, one without, alternating, medians.
//
//   npm run bench:scan [-- --size 100 --runs 5 --upload-size 100]
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ClamdScanner, ScanStream } from '../src/scan/clamd.js';
import { startClamd } from '../test/helpers/clamd.js';
import { benchArgs, freePort, median, MiB, mp4File, multipartUpload, startChild, waitFor, type Child } from './lib.js';
import { mintToken } from '../src/auth/tokens.js';

const values = benchArgs(
  {
    size: { type: 'string', default: '100' },
    runs: { type: 'string', default: '5' },
    'upload-size': { type: 'string', default: '100' },
  },
  {
    usage: 'npm run bench:scan [-- --size 100 --runs 5]',
    summary: 'a stream scanned by clamd while passing through (ScanStream) against plain piping, into a null sink and a file, alternating, medians. Starts its own clamd.',
    options: { '--size MiB': 'bytes per run (default 100)', '--runs N': 'runs per case (default 5)', '--upload-size MiB': 'the MP4 of (b), uploaded with and without scanning (default 100; 0: skip)' },
  },
);
const size = Number(values.size) * MiB;
const runs = Number(values.runs);
const CHUNK = 64 * 1024;

const data = randomBytes(size);
function* chunks(): Generator<Buffer> {
  for (let at = 0; at < data.length; at += CHUNK) yield data.subarray(at, at + CHUNK);
}
const nullSink = () => new Writable({ write: (_c, _e, cb) => cb() });

const clamd = await startClamd({ streamMaxLength: '4000M', maxFileSize: '2000M', maxScanSize: '4000M' });
const dir = await mkdtemp(path.join(os.tmpdir(), 'bench-scan-'));
try {
  console.error(`clamd answered PING ${clamd.startupMs} ms after spawn`);
  const tcp = new ClamdScanner({ url: clamd.url, timeoutMs: 60_000 });
  const unix = new ClamdScanner({ url: clamd.socketPath!, timeoutMs: 60_000 });
  const file = () => createWriteStream(path.join(dir, 'out'));
  const cases: Array<[string, () => Promise<void>]> = [
    ['pipe → null', () => pipeline(Readable.from(chunks()), nullSink())],
    ['scan (tcp) → null', () => pipeline(Readable.from(chunks()), new ScanStream(tcp), nullSink())],
    ['scan (unix) → null', () => pipeline(Readable.from(chunks()), new ScanStream(unix), nullSink())],
    ['pipe → file', () => pipeline(Readable.from(chunks()), file())],
    ['scan (tcp) → file', () => pipeline(Readable.from(chunks()), new ScanStream(tcp), file())],
  ];
  const times = new Map<string, number[]>(cases.map(([name]) => [name, []]));
  await cases[1]![1](); // warm-up
  for (let r = 0; r < runs; r++) {
    for (const [name, run] of cases) {
      const t0 = performance.now();
      await run();
      times.get(name)!.push(performance.now() - t0);
    }
    console.error(`run ${r + 1}/${runs}`);
  }
  console.log(`${values.size} MiB, ${CHUNK / 1024} KiB chunks, median of ${runs}:`);
  const base = (name: string) => median(times.get(name)!);
  for (const [name] of cases) {
    const ms = base(name);
    const ref = base(name.endsWith('file') ? 'pipe → file' : 'pipe → null');
    console.log(`  ${name.padEnd(20)} ${(size / MiB / (ms / 1000)).toFixed(0).padStart(6)} MiB/s  ${ms.toFixed(0).padStart(6)} ms  (${(ms / ref).toFixed(2)}x plain)`);
  }
  const uploadMiB = Number(values['upload-size']);
  if (uploadMiB > 0) await uploads(uploadMiB * MiB);
} finally {
  await clamd.stop();
  await rm(dir, { recursive: true, force: true });
}

/** (b): `upload` of one MP4 with and without CLAMD_URL, alternating, medians. */
async function uploads(bytes: number): Promise<void> {
  const JWT_SECRET = 'bench-secret-bench-secret-bench-secret-0123';
  const UPLOAD = 'mutation($input: UploadInput!) { upload(input: $input) { id fileSize } }';
  const work = await mkdtemp(path.join(os.tmpdir(), 'bench-scan-up-'));
  const file = await mp4File(work, bytes);
  const services: { name: string; child: Child; base: string }[] = [];
  try {
    for (const [name, extra] of [
      ['upload, no scanning', {}],
      ['upload, clamd (tcp)', { CLAMD_URL: clamd.url, CLAMD_TIMEOUT_MS: '120000' }],
    ] as const) {
      const port = await freePort();
      const env = { PORT: String(port), HOST: '127.0.0.1', DATA_DIR: path.join(work, `data-${services.length}`), EMBEDDED_PG_PORT: '0', JWT_SECRET, LOG_LEVEL: 'warn', SWEEP_INTERVAL_SECONDS: '0', MEDIA_KIND_LIMITS_MB: `VIDEO=${Math.ceil(bytes / MiB) + 1}`, ...extra };
      services.push({ name, child: startChild(['--import', 'tsx', 'src/main.ts'], env, name), base: `http://127.0.0.1:${port}` });
    }
    await Promise.all(services.map((s) => waitFor(`${s.base}/readyz`, 120_000)));
    const token = await mintToken(JWT_SECRET, { tenant: 'bench', expiresIn: '2h' });
    const once = async (base: string): Promise<number> => {
      const t0 = performance.now();
      const r = (await multipartUpload(`${base}/graphql`, token, file, bytes, UPLOAD, { type: 'property', id: 'p' })) as { data?: { upload?: { fileSize: number } }; errors?: unknown };
      if (r.data?.upload?.fileSize !== bytes) throw new Error(`upload failed: ${JSON.stringify(r.errors).slice(0, 300)}`);
      return performance.now() - t0;
    };
    for (const s of services) await once(s.base); // warm-up
    const times = new Map(services.map((s) => [s.name, [] as number[]]));
    for (let r = 0; r < runs; r++) {
      for (const s of r % 2 === 0 ? services : [...services].reverse()) times.get(s.name)!.push(await once(s.base));
      console.error(`upload run ${r + 1}/${runs}`);
    }
    const plain = median(times.get(services[0]!.name)!);
    console.log(`\n(b) ${bytes / MiB} MiB MP4 through upload (local disk), median of ${runs}, alternating:`);
    for (const s of services) {
      const ms = median(times.get(s.name)!);
      console.log(`  ${s.name.padEnd(20)} ${(bytes / 1e6 / (ms / 1000)).toFixed(0).padStart(6)} MB/s  ${ms.toFixed(0).padStart(6)} ms  (${(plain / ms).toFixed(2)} of no scanning)`);
    }
  } finally {
    await Promise.all(services.map((s) => s.child.stop()));
    await rm(work, { recursive: true, force: true });
  }
}
