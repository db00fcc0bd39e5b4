// The committed artefacts stay in step with their sources:
//  (a) schema.graphql with the resolvers;
//  (b) prisma/schema.prisma with the SQL migrations (the Prisma schema engine,
//      which would diff them, cannot run here: ENVIRONMENT.md);
//  (c) the migration runner's history with the migration files.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { cp, mkdtemp, readdir, readFile, rm, writeFile, appendFile, mkdir } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import os from 'node:os';
import { promisify } from 'node:util';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { MIGRATIONS_DIR, migrate } from '../../src/db/migrate.js';
import { createDatabase, type Database } from '../../src/db/prisma.js';
import { Prisma } from '../../src/generated/prisma/client.js';

/** Values for columns with a CHECK constraint in the SQL migrations (text columns whose values Prisma does not know). */
const CHECKED_VALUES: Record<string, unknown> = {
  'Media.encryptionMode': 'sse-c',
  'Media.encryptionKeyFp': '0123456789abcdef',
  'ImageRender.ownerKind': 'asset',
  'ImageRender.paramsHash': '0123456789abcdef0123456789abcdef',
};
import { newTenant } from '../helpers/app.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const execFileAsync = promisify(execFile);

describe('schema.graphql', () => {
  it('is what the resolvers print (run `npm run schema:emit` when this fails)', async () => {
    const committed = await readFile(path.join(ROOT, 'schema.graphql'), 'utf8');
    // renderSchema() as `npm run schema:emit` runs it: in Node, through tsx (see the helper for why not in-process).
    const { stdout } = await execFileAsync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test/helpers/render-schema.ts')], {
      cwd: ROOT,
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, NODE_NO_WARNINGS: '1' },
    });
    expect(stdout).toMatch(/^# Generated from the resolvers by `npm run schema:emit`/);
    expect(stdout).toContain('type Query');
    expect(committed === stdout, 'schema.graphql is stale: run `npm run schema:emit` and commit the result').toBe(true);
  }, 60_000);
});

// ---------------------------------------------------------------------------
// A small reader of prisma/schema.prisma: models, fields, attributes, enums.

interface PField {
  name: string;
  type: string;
  list: boolean;
  optional: boolean;
  column: string;
  attrs: string;
  isId: boolean;
  isUnique: boolean;
  default: string | undefined;
  relation: { fields: string[]; references: string[]; onDelete: string | undefined } | undefined;
}

interface PModel {
  name: string;
  table: string;
  fields: PField[];
  scalars: PField[];
  relations: PField[];
  primaryKey: string[];
  uniques: string[][];
  indexes: { columns: string[]; type: string | undefined }[];
}

function balancedArg(attrs: string, attr: string): string | undefined {
  const at = attrs.indexOf(`${attr}(`);
  if (at < 0) return undefined;
  let depth = 0;
  for (let i = at + attr.length; i < attrs.length; i++) {
    if (attrs[i] === '(') depth++;
    else if (attrs[i] === ')' && --depth === 0) return attrs.slice(at + attr.length + 1, i);
  }
  throw new Error(`unbalanced ${attr} in ${attrs}`);
}

const listOf = (s: string) =>
  s
    .replace(/^\s*\[|\]\s*$/g, '')
    .split(',')
    .map((x) => x.trim().replace(/\(.*\)$/, ''))
    .filter(Boolean);

