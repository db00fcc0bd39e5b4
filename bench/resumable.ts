// Resumable upload benchmark (SPEC 14): a 1 GiB file through tus (/uploads/resumable,
// PATCH requests of --chunks MiB) against the same file through GraphQL `upload`,
// side by side in one run, alternating, medians of N runs; stored size and SHA-256
// checked after every run. --drivers s3 runs it on s3rver (in its own process),
// rgw on a single-node Ceph RGW (the store that behaves like production: completing
// a multipart upload and a server-side copy move no bytes). With s3 it also
// measures the two ways a finished upload's bytes can reach the media's key on S3:
// a server-side copy then a verifying read (what the service does), or one read that
// is verified while it is written again (put).
//
//   npm run bench:resumable [-- --size 1024 --runs 3 --chunks 0,64 --drivers local,s3,rgw --client raw|tus-js-client]
//
// --chunks: bytes per PATCH in MiB, one table row each; 0 is the whole file in one
// PATCH, what tus-js-client and Uppy send by default (chunkSize Infinity).
//
// The service runs as a child process (`src/main.ts`, embedded PostgreSQL); the
// client is this process. The raw client writes each PATCH from a ring of reused
// buffers, exactly as the GraphQL side's multipart client does (bench/lib.ts), so
// that neither side's client loads the shared cores more than the other.
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Writable, type Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { Upload as TusUpload } from 'tus-js-client';
import { mintToken } from '../src/auth/tokens.js';
import { S3Storage } from '../src/storage/s3.js';
import { InspectStream } from '../src/modules/resumable-uploads/ingest-adapter.js';
import { benchArgs, benchProgress, benchStep, freePort, median, multipartUpload, MiB, mp4File, rssOf, sampleRss, sendFile, settle, sha256File, startBenchStore, startChild, waitFor, type BenchStore } from './lib.js';

const values = benchArgs(
  {
    size: { type: 'string', default: '1024' },
    runs: { type: 'string', default: '3' },
    chunks: { type: 'string', default: '0,64' },
    drivers: { type: 'string', default: 'local' },
    client: { type: 'string', default: 'raw' },
    dir: { type: 'string' },
    // Writes a V8 CPU profile of the service into this folder when it stops.
    profile: { type: 'string' },
  },
  {
    usage: 'npm run bench:resumable [-- --size 1024 --runs 3 --chunks 0,64 --drivers local,s3,rgw --client raw|tus-js-client --dir DIR]',
    summary:
      'tus (/uploads/resumable) against GraphQL upload for one file, alternating, medians, stored bytes checked; on s3 also copy+read against read+put for completion. ' +
      'Starts the service (and s3rver) itself; progress on stderr.',
    options: {
      '--size MiB': 'file size in MiB (default 1024)',
      '--runs N': 'timed runs per side (default 3)',
      '--chunks MiB,…': 'bytes per PATCH in MiB, a row each; 0: the whole file in one PATCH, tus-js-client\'s default (default 0,64)',
      '--drivers D,…': 'local, s3 (s3rver), rgw (Ceph RGW) (default local)',
      '--client C': 'raw (PATCH requests from reused buffers) or tus-js-client (default raw)',
      '--dir DIR': 'keep the test file here (default: a temporary directory, removed at the end)',
      '--profile DIR': 'write V8 CPU profiles of the service into DIR when it stops',
    },
  },
);
const size = Number(values.size) * MiB;
const runs = Number(values.runs);
const chunkSizes = values.chunks!.split(',').map((c) => Number(c) * MiB || size);
type Driver = 'local' | 's3' | 'rgw';
const drivers = values.drivers!.split(',') as Driver[];
for (const d of drivers) if (!['local', 's3', 'rgw'].includes(d)) throw new Error(`--drivers: ${d} is not local, s3 or rgw`);
const client = values.client as 'raw' | 'tus-js-client';
if (client !== 'raw' && client !== 'tus-js-client') throw new Error('--client is raw or tus-js-client');
const JWT_SECRET = 'bench-secret-bench-secret-bench-secret-0123';
const BUCKET = 'bench';
const TENANT = 'bench';
const ENTITY = { type: 'property', id: 'bench' };
const UPLOAD = `mutation($input: UploadInput!) { upload(input: $input) { id fileSize checksum } }`;
const DELETE = `mutation($id: ID!) { deleteMedia(id: $id) }`;

