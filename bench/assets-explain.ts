// The query plan of one filtered, sorted `assets` page on 100,000 assets of one
// tenant: the statements are compiled by the service's own query language
// (src/modules/assets/query-language.ts via asset.repository.ts), run with
// EXPLAIN (ANALYZE, BUFFERS), then timed warm (median of --runs).
//
//   npx tsx bench/assets-explain.ts [-- --rows 100000 --others 0 --runs 7
//        --q 'access:PUBLIC details.bytes:>1000 active:true' --sort 'priority:desc,name' --page-size 60 --page 1]
//
// It starts its own embedded PostgreSQL in a temporary directory, applies the
// migrations, and removes everything at the end.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres } from '../src/db/embedded.js';
import { migrate } from '../src/db/migrate.js';
import { pageStatements } from '../src/modules/assets/asset.repository.js';
import type { Prisma } from '../src/generated/prisma/client.js';
import { benchArgs, benchStep, median } from './lib.js';

const values = benchArgs(
  {
    rows: { type: 'string', default: '100000' },
    others: { type: 'string', default: '0' },
    runs: { type: 'string', default: '7' },
    q: { type: 'string', default: 'access:PUBLIC details.bytes:>1000 active:true' },
    sort: { type: 'string', default: 'priority:desc,name' },
    'page-size': { type: 'string', default: '60' },
    page: { type: 'string', default: '1' },
  },
  {
    usage: "npx tsx bench/assets-explain.ts [-- --rows 100000 --others 0 --runs 7 --q '…' --sort '…' --page-size 60 --page 1]",
    summary:
      'The query plan (EXPLAIN ANALYZE, BUFFERS) and warm timing of one filtered, sorted assets page, compiled by the service\'s own query language. ' +
      'Starts its own embedded PostgreSQL in a temporary directory.',
    options: {
      '--rows N': 'assets of the measured tenant (default 100000)',
      '--others N': 'assets of other tenants (default 0)',
      '--runs N': 'timed runs, median (default 7)',
      '--q Q': 'the asset query (default access:PUBLIC details.bytes:>1000 active:true)',
      '--sort S': 'the sort (default priority:desc,name)',
      '--page-size N': 'default 60',
      '--page N': 'default 1',
    },
  },
);
const ROWS = Number(values.rows);
const OTHERS = Number(values.others);
const RUNS = Number(values.runs);
const TENANT = 'bench';
const pageSize = Number(values['page-size']);
const pageNumber = Number(values.page);

/**
 * Inserts `n` assets for a tenant in one statement. Distribution: 80% BLOB (every fifth is a LINK; bytes
 * 0-5 MB, a PDF or JPEG name and type), 20% LINK; 50% PUBLIC; 90% active; priority
 * 0-99; names from a small vocabulary plus the row number; one PRODUCT reference of
 * 5,000; created one second apart.
 */
async function seed(client: pg.Client, tenant: string, n: number): Promise<void> {
  await client.query(
    `INSERT INTO asset (tenant_id, id, type, access, name, key, ref_ids, priority, active, link_url,
                        storage_key, file_name, mime_type, bytes, checksum, variants, created_at, modified_at)
     SELECT $1, gen_random_uuid(), t.type::"AssetType",
            (CASE WHEN random() < 0.5 THEN 'PUBLIC' ELSE 'PRIVATE' END)::"AssetAccess",
            (ARRAY['Spring', 'Summer', 'Autumn', 'Winter', 'Sale', 'Catalogue', 'Datasheet', 'Hero'])[1 + (g % 8)] || ' ' || g,
            'k' || g,
            jsonb_build_array(jsonb_build_object('id', 'p' || (g % 5000), 'type', 'PRODUCT')),
            floor(random() * 100)::int, random() < 0.9,
            CASE WHEN t.type = 'LINK' THEN 'https://example.com/' || g END,
            CASE WHEN t.type = 'BLOB' THEN $1 || '/' || gen_random_uuid() || '/v1/original' END,
            CASE WHEN t.type = 'BLOB' THEN 'file-' || g || CASE WHEN g % 2 = 0 THEN '.pdf' ELSE '.jpg' END END,
            CASE WHEN t.type = 'BLOB' THEN CASE WHEN g % 2 = 0 THEN 'application/pdf' ELSE 'image/jpeg' END END,
            CASE WHEN t.type = 'BLOB' THEN floor(random() * 5000000)::bigint END,
            CASE WHEN t.type = 'BLOB' THEN md5(g::text) || md5(g::text) END,
            '[]'::jsonb,
            now() - make_interval(secs => g), now() - make_interval(secs => g)
     FROM generate_series(1, $2::int) AS g
     CROSS JOIN LATERAL (SELECT CASE WHEN g % 5 = 0 THEN 'LINK' ELSE 'BLOB' END AS type) t`,
    [tenant, n],
  );
}

