import { Prisma, type PrismaClient } from '../../generated/prisma/client.js';
import { assetFromRow, type AssetRecord, type AssetRow } from './asset.record.js';
import type { Statement } from '../../db/expensive-queries.js';
import { compileAssetQuery, compileAssetSort, type Term } from './query-language.js';

type Db = PrismaClient | Prisma.TransactionClient;

export interface PageArgs {
  q: string | null;
  sort: string | null;
  limit: number;
  offset: number;
}

export interface PageStatements {
  /** The rows of the page. */
  page: Prisma.Sql;
  /** How many rows match, across all pages. */
  count: Prisma.Sql;
  terms: Term[];
}

/**
 * The two statements of an `assets` page, for the tenant's live assets: `q`
 * compiled to a parameterised condition, `sort` to a whitelisted ORDER BY.
 * (bench/assets-explain.ts explains exactly these.)
 */
export function pageStatements(tenant: string, args: PageArgs): PageStatements {
  const { where, terms } = compileAssetQuery(args.q);
  const order = compileAssetSort(args.sort);
  const filter = Prisma.sql`a.tenant_id = ${tenant} AND a.deleted_at IS NULL AND ${where}`;
  return {
    page: Prisma.sql`SELECT a.* FROM asset a WHERE ${filter} ${order} LIMIT ${args.limit} OFFSET ${args.offset}`,
    count: Prisma.sql`SELECT count(*) AS total FROM asset a WHERE ${filter}`,
    terms,
  };
}

/** Reads of live (not deleted) assets; every one filters by the tenant. */
export const assetRepository = {
  async byIds(db: Db, tenant: string, ids: readonly string[]): Promise<AssetRecord[]> {
    const rows = await db.$queryRaw<AssetRow[]>`
      SELECT a.* FROM asset a
      WHERE a.tenant_id = ${tenant} AND a.id = ANY(${ids as string[]}::uuid[]) AND a.deleted_at IS NULL`;
    return rows.map(assetFromRow);
  },

  async byKey(db: Db, tenant: string, key: string): Promise<AssetRecord | null> {
    const rows = await db.$queryRaw<AssetRow[]>`
      SELECT a.* FROM asset a WHERE a.tenant_id = ${tenant} AND a.key = ${key} AND a.deleted_at IS NULL`;
    return rows[0] ? assetFromRow(rows[0]) : null;
  },

  async keyTaken(db: Db, tenant: string, key: string): Promise<boolean> {
    const rows = await db.$queryRaw<unknown[]>`SELECT 1 FROM asset WHERE tenant_id = ${tenant} AND key = ${key} AND deleted_at IS NULL`;
    return rows.length > 0;
  },

  async page(db: Db, statements: PageStatements): Promise<{ rows: AssetRecord[]; total: number }> {
    const [rows, count] = await Promise.all([db.$queryRaw<AssetRow[]>(statements.page), db.$queryRaw<{ total: bigint }[]>(statements.count)]);
    return { rows: rows.map(assetFromRow), total: Number(count[0]?.total ?? 0) };
  },

  /** The same, one statement after the other in a timed session (ExpensiveQueries), where both share one deadline. */
  async pageInOrder(query: Statement, statements: PageStatements): Promise<{ rows: AssetRecord[]; total: number }> {
    const rows = await query<AssetRow[]>(statements.page);
    const count = await query<{ total: string }[]>(statements.count);
    return { rows: rows.map(assetFromRow), total: Number(count[0]?.total ?? 0) };
  },
};
