import type pg from 'pg';
import type { Prisma, PrismaClient } from '../generated/prisma/client.js';

type Db = PrismaClient | Prisma.TransactionClient;

const pools = new WeakMap<object, pg.Pool>();

/** Lets `readRows` send this client's reads straight to its pool. */
export function registerReadPool(db: PrismaClient, pool: pg.Pool): void {
  pools.set(db, pool);
}

/**
 * A read-only raw SQL query (a Prisma.sql template), run on the pg pool behind
 * Prisma's adapter. The media read paths are raw SQL already; Prisma's
 * $queryRaw added about 11 % of the service's CPU serving `media(id)` under load
 * (bench:reads profile) for nothing they need. A client that is not registered (a
 * transaction's) goes through Prisma, so reads inside a transaction stay in it.
 *
 * pg returns int8 (count(*), BIGINT columns) as strings where Prisma gives BigInt:
 * read such values with Number().
 */
export async function readRows<T extends unknown[]>(db: Db, query: Prisma.Sql): Promise<T> {
  const pool = pools.get(db);
  if (!pool) return db.$queryRaw<T>(query);
  return (await pool.query(query.text, query.values as unknown[])).rows as T;
}
