// The reads benchmark's baseline (SPEC 14): a plain HTTP endpoint answering the
// same data as `media(id)` and `mediaForEntity` from the same PostgreSQL with raw
// SQL, no GraphQL, no auth. Run as its own process by bench/reads.ts.
import http from 'node:http';
import pg from 'pg';

const pool = new pg.Pool({ connectionString: process.env['DATABASE_URL'], max: 10 });
const TENANT = process.env['TENANT']!;
const COLUMNS = `id, file_name AS "fileName", media_type AS "mediaType", kind, file_size::int AS "fileSize", checksum, tags, width, height, created_at AS "createdAt"`;

const server = http.createServer((req, res) => {
  const url = new URL(req.url!, 'http://x');
  const send = (status: number, body: unknown) => {
    const json = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
    res.end(json);
  };
  const m = /^\/media\/([0-9a-f-]{36})$/.exec(url.pathname);
  const e = /^\/entity\/([^/]+)\/([^/]+)\/media$/.exec(url.pathname);
  const work = m
    ? pool.query(`SELECT ${COLUMNS} FROM media WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL`, [TENANT, m[1]]).then((r) => ({ media: r.rows[0] ?? null }))
    : e
      ? Promise.all([
          pool.query(
            `SELECT ${COLUMNS.replace(/(^|, )(\w)/g, '$1m.$2')} FROM media_attachment a JOIN media m ON m.tenant_id = a.tenant_id AND m.id = a.media_id AND m.deleted_at IS NULL
             WHERE a.tenant_id = $1 AND a.entity_type = $2 AND a.entity_id = $3 ORDER BY m.created_at DESC, m.id DESC LIMIT $4`,
            [TENANT, e[1], e[2], Number(url.searchParams.get('first') ?? 20) + 1],
          ),
          pool.query(
            `SELECT count(*)::int AS n FROM media_attachment a JOIN media m ON m.tenant_id = a.tenant_id AND m.id = a.media_id AND m.deleted_at IS NULL
             WHERE a.tenant_id = $1 AND a.entity_type = $2 AND a.entity_id = $3`,
            [TENANT, e[1], e[2]],
          ),
        ]).then(([rows, count]) => ({ nodes: rows.rows.slice(0, Number(url.searchParams.get('first') ?? 20)), hasNextPage: rows.rows.length > Number(url.searchParams.get('first') ?? 20), totalCount: count.rows[0].n }))
      : null;
  if (!work) return send(404, { error: 'not found' });
  work.then((body) => send(200, body), (err: Error) => send(500, { error: err.message }));
});
server.listen(Number(process.env['PORT']), '127.0.0.1');
process.on('SIGTERM', () => {
  server.close();
  void pool.end().then(() => process.exit(0));
});
