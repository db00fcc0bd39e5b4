// Tenant isolation benchmark (issue 10): tenant B's `mediaLibrary` latency, idle and
// while tenant A floods the service with catastrophic regular expressions in
// `assets(q:)`. Prints B's p50/p95 in both phases, their ratio (target: p95 within
// 2x of idle), and what A's requests got (answers, codes, latencies). The phases
// alternate (idle, flood, idle, flood, ...) for --rounds rounds, and the ratio is
// taken within each round, so that a change in the machine's background load
// (other processes share its two cores) does not pass for an effect of the flood.
//
//   npm run bench:isolation [-- --flood 10 --seconds 5 --rounds 3 --env TENANT_EXPENSIVE_QUERY_LIMIT=2]
//
// PostgreSQL (embedded) and the service are child processes of this one; the rows
// are written with SQL. A owns assets whose names are 255 'a's; the pattern
// ^(.*)(.*)(.*)(.*)\4\3\2\1$ (26 characters) asks PostgreSQL's regex engine to try
// every way of splitting such a name in four (it cannot match: 255 is odd), which
// takes far longer than any statement timeout on a single row.
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { mintToken } from '../src/auth/tokens.js';
import { startEmbeddedPostgres } from '../src/db/embedded.js';
import { benchArgs, benchProgress, freePort, median, percentile, startChild, waitFor, envArgs } from './lib.js';

const values = benchArgs(
  {
    // Concurrent request loops of tenant A (each sends its next request when the last one answers).
    flood: { type: 'string', default: '10' },
    // How long B is measured in each phase.
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    // Extra environment for the service, KEY=VALUE (repeatable), e.g. to compare limits.
    env: { type: 'string', multiple: true, default: [] },
  },
  {
    usage: 'npm run bench:isolation [-- --flood 10 --seconds 5 --rounds 3 --env KEY=VALUE …]',
    summary:
      "Tenant B's mediaLibrary latency, idle and while tenant A floods the service with catastrophic regular expressions in assets(q:); " +
      'prints p50/p95 per phase and their ratio (target: p95 within 2x of idle). Starts its own embedded PostgreSQL and service; progress on stderr.',
    options: {
      '--flood N': "tenant A's concurrent request loops (default 10)",
      '--seconds N': 'how long B is measured in each phase (default 5)',
      '--rounds N': 'idle/flood rounds (default 3)',
      '--env KEY=VALUE': 'extra environment for the service, repeatable (e.g. TENANT_EXPENSIVE_QUERY_LIMIT=2)',
    },
  },
);
const FLOOD = Number(values.flood);
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const JWT_SECRET = 'bench-secret-bench-secret-bench-secret-0123';
const A = 'attacker';
const B = 'neighbour';
const B_MEDIA = 5_000;
const A_ASSETS = 50;
export const CATASTROPHIC = '^(.*)(.*)(.*)(.*)\\4\\3\\2\\1$';

const LIBRARY_Q = `query { mediaLibrary(page: 1, pageSize: 20) { total items { id fileName mediaType fileSize createdAt } } }`;
const ASSETS_Q = `query($q: String) { assets(q: $q, pageSize: 20) { totalCount items { id name } } }`;

const agent = new http.Agent({ keepAlive: true, maxSockets: FLOOD + 4 });

function post(url: string, token: string, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** B's requests, one after the other for `seconds`; every answer is checked. */
async function measureB(url: string, token: string, seconds: number): Promise<number[]> {
  const times: number[] = [];
  const body = JSON.stringify({ query: LIBRARY_Q });
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    const t0 = performance.now();
    const r = await post(url, token, body);
    const ms = performance.now() - t0;
    const json = JSON.parse(r.body) as { data?: { mediaLibrary: { total: number } }; errors?: unknown };
    if (json.data?.mediaLibrary.total !== B_MEDIA) throw new Error(`B's mediaLibrary failed: ${r.body.slice(0, 300)}`);
    times.push(ms);
  }
  return times;
}

interface FloodResult {
  outcomes: Map<string, number>;
  times: number[];
}

