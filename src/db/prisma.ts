import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../generated/prisma/client.js';
import { registerReadPool } from './read.js';
import type { Logger } from '../logger.js';

export { PrismaClient };
export type Db = PrismaClient;

export interface Database {
  readonly prisma: PrismaClient;
  readonly pool: pg.Pool;
  /** The connection string (for connections of their own: the resumable uploads' locks). */
  readonly url: string;
  /** Number of SQL statements sent since start (tests read it to check batching). */
  statementCount(): number;
  close(): Promise<void>;
}

/**
 * The Prisma client over a pg pool. Pool size and connection wait are set on
 * purpose: pg's defaults wait forever for a free connection.
 */
export function createDatabase(options: { url: string; poolSize: number; logger?: Logger }): Database {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolSize,
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
  });
  // An idle connection that the server closes (a PostgreSQL restart: 57P01
  // "terminating connection due to administrator command", a proxy, the network)
  // is an 'error' event on the pool: unheard, it ends the process. The pool drops
  // that connection and opens new ones when asked; /readyz answers 503 meanwhile.
  pool.on('error', (err) => {
    const fields = { err: { message: err.message, code: (err as { code?: unknown }).code } };
    if (options.logger) options.logger.warn(fields, 'database: an idle connection failed; it is replaced on next use');
    else process.stderr.write(`database: an idle connection failed (${err.message}); it is replaced on next use\n`);
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
    url: options.url,
    statementCount: () => statements,
    close: async () => {
      await prisma.$disconnect();
      await pool.end().catch(() => undefined);
    },
  };
}
