// Runs the orphan sweep once: `npm run sweep [-- --grace-seconds N] [--tenant T]`.
// It can run beside live instances: with DATABASE_URL it connects to that database;
// with the embedded default it connects to the cluster the running service keeps in
// DATA_DIR (or starts it for its own run when no service runs). Sweeps of several
// processes take turns (a lock: the report says "skipped" when another one holds it).
import { ExpensiveQueries } from '../db/expensive-queries.js';
import { MediaService } from '../modules/media/media.service.js';
import { PolicyRegistry } from '../modules/policy/policy.js';
import { MIN_SWEEP_GRACE_SECONDS, SweepService } from '../modules/sweep/sweep.service.js';
import { PgLocker } from '../modules/resumable-uploads/pg-locker.js';
import { createTusBackend } from '../modules/resumable-uploads/tus-backend.js';
import { ResumableSweep } from '../modules/resumable-uploads/resumable-sweep.js';
import { localBlobRoot } from '../storage/index.js';
import { parseCliArgs, PROGRESS_ENV, STORE_ENV, tenantArg, usageExit } from './args.js';
import { runCli } from './bootstrap.js';

const USAGE = 'npm run sweep [-- --grace-seconds N] [--tenant T]';
const values = parseCliArgs(
  { 'grace-seconds': { type: 'string' }, tenant: { type: 'string' } },
  {
    usage: USAGE,
    summary:
      'Runs the orphan sweep once: purges deleted media and assets, removes ended direct uploads and expired resumable uploads, deletes stored objects no row claims, ' +
      'temporary files and stale multipart uploads. It can run beside live instances (one sweep at a time). Progress: one line redrawn on stderr when it is a terminal, log lines otherwise; the report (JSON) last on stdout.',
    options: {
      '--grace-seconds N': `leave alone what is younger than N seconds (at least ${MIN_SWEEP_GRACE_SECONDS}; default SWEEP_GRACE_SECONDS, 3600)`,
      '--tenant T': 'sweep one tenant\'s rows and objects only',
    },
    env: { SWEEP_GRACE_SECONDS: 'the default grace period', ...STORE_ENV, ...PROGRESS_ENV },
  },
);
const graceArg = values['grace-seconds'] !== undefined ? Number(values['grace-seconds']) : undefined;
if (graceArg !== undefined && (!/^\d+$/.test(values['grace-seconds']!) || !Number.isSafeInteger(graceArg) || graceArg < MIN_SWEEP_GRACE_SECONDS)) {
  // In-flight writes are protected by their pending-write records; the grace period is a second guard.
  usageExit(`--grace-seconds must be an integer of at least ${MIN_SWEEP_GRACE_SECONDS}`, USAGE);
}
const tenant = tenantArg(values.tenant, USAGE);

await runCli(async ({ config, logger, db, storage, progress }) => {
  const grace = graceArg ?? config.sweepGraceSeconds;
  const policies = PolicyRegistry.load(config.policyFile, config.kindLimits);
  const media = new MediaService({ prisma: db.prisma, storage, policies, logger, expensive: new ExpensiveQueries(db.pool, config.expensiveQueries) });
  const shown = progress('sweep');
  // Resumable uploads are removed under their locks, as the service takes them.
  const locker = new PgLocker({ connectionString: db.url, connections: 2, lockTimeoutMs: config.resumable.lockTimeoutMs, logger });
  const backend = createTusBackend(storage, { blobRoot: localBlobRoot(config), logger });
  const resumable = new ResumableSweep({ prisma: db.prisma, storage, locker, backend, ttlSeconds: config.resumable.ttlSeconds, logger });
  const report = await new SweepService({ prisma: db.prisma, pool: db.pool, storage, media, logger, resumable })
    .run({
      graceSeconds: grace,
      ...(tenant ? { tenant } : {}),
      onProgress: shown.update,
    })
    .finally(() => locker.close());
  shown.finish(report ? { text: summary(report), fields: { sweep: report } } : { text: 'skipped: another sweep holds the lock' });
  console.log(JSON.stringify(report ?? { skipped: 'another sweep holds the lock' }));
});

/** The report's non-zero counts, or "nothing to do". */
function summary(report: object): string {
  const parts = (Object.entries(report) as [string, number][]).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`);
  return parts.length ? parts.join(', ') : 'nothing to do';
}
