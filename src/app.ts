import 'reflect-metadata';
import { ApolloServer } from '@apollo/server';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { ApolloServerPluginCacheControlDisabled, ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { expressMiddleware } from '@as-integrations/express5';
import express, { type NextFunction, type Request, type Response } from 'express';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Config } from './config.js';
import { LinkSigner } from './auth/signed-links.js';
import { resolveSecrets } from './auth/secrets.js';
import { checkSecretFiles } from './auth/secret-files.js';
import { createAuthenticator } from './auth/tokens.js';
import type { Database } from './db/prisma.js';
import { isAppError, type AppError } from './errors/index.js';
import type { Context } from './graphql/context.js';
import { ApolloServerPluginErrorLog, formatError } from './graphql/errors-plugin.js';
import { createLoaders } from './graphql/loaders.js';
import { buildAppSchema } from './graphql/schema.js';
import { contentRoutes } from './http/content.routes.js';
import { directUploadRoutes } from './http/direct-upload.routes.js';
import { assetRoutes } from './http/asset.routes.js';
import { AssetService } from './modules/assets/asset.service.js';
import { ASSET_MAX_BYTES } from './modules/assets/asset.record.js';
import { DirectUploadService } from './modules/direct-uploads/direct-upload.service.js';
import { SignedIds } from './modules/direct-uploads/signed-id.js';
import { PendingWrites } from './db/pending-writes.js';
import { sealLegacyChecksums } from './crypto/sealed-checksum.js';
import { SweepService } from './modules/sweep/sweep.service.js';
import { KeyRing } from './crypto/key-ring.js';
import { ContentCrypto, reconcileStoredModes } from './crypto/content-crypto.js';
import { ExpensiveQueries } from './db/expensive-queries.js';
import { ImageQueue } from './modules/renders/image-queue.js';
import { RenderService } from './modules/renders/render.service.js';
import { Ingest } from './ingest/ingest.js';
import { ClamdScanner } from './scan/clamd.js';
import { KeyRotation, removeStaleRotationSpools } from './crypto/rotation.js';
import { WorkerService } from './modules/workers/worker.service.js';
import { graphiqlRoutes } from './http/graphiql.js';
import { createHttpServer } from './http/server-timeouts.js';
import { Metrics } from './http/metrics.js';
import { accessLog } from './http/access-log.js';
import { metricsRoute, startMetricsServer, type MetricsServer } from './http/metrics-server.js';
import { factsOf } from './http/request-facts.js';
import { ApolloServerPluginObserve } from './graphql/observe-plugin.js';
import { instrumentStorage } from './storage/instrumented.js';
import { ApolloServerPluginHideVariableErrorDetails } from './graphql/hide-schema-details.js';
import { ApolloServerPluginQueryCost, queryLimitOptions } from './graphql/query-limits.js';
import { sendError } from './http/respond.js';
import { edgeInput } from './http/edge-input.js';
import { CORS_PATHS, corsMiddleware } from './http/cors.js';
import { ApolloServerPluginStorableText } from './graphql/input-text.js';
import type { Logger } from './logger.js';
import { MediaService } from './modules/media/media.service.js';
import { MAX_BATCH, UploadService } from './modules/media/upload.service.js';
import { graphqlMultipart } from './graphql/multipart.js';
import { PolicyRegistry } from './modules/policy/policy.js';
import { RolesService } from './modules/roles/roles.service.js';
import type { Services } from './services.js';
import { createStorage, localBlobRoot, type Storage } from './storage/index.js';
import { PgLocker } from './modules/resumable-uploads/pg-locker.js';
import { createTusBackend } from './modules/resumable-uploads/tus-backend.js';
import { ResumableUploadService } from './modules/resumable-uploads/resumable-upload.service.js';
import { ResumableSweep } from './modules/resumable-uploads/resumable-sweep.js';
import { resumableUploadRoutes } from './http/resumable.routes.js';

export interface AppOptions {
  config: Config;
  logger: Logger;
  db: Database;
  /** Replaces the configured storage (tests inject faulty drivers). */
  storage?: Storage;
}

export interface RunningApp {
  readonly url: string;
  /** The METRICS_PORT server's base URL (GET /metrics there); undefined when METRICS_PORT is unset. */
  readonly metricsUrl: string | undefined;
  readonly services: Services;
  stop(): Promise<void>;
}

