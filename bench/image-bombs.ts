// Image bomb benchmark (issue 10): uploads of a large-but-small PNG (a solid
// colour of 8900 x 8900 pixels, a few hundred KB on the wire, 79 megapixels to
// decode), 1, 4 and 8 at once, each level on a fresh service, each followed by
// the first request of its THUMB (since issue 14 uploads decode nothing: the
// decode happens in that render). Prints the time until every render answered,
// the service's peak RSS growth, how the answers went (ok or a code or status),
// and the slowest /healthz seen meanwhile.
//
//   npm run bench:image-bombs [-- --levels 1,4,8 --side 8900 --env IMAGE_CONCURRENCY=1]
import { mkdtemp, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { mintToken } from '../src/auth/tokens.js';
import { startEmbeddedPostgres } from '../src/db/embedded.js';
import { benchArgs, freePort, MiB, rssOf, sampleRss, startChild, waitFor, envArgs } from './lib.js';

const values = benchArgs(
  {
    levels: { type: 'string', default: '1,4,8' },
    side: { type: 'string', default: '8900' },
    // Extra environment for the service, KEY=VALUE (repeatable).
    env: { type: 'string', multiple: true, default: [] },
  },
  {
    usage: 'npm run bench:image-bombs [-- --levels 1,4,8 --side 8900 --env KEY=VALUE …]',
    summary:
      'Uploads of a solid-colour PNG of --side x --side pixels, 1, 4 and 8 at once, each level on a fresh service: time, peak RSS growth, answers, slowest /healthz. ' +
      'Starts its own embedded PostgreSQL and services; one line per level.',
    options: {
      '--levels N,…': 'uploads at once, one fresh service per level (default 1,4,8)',
      '--side N': 'width and height of the PNG in pixels (default 8900)',
      '--env KEY=VALUE': 'extra environment for the service, repeatable (e.g. IMAGE_CONCURRENCY=1)',
    },
  },
);
const LEVELS = values.levels.split(',').map(Number);
const SIDE = Number(values.side);
const JWT_SECRET = 'bench-secret-bench-secret-bench-secret-0123';
const UPLOAD = `mutation($input: UploadInput!) { upload(input: $input) { id width height variants { name width } } }`;

function upload(url: string, token: string, png: Buffer, i: number): Promise<string> {
  const boundary = `----bench${randomBytes(8).toString('hex')}`;
  const operations = JSON.stringify({ query: UPLOAD, variables: { input: { file: null, entity: { type: 'property', id: `p-${i}` } } } });
  const body = Buffer.concat([
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="operations"\r\n\r\n${operations}\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="map"\r\n\r\n{"0":["variables.input.file"]}\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="0"; filename="big.png"\r\nContent-Type: image/png\r\n\r\n`,
    ),
    png,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'apollo-require-preflight': 'true', 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': String(body.length) },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        const json = JSON.parse(text) as { data?: { upload?: { id: string; width: number } }; errors?: { extensions?: { code?: string } }[] };
        if (json.data?.upload?.width !== SIDE) return resolve(String(json.errors?.[0]?.extensions?.code ?? `status ${res.statusCode}`));
        // The decode: the THUMB's first request renders it.
        fetch(`${url.replace(/\/graphql$/, '')}/media/${json.data.upload.id}/variants/THUMB`, { headers: { authorization: `Bearer ${token}` } })
          .then(async (r) => {
            await r.arrayBuffer();
            resolve(r.status === 200 ? 'ok' : `render ${r.status}`);
          }, reject);
      });
    });
    req.end(body);
  });
}

/** Polls /healthz every 50 ms; returns the slowest answer. */
function watchHealth(base: string): { stop(): Promise<number> } {
  let running = true;
  let worst = 0;
  const loop = (async () => {
    while (running) {
      const t0 = performance.now();
      await fetch(`${base}/healthz`).then((r) => r.text());
      worst = Math.max(worst, performance.now() - t0);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return worst;
    },
  };
}

async function main(): Promise<void> {
  const work = await mkdtemp(path.join(os.tmpdir(), 'media-bench-images-'));
  const db = await startEmbeddedPostgres({ dir: path.join(work, 'pg'), database: 'media' });
  const extraEnv = envArgs(values.env as string[]);
  // RGBA like test/helpers/files.ts png(): about 320 KB for 8900 x 8900.
  const png = await sharp({ create: { width: SIDE, height: SIDE, channels: 4, background: { r: 200, g: 120, b: 40, alpha: 1 } } }).png().toBuffer();
  const token = await mintToken(JWT_SECRET, { tenant: 'bench', expiresIn: '2h' });
  console.log(`\nPNG ${SIDE} x ${SIDE} (${(SIDE * SIDE / 1e6).toFixed(1)} MP), ${(png.length / 1024).toFixed(0)} KiB; a fresh service per level, local disk`);
  if (Object.keys(extraEnv).length) console.log(`service env: ${JSON.stringify(extraEnv)}`);
  console.log('\nat once | all answered s | peak RSS growth MiB | answers                  | slowest /healthz ms');
  console.log('--------|----------------|---------------------|--------------------------|--------------------');
  const results = [];
  try {
    for (const level of LEVELS) {
      const port = await freePort();
      const service = startChild(
        ['--import', 'tsx', 'src/main.ts'],
        { PORT: String(port), HOST: '127.0.0.1', DATA_DIR: path.join(work, `data-${level}`), DATABASE_URL: db.url, DEV_ALLOW_GENERATED_SECRETS: 'true', JWT_SECRET, LOG_LEVEL: 'warn', SWEEP_INTERVAL_SECONDS: '0', ...extraEnv },
        'service',
      );
      const base = `http://127.0.0.1:${port}`;
      try {
        await waitFor(`${base}/readyz`, 120_000);
        // One small upload first, so that sharp, the code paths and the pools are warm.
        const small = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#888' } }).png().toBuffer();
        await upload(`${base}/graphql`, token, small, -1);
        await new Promise((r) => setTimeout(r, 500));
        const pid = service.proc.pid!;
        const before = await rssOf(pid);
        const rss = sampleRss(pid, 20);
        const health = watchHealth(base);
        const t0 = performance.now();
        const answers = await Promise.all(Array.from({ length: level }, (_, i) => upload(`${base}/graphql`, token, png, i)));
        const seconds = (performance.now() - t0) / 1000;
        const peak = await rss.stop();
        const worstHealth = await health.stop();
        const counts: Record<string, number> = {};
        for (const a of answers) counts[a] = (counts[a] ?? 0) + 1;
        const growth = (peak - before) / MiB;
        results.push({ level, seconds, rssGrowthMiB: growth, answers: counts, slowestHealthzMs: worstHealth });
        console.log(`${String(level).padStart(7)} | ${seconds.toFixed(1).padStart(14)} | ${growth.toFixed(0).padStart(19)} | ${JSON.stringify(counts).padEnd(24)} | ${worstHealth.toFixed(0).padStart(19)}`);
      } finally {
        await service.stop();
      }
    }
    console.log(JSON.stringify({ bench: 'image-uploads', side: SIDE, pngBytes: png.length, env: extraEnv, results }));
  } finally {
    await db.stop();
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
