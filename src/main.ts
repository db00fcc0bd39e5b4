import 'reflect-metadata';
import path from 'node:path';
import { ConfigError, loadConfig } from './config.js';
import { checkSecretFiles } from './auth/secret-files.js';
import { createLogger } from './logger.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from './db/embedded.js';
import { migrate } from './db/migrate.js';
import { createDatabase } from './db/prisma.js';
import { startApp } from './app.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
    // Before the embedded database starts: a refused secret file ends the start with nothing to stop.
    checkSecretFiles(config.dataDir);
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(e.message);
      process.exit(2);
    }
    throw e;
  }
  const logger = createLogger(config.logLevel);
  const anyTenant = [...config.workerKeys.values()].filter((g) => g.tenants === '*');
  if (anyTenant.length > 0) {
    logger.warn({ keys: anyTenant.length, types: [...new Set(anyTenant.flatMap((g) => [...g.types]))] }, 'worker keys bound to every tenant (WORKER_API_KEYS_ALLOW_ANY_TENANT): each reads any tenant\'s decrypted documents');
  }

  let embedded: EmbeddedDatabase | undefined;
  let databaseUrl = config.databaseUrl;
  if (!databaseUrl) {
    logger.info({ dir: path.join(config.dataDir, 'pg') }, 'starting embedded PostgreSQL');
    embedded = await startEmbeddedPostgres({ dir: path.join(config.dataDir, 'pg'), database: 'media', logger });
    databaseUrl = embedded.url;
  }
  const applied = await migrate(databaseUrl);
  for (const m of applied.filter((a) => a.applied)) logger.info({ migration: m.name }, 'migration applied');

  const db = createDatabase({ url: databaseUrl, poolSize: config.databasePoolSize });
  const app = await startApp({ config, logger, db });
  logger.info({ url: `${app.url}/graphql`, storage: app.services.storage.driver }, 'media API listening');
  if (!config.jwt.secret && !config.jwt.jwksUrl) {
    console.log(`\nGraphQL: ${app.url}/graphql\nDevelopment token:  npm run token -- --tenant demo\n`);
  } else {
    console.log(`\nGraphQL: ${app.url}/graphql\n`);
  }

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    // Requests get the drain's grace period; a step that never ends must not keep the process alive.
    setTimeout(() => {
      logger.error({ signal }, 'shutdown did not finish within 30 s: exiting');
      process.exit(1);
    }, 30_000).unref();
    try {
      await app.stop();
      await db.close();
      await embedded?.stop();
    } finally {
      process.exit(0);
    }
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((e: unknown) => {
  // A refused secret file (src/auth/secret-files.ts) is a configuration fault, like a bad variable.
  if (e instanceof ConfigError) {
    console.error(e.message);
    process.exit(2);
  }
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exit(1);
});
