import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../generated/prisma/client.js';
import { registerReadPool } from './read.js';

export { PrismaClient };
export type Db = PrismaClient;

export interface Database {
  readonly prisma: PrismaClient;
  readonly pool: pg.Pool;
  /** Number of SQL statements sent since start (tests read it to check batching). */
  statementCount(): number;
  close(): Promise<void>;
}

/**
 * The Prisma client over a pg pool. Pool size and connection wait are set on
 * purpose: pg's defaults wait forever for a free connection.
 */
export function createDatabase(options: { url: string; poolSize: number }): Database {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolSize,
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
  });
  let statements = 0;
  // Count statements at the pool, where both Prisma and raw queries pass.
  pool.on('connect', (client) => {
    const original = client.query.bind(client) as (...a: unknown[]) => unknown;
    (client as unknown as { query: (...a: unknown[]) => unknown }).query = (...args: unknown[]) => {
      statements++;
      return original(...args);
    };
  });
  const adapter = new PrismaPg(pool);
  const prisma = new PrismaClient({ adapter });
  registerReadPool(prisma, pool);
  return {
    prisma,
    pool,
    statementCount: () => statements,
    close: async () => {
      await prisma.$disconnect();
      await pool.end().catch(() => undefined);
    },
  };
}
