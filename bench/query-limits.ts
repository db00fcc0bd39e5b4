// Query limits benchmark (issue 10, defects 4-6): the attack documents against a
// real service process, each next to a small legitimate query. For every request:
// time to answer, status, code, answer bytes, the slowest /healthz answer while it
// ran (polled every 20 ms on another connection) and the service's peak RSS growth.
// Prints each attack's time and /healthz stall as a ratio of the small query's.
//
//   npx tsx bench/query-limits.ts [-- --rounds 3 --media 30]
//
// The service runs with NODE_ENV=production and INTROSPECTION=true (the
// introspection attack needs introspection on; production turns it off by default).
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { mintToken } from '../src/auth/tokens.js';
import { startEmbeddedPostgres } from '../src/db/embedded.js';
import { benchArgs, benchProgress, freePort, median, rssOf, sampleRss, startChild, waitFor } from './lib.js';
const JWT_SECRET = 'bench-secret-bench-secret-bench-secret-0123';
const TENANT = 'bench';

/** `fragment F0 on Query { __typename }`, F<i> spreading F<i-1> twice, `query { ...F<n> }`. */
export function fragmentBomb(n: number): string {
  let s = 'fragment F0 on Query { __typename }\n';
  for (let i = 1; i <= n; i++) s += `fragment F${i} on Query { ...F${i - 1} ...F${i - 1} }\n`;
  return `${s}query { ...F${n} }`;
}

/** 50 aliased `__schema`, each spreading a fragment of 50 aliased `types { … }`. */
export function introspectionBomb(outer = 50, inner = 50): string {
  const types = Array.from({ length: inner }, (_, i) => `t${i}:types{name fields{name}}`).join(' ');
  const schemas = Array.from({ length: outer }, (_, i) => `s${i}:__schema{...T}`).join(' ');
  return `fragment T on __Schema{${types}} query{${schemas}}`;
}

/** `count` aliases on `__typename`. */
export function typenameAliases(count: number): string {
  return `{${Array.from({ length: count }, (_, i) => `a${i}:__typename`).join(' ')}}`;
}

export const LIST_BOMB = `query($refs: [EntityInput!]!) { entities(refs: $refs) { media(first: 100) { nodes { entities { media(first: 100) { nodes { id url } } } } } } }`;

const LIST_ONE_LEVEL = `query($refs: [EntityInput!]!) { entities(refs: $refs) { media(first: 100) { nodes { id url } } } }`;

const agent = new http.Agent({ keepAlive: true });
const healthAgent = new http.Agent({ keepAlive: true });

function request(url: string, init: { method: string; headers?: Record<string, string>; body?: string }, via = agent): Promise<{ status: number; bytes: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: init.method, headers: init.headers, agent: via }, (res) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (bytes < 4096) chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode!, bytes, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

