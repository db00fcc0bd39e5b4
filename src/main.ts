import 'reflect-metadata';
import path from 'node:path';
import { loadConfig } from './config.js';
import { checkSecretFiles } from './auth/secret-files.js';
import { createLogger } from './logger.js';
import { redactUrl, startEmbeddedPostgres, type EmbeddedDatabase } from './db/embedded.js';
import { tokenCommand } from './cli/token-command.js';
import { exitOnError, parseCliArgs, STORE_ENV } from './cli/args.js';
import { migrate } from './db/migrate.js';
import { createDatabase } from './db/prisma.js';
import { createStorage } from './storage/index.js';
import { startApp } from './app.js';

// No options: everything is configured by environment variables (src/config.ts, README).
parseCliArgs(
  {},
  {
    usage: 'npm start',
    summary:
      'Starts the GraphQL media API. With no DATABASE_URL it runs an embedded PostgreSQL under DATA_DIR, with no S3_BUCKET it stores files under DATA_DIR/blobs, ' +
      'and it generates development secrets there. Every setting is an environment variable; the README lists them all.',
    env: {
      PORT: 'HTTP port (default 4000; 0: a free one)',
      HOST: 'the address to listen on (default all)',
      PUBLIC_BASE_URL: 'the URL clients reach the service at (links, direct uploads)',
      ...STORE_ENV,
      'JWT_SECRET | JWT_JWKS_URL': 'how user tokens are verified: a shared HS256 secret, or an identity provider\'s keys (with JWT_ISSUER, JWT_AUDIENCE, SIGNING_SECRET)',
      WORKER_API_KEYS: 'worker keys, key:type1|type2:tenant1|tenant2,…',
      MEDIA_POLICY_FILE: 'the media policies (entity types, allowed kinds, security levels)',
      CORS_ORIGINS: 'browser origins allowed to call the API, comma-separated',
      SWEEP_INTERVAL_SECONDS: 'how often the orphan sweep runs inside the service (default 3600; 0: never)',
      NODE_ENV: 'production: the defaults of a public deployment (introspection off)',
    },
  },
);

async function main(): Promise<void> {
  const config = loadConfig();
  // Before the embedded database starts: a refused secret file ends the start with nothing to stop.
  checkSecretFiles(config.dataDir);
  // Likewise storage that cannot work as configured (S3 without credentials): one line naming what to set.
  const storage = createStorage(config);
  await storage.checkConfiguration?.();
  const logger = createLogger(config.logLevel);
  const anyTenant = [...config.workerKeys.values()].filter((g) => g.tenants === '*');
  if (anyTenant.length > 0) {
    logger.warn({ keys: anyTenant.length, types: [...new Set(anyTenant.flatMap((g) => [...g.types]))] }, 'worker keys bound to every tenant (WORKER_API_KEYS_ALLOW_ANY_TENANT): each reads any tenant\'s decrypted documents');
  }

  let embedded: EmbeddedDatabase | undefined;
  let databaseUrl = config.databaseUrl;
  if (!databaseUrl) {
    logger.info({ dir: path.join(config.dataDir, 'pg'), port: config.embeddedPgPort }, 'starting embedded PostgreSQL');
    // A cluster another process runs on this DATA_DIR (a second `npm start`) is refused here, untouched.
    embedded = await startEmbeddedPostgres({ dir: path.join(config.dataDir, 'pg'), database: 'media', port: config.embeddedPgPort, logger });
    databaseUrl = embedded.url;
    logger.info({ url: redactUrl(embedded.url), pid: embedded.pid, passwordFile: embedded.passwordFile }, 'embedded PostgreSQL ready');
  }
  const db = createDatabase({ url: databaseUrl, poolSize: config.databasePoolSize, logger });
  let app: Awaited<ReturnType<typeof startApp>>;
  try {
    const applied = await migrate(databaseUrl);
    for (const m of applied.filter((a) => a.applied)) logger.info({ migration: m.name }, 'migration applied');
    app = await startApp({ config, logger, db, storage });
  } catch (e) {
    // A start that fails after the cluster started (a migration, the HTTP port taken)
    // stops it: left running without its process, it would hold DATA_DIR.
    await db.close().catch(() => undefined);
    await embedded?.stop().catch(() => undefined);
    throw e;
  }
  logger.info({ url: `${app.url}/graphql`, storage: app.services.storage.driver, ...(app.metricsUrl ? { metrics: `${app.metricsUrl}/metrics` } : {}) }, 'media API listening');
  const banner = [`GraphQL: ${app.url}/graphql`];
  if (!config.jwt.secret && !config.jwt.jwksUrl) banner.push(`Development token:  ${tokenCommand(config.dataDir)}`);
  if (embedded) {
    // Loopback only; the password is generated for this DATA_DIR and kept in a 0600 file.
    banner.push(`Embedded PostgreSQL (development; password from ${embedded.passwordFile}):  psql '${embedded.url}'`);
  }
  console.log(`\n${banner.join('\n')}\n`);

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

// A refused secret file (src/auth/secret-files.ts) is a configuration fault, like a bad
// variable; the embedded database in use by another process, or its port taken, and
// a store that cannot be reached are one line too (exitOnError); anything else has its stack.
main().catch(exitOnError);