async function explain(client: pg.Client, label: string, sql: Prisma.Sql): Promise<void> {
  const { rows } = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${sql.text}`, sql.values as unknown[]);
  console.log(`\n--- ${label}: EXPLAIN (ANALYZE, BUFFERS)\n${rows.map((r) => r['QUERY PLAN']).join('\n')}`);
}

async function timed(client: pg.Client, sql: Prisma.Sql): Promise<{ ms: number; rows: number }> {
  const times: number[] = [];
  let count = 0;
  for (let i = 0; i < RUNS; i++) {
    const t0 = process.hrtime.bigint();
    const r = await client.query(sql.text, sql.values as unknown[]);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    count = r.rowCount ?? 0;
  }
  return { ms: median(times), rows: count };
}

const dir = await mkdtemp(path.join(os.tmpdir(), 'assets-explain-'));
const db = await startEmbeddedPostgres({ dir: path.join(dir, 'pg'), database: 'assets_bench' });
const client = new pg.Client({ connectionString: db.url });
try {
  await migrate(db.url);
  await client.connect();
  const t0 = Date.now();
  await benchStep(`seeding ${ROWS + OTHERS} assets`, async () => {
    await seed(client, TENANT, ROWS);
    for (let i = 0; i < Math.ceil(OTHERS / 10_000); i++) await seed(client, `other${i}`, Math.min(10_000, OTHERS - i * 10_000));
    await client.query('ANALYZE asset');
  });
  const { rows: sizes } = await client.query<{ n: string; size: string }>(`SELECT count(*) AS n, pg_size_pretty(pg_total_relation_size('asset')) AS size FROM asset`);
  console.log(`seeded ${ROWS} assets for tenant "${TENANT}" (+${OTHERS} of other tenants) in ${Date.now() - t0} ms; table with indexes: ${sizes[0]!.size}`);

  const statements = pageStatements(TENANT, { q: values.q!, sort: values.sort!, limit: pageSize, offset: (pageNumber - 1) * pageSize });
  console.log(`\nq    = ${values.q}\nsort = ${values.sort}\npage = ${pageNumber}, pageSize = ${pageSize}`);
  console.log(`\npage SQL:  ${statements.page.text}\nvalues:    ${JSON.stringify(statements.page.values)}`);
  console.log(`count SQL: ${statements.count.text}`);

  await explain(client, 'page', statements.page);
  await explain(client, 'count (totalCount)', statements.count);

  const page = await timed(client, statements.page);
  const count = await timed(client, statements.count);
  const total = (await client.query<{ total: string }>(statements.count.text, statements.count.values as unknown[])).rows[0]!.total;
  console.log(`\nwarm, median of ${RUNS} runs: page ${page.ms.toFixed(2)} ms (${page.rows} rows), count ${count.ms.toFixed(2)} ms (totalCount ${total})`);
} finally {
  await client.end().catch(() => undefined);
  await db.stop();
  await rm(dir, { recursive: true, force: true });
}
