// Images on demand (issue 14), side by side in one run on one service (local disk):
//  (a) `upload` throughput of a 12-megapixel photo-like JPEG (noise: it does not
//      compress) against a PDF of the same size through the same `upload`,
//      alternating rounds; target >= 0.85;
//  (b) render latency p50/p95 of THUMB and of a 1280 px WebP, cold (first request)
//      and warm (from the store), the warm ones against the original's content route;
//  (c) peak RSS growth of the service while 20 cold renders run at once (20 photos);
//      target < 512 MiB.
//
//   npm run bench:images [-- --rounds 3 --per-round 5 --cold 5 --warm 30]
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { mintToken } from '../src/auth/tokens.js';
import { startEmbeddedPostgres } from '../src/db/embedded.js';
import { benchArgs, freePort, MiB, multipartUpload, percentile, rssOf, sampleRss, startChild, waitFor, envArgs } from './lib.js';

const values = benchArgs(
  {
    rounds: { type: 'string', default: '3' },
    'per-round': { type: 'string', default: '5' },
    cold: { type: 'string', default: '5' },
    warm: { type: 'string', default: '30' },
    // Extra environment for the service, KEY=VALUE (repeatable).
    env: { type: 'string', multiple: true, default: [] },
  },
  {
    usage: 'npm run bench:images [-- --rounds 3 --per-round 5 --cold 5 --warm 30 --env KEY=VALUE …]',
    summary:
      'Photo uploads against PDF uploads of the same size (a), render latency cold and warm against the content route (b), RSS growth under 20 concurrent cold renders (c). ' +
      'Starts its own embedded PostgreSQL and one service on local disk.',
    options: {
      '--rounds N': 'alternating rounds of (a) (default 3)',
      '--per-round N': 'uploads of each file per round (default 5)',
      '--cold N': 'photos rendered cold per render kind in (b) (default 5)',
      '--warm N': 'warm requests per kind in (b) (default 30)',
      '--env KEY=VALUE': 'extra environment for the service, repeatable',
    },
  },
);
const ROUNDS = Number(values.rounds);
const PER_ROUND = Number(values['per-round']);
const COLD = Number(values.cold);
const WARM = Number(values.warm);
const JWT_SECRET = 'bench-secret-bench-secret-bench-secret-0123';
const UPLOAD = 'mutation($input: UploadInput!) { upload(input: $input) { id fileSize width variants { name } } }';

type Answer = { data?: { upload?: { id: string; fileSize: number } }; errors?: { message: string }[] };