interface Row {
  driver: string;
  sizeMiB: number;
  chunkMiB: number;
  client: string;
  tusMBps: number;
  uploadMBps: number;
  /** tus throughput over upload's, from the medians (target ≥ 0.85). */
  ratio: number;
  /** The same ratio within each alternating pair. */
  pairedRatios: number[];
  /** Median seconds from the last byte sent to the final PATCH's answer: copy, inspection, commit. */
  completionSeconds: number;
  tusRssGrowthMiB: number;
}

async function hashStream(s: Readable): Promise<{ sha: string; size: number }> {
  const h = createHash('sha256');
  let n = 0;
  for await (const c of s) {
    h.update(c as Buffer);
    n += (c as Buffer).length;
  }
  return { sha: h.digest('hex'), size: n };
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

/** One request, its answer's status, headers and body. */
function request(url: string, o: { method: string; headers: Record<string, string>; body?: (req: http.ClientRequest) => Promise<void> }): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: o.method, headers: o.headers });
    req.on('error', reject);
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts).toString() }));
    });
    if (!o.body) return void req.end();
    o.body(req).then(
      () => req.end(),
      (e: unknown) => {
        req.destroy();
        reject(e as Error);
      },
    );
  });
}

/** Milliseconds from the last byte of a PATCH sent to its answer (the pipe is idle meanwhile). */
export const tails: number[] = [];

