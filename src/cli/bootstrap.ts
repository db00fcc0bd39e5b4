import path from 'node:path';
import type { Config } from '../config.js';
import { loadConfig } from '../config.js';
import { createLogger, type Logger } from '../logger.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../db/embedded.js';
import { migrate } from '../db/migrate.js';
import { createDatabase, type Database } from '../db/prisma.js';
import { createStorage, type Storage } from '../storage/index.js';
import { exitOnError } from './args.js';
import { progressRenderer, type ProgressRenderer } from './progress.js';

export interface CliContext {
  config: Config;
  logger: Logger;
  db: Database;
  storage: Storage;
  /** A renderer of the work's progress on stderr: a line redrawn on a terminal, log lines (every PROGRESS_INTERVAL_MS) otherwise. */
  progress(label: string): ProgressRenderer;
}

/**
 * What the maintenance commands share: configuration, the database, migrations,
 * storage; everything closed afterwards. With the embedded default (no
 * DATABASE_URL) the command connects to the cluster of DATA_DIR when the service
 * (or another command) runs it, and otherwise starts it for its own run and stops
 * it at the end. A failure ends the process: a fault the operator fixes as one line.
 * Storage that cannot work as configured (S3 without credentials) ends it before
 * anything starts.
 */
export async function runCli<T>(work: (ctx: CliContext) => Promise<T>): Promise<T> {
  try {
    return await run(work);
  } catch (e) {
    return exitOnError(e);
  }
}

async function run<T>(work: (ctx: CliContext) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  const storage = createStorage(config);
  await storage.checkConfiguration?.();
  let embedded: EmbeddedDatabase | undefined;
  let url = config.databaseUrl;
  if (!url) {
    embedded = await startEmbeddedPostgres({ dir: path.join(config.dataDir, 'pg'), database: 'media', port: config.embeddedPgPort, ifRunning: 'attach', logger });
    url = embedded.url;
    if (!embedded.attached) {
      // Interrupted (Ctrl-C, SIGTERM): stop the cluster this command started, then exit.
      const started = embedded;
      for (const signal of ['SIGINT', 'SIGTERM'] as const) {
        process.once(signal, () => {
          logger.warn({ signal }, 'interrupted: stopping the embedded PostgreSQL');
          void started.stop().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
        });
      }
    }
  }
  try {
    await migrate(url);
    const db = createDatabase({ url, poolSize: 2, logger });
    try {
      const progress = (label: string) => progressRenderer({ label, log: (fields, message) => logger.info(fields, message), intervalMs: config.progressIntervalMs });
      return await work({ config, logger, db, storage, progress });
    } finally {
      await db.close();
    }
  } finally {
    // Open S3 connections would keep the command alive after its work.
    storage.close?.();
    // A cluster this command attached to stays running (stop() leaves it alone).
    await embedded?.stop();
  }
}
