// Reads benchmark (SPEC 14): `media(id)` and `mediaForEntity` through GraphQL over
// HTTP, against a plain HTTP endpoint answering the same data from the same
// PostgreSQL with raw SQL (bench/raw-reads-server.ts). Latency: p50/p95 of
// sequential requests (target p50 <= 3 ms). Throughput: requests per second at a
// fixed concurrency, the two servers alternating, medians (target >= 0.35 of raw).
//
//   npm run bench:reads [-- --seconds 5 --concurrency 16 --rounds 3 --profile DIR]
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { mintToken } from '../src/auth/tokens.js';
import { startEmbeddedPostgres } from '../src/db/embedded.js';
import { benchArgs, benchProgress, benchStep, freePort, median, percentile, startChild, waitFor } from './lib.js';

const values = benchArgs(
  {
    seconds: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '3' },
    requests: { type: 'string', default: '1000' },
    // Writes a V8 CPU profile of the service into this folder when it stops.
    profile: { type: 'string' },
  },
  {
    usage: 'npm run bench:reads [-- --seconds 5 --concurrency 16 --rounds 3 --requests 1000 --profile DIR]',
    summary:
      'media(id) and mediaForEntity through GraphQL over HTTP against a plain HTTP endpoint answering the same data with raw SQL: latency (target p50 <= 3 ms) ' +
      'and throughput (target >= 0.35 of raw). Starts its own embedded PostgreSQL and both servers; progress on stderr.',
    options: {
      '--seconds N': 'length of each throughput run (default 5)',
      '--concurrency N': 'requests in flight during throughput runs (default 16)',
      '--rounds N': 'throughput rounds per server, alternating (default 3)',
      '--requests N': 'sequential requests timed for latency (default 1000)',
      '--profile DIR': 'write a V8 CPU profile of the service into DIR when it stops',
    },
  },
);
const SECONDS = Number(values.seconds);
const CONCURRENCY = Number(values.concurrency);
const ROUNDS = Number(values.rounds);
const REQUESTS = Number(values.requests);
const JWT_SECRET = 'bench-secret-bench-secret-bench-secret-0123';
const TENANT = 'bench';
const MEDIA = 20_000;
const ENTITIES = 2_000; // 10 media each

const FIELDS = 'id fileName mediaType kind fileSize checksum tags width height createdAt';
const MEDIA_Q = `query($id: ID!) { media(id: $id) { ${FIELDS} } }`;
const ENTITY_Q = `query($e: EntityInput!) { mediaForEntity(entity: $e, first: 20) { totalCount pageInfo { hasNextPage } nodes { ${FIELDS} } } }`;

const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });

/** One request with node:http (lighter than fetch, so the client takes less of the shared cores). */
function request(url: string, init: { method: string; headers?: Record<string, string>; body?: string }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: init.method, headers: init.headers, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

async function main(): Promise<void> {
  const work = await mkdtemp(path.join(os.tmpdir(), 'media-bench-reads-'));
  const db = await startEmbeddedPostgres({ dir: path.join(work, 'pg'), database: 'media' });
  const apiPort = await freePort();
  const rawPort = await freePort();
  const profile = values.profile ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(values.profile)}`] : [];
  const service = startChild([...profile, '--import', 'tsx', 'src/main.ts'], {
    PORT: String(apiPort), HOST: '127.0.0.1', DATA_DIR: path.join(work, 'data'), DATABASE_URL: db.url, DEV_ALLOW_GENERATED_SECRETS: 'true', JWT_SECRET, LOG_LEVEL: 'warn', SWEEP_INTERVAL_SECONDS: '0',
  }, 'service');
  const raw = startChild(['--import', 'tsx', 'bench/raw-reads-server.ts'], { PORT: String(rawPort), DATABASE_URL: db.url, DEV_ALLOW_GENERATED_SECRETS: 'true', TENANT }, 'raw');
  const api = `http://127.0.0.1:${apiPort}`;
  const rawBase = `http://127.0.0.1:${rawPort}`;
  const sql = new pg.Client({ connectionString: db.url });
  try {
    await waitFor(`${api}/readyz`, 120_000);
    await sql.connect();
    await benchStep(`seeding ${MEDIA} media on ${ENTITIES} entities`, async () => {
      await sql.query(
        `INSERT INTO media (id, tenant_id, file_name, media_type, kind, file_size, checksum, security_level, storage_key, tags, width, height, created_at)
         SELECT gen_random_uuid(), $1, 'photo-' || g || '.jpg', 'image/jpeg', 'IMAGE', 10000 + g, md5(g::text), 'STANDARD', $1 || '/' || g,
                ARRAY['t' || (g % 50), 'room'], 800, 600, now() - (g || ' seconds')::interval
         FROM generate_series(1, $2) g`,
        [TENANT, MEDIA],
      );
      await sql.query(
        `INSERT INTO media_attachment (tenant_id, entity_type, entity_id, media_id)
         SELECT $1, 'property', 'p' || (row_number() OVER (ORDER BY id) % $2), id FROM media WHERE tenant_id = $1`,
        [TENANT, ENTITIES],
      );
      await sql.query('VACUUM ANALYZE');
    });
    await waitFor(`${rawBase}/entity/none/none/media?first=1`, 60_000);
    const ids = (await sql.query<{ id: string }>(`SELECT id FROM media WHERE tenant_id = $1 ORDER BY random() LIMIT 2000`, [TENANT])).rows.map((r) => r.id);
    const token = await mintToken(JWT_SECRET, { tenant: TENANT, expiresIn: '2h' });
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    let n = 0;
    const pick = <T>(xs: T[]): T => xs[n++ % xs.length]!;
    const entities = Array.from({ length: ENTITIES }, (_, i) => `p${i}`);

    const calls = {
      'media(id)': {
        api: () => request(`${api}/graphql`, { method: 'POST', headers, body: JSON.stringify({ query: MEDIA_Q, variables: { id: pick(ids) } }) }),
        raw: () => request(`${rawBase}/media/${pick(ids)}`, { method: 'GET' }),
      },
      mediaForEntity: {
        api: () => request(`${api}/graphql`, { method: 'POST', headers, body: JSON.stringify({ query: ENTITY_Q, variables: { e: { type: 'property', id: pick(entities) } } }) }),
        raw: () => request(`${rawBase}/entity/property/${pick(entities)}/media?first=20`, { method: 'GET' }),
      },
    };

    // The two answer the same data.
    {
      const id = ids[0]!;
      const a = JSON.parse((await request(`${api}/graphql`, { method: 'POST', headers, body: JSON.stringify({ query: MEDIA_Q, variables: { id } }) })).body).data.media;
      const r = JSON.parse((await request(`${rawBase}/media/${id}`, { method: 'GET' })).body).media;
      if (a.id !== r.id || a.checksum !== r.checksum || a.fileSize !== r.fileSize || JSON.stringify(a.tags) !== JSON.stringify(r.tags)) throw new Error(`media(id) answers differ: ${JSON.stringify(a)} vs ${JSON.stringify(r)}`);
      const ae = JSON.parse((await request(`${api}/graphql`, { method: 'POST', headers, body: JSON.stringify({ query: ENTITY_Q, variables: { e: { type: 'property', id: 'p7' } } }) })).body).data.mediaForEntity;
      const re = JSON.parse((await request(`${rawBase}/entity/property/p7/media?first=20`, { method: 'GET' })).body);
      if (ae.totalCount !== re.totalCount || JSON.stringify(ae.nodes.map((x: { id: string }) => x.id)) !== JSON.stringify(re.nodes.map((x: { id: string }) => x.id))) {
        throw new Error('mediaForEntity answers differ');
      }
    }

    const check = (r: { status: number; body: string }) => {
      if (r.status !== 200 || r.body.includes('"errors"')) throw new Error(`request failed: ${r.status} ${r.body.slice(0, 200)}`);
    };
    const latency = async (call: () => Promise<{ status: number; body: string }>) => {
      for (let i = 0; i < 200; i++) check(await call());
      const t: number[] = [];
      for (let i = 0; i < REQUESTS; i++) {
        const t0 = performance.now();
        check(await call());
        t.push(performance.now() - t0);
      }
      return { p50: percentile(t, 50), p95: percentile(t, 95) };
    };
    const throughput = async (call: () => Promise<{ status: number; body: string }>) => {
      const end = performance.now() + SECONDS * 1000;
      let done = 0;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (performance.now() < end) {
            check(await call());
            done++;
          }
        }),
      );
      return done / SECONDS;
    };

    console.log(`\nReads over ${MEDIA} media on ${ENTITIES} entities: GraphQL vs a plain HTTP endpoint with raw SQL on the same PostgreSQL`);
    console.log(`latency: ${REQUESTS} sequential requests; throughput: ${CONCURRENCY} concurrent for ${SECONDS} s, ${ROUNDS} rounds alternating, medians`);
    console.log('query          | API p50 ms | API p95 ms | raw p50 ms | API req/s | raw req/s | ratio | targets (p50 <= 3 ms, ratio >= 0.35)');
    console.log('---------------|------------|------------|------------|-----------|-----------|-------|-------------------------------------');
    const rows = [];
    for (const [name, c] of Object.entries(calls)) {
      // Steps of this query: 2 warm-ups, 2 latency runs, 2 throughput runs per round.
      const shown = benchProgress(`measuring ${name}`);
      const steps = 4 + 2 * ROUNDS;
      let step = 0;
      const stepped = async <T>(run: Promise<T>): Promise<T> => {
        const out = await run;
        shown.update({ done: ++step, total: steps });
        return out;
      };
      shown.update({ done: 0, total: steps });
      // Warm both up under load first (JIT, caches), then time them.
      await stepped(throughput(c.api));
      await stepped(throughput(c.raw));
      const la = await stepped(latency(c.api));
      const lr = await stepped(latency(c.raw));
      const ta: number[] = [];
      const tr: number[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        ta.push(await stepped(throughput(c.api)));
        tr.push(await stepped(throughput(c.raw)));
      }
      shown.finish();
      const row = { query: name, apiP50: la.p50, apiP95: la.p95, rawP50: lr.p50, apiRps: median(ta), rawRps: median(tr), ratio: median(ta) / median(tr) };
      rows.push(row);
      console.log(
        `${name.padEnd(14)} | ${row.apiP50.toFixed(2).padStart(10)} | ${row.apiP95.toFixed(2).padStart(10)} | ${row.rawP50.toFixed(2).padStart(10)} | ${row.apiRps.toFixed(0).padStart(9)} | ${row.rawRps.toFixed(0).padStart(9)} | ${row.ratio.toFixed(2).padStart(5)} | ${row.apiP50 <= 3 ? 'p50 ok' : 'p50 MISS'}, ${row.ratio >= 0.35 ? 'ratio ok' : 'ratio MISS'}`,
      );
    }
    console.log(JSON.stringify({ bench: 'reads', concurrency: CONCURRENCY, seconds: SECONDS, rows }));
  } finally {
    agent.destroy();
    await sql.end().catch(() => undefined);
    await raw.stop();
    await service.stop();
    await db.stop();
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