/** A tus upload in PATCH requests of `chunk` bytes; resolves with the media id and when the last byte was sent. */
async function rawTus(base: string, token: string, file: string, chunk: number): Promise<{ mediaId: string; lastByteAt: number }> {
  const metadata = `entityType ${b64(ENTITY.type)},entityId ${b64(ENTITY.id)},filename ${b64('bench.mp4')},filetype ${b64('video/mp4')}`;
  const created = await request(`${base}/uploads/resumable`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'tus-resumable': '1.0.0', 'upload-length': String(size), 'upload-metadata': metadata },
  });
  if (created.status !== 201) throw new Error(`creation answered ${created.status}: ${created.body}`);
  const url = new URL(created.headers.location!, base).href;
  let lastByteAt = 0;
  let sentAt = 0;
  for (let offset = 0; offset < size; ) {
    const length = Math.min(chunk, size - offset);
    const res = await request(url, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${token}`, 'tus-resumable': '1.0.0', 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream', 'content-length': String(length) },
      body: async (req) => {
        await sendFile(req, file, () => false, { start: offset, length });
        sentAt = performance.now();
        if (offset + length === size) lastByteAt = sentAt;
      },
    });
    tails.push(performance.now() - sentAt);
    if (res.status !== 204) throw new Error(`PATCH at ${offset} answered ${res.status}: ${res.body}`);
    offset = Number(res.headers['upload-offset']);
    if (offset === size) return { mediaId: String(res.headers['media-id']), lastByteAt };
  }
  throw new Error('the upload ended without a media');
}

/** The same with tus-js-client (a file stream source, its own chunking). */
function jsClientTus(base: string, token: string, file: string, chunk: number): Promise<{ mediaId: string; lastByteAt: number }> {
  return new Promise((resolve, reject) => {
    // tus-js-client reports progress throttled (every 100 ms): when the last byte left is not known.
    const lastByteAt = Number.NaN;
    const upload = new TusUpload(createReadStream(file) as unknown as Buffer, {
      endpoint: `${base}/uploads/resumable`,
      headers: { authorization: `Bearer ${token}` },
      metadata: { entityType: ENTITY.type, entityId: ENTITY.id, filename: 'bench.mp4', filetype: 'video/mp4' },
      chunkSize: chunk,
      uploadSize: size,
      retryDelays: [],
      onSuccess: ({ lastResponse }) => resolve({ mediaId: lastResponse.getHeader('Media-Id')!, lastByteAt }),
      onError: reject,
    });
    upload.start();
  });
}

async function main(): Promise<void> {
  const work = values.dir ?? (await mkdtemp(path.join(os.tmpdir(), 'media-bench-')));
  const { file, sha } = await benchStep(`a test file of ${values.size} MiB`, async () => {
    const f = await mp4File(work, size);
    return { file: f, sha: await sha256File(f) };
  });
  const rows: Row[] = [];
  const completions: string[] = [];
  for (const driver of drivers) {
    rows.push(...(await benchDriver(driver, work, file, sha)));
    if (driver === 's3') completions.push(await completionOnS3(work, file, sha));
  }
  console.log('\ntus (/uploads/resumable) vs GraphQL upload, %d MiB, medians of %d runs, alternating', size / MiB, runs);
  console.log('driver | client        | chunk    | tus MB/s | upload MB/s | ratio | target     | paired ratios: median (min-max) | completion | tus RSS growth');
  console.log('-------|---------------|----------|----------|-------------|-------|------------|---------------------------------|------------|---------------');
  for (const r of rows) {
    console.log(
      `${r.driver.padEnd(6)} | ${r.client.padEnd(13)} | ${`${r.chunkMiB} MiB`.padEnd(8)} | ${r.tusMBps.toFixed(0).padStart(8)} | ${r.uploadMBps.toFixed(0).padStart(11)} | ${r.ratio.toFixed(2).padStart(5)} | ${(r.ratio >= 0.85 ? '≥0.85 ok' : '<0.85 MISS').padEnd(10)} | ${`${median(r.pairedRatios).toFixed(2)} (${Math.min(...r.pairedRatios).toFixed(2)}-${Math.max(...r.pairedRatios).toFixed(2)})`.padEnd(31)} | ${(Number.isNaN(r.completionSeconds) ? '-' : `${r.completionSeconds.toFixed(2)} s`).padEnd(10)} | ${r.tusRssGrowthMiB.toFixed(0)} MiB`,
    );
  }
  for (const c of completions) console.log(c);
  if (tails.length) console.log(`PATCH answers after their last byte: median ${median(tails).toFixed(1)} ms over ${tails.length} requests`);
  console.log(JSON.stringify({ bench: 'resumable', runs, rows }));
  if (!values.dir) await rm(work, { recursive: true, force: true });
}

async function benchDriver(driver: Driver, work: string, file: string, sha: string): Promise<Row[]> {
  const dataDir = path.join(work, `data-${driver}`);
  await rm(dataDir, { recursive: true, force: true });
  let s3: BenchStore | undefined;
  const env: Record<string, string> = {
    PORT: String(await freePort()),
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    JWT_SECRET,
    LOG_LEVEL: 'warn',
    SWEEP_INTERVAL_SECONDS: '0',
    MEDIA_KIND_LIMITS_MB: `VIDEO=${Math.ceil(size / MiB) + 1}`,
    // A free port for the service's embedded PostgreSQL: another one may hold the default.
    EMBEDDED_PG_PORT: '0',
  };
  if (driver !== 'local') {
    s3 = await startBenchStore(driver, path.join(work, driver), BUCKET);
    Object.assign(env, s3.env);
  }
  const profile = values.profile ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(values.profile)}`] : [];
  const service = startChild([...profile, '--import', 'tsx', 'src/main.ts'], env, 'service');
  const base = `http://127.0.0.1:${env['PORT']}`;
  const s3client = s3
    ? new S3Client({ region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, credentials: s3.credentials, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' })
    : undefined;
  try {
    await waitFor(`${base}/readyz`, 120_000);
    const token = await mintToken(JWT_SECRET, { tenant: TENANT, expiresIn: '2h' });
    const gql = async (query: string, variables: unknown) => {
      const r = await fetch(`${base}/graphql`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ query, variables }) });
      return (await r.json()) as { data?: Record<string, unknown>; errors?: unknown[] };
    };
    /** What the media's key holds, read back from the storage itself, then the media deleted. */
    const checkAndDelete = async (mediaId: string) => {
      const key = `${TENANT}/${mediaId}/original`;
      const stored = s3client
        ? await hashStream((await s3client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body as Readable)
        : await hashStream(createReadStream(path.join(dataDir, 'blobs', key)));
      if (stored.size !== size || stored.sha !== sha) throw new Error(`stored object differs: ${stored.size} bytes / ${stored.sha}`);
      await gql(DELETE, { id: mediaId });
    };
    const viaTus = async (chunk: number): Promise<{ seconds: number; completion: number; rssGrowth: number }> => {
      await settle();
      const before = await rssOf(service.proc.pid!);
      const sampler = sampleRss(service.proc.pid!);
      const t0 = performance.now();
      const { mediaId, lastByteAt } = await (client === 'raw' ? rawTus(base, token, file, chunk) : jsClientTus(base, token, file, chunk));
      const t1 = performance.now();
      const peak = await sampler.stop();
      await checkAndDelete(mediaId);
      return { seconds: (t1 - t0) / 1000, completion: (t1 - lastByteAt) / 1000, rssGrowth: peak - before };
    };
    const viaUpload = async (): Promise<number> => {
      await settle();
      const t0 = performance.now();
      const json = (await multipartUpload(`${base}/graphql`, token, file, size, UPLOAD, ENTITY)) as { data?: { upload: { id: string; checksum: string } }; errors?: unknown[] };
      const seconds = (performance.now() - t0) / 1000;
      if (!json.data || json.data.upload.checksum !== sha) throw new Error(`upload failed: ${JSON.stringify(json.errors ?? json.data)}`);
      await checkAndDelete(json.data.upload.id);
      return seconds;
    };

    const shown = benchProgress(`tus and upload on ${driver}`);
    const total = chunkSizes.length * runs + 1;
    let done = 0;
    shown.update({ done, total });
    // A warm-up of each, not counted.
    await viaTus(chunkSizes[0]!);
    await viaUpload();
    shown.update({ done: ++done, total });
    // Each chunk size: `runs` alternating pairs (a tus upload and an upload), the first of each pair alternating too.
    const measure = async (chunk: number): Promise<Row> => {
      const tus: number[] = [];
      const up: number[] = [];
      const completion: number[] = [];
      let rss = 0;
      const one = async () => {
        const t = await viaTus(chunk);
        tus.push(t.seconds);
        completion.push(t.completion);
        rss = Math.max(rss, t.rssGrowth);
      };
      for (let i = 0; i < runs; i++) {
        if (i % 2 === 0) {
          await one();
          up.push(await viaUpload());
        } else {
          up.push(await viaUpload());
          await one();
        }
        shown.update({ done: ++done, total });
      }
      const tusMBps = size / 1e6 / median(tus);
      const uploadMBps = size / 1e6 / median(up);
      return {
        driver,
        sizeMiB: size / MiB,
        chunkMiB: chunk / MiB,
        client,
        tusMBps,
        uploadMBps,
        ratio: tusMBps / uploadMBps,
        pairedRatios: tus.map((t, i) => Math.round((up[i]! / t) * 100) / 100),
        completionSeconds: median(completion),
        tusRssGrowthMiB: rss / MiB,
      };
    };
    const rows: Row[] = [];
    for (const chunk of chunkSizes) {
      const row = await measure(chunk);
      console.log(JSON.stringify(row));
      rows.push(row);
    }
    shown.finish();
    return rows;
  } finally {
    s3client?.destroy();
    await service.stop();
    await s3?.stop();
  }
}