/**
 * Multipart requests are "simple" requests a browser sends cross-site without a
 * preflight. Refuse them before the upload parser reads a byte unless they carry
 * a header only scripts can set (Apollo's CSRF rule).
 */
function multipartCsrfGuard(req: Request, res: Response, next: NextFunction): void {
  const type = req.headers['content-type'] ?? '';
  if (!/^multipart\/form-data/i.test(type)) return next();
  if (req.get('apollo-require-preflight') || req.get('x-apollo-operation-name')) return next();
  factsOf(res).error('BAD_REQUEST');
  res.status(400).json({
    errors: [
      {
        message:
          'This operation has been blocked as a potential Cross-Site Request Forgery (CSRF). Send a non-empty `Apollo-Require-Preflight` header with multipart requests.',
        extensions: { code: 'BAD_REQUEST' },
      },
    ],
  });
}

/** Builds the services and the HTTP server and starts listening. */
export async function startApp(options: AppOptions): Promise<RunningApp> {
  const { config, logger, db } = options;
  // Secret files open to others (or owned by another user) stop the start, before anything reads them.
  checkSecretFiles(config.dataDir);
  const metrics = new Metrics();
  const driver = options.storage ?? createStorage(config);
  // Every driver call timed by driver, operation and outcome (storage_operation_duration_seconds).
  const storage = instrumentStorage(driver, (operation, outcome, seconds) => metrics.storageDuration.observe({ driver: driver.driver, operation, outcome }, seconds));
  const secrets = resolveSecrets(config);
  const policies = PolicyRegistry.load(config.policyFile, config.kindLimits);
  let baseUrl = config.publicBaseUrl ?? `http://localhost:${config.port}`;
  const expensiveQueries = new ExpensiveQueries(db.pool, config.expensiveQueries);
  const images = new ImageQueue(config.images);
  const media = new MediaService({ prisma: db.prisma, storage, policies, logger, expensive: expensiveQueries });
  metrics.observePool(db.pool);
  metrics.observeQueue('image_jobs', 'image decode and resize jobs', () => images.stats());
  metrics.observeQueue('expensive_queries', 'expensive queries (regular expressions, searches, many-tag counts)', () => expensiveQueries.stats().shared);
  const ring = KeyRing.load(config.mediaKeys, config.dataDir);
  const decision = await ContentCrypto.detectMode(storage, ring, logger, { sseCOverHttp: config.sseCOverHttp });
  await reconcileStoredModes(db.prisma, decision, logger);
  await sealLegacyChecksums(db.prisma, ring, logger);
  const crypto = new ContentCrypto(ring, decision);
  const pending = new PendingWrites({ prisma: db.prisma, logger });
  // The ingest pipeline (src/ingest): with CLAMD_URL every file is scanned on its way in.
  const ingest = new Ingest({
    scanning: config.clamd ? { scanner: new ClamdScanner({ url: config.clamd.address, timeoutMs: config.clamd.timeoutMs }), failOpen: config.clamd.failOpen } : undefined,
    logger,
    metrics,
  });
  const renders = new RenderService({ prisma: db.prisma, pool: db.pool, storage, crypto, images, pending, logger, metrics });
  const uploads = new UploadService({
    prisma: db.prisma,
    storage,
    policies,
    media,
    logger,
    crypto,
    images,
    pending,
    metrics,
    ingest,
    warmThumbs: config.renderWarmThumbs ? { renders } : undefined,
  });
  const directUploads = new DirectUploadService({
    prisma: db.prisma,
    storage,
    policies,
    uploads,
    pending,
    signedIds: new SignedIds(secrets.signedIdKey),
    logger,
    images,
    ingest,
    ttlSeconds: config.directUploadTtlSeconds,
    maxOutstanding: config.directUploadMaxOutstanding,
    baseUrl: () => baseUrl,
  });
  // Connections of its own, opened on demand; its release listener starts once the server listens.
  const locker = new PgLocker({ connectionString: db.url, connections: config.resumable.lockConnections, lockTimeoutMs: config.resumable.lockTimeoutMs, logger });
  const tusBackend = createTusBackend(storage, { blobRoot: localBlobRoot(config), logger });
  const resumable = new ResumableUploadService({
    ingest,
    prisma: db.prisma,
    storage,
    policies,
    uploads,
    pending,
    images,
    logger,
    locker,
    backend: tusBackend,
    ttlSeconds: config.resumable.ttlSeconds,
    maxOutstanding: config.resumable.maxOutstanding,
  });
  const resumableSweep = new ResumableSweep({ prisma: db.prisma, storage, locker, backend: tusBackend, ttlSeconds: config.resumable.ttlSeconds, logger });
  // A killed rotation of an older version could leave decrypted documents in a temporary spool.
  await removeStaleRotationSpools(logger);
  const services: Services = Object.freeze({
    config,
    logger,
    db,
    storage,
    policies,
    auth: createAuthenticator(config, secrets),
    links: new LinkSigner(secrets.linkSigningKey),
    urls: { base: () => baseUrl },
    media,
    uploads,
    directUploads,
    resumable,
    assets: new AssetService({ prisma: db.prisma, storage, directUploads, logger, pending, allowNonPublicLinkHosts: config.assetLinksAllowPrivateHosts, expensive: expensiveQueries, images, ingest, metrics }),
    roles: new RolesService({ prisma: db.prisma, media }),
    metrics,
    crypto,
    rotation: new KeyRotation({ prisma: db.prisma, storage, crypto, logger, pending }),
    images,
    renders,
    expensiveQueries,
    workers: new WorkerService({ prisma: db.prisma, storage, crypto, media, uploads, logger, metrics }),
    sweep: new SweepService({ prisma: db.prisma, pool: db.pool, storage, media, logger, metrics, resumable: resumableSweep }),
  });

  const app = express();
  // No automatic ETags (a SHA-1 of every response body): GraphQL answers are POST
  // responses nobody revalidates; the content routes set their own (the checksum).
  app.set('etag', false);
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  const httpServer = createHttpServer(config, app);

  app.use((req, res, next) => {
    const id = randomUUID();
    res.locals['requestId'] = id;
    res.setHeader('X-Request-Id', id);
    // No response of this service is meant to be content-sniffed: JSON error bodies
    // echo parts of the request (the path), and must never render as HTML.
    res.setHeader('X-Content-Type-Options', 'nosniff');
    next();
  });

  // One access line per request, and the request counters.
  app.use(accessLog(logger, metrics));
  // Before anything can refuse a request, so that browser front ends on listed
  // origins can read the refusal too; preflights are answered here.
  app.use(CORS_PATHS, corsMiddleware(config.corsOrigins));
  app.use(edgeInput());

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const checks: Record<string, string> = {};
    await db.prisma.$queryRaw`SELECT 1`.then(() => (checks['database'] = 'ok')).catch(() => (checks['database'] = 'unavailable'));
    await storage.check().then(() => (checks['storage'] = 'ok')).catch(() => (checks['storage'] = 'unavailable'));
    if (ingest.scanning) await ingest.check().then(() => (checks['scanner'] = 'ok')).catch(() => (checks['scanner'] = 'unavailable'));
    const ok = Object.values(checks).every((v) => v === 'ok');
    res.status(ok ? 200 : 503).json({ status: ok ? 'ready' : 'unavailable', checks });
  });

  // Not public: on the public port only with METRICS_TOKEN; otherwise on METRICS_PORT (below), or nowhere.
  if (config.metrics.token) app.get('/metrics', metricsRoute(metrics, config.metrics.token));

  app.use(contentRoutes(services));
  app.use(directUploadRoutes(services));
  app.use(assetRoutes(services));
  app.use(resumableUploadRoutes(services));
  app.use(graphiqlRoutes());

  const apollo = new ApolloServer<Context>({
    schema: await buildAppSchema(),
    formatError,
    csrfPrevention: true,
    introspection: config.introspection,
    // Without introspection, errors do not describe the schema either (no "Did you mean", no variable error details).
    hideSchemaDetailsFromClientErrors: !config.introspection,
    allowBatchedHttpRequests: false,
    includeStacktraceInErrorResponses: false,
    // src/main.ts handles SIGTERM/SIGINT (server, database pool, embedded PostgreSQL, in
    // that order); Apollo's own handler would stop the server and re-raise the signal
    // halfway through that.
    stopOnTerminationSignals: false,
    // Tokens, expanded selections, depth, aliases, directives (src/graphql/query-limits.ts); the cost is a plugin.
    ...queryLimitOptions(),
    plugins: [
      ApolloServerPluginDrainHttpServer({ httpServer }),
      ApolloServerPluginErrorLog(logger, metrics),
      ApolloServerPluginObserve(metrics),
      ApolloServerPluginStorableText(),
      ApolloServerPluginQueryCost(),
      ...(config.introspection ? [] : [ApolloServerPluginHideVariableErrorDetails()]),
      ApolloServerPluginLandingPageDisabled(),
      // No @cacheControl hints are used; the default plugin would wrap every field resolver.
      ApolloServerPluginCacheControlDisabled(),
    ],
  });
  await apollo.start();

  app.use(
    '/graphql',
    multipartCsrfGuard,
    // One byte above the largest supported size: anything cut here is also over every limit we enforce.
    graphqlMultipart({ maxFileSize: Math.max(policies.maxFileSize(), ASSET_MAX_BYTES) + 1, maxFiles: MAX_BATCH, maxFieldSize: 1_000_000 }),
    express.json({ limit: '1mb' }),
    expressMiddleware(apollo, {
      context: async ({ req, res }): Promise<Context> => {
        let principal = null;
        let authError = null;
        try {
          principal = await services.auth.authenticate({
            authorization: req.headers.authorization,
            workerType: req.get('x-worker-type'),
            tenantId: req.get('x-tenant-id'),
          });
        } catch (e) {
          if (!isAppError(e)) throw e;
          authError = e;
        }
        const facts = factsOf(res);
        facts.principal(principal);
        return {
          requestId: String(res.locals['requestId']),
          facts,
          principal,
          authError,
          services,
          loaders: createLoaders(db.prisma, principal?.tenant ?? null),
        };
      },
    }),
  );

  app.use((req, res) => sendError(res, { code: 'NOT_FOUND', message: `No route for ${req.method} ${req.path}` }));
  // Errors from body parsers and the upload middleware (malformed multipart, too many files).
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const status = (err as { status?: number; statusCode?: number }).status ?? (err as { statusCode?: number }).statusCode ?? 500;
    const requestId = String(res.locals['requestId']);
    const appCode = isAppError(err) && err.code !== 'INTERNAL_SERVER_ERROR' ? err.code : undefined;
    const known = appCode ?? (status === 413 ? 'PAYLOAD_TOO_LARGE' : status >= 400 && status < 500 ? 'BAD_USER_INPUT' : undefined);
    if (!known) logger.error({ err, requestId }, 'unhandled error');
    const code = known ?? 'INTERNAL_SERVER_ERROR';
    const message = known ? (err as Error).message : 'Internal server error';
    if (res.headersSent) return void res.destroy();
    factsOf(res).error(code);
    if (req.path === '/graphql') {
      // GraphQL clients expect a GraphQL-shaped body even when the request never reached Apollo.
      res.status(known ? status : 500).json({ errors: [{ message, extensions: { ...(appCode ? (err as AppError).extensions : {}), code, ...(known ? {} : { requestId }) } }] });
      return;
    }
    sendError(res, { code, message }, requestId);
  });

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(config.port, config.host ?? '0.0.0.0', () => resolve());
  });
  const port = (httpServer.address() as AddressInfo).port;
  if (!config.publicBaseUrl) baseUrl = `http://localhost:${port}`;
  const stopHttp = async () => {
    await apollo.stop();
    httpServer.closeAllConnections?.();
    await locker.close();
  };
  let metricsServer: MetricsServer | undefined;
  if (config.metrics.port !== undefined) {
    try {
      metricsServer = await startMetricsServer(metrics, config.metrics.port, config.host ?? '0.0.0.0');
    } catch (e) {
      // The port is taken: the start fails, with nothing left listening.
      await stopHttp();
      throw e;
    }
  }

  await locker.start();

  // The periodic orphan sweep; with several instances the advisory lock lets one run at a time.
  const sweepTimer =
    config.sweepIntervalSeconds > 0
      ? setInterval(() => {
          services.sweep
            .run({ graceSeconds: config.sweepGraceSeconds })
            .then((r) => r && logger.info({ sweep: r }, 'sweep finished'))
            .catch((e: unknown) => logger.error({ err: e }, 'sweep failed'));
        }, config.sweepIntervalSeconds * 1000).unref()
      : undefined;

  return {
    url: `http://localhost:${port}`,
    metricsUrl: metricsServer?.url,
    services,
    stop: async () => {
      clearInterval(sweepTimer);
      await Promise.all([stopHttp(), metricsServer?.close()]);
    },
  };
}