async function photoJpeg(): Promise<Buffer> {
  // 12 MP of noise at quality 90: about 10 MiB, like a camera photo (which does not compress either).
  const width = 4000;
  const height = 3000;
  return sharp(randomBytes(width * height * 3), { raw: { width, height, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
}

function pdfOfSize(size: number): Buffer {
  const head = Buffer.from('%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n3 0 obj << /Type /Page /Parent 2 0 R >> endobj\n4 0 obj << /Length 0 >> stream\n');
  const tail = Buffer.from('\nendstream endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n');
  return Buffer.concat([head, randomBytes(size - head.length - tail.length), tail]);
}

async function timedGet(url: string, headers: Record<string, string>): Promise<{ ms: number; status: number; outcome: string | null; bytes: number }> {
  const t0 = performance.now();
  const res = await fetch(url, { headers });
  const body = await res.arrayBuffer();
  return { ms: performance.now() - t0, status: res.status, outcome: res.headers.get('x-render-outcome'), bytes: body.byteLength };
}

const stats = (xs: number[]) => ({ p50: percentile(xs, 50), p95: percentile(xs, 95) });
const fmt = (n: number) => n.toFixed(1).padStart(8);

async function main(): Promise<void> {
  const work = await mkdtemp(path.join(os.tmpdir(), 'media-bench-img-'));
  const db = await startEmbeddedPostgres({ dir: path.join(work, 'pg'), database: 'media' });
  const extraEnv = envArgs(values.env as string[]);
  const jpeg = await photoJpeg();
  const pdf = pdfOfSize(jpeg.length);
  const jpegFile = path.join(work, 'photo.jpg');
  const pdfFile = path.join(work, 'doc.pdf');
  await writeFile(jpegFile, jpeg);
  await writeFile(pdfFile, pdf);
  const token = await mintToken(JWT_SECRET, { tenant: 'bench', expiresIn: '2h' });
  const auth = { authorization: `Bearer ${token}` };
  const port = await freePort();
  const service = startChild(
    ['--import', 'tsx', 'src/main.ts'],
    { PORT: String(port), HOST: '127.0.0.1', DATA_DIR: path.join(work, 'data'), DATABASE_URL: db.url, DEV_ALLOW_GENERATED_SECRETS: 'true', JWT_SECRET, LOG_LEVEL: 'warn', SWEEP_INTERVAL_SECONDS: '0', ...extraEnv },
    'service',
  );
  const base = `http://127.0.0.1:${port}`;
  const upload = async (kind: 'jpeg' | 'pdf', i: number): Promise<string> => {
    const r = (await multipartUpload(`${base}/graphql`, token, kind === 'jpeg' ? jpegFile : pdfFile, jpeg.length, UPLOAD, { type: 'property', id: `p-${i}` }, kind === 'jpeg' ? { filename: 'photo.jpg', type: 'image/jpeg' } : { filename: 'doc.pdf', type: 'application/pdf' })) as Answer;
    if (!r.data?.upload || r.data.upload.fileSize !== jpeg.length) throw new Error(`upload failed: ${JSON.stringify(r.errors ?? r).slice(0, 300)}`);
    return r.data.upload.id;
  };
  try {
    await waitFor(`${base}/readyz`, 120_000);
    console.log(`\nphoto: JPEG 4000 x 3000 (12 MP, noise, q90) ${(jpeg.length / MiB).toFixed(2)} MiB; PDF of the same size; one service, local disk`);
    if (Object.keys(extraEnv).length) console.log(`service env: ${JSON.stringify(extraEnv)}`);
    // Warm-up: code paths, pools, sharp.
    await upload('jpeg', -1);
    await upload('pdf', -1);

    // (a) alternating rounds.
    const seconds = { jpeg: 0, pdf: 0 };
    const photos: string[] = [];
    let n = 0;
    for (let round = 0; round < ROUNDS; round++) {
      for (const kind of round % 2 === 0 ? (['jpeg', 'pdf'] as const) : (['pdf', 'jpeg'] as const)) {
        const t0 = performance.now();
        for (let i = 0; i < PER_ROUND; i++) {
          const id = await upload(kind, n++);
          if (kind === 'jpeg') photos.push(id);
        }
        seconds[kind] += (performance.now() - t0) / 1000;
      }
    }
    const bytes = ROUNDS * PER_ROUND * jpeg.length;
    const mbps = { jpeg: bytes / seconds.jpeg / 1e6, pdf: bytes / seconds.pdf / 1e6 };
    console.log('\n(a) upload throughput        |    MB/s | ratio');
    console.log('-----------------------------|---------|------');
    console.log(`PDF (baseline)               | ${fmt(mbps.pdf)}|`);
    console.log(`12 MP JPEG                   | ${fmt(mbps.jpeg)}| ${(mbps.jpeg / mbps.pdf).toFixed(2)}  (target >= 0.85)`);

    // (b) latency: cold on fresh photos, warm on one, against the content route.
    while (photos.length < 2 * COLD + 20) photos.push(await upload('jpeg', n++));
    const kinds = [
      { name: 'THUMB (variant)', path: (id: string) => `/media/${id}/variants/THUMB` },
      { name: '1280 px WebP', path: (id: string) => `/media/${id}/render?w=1280&format=webp` },
    ];
    const latency: Record<string, { cold: ReturnType<typeof stats>; warm: ReturnType<typeof stats> }> = {};
    for (const [k, kind] of kinds.entries()) {
      const cold: number[] = [];
      for (const id of photos.slice(k * COLD, (k + 1) * COLD)) {
        const r = await timedGet(`${base}${kind.path(id)}`, auth);
        if (r.status !== 200 || r.outcome !== 'rendered') throw new Error(`cold ${kind.name}: ${r.status} ${r.outcome}`);
        cold.push(r.ms);
      }
      const warm: number[] = [];
      for (let i = 0; i < WARM; i++) {
        const r = await timedGet(`${base}${kind.path(photos[k * COLD]!)}`, auth);
        if (r.status !== 200 || r.outcome !== 'hit') throw new Error(`warm ${kind.name}: ${r.status} ${r.outcome}`);
        warm.push(r.ms);
      }
      latency[kind.name] = { cold: stats(cold), warm: stats(warm) };
    }
    // The content route of a file of the size of a 1280 px WebP render: the warm render's peer.
    const sizes = await timedGet(`${base}${kinds[1]!.path(photos[COLD]!)}`, auth);
    const original: number[] = [];
    for (let i = 0; i < WARM; i++) original.push((await timedGet(`${base}/media/${photos[0]}/content`, auth)).ms);
    const content = stats(original);
    console.log('\n(b) latency ms               | cold p50 | cold p95 | warm p50 | warm p95');
    console.log('-----------------------------|----------|----------|----------|---------');
    for (const [name, l] of Object.entries(latency)) console.log(`${name.padEnd(28)} | ${fmt(l.cold.p50)} | ${fmt(l.cold.p95)} | ${fmt(l.warm.p50)} | ${fmt(l.warm.p95)}`);
    console.log(`original, content route      |          |          | ${fmt(content.p50)} | ${fmt(content.p95)}   (${(jpeg.length / MiB).toFixed(1)} MiB; the 1280 px WebP is ${(sizes.bytes / 1024).toFixed(0)} KiB)`);
    const warmRatio = latency['1280 px WebP']!.warm.p95 / content.p95;
    console.log(`warm 1280 WebP p95 / original content p95: ${warmRatio.toFixed(2)} (target <= 1)`);

    // (c) 20 cold renders at once, of 20 photos not rendered yet.
    const fresh = photos.slice(2 * COLD, 2 * COLD + 20);
    await new Promise((r) => setTimeout(r, 1000));
    const pid = service.proc.pid!;
    const before = await rssOf(pid);
    const rss = sampleRss(pid, 10);
    const t0 = performance.now();
    const answers = await Promise.all(fresh.map((id) => timedGet(`${base}/media/${id}/render?w=1280&format=webp`, auth)));
    const wall = (performance.now() - t0) / 1000;
    const peak = await rss.stop();
    const statuses: Record<string, number> = {};
    for (const a of answers) statuses[`${a.status} ${a.outcome ?? ''}`.trim()] = (statuses[`${a.status} ${a.outcome ?? ''}`.trim()] ?? 0) + 1;
    const growth = (peak - before) / MiB;
    console.log(`\n(c) 20 concurrent cold renders (1280 px WebP of 20 photos): all answered in ${wall.toFixed(1)} s, answers ${JSON.stringify(statuses)}`);
    console.log(`    RSS before ${(before / MiB).toFixed(0)} MiB, peak ${(peak / MiB).toFixed(0)} MiB: growth ${growth.toFixed(0)} MiB (target < 512)`);
    console.log(
      JSON.stringify({
        bench: 'images',
        photoBytes: jpeg.length,
        uploadMBps: mbps,
        uploadRatio: mbps.jpeg / mbps.pdf,
        latencyMs: latency,
        contentRouteMs: content,
        warmRenderVsContentP95: warmRatio,
        concurrentColdRenders: { count: 20, seconds: wall, rssGrowthMiB: growth, answers: statuses },
        env: extraEnv,
      }),
    );
  } finally {
    await service.stop();
    await db.stop();
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