/** A's loops: each sends the catastrophic query again as soon as it is answered, until stopped. */
function flood(url: string, token: string, loops: number): { stop(): Promise<FloodResult> } {
  let running = true;
  const outcomes = new Map<string, number>();
  const times: number[] = [];
  const body = JSON.stringify({ query: ASSETS_Q, variables: { q: `name:~${CATASTROPHIC}` } });
  const loop = async () => {
    while (running) {
      const t0 = performance.now();
      let outcome: string;
      try {
        const r = await post(url, token, body);
        const json = JSON.parse(r.body) as { data?: unknown; errors?: { extensions?: { code?: string } }[] };
        outcome = json.errors?.length ? String(json.errors[0]!.extensions?.code) : 'answered';
      } catch (e) {
        outcome = `failed: ${(e as Error).message}`;
      }
      times.push(performance.now() - t0);
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
  };
  const all = Promise.all(Array.from({ length: loops }, loop));
  return {
    stop: async () => {
      running = false;
      await all;
      return { outcomes, times };
    },
  };
}

const fmt = (ms: number) => ms.toFixed(1).padStart(7);

async function main(): Promise<void> {
  const work = await mkdtemp(path.join(os.tmpdir(), 'media-bench-isolation-'));
  const db = await startEmbeddedPostgres({ dir: path.join(work, 'pg'), database: 'media' });
  const port = await freePort();
  const extraEnv = envArgs(values.env as string[]);
  const service = startChild(
    ['--import', 'tsx', 'src/main.ts'],
    {
      PORT: String(port),
      HOST: '127.0.0.1',
      DATA_DIR: path.join(work, 'data'),
      DATABASE_URL: db.url, DEV_ALLOW_GENERATED_SECRETS: 'true',
      JWT_SECRET,
      LOG_LEVEL: 'warn',
      SWEEP_INTERVAL_SECONDS: '0',
      ...extraEnv,
    },
    'service',
  );
  const base = `http://127.0.0.1:${port}`;
  const url = `${base}/graphql`;
  const sql = new pg.Client({ connectionString: db.url });
  try {
    await waitFor(`${base}/readyz`, 120_000);
    await sql.connect();
    await sql.query(
      `INSERT INTO media (id, tenant_id, file_name, media_type, kind, file_size, checksum, security_level, storage_key, tags, created_at, updated_at)
       SELECT gen_random_uuid(), $1, 'photo-' || g || '.jpg', 'image/jpeg', 'IMAGE', 1000 + g, md5(g::text), 'STANDARD', $1 || '/x/' || g, ARRAY['t' || g % 50], now() - (g || ' seconds')::interval, now()
       FROM generate_series(1, $2) AS g`,
      [B, B_MEDIA],
    );
    await sql.query(
      `INSERT INTO asset (tenant_id, id, type, access, name, key, link_url, created_at, modified_at)
       SELECT $1, gen_random_uuid(), 'LINK', 'PUBLIC', repeat('a', 255), 'k' || g, 'https://example.com/' || g, now() - (g || ' seconds')::interval, now()
       FROM generate_series(1, $2) AS g`,
      [A, A_ASSETS],
    );
    await sql.query(`VACUUM ANALYZE media`);
    await sql.query(`VACUUM ANALYZE asset`);
    const tokenA = await mintToken(JWT_SECRET, { tenant: A, expiresIn: '2h' });
    const tokenB = await mintToken(JWT_SECRET, { tenant: B, expiresIn: '2h' });
    await measureB(url, tokenB, 2); // warm-up

    const rounds: { idle: number[]; loaded: number[]; attacker: FloodResult }[] = [];
    const shown = benchProgress('idle/flood rounds');
    shown.update({ done: 0, total: ROUNDS });
    for (let r = 0; r < ROUNDS; r++) {
      const idle = await measureB(url, tokenB, SECONDS);
      const attack = flood(url, tokenA, FLOOD);
      await new Promise((res) => setTimeout(res, 1000)); // let the flood reach its steady state
      const loaded = await measureB(url, tokenB, SECONDS);
      const attacker = await attack.stop();
      rounds.push({ idle, loaded, attacker });
      // Let the last of A's statements end before B is measured idle again.
      await new Promise((res) => setTimeout(res, 1500));
      shown.update({ done: r + 1, total: ROUNDS });
    }
    shown.finish();

    console.log(`\ntenant B: mediaLibrary(pageSize: 20) over ${B_MEDIA} media, sequential, ${SECONDS} s per phase, ${ROUNDS} rounds`);
    console.log(`tenant A: ${FLOOD} concurrent loops of assets(q: "name:~${CATASTROPHIC}") over ${A_ASSETS} assets named 'a' x 255`);
    if (Object.keys(extraEnv).length) console.log(`service env: ${JSON.stringify(extraEnv)}`);
    console.log('\nround | phase            | requests |  p50 ms |  p95 ms |  max ms | p95 ratio');
    console.log('------|------------------|----------|---------|---------|---------|----------');
    const ratios: number[] = [];
    rounds.forEach((round, i) => {
      const ratio = percentile(round.loaded, 95) / percentile(round.idle, 95);
      ratios.push(ratio);
      for (const [name, xs] of [['B idle', round.idle], ['B while A floods', round.loaded]] as const) {
        const last = name !== 'B idle';
        console.log(
          `${String(i + 1).padStart(5)} | ${name.padEnd(16)} | ${String(xs.length).padStart(8)} | ${fmt(percentile(xs, 50))} | ${fmt(percentile(xs, 95))} | ${fmt(Math.max(...xs))} | ${last ? ratio.toFixed(2).padStart(9) : ''}`,
        );
      }
    });
    const ratio = median(ratios);
    const idleAll = rounds.flatMap((r) => r.idle);
    const loadedAll = rounds.flatMap((r) => r.loaded);
    const outcomes = new Map<string, number>();
    const aTimes = rounds.flatMap((r) => r.attacker.times);
    for (const r of rounds) for (const [k, n] of r.attacker.outcomes) outcomes.set(k, (outcomes.get(k) ?? 0) + n);
    console.log(`\nB p95 while A floods / idle, median of the rounds: ${ratio.toFixed(2)} (target <= 2: ${ratio <= 2 ? 'ok' : 'MISS'})`);
    console.log(`B over all rounds: idle p50 ${percentile(idleAll, 50).toFixed(1)} / p95 ${percentile(idleAll, 95).toFixed(1)} ms; flooded p50 ${percentile(loadedAll, 50).toFixed(1)} / p95 ${percentile(loadedAll, 95).toFixed(1)} ms`);
    console.log(`A: ${aTimes.length} requests, p50 ${percentile(aTimes, 50).toFixed(0)} ms, p95 ${percentile(aTimes, 95).toFixed(0)} ms; outcomes ${JSON.stringify(Object.fromEntries(outcomes))}`);
    console.log(
      JSON.stringify({
        bench: 'tenant-isolation',
        flood: FLOOD,
        env: extraEnv,
        rounds: rounds.map((r) => ({ idleP95: percentile(r.idle, 95), loadedP95: percentile(r.loaded, 95), idleN: r.idle.length, loadedN: r.loaded.length })),
        ratio,
        attacker: Object.fromEntries(outcomes),
      }),
    );
  } finally {
    await sql.end().catch(() => undefined);
    await service.stop();
    await db.stop();
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
