// Encrypted-serving benchmark (SPEC 14): GET /media/{id}/content of the same
// content stored encrypted (a SENSITIVE entity) and unencrypted (STANDARD), side
// by side in one run, alternating, medians; every response's SHA-256 is checked.
//
//   npm run bench:serve [-- --size 100 --runs 5 --drivers local,s3,rgw]
//
// On rgw (a single-node Ceph RGW started for the run) encrypted media use SSE-C: the
// store decrypts, the service streams and verifies the SHA-256.
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { mintToken } from '../src/auth/tokens.js';
import { benchArgs, benchStep, freePort, median, MiB, mp4File, multipartUpload, sha256File, startBenchStore, startChild, waitFor, type BenchStore } from './lib.js';

const values = benchArgs(
  { size: { type: 'string', default: '100' }, runs: { type: 'string', default: '5' }, drivers: { type: 'string', default: 'local,s3' } },
  {
    usage: 'npm run bench:serve [-- --size 100 --runs 5 --drivers local,s3,rgw]',
    summary:
      'GET /media/{id}/content of the same content stored encrypted and unencrypted, alternating, medians; every response\'s SHA-256 checked. ' +
      'Starts the service (and s3rver or a Ceph RGW) itself; one line per driver.',
    options: {
      '--size MiB': 'size of the served file (default 100)',
      '--runs N': 'downloads per side (default 5)',
      '--drivers D,…': 'local, s3 (s3rver), rgw (needs the Ceph binaries) (default local,s3)',
    },
  },
);
const size = Number(values.size) * MiB;
const runs = Number(values.runs);
const JWT_SECRET = 'bench-secret-bench-secret-bench-secret-0123';
const UPLOAD = `mutation($input: UploadInput!) { upload(input: $input) { id encrypted fileSize checksum } }`;

interface Row {
  driver: string;
  plainMBps: number;
  encryptedMBps: number;
  ratio: number;
}

async function download(url: string, token: string, expected: string): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status}`);
  const h = createHash('sha256');
  let n = 0;
  for await (const c of res.body!) {
    h.update(c);
    n += c.length;
  }
  const seconds = (performance.now() - t0) / 1000;
  if (h.digest('hex') !== expected || n !== size) throw new Error(`${url} returned ${n} bytes with another checksum`);
  return seconds;
}

async function benchDriver(driver: 'local' | 's3' | 'rgw', work: string, file: string, sha: string): Promise<Row> {
  const policy = path.join(work, 'policy.json');
  await writeFile(
    policy,
    JSON.stringify({
      plain: { securityLevel: 'STANDARD', allowed: ['video'] },
      vault: { securityLevel: 'SENSITIVE', allowed: ['video'] },
    }),
  );
  const env: Record<string, string> = {
    PORT: String(await freePort()),
    HOST: '127.0.0.1',
    DATA_DIR: path.join(work, `data-${driver}`),
    JWT_SECRET,
    LOG_LEVEL: 'warn',
    SWEEP_INTERVAL_SECONDS: '0',
    MEDIA_POLICY_FILE: policy,
    MEDIA_KIND_LIMITS_MB: `VIDEO=${Math.ceil(size / MiB) + 1}`,
  };
  let s3: BenchStore | undefined;
  if (driver !== 'local') {
    s3 = await startBenchStore(driver, path.join(work, driver), 'bench');
    Object.assign(env, s3.env);
  }
  const service = startChild(['--import', 'tsx', 'src/main.ts'], env, 'service');
  const base = `http://127.0.0.1:${env['PORT']}`;
  try {
    await waitFor(`${base}/readyz`, 120_000);
    const token = await mintToken(JWT_SECRET, { tenant: 'bench', expiresIn: '2h' });
    const ids: Record<string, string> = {};
    for (const type of ['plain', 'vault']) {
      const r = (await multipartUpload(`${base}/graphql`, token, file, size, UPLOAD, { type, id: 'bench' })) as {
        data?: { upload: { id: string; encrypted: boolean; checksum: string } };
        errors?: unknown;
      };
      if (!r.data || r.data.upload.checksum !== sha || r.data.upload.encrypted !== (type === 'vault')) throw new Error(`upload ${type}: ${JSON.stringify(r)}`);
      ids[type] = r.data.upload.id;
    }
    if (driver === 'rgw' && s3) {
      // What the rgw row measures: the store must refuse the encrypted object without its customer key.
      const client = new S3Client({ region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, credentials: s3.credentials });
      const status = await client.send(new GetObjectCommand({ Bucket: 'bench', Key: `bench/${ids['vault']}/original` })).then(
        () => 200,
        (e: { $metadata?: { httpStatusCode?: number } }) => e.$metadata?.httpStatusCode ?? 0,
      );
      client.destroy();
      if (status < 400 || status >= 500) throw new Error(`expected SSE-C on rgw: a GET of the encrypted object without its key answered ${status}`);
      console.log(`rgw: the encrypted object is stored with SSE-C (a GET without its key answers ${status})`);
    }
    const plain: number[] = [];
    const encrypted: number[] = [];
    await download(`${base}/media/${ids['plain']}/content`, token, sha); // warm-up
    await download(`${base}/media/${ids['vault']}/content`, token, sha);
    for (let i = 0; i < runs; i++) {
      plain.push(await download(`${base}/media/${ids['plain']}/content`, token, sha));
      encrypted.push(await download(`${base}/media/${ids['vault']}/content`, token, sha));
    }
    const plainMBps = size / 1e6 / median(plain);
    const encryptedMBps = size / 1e6 / median(encrypted);
    const row = { driver, plainMBps, encryptedMBps, ratio: encryptedMBps / plainMBps };
    console.log(JSON.stringify(row));
    return row;
  } finally {
    await service.stop();
    await s3?.stop();
  }
}

const work = await mkdtemp(path.join(os.tmpdir(), 'media-bench-serve-'));
try {
  const { file, sha } = await benchStep(`a test file of ${size / MiB} MiB`, async () => {
    const f = await mp4File(work, size);
    return { file: f, sha: await sha256File(f) };
  });
  const rows: Row[] = [];
  for (const d of values.drivers!.split(',') as ('local' | 's3' | 'rgw')[]) rows.push(await benchDriver(d, work, file, sha));
  console.log(`\nServing ${size / MiB} MiB: encrypted (decrypt + verify) vs unencrypted, medians of ${runs} runs, alternating`);
  console.log('(encrypted: AES-GCM segments decrypted by the service on local and s3rver; SSE-C, decrypted by the store, on rgw)');
  console.log('driver | unencrypted MB/s | encrypted MB/s | ratio | target ≥ 0.70');
  console.log('-------|------------------|----------------|-------|--------------');
  for (const r of rows) {
    console.log(`${r.driver.padEnd(6)} | ${r.plainMBps.toFixed(0).padStart(16)} | ${r.encryptedMBps.toFixed(0).padStart(14)} | ${r.ratio.toFixed(2).padStart(5)} | ${r.ratio >= 0.7 ? 'ok' : 'MISS'}`);
  }
  console.log(JSON.stringify({ bench: 'serve', runs, sizeMiB: size / MiB, rows }));
} finally {
  await rm(work, { recursive: true, force: true });
}