function parsePrismaSchema(text: string): { models: PModel[]; enums: Map<string, string[]> } {
  const clean = text.replace(/\/\/.*$/gm, '');
  const enums = new Map<string, string[]>();
  for (const m of clean.matchAll(/^enum\s+(\w+)\s*\{([^}]*)\}/gm)) enums.set(m[1]!, m[2]!.split(/\s+/).filter(Boolean));
  const blocks = [...clean.matchAll(/^model\s+(\w+)\s*\{([^}]*)\}/gm)];
  const modelNames = new Set(blocks.map((b) => b[1]!));
  const models = blocks.map(([, name, body]) => {
    const fields: PField[] = [];
    let table = name!;
    let primaryKey: string[] = [];
    const uniques: string[][] = [];
    const indexes: PModel['indexes'] = [];
    for (const raw of body!.split('\n')) {
      const line = raw.trim();
      if (!line) continue;
      if (line.startsWith('@@')) {
        const map = /^@@map\("([^"]+)"\)/.exec(line);
        if (map) table = map[1]!;
        const cols = /^@@(id|unique|index)\((\[[^\]]*\])(.*)\)$/.exec(line);
        if (cols) {
          const columns = listOf(cols[2]!);
          if (cols[1] === 'id') primaryKey = columns;
          else if (cols[1] === 'unique') uniques.push(columns);
          else indexes.push({ columns, type: /type:\s*(\w+)/.exec(cols[3]!)?.[1] });
        }
        continue;
      }
      const f = /^(\w+)\s+(\w+)(\[\])?(\?)?\s*(.*)$/.exec(line);
      if (!f) throw new Error(`unparsed line in model ${name}: ${line}`);
      const attrs = f[5]!;
      const rel = balancedArg(attrs, '@relation');
      fields.push({
        name: f[1]!,
        type: f[2]!,
        list: !!f[3],
        optional: !!f[4],
        column: /@map\("([^"]+)"\)/.exec(attrs)?.[1] ?? f[1]!,
        attrs,
        isId: /@id\b/.test(attrs),
        isUnique: /@unique\b/.test(attrs),
        default: balancedArg(attrs, '@default'),
        relation:
          modelNames.has(f[2]!) && rel && /fields:/.test(rel)
            ? {
                fields: listOf(/fields:\s*(\[[^\]]*\])/.exec(rel)![1]!),
                references: listOf(/references:\s*(\[[^\]]*\])/.exec(rel)![1]!),
                onDelete: /onDelete:\s*(\w+)/.exec(rel)?.[1],
              }
            : undefined,
      });
    }
    const scalars = fields.filter((x) => !modelNames.has(x.type));
    const byName = new Map(scalars.map((x) => [x.name, x.column]));
    const col = (names: string[]) => names.map((n) => byName.get(n) ?? n);
    const idField = scalars.find((x) => x.isId);
    return {
      name: name!,
      table,
      fields,
      scalars,
      relations: fields.filter((x) => x.relation),
      primaryKey: col(idField ? [idField.name] : primaryKey),
      uniques: [...uniques.map(col), ...scalars.filter((x) => x.isUnique).map((x) => [x.column])],
      indexes: indexes.map((i) => ({ columns: col(i.columns), type: i.type })),
    };
  });
  return { models, enums };
}

/** The PostgreSQL type (udt_name) Prisma's migrate would give a field. */
function expectedUdt(f: PField, enums: Map<string, string[]>): string {
  let base: string;
  if (enums.has(f.type)) base = f.type;
  else if (f.type === 'String') base = /@db\.Uuid\b/.test(f.attrs) ? 'uuid' : 'text';
  else if (f.type === 'DateTime') base = /@db\.Timestamptz\b/.test(f.attrs) ? 'timestamptz' : 'timestamp';
  else base = ({ Int: 'int4', BigInt: 'int8', Float: 'float8', Boolean: 'bool', Json: 'jsonb', Decimal: 'numeric', Bytes: 'bytea' } as Record<string, string>)[f.type] ?? `?${f.type}`;
  return f.list ? `_${base}` : base;
}

const schemaText = await readFile(path.join(ROOT, 'prisma/schema.prisma'), 'utf8');
const parsed = parsePrismaSchema(schemaText);