async function main(): Promise<void> {
  // Read here, not at import: the attack documents above are exported.
  const values = benchArgs(
    { rounds: { type: 'string', default: '3' }, media: { type: 'string', default: '30' } },
    {
      usage: 'npx tsx bench/query-limits.ts [-- --rounds 3 --media 30]',
      summary:
        'The query-limit attack documents against a real service process (NODE_ENV=production, INTROSPECTION=true), each next to a small legitimate query: ' +
        'time, status, code, answer size, the slowest /healthz meanwhile and the RSS growth. Starts its own embedded PostgreSQL and service; progress on stderr.',
      options: { '--rounds N': 'timed rounds after a warm-up round (default 3)', '--media N': 'media on the attacked entity (default 30)' },
    },
  );
  const ROUNDS = Number(values.rounds);
  const MEDIA = Number(values.media);
  const work = await mkdtemp(path.join(os.tmpdir(), 'media-bench-limits-'));
  const db = await startEmbeddedPostgres({ dir: path.join(work, 'pg'), database: 'media' });
  const port = await freePort();
  const service = startChild(['--import', 'tsx', 'src/main.ts'], {
    PORT: String(port), HOST: '127.0.0.1', DATA_DIR: path.join(work, 'data'), DATABASE_URL: db.url, DEV_ALLOW_GENERATED_SECRETS: 'true', JWT_SECRET, LOG_LEVEL: 'warn',
    SWEEP_INTERVAL_SECONDS: '0', NODE_ENV: 'production', INTROSPECTION: 'true',
  }, 'service');
  const api = `http://127.0.0.1:${port}`;
  const sql = new pg.Client({ connectionString: db.url });
  try {
    await waitFor(`${api}/readyz`, 120_000);
    await sql.connect();
    // 30 media on one entity by default, as in the issue's reproduction.
    await sql.query(
      `INSERT INTO media (id, tenant_id, file_name, media_type, kind, file_size, checksum, security_level, storage_key, tags, width, height, created_at)
       SELECT gen_random_uuid(), $1, 'photo-' || g || '.jpg', 'image/jpeg', 'IMAGE', 10000 + g, md5(g::text), 'STANDARD', $1 || '/' || g,
              ARRAY['room'], 800, 600, now() - (g || ' seconds')::interval
       FROM generate_series(1, $2) g`,
      [TENANT, MEDIA],
    );
    await sql.query(`INSERT INTO media_attachment (tenant_id, entity_type, entity_id, media_id) SELECT $1, 'property', 'p1', id FROM media WHERE tenant_id = $1`, [TENANT]);
    const token = await mintToken(JWT_SECRET, { tenant: TENANT, scopes: ['media:read'], expiresIn: '2h' });
    const refs = Array.from({ length: 200 }, () => ({ type: 'property', id: 'p1' }));

    const cases = ([
      { name: 'small query', payload: { query: '{ mediaPolicies { entityType } }' }, auth: true },
      { name: 'fragment bomb F21', payload: { query: fragmentBomb(21) }, auth: false },
      { name: 'introspection 50x50', payload: { query: introspectionBomb() }, auth: false },
      { name: '__typename x58000', payload: { query: typenameAliases(58_000) }, auth: false },
      { name: 'list amplification', payload: { query: LIST_BOMB, variables: { refs } }, auth: true },
      // The slowest document for graphql-js's own rules found within 2,000 tokens (OverlappingFieldsCanBeMerged compares same-name fields pairwise).
      { name: 'same-name x153', payload: { query: `{ ${Array.from({ length: 153 }, () => 'media(id: "1") { id id id id id }').join(' ')} }` }, auth: false },
      // Near the largest answers under the cost limit (50,000): 36 refs x 100 nodes with a signed url (46,872),
      // 124 refs x 100 nodes of two plain fields (49,848). With fewer media than 100 the answers are smaller.
      { name: 'accepted 36 x 100 url', payload: { query: LIST_ONE_LEVEL, variables: { refs: refs.slice(0, 36) } }, auth: true },
      { name: 'accepted 124 x 100', payload: { query: LIST_ONE_LEVEL.replace('id url', 'id fileName'), variables: { refs: refs.slice(0, 124) } }, auth: true },
    ] as { name: string; payload: { query: string }; auth: boolean }[]).map((c) => ({ ...c, body: '' }));
    const pid = service.proc.pid!;
    const rows: Record<string, { ms: number[]; stall: number[]; rss: number[]; status: number; bytes: number; code: string; size: number }> = {};
    // Round 0 warms up (JIT, connections, the token cache) and is not counted.
    const shown = benchProgress('requests');
    const total = (ROUNDS + 1) * cases.length;
    let done = 0;
    shown.update({ done, total });
    for (let round = 0; round <= ROUNDS; round++) {
      for (const c of cases) {
        // A new comment each round: Apollo caches validated documents by their text, which would skip validation.
        c.body = JSON.stringify({ ...c.payload, query: `${c.payload.query}\n# round ${round}` });
        const headers: Record<string, string> = { 'content-type': 'application/json', ...(c.auth ? { authorization: `Bearer ${token}` } : {}) };
        const rss0 = await rssOf(pid);
        const rss = sampleRss(pid, 10);
        let polling = true;
        let stall = 0;
        const poll = (async () => {
          while (polling) {
            const t = performance.now();
            await request(`${api}/healthz`, { method: 'GET' }, healthAgent).catch(() => undefined);
            stall = Math.max(stall, performance.now() - t);
            await new Promise((r) => setTimeout(r, 20));
          }
        })();
        const t0 = performance.now();
        const r = await request(`${api}/graphql`, { method: 'POST', headers, body: c.body }).catch((e: Error) => ({ status: 0, bytes: 0, body: `{"errors":[{"extensions":{"code":"${e.message}"}}]}` }));
        const ms = performance.now() - t0;
        polling = false;
        await poll;
        const peak = await rss.stop();
        if (round === ROUNDS && r.status !== 200) console.log(`${c.name}: ${r.body.slice(0, 200)}`);
        let code = '-';
        try {
          code = String((JSON.parse(r.body) as { errors?: { extensions?: { code?: string } }[] }).errors?.[0]?.extensions?.code ?? '-');
        } catch {
          code = r.bytes >= 4096 ? '(large answer)' : '(not JSON)';
        }
        shown.update({ done: ++done, total });
        if (round === 0) continue;
        const row = (rows[c.name] ??= { ms: [], stall: [], rss: [], status: r.status, bytes: r.bytes, code, size: c.body.length });
        row.ms.push(ms);
        row.stall.push(stall);
        row.rss.push(Math.max(0, peak - rss0));
      }
    }
    shown.finish();
    const base = rows['small query']!;
    console.log(`\n${'case'.padEnd(22)} ${'request'.padStart(9)} ${'status'.padStart(6)} ${'code'.padEnd(26)} ${'answer'.padStart(12)} ${'time'.padStart(9)} ${'healthz max'.padStart(11)} ${'RSS +'.padStart(9)}  ratio time / healthz (vs small query)`);
    for (const [name, r] of Object.entries(rows)) {
      const ms = median(r.ms);
      const stall = median(r.stall);
      console.log(
        `${name.padEnd(22)} ${`${r.size} B`.padStart(9)} ${String(r.status).padStart(6)} ${r.code.padEnd(26)} ${`${r.bytes} B`.padStart(12)} ${`${ms.toFixed(1)} ms`.padStart(9)} ${`${stall.toFixed(1)} ms`.padStart(11)} ${`${(median(r.rss) / 2 ** 20).toFixed(0)} MiB`.padStart(9)}  ${(ms / median(base.ms)).toFixed(1)} / ${(stall / median(base.stall)).toFixed(1)}`,
      );
    }
  } finally {
    await sql.end().catch(() => undefined);
    await service.stop();
    await db.stop();
    await rm(work, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
