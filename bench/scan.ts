// Malware scanning while passing a stream through (src/scan/clamd.ts ScanStream)
// against plain piping of the same bytes, into a null sink and into a file,
// alternating, medians of N runs. clamd is started for the run with the EICAR
// test database of the tests (test/helpers/clamd.ts; needs
// apt-get install -y --no-install-recommends clamav-daemon). With ClamAV's own
// database (millions of signatures) clamd scans slower than with this one line.
//
//   npm run bench:scan [-- --size 100 --runs 5]
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ClamdScanner, ScanStream } from '../src/scan/clamd.js';
import { startClamd } from '../test/helpers/clamd.js';
import { benchArgs, median, MiB } from './lib.js';

const values = benchArgs(
  {
    size: { type: 'string', default: '100' },
    runs: { type: 'string', default: '5' },
  },
  {
    usage: 'npm run bench:scan [-- --size 100 --runs 5]',
    summary: 'a stream scanned by clamd while passing through (ScanStream) against plain piping, into a null sink and a file, alternating, medians. Starts its own clamd.',
    options: { '--size MiB': 'bytes per run (default 100)', '--runs N': 'runs per case (default 5)' },
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
} finally {
  await clamd.stop();
  await rm(dir, { recursive: true, force: true });
}