/**
 * The two ways the bytes of a finished upload can become the media's verified
 * original on S3, alternating, medians of `runs`: (a) CopyObject server side, then
 * one read of the copy through the upload pipeline's inspection (what the service
 * does); (b) one read of the upload's object, inspected while a put writes it to
 * the media's key.
 */
async function completionOnS3(work: string, file: string, sha: string): Promise<string> {
  const store = await startBenchStore('s3', path.join(work, 's3-completion'), BUCKET);
  const storage = new S3Storage({ bucket: BUCKET, endpoint: store.endpoint, forcePathStyle: true, credentials: store.credentials, checksums: 'WHEN_REQUIRED' });
  const inspector = () => new InspectStream({ fileName: 'bench.mp4', accept: () => Number.MAX_SAFE_INTEGER });
  try {
    await benchStep('the source object for the completion comparison', () => storage.put('tus-uploads/source', createReadStream(file), { size }));
    const copyThenRead = async () => {
      const t0 = performance.now();
      await storage.copy('tus-uploads/source', 'bench/copy/original', { size });
      const i = inspector();
      await pipeline(await storage.get('bench/copy/original'), i, new Writable({ write: (_c, _e, cb) => cb() }));
      const seconds = (performance.now() - t0) / 1000;
      if (i.result().checksum !== sha) throw new Error('copy differs');
      await storage.delete('bench/copy/original');
      return seconds;
    };
    const readThenPut = async () => {
      const t0 = performance.now();
      const i = inspector();
      const source = await storage.get('tus-uploads/source');
      const through = new PassThrough();
      source.pipe(i).pipe(through);
      // A put told the size may answer before its body's end event: the inspection ends there.
      await Promise.all([storage.put('bench/put/original', through, { size }), finished(i)]);
      const seconds = (performance.now() - t0) / 1000;
      if (i.result().checksum !== sha) throw new Error('put differs');
      await storage.delete('bench/put/original');
      return seconds;
    };
    const a: number[] = [];
    const b: number[] = [];
    await copyThenRead();
    await readThenPut();
    for (let r = 0; r < runs; r++) {
      await settle();
      a.push(await copyThenRead());
      await settle();
      b.push(await readThenPut());
    }
    return (
      `\nCompletion on S3 (s3rver, ${size / MiB} MiB, medians of ${runs}): server-side copy + verifying read ${median(a).toFixed(2)} s ` +
      `(${(size / 1e6 / median(a)).toFixed(0)} MB/s); read + inspect + put ${median(b).toFixed(2)} s (${(size / 1e6 / median(b)).toFixed(0)} MB/s)`
    );
  } finally {
    storage.close();
    await store.stop();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