describe('prisma/schema.prisma and the SQL migrations', () => {
  let db: Database;
  let sql: pg.Client;
  const tenants: string[] = [];

  beforeAll(async () => {
    db = createDatabase({ url: inject('databaseUrl'), poolSize: 2 });
    sql = new pg.Client({ connectionString: inject('databaseUrl') });
    await sql.connect();
  });
  afterAll(async () => {
    // Remove the rows written here, children first.
    if (db) {
      for (const m of [...ordered()].reverse()) await delegate(m).deleteMany({ where: { tenantId: { in: tenants } } });
      await db.close();
    }
    await sql?.end();
  });

  it('the reader found the models and enums (guards the checks below)', () => {
    expect(parsed.models.map((m) => m.name)).toEqual(expect.arrayContaining(['Media', 'MediaAttachment', 'MediaRoleAssignment']));
    expect([...parsed.enums.keys()]).toEqual(expect.arrayContaining(['SecurityLevel', 'MediaKind', 'MediaRole']));
    const media = parsed.models.find((m) => m.name === 'Media')!;
    expect(media.table).toBe('media');
    expect(media.scalars.find((f) => f.name === 'tenantId')?.column).toBe('tenant_id');
    expect(media.scalars.find((f) => f.name === 'tags')).toMatchObject({ type: 'String', list: true });
    expect(parsed.models.find((m) => m.name === 'MediaAttachment')!.relations[0]!.relation).toEqual({
      fields: ['tenantId', 'mediaId'],
      references: ['tenantId', 'id'],
      onDelete: 'Cascade',
    });
  });

  it('the generated client has every model of schema.prisma (run `npx prisma generate` when this fails)', () => {
    expect(Object.values(Prisma.ModelName).sort()).toEqual(parsed.models.map((m) => m.name).sort());
  });

  it('every enum has the same values, in the same order, in PostgreSQL', async () => {
    const { rows } = await sql.query<{ name: string; labels: string[] }>(
      `SELECT t.typname AS name, array_agg(e.enumlabel ORDER BY e.enumsortorder)::text[] AS labels
         FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname = 'public' GROUP BY t.typname`,
    );
    expect(Object.fromEntries(rows.map((r) => [r.name, r.labels]))).toEqual(Object.fromEntries(parsed.enums));
  });

  it('every table and column matches a model and field: same type, nullability and default', async () => {
    const { rows } = await sql.query<{ table_name: string; column_name: string; udt_name: string; is_nullable: string; column_default: string | null; datetime_precision: number | null }>(
      `SELECT table_name, column_name, udt_name, is_nullable, column_default, datetime_precision
         FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> '_prisma_migrations'`,
    );
    const actual = new Map<string, Map<string, (typeof rows)[number]>>();
    for (const r of rows) {
      if (!actual.has(r.table_name)) actual.set(r.table_name, new Map());
      actual.get(r.table_name)!.set(r.column_name, r);
    }
    expect([...actual.keys()].sort(), 'tables in the database vs models in schema.prisma').toEqual(parsed.models.map((m) => m.table).sort());
    const problems: string[] = [];
    for (const m of parsed.models) {
      const columns = actual.get(m.table) ?? new Map();
      const expectedColumns = m.scalars.map((f) => f.column);
      for (const c of columns.keys()) if (!expectedColumns.includes(c)) problems.push(`${m.table}.${c}: column not in schema.prisma`);
      for (const f of m.scalars) {
        const c = columns.get(f.column);
        if (!c) {
          problems.push(`${m.name}.${f.name}: no column ${m.table}.${f.column}`);
          continue;
        }
        const udt = expectedUdt(f, parsed.enums);
        if (c.udt_name !== udt) problems.push(`${m.table}.${f.column}: type ${c.udt_name}, schema.prisma says ${udt}`);
        const nullable = f.optional;
        if ((c.is_nullable === 'YES') !== nullable) problems.push(`${m.table}.${f.column}: nullable=${c.is_nullable}, schema.prisma optional=${nullable}`);
        if ((c.column_default !== null) !== (f.default !== undefined)) problems.push(`${m.table}.${f.column}: SQL default ${c.column_default}, schema.prisma default ${f.default}`);
        const precision = /@db\.Timestamptz\((\d+)\)/.exec(f.attrs)?.[1] ?? (f.type === 'DateTime' ? '3' : undefined);
        if (precision !== undefined && String(c.datetime_precision) !== precision) problems.push(`${m.table}.${f.column}: precision ${c.datetime_precision}, schema.prisma ${precision}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('primary keys, unique constraints, foreign keys and indexes match', async () => {
    const { rows: idx } = await sql.query<{ table: string; unique: boolean; primary: boolean; method: string; columns: string[] }>(
      `SELECT t.relname AS table, i.indisunique AS unique, i.indisprimary AS primary, am.amname AS method,
              array(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.n ORDER BY k.o) AS columns
         FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
         JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = 'public'`,
    );
    const { rows: fks } = await sql.query<{ table: string; columns: string[]; ref_table: string; ref_columns: string[]; on_delete: string }>(
      `SELECT t.relname AS table, r.relname AS ref_table, c.confdeltype AS on_delete,
              array(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o) AS columns,
              array(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o) AS ref_columns
         FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_class r ON r.oid = c.confrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace WHERE c.contype = 'f' AND n.nspname = 'public'`,
    );
    const problems: string[] = [];
    const has = (table: string, columns: string[], pred: (i: (typeof idx)[number]) => boolean) =>
      idx.some((i) => i.table === table && pred(i) && i.columns.join() === columns.join());
    const onDelete: Record<string, string> = { Cascade: 'c', Restrict: 'r', NoAction: 'a', SetNull: 'n', SetDefault: 'd' };
    for (const m of parsed.models) {
      if (!has(m.table, m.primaryKey, (i) => i.primary)) problems.push(`${m.table}: no primary key (${m.primaryKey})`);
      for (const u of m.uniques) if (!has(m.table, u, (i) => i.unique && !i.primary)) problems.push(`${m.table}: no unique index (${u})`);
      for (const x of m.indexes) {
        const method = (x.type ?? 'BTree').toLowerCase();
        if (!has(m.table, x.columns, (i) => i.method === method)) problems.push(`${m.table}: no ${method} index (${x.columns})`);
      }
      for (const r of m.relations) {
        const target = parsed.models.find((t) => t.name === r.type)!;
        const columns = r.relation!.fields.map((n) => m.scalars.find((f) => f.name === n)!.column);
        const refColumns = r.relation!.references.map((n) => target.scalars.find((f) => f.name === n)!.column);
        const fk = fks.find((k) => k.table === m.table && k.ref_table === target.table && k.columns.join() === columns.join() && k.ref_columns.join() === refColumns.join());
        if (!fk) problems.push(`${m.table}: no foreign key (${columns}) -> ${target.table}(${refColumns})`);
        else if (fk.on_delete !== onDelete[r.relation!.onDelete ?? 'NoAction']) problems.push(`${m.table}: foreign key on delete ${fk.on_delete}, schema.prisma ${r.relation!.onDelete}`);
      }
    }
    // Every foreign key of the database is declared in schema.prisma.
    const declared = parsed.models.flatMap((m) => m.relations.map(() => m.table));
    expect(fks.map((k) => k.table).sort()).toEqual(declared.sort());
    expect(problems).toEqual([]);
  });

  // ---- every model written and read back through the Prisma client ----

  type Delegate = {
    create(args: { data: Record<string, unknown> }): Promise<Record<string, unknown>>;
    findMany(args: { where: Record<string, unknown> }): Promise<Record<string, unknown>[]>;
    deleteMany(args: { where: Record<string, unknown> }): Promise<unknown>;
  };
  const delegate = (m: PModel) => (db.prisma as unknown as Record<string, Delegate>)[m.name[0]!.toLowerCase() + m.name.slice(1)]!;

  /** Models, parents before children. */
  function ordered(): PModel[] {
    const out: PModel[] = [];
    const visit = (m: PModel) => {
      if (out.includes(m)) return;
      for (const r of m.relations) visit(parsed.models.find((t) => t.name === r.type)!);
      out.push(m);
    };
    parsed.models.forEach(visit);
    return out;
  }

  /** A value for every field that a wrong column type would not survive. */
  function valueFor(m: PModel, f: PField, i: number): unknown {
    // Columns the migrations restrict with a CHECK constraint take one of their allowed values.
    const checked = CHECKED_VALUES[`${m.name}.${f.name}`];
    if (checked !== undefined) return checked;
    if (parsed.enums.has(f.type)) {
      const values = parsed.enums.get(f.type)!;
      const v = values[values.length - 1 - (i % values.length)];
      return f.list ? [v, values[0]] : v;
    }
    switch (f.type) {
      case 'String':
        if (/@db\.Uuid\b/.test(f.attrs)) return randomUUID();
        return f.list ? ['alpha', 'beta,gamma', 'ünïcödé', ''] : `${m.name}.${f.name} ünïcödé ${randomBytes(3).toString('hex')}`;
      case 'Int':
        return 2_147_483_000 - i;
      case 'BigInt':
        return 9_007_199_254_740_993n + BigInt(i);
      case 'Float':
        return 1234.5678125 + i;
      case 'Boolean':
        return f.default !== 'true';
      case 'DateTime':
        return new Date(Date.UTC(2031, 0, 2, 3, 4, 5, 678) + i * 1001);
      case 'Json':
        return { nested: [1, 'two', { three: true }], ünï: null, big: 12345678901234, i };
      default:
        throw new Error(`no test value for ${m.name}.${f.name}: ${f.type}`);
    }
  }

  /** Writes one row per model (children pointing at the parents written before) and returns what was written. */
  async function writeAll(tenant: string, full: boolean): Promise<Map<string, Record<string, unknown>>> {
    const written = new Map<string, Record<string, unknown>>();
    for (const m of ordered()) {
      const data: Record<string, unknown> = {};
      m.scalars.forEach((f, i) => {
        if (f.name === 'tenantId') data[f.name] = tenant;
        else if (full || (!f.optional && f.default === undefined)) data[f.name] = valueFor(m, f, i);
      });
      for (const r of m.relations) {
        const parent = written.get(r.type)!;
        r.relation!.fields.forEach((n, k) => (data[n] = parent[r.relation!.references[k]!]));
      }
      await delegate(m).create({ data });
      written.set(m.name, data);
    }
    return written;
  }

  it('one row of every model, with every field set, reads back identical', async () => {
    const tenant = newTenant('drift');
    tenants.push(tenant);
    const written = await writeAll(tenant, true);
    expect([...written.keys()].sort()).toEqual(parsed.models.map((m) => m.name).sort());
    for (const m of parsed.models) {
      const rows = await delegate(m).findMany({ where: { tenantId: tenant } });
      expect(rows, m.name).toHaveLength(1);
      const data = written.get(m.name)!;
      // Every field was set, none left to a default or null.
      expect(Object.keys(data).sort(), m.name).toEqual(m.scalars.map((f) => f.name).sort());
      for (const f of m.scalars) expect(data[f.name], `${m.name}.${f.name} set`).not.toBeNull();
      expect(rows[0], m.name).toEqual(data);
    }
  });

  it('optional fields are nullable and defaults apply as declared', async () => {
    const tenant = newTenant('dflt');
    tenants.push(tenant);
    const before = Date.now();
    const written = await writeAll(tenant, false);
    for (const m of parsed.models) {
      const [row] = await delegate(m).findMany({ where: { tenantId: tenant } });
      expect(row, m.name).toBeDefined();
      for (const f of m.scalars) {
        const v = row![f.name];
        const label = `${m.name}.${f.name}`;
        if (f.name in written.get(m.name)!) expect(v, label).toEqual(written.get(m.name)![f.name]);
        else if (f.default === undefined) expect(v, label).toBeNull();
        else if (f.default === 'now()') {
          expect(v, label).toBeInstanceOf(Date);
          expect(Math.abs((v as Date).getTime() - before), label).toBeLessThan(60_000);
        } else if (f.type === 'Json') expect(v, label).toEqual(JSON.parse(JSON.parse(f.default)));
        else if (f.list) expect(v, label).toEqual(JSON.parse(f.default));
        else if (parsed.enums.has(f.type)) expect(v, label).toBe(f.default);
        else if (f.type === 'Boolean') expect(v, label).toBe(f.default === 'true');
        else if (f.type === 'Int' || f.type === 'Float') expect(v, label).toBe(Number(f.default));
        else throw new Error(`${label}: no check for @default(${f.default})`);
      }
    }
  });
});

// ---------------------------------------------------------------------------

describe('migration runner', () => {
  let admin: pg.Client;
  const databases: string[] = [];
  let tmp: string;

  const folders = async (dir = MIGRATIONS_DIR) =>
    (await readdir(dir, { withFileTypes: true }))
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .sort();
  const checksumOf = async (dir: string, name: string) => createHash('sha256').update(await readFile(path.join(dir, name, 'migration.sql'))).digest('hex');

  /** A new, empty database on the run's server, so these tests never touch the shared one's history. */
  async function scratchDatabase(): Promise<string> {
    const name = `flt_mig_${randomBytes(5).toString('hex')}`;
    await admin.query(`CREATE DATABASE ${name}`);
    databases.push(name);
    const url = new URL(inject('databaseUrl'));
    url.pathname = `/${name}`;
    return url.toString();
  }

  async function history(url: string) {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      const { rows } = await c.query<{ id: string; migration_name: string; checksum: string; finished_at: Date | null; rolled_back_at: Date | null; applied_steps_count: number }>(
        'SELECT id, migration_name, checksum, finished_at, rolled_back_at, applied_steps_count FROM "_prisma_migrations" ORDER BY migration_name',
      );
      return rows;
    } finally {
      await c.end();
    }
  }

  async function tableExists(url: string, table: string): Promise<boolean> {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      const { rows } = await c.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [`public.${table}`]);
      return rows[0]!.t !== null;
    } finally {
      await c.end();
    }
  }

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: inject('databaseUrl') });
    await admin.connect();
    tmp = await mkdtemp(path.join(os.tmpdir(), 'flt-migrations-'));
  });
  afterAll(async () => {
    for (const name of databases) await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
    await admin?.end();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('running it again on the migrated database applies nothing', async () => {
    const result = await migrate(inject('databaseUrl'));
    expect(result.map((r) => r.name)).toEqual(await folders());
    expect(result.filter((r) => r.applied)).toEqual([]);
  });

  it('records one _prisma_migrations row per migration folder, with the sha256 of its migration.sql', async () => {
    const rows = await history(inject('databaseUrl'));
    const names = await folders();
    expect(rows.map((r) => r.migration_name)).toEqual(names);
    for (const r of rows) {
      expect(r.checksum, r.migration_name).toBe(await checksumOf(MIGRATIONS_DIR, r.migration_name));
      expect(r.checksum).toMatch(/^[0-9a-f]{64}$/);
      expect(r.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(r.finished_at).toBeInstanceOf(Date);
      expect(r.rolled_back_at).toBeNull();
      expect(r.applied_steps_count).toBe(1);
    }
  });

  it('migrates an empty database, then applies nothing the second time', async () => {
    const url = await scratchDatabase();
    const first = await migrate(url);
    expect(first.map((r) => [r.name, r.applied])).toEqual((await folders()).map((n) => [n, true]));
    expect((await migrate(url)).filter((r) => r.applied)).toEqual([]);
    expect((await history(url)).map((r) => r.migration_name)).toEqual(await folders());
    for (const m of parsed.models) expect(await tableExists(url, m.table), m.table).toBe(true);
  });

  it('instances starting at once apply each migration exactly once', async () => {
    const url = await scratchDatabase();
    const results = await Promise.all([migrate(url), migrate(url), migrate(url)]);
    const names = await folders();
    for (const name of names) expect(results.filter((r) => r.find((x) => x.name === name)?.applied)).toHaveLength(1);
    expect((await history(url)).map((r) => r.migration_name)).toEqual(names);
  });

  it('refuses a migration changed after it was applied, naming it, and changes nothing', async () => {
    const url = await scratchDatabase();
    await migrate(url);
    const before = await history(url);
    const dir = path.join(tmp, 'altered');
    await cp(MIGRATIONS_DIR, dir, { recursive: true });
    const names = await folders(dir);
    const changed = names[0]!;
    await appendFile(path.join(dir, changed, 'migration.sql'), '\n-- edited after it was applied\n');
    // A new migration after it must not run either.
    await mkdir(path.join(dir, '29991231000000_flt_after'));
    await writeFile(path.join(dir, '29991231000000_flt_after', 'migration.sql'), 'CREATE TABLE flt_after (id int);');
    await expect(migrate(url, dir)).rejects.toThrow(new RegExp(`${changed}.*checksum`));
    expect(await history(url)).toEqual(before);
    expect(await tableExists(url, 'flt_after')).toBe(false);
  });

  it('applies a new migration only, and rolls back a failing one completely', async () => {
    const url = await scratchDatabase();
    await migrate(url);
    const dir = path.join(tmp, 'extended');
    await cp(MIGRATIONS_DIR, dir, { recursive: true });
    await mkdir(path.join(dir, '29991231000000_flt_extra'));
    const extraSql = 'CREATE TABLE flt_extra (id int PRIMARY KEY);\n';
    await writeFile(path.join(dir, '29991231000000_flt_extra', 'migration.sql'), extraSql);
    const result = await migrate(url, dir);
    expect(result.filter((r) => r.applied).map((r) => r.name)).toEqual(['29991231000000_flt_extra']);
    const extra = (await history(url)).find((r) => r.migration_name === '29991231000000_flt_extra');
    expect(extra?.checksum).toBe(createHash('sha256').update(extraSql).digest('hex'));
    expect(await tableExists(url, 'flt_extra')).toBe(true);

    // A migration failing half-way leaves neither its first statement nor a history row.
    await mkdir(path.join(dir, '29991231000001_flt_broken'));
    await writeFile(path.join(dir, '29991231000001_flt_broken', 'migration.sql'), 'CREATE TABLE flt_partial (id int);\nSELECT 1/0;\n');
    await expect(migrate(url, dir)).rejects.toThrow(/29991231000001_flt_broken.*fail/);
    expect(await tableExists(url, 'flt_partial')).toBe(false);
    expect((await history(url)).map((r) => r.migration_name)).not.toContain('29991231000001_flt_broken');
    // Fixed, it applies on the next start.
    await writeFile(path.join(dir, '29991231000001_flt_broken', 'migration.sql'), 'CREATE TABLE flt_partial (id int);\n');
    expect((await migrate(url, dir)).filter((r) => r.applied).map((r) => r.name)).toEqual(['29991231000001_flt_broken']);
  });
});
