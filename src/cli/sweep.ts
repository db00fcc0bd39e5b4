// Runs the orphan sweep once: `npm run sweep [-- --grace-seconds N] [--tenant T]`.
// It can run beside live instances: with DATABASE_URL it connects to that database;
// with the embedded default it connects to the cluster the running service keeps in
// DATA_DIR (or starts it for its own run when no service runs). Sweeps of several
// processes take turns (a lock: the report says "skipped" when another one holds it).
import { ExpensiveQueries } from '../db/expensive-queries.js';
import { MediaService } from '../modules/media/media.service.js';
import { PolicyRegistry } from '../modules/policy/policy.js';
import { MIN_SWEEP_GRACE_SECONDS, SweepService } from '../modules/sweep/sweep.service.js';
import { parseCliArgs } from './args.js';
import { runCli } from './bootstrap.js';

const USAGE = 'npm run sweep [-- --grace-seconds N] [--tenant T]';
const values = parseCliArgs({ 'grace-seconds': { type: 'string' }, tenant: { type: 'string' } }, USAGE);
const graceArg = values['grace-seconds'] !== undefined ? Number(values['grace-seconds']) : undefined;
if (graceArg !== undefined && (!/^\d+$/.test(values['grace-seconds']!) || !Number.isSafeInteger(graceArg) || graceArg < MIN_SWEEP_GRACE_SECONDS)) {
  // In-flight writes are protected by their pending-write records; the grace period is a second guard.
  console.error(`--grace-seconds must be an integer of at least ${MIN_SWEEP_GRACE_SECONDS} (usage: ${USAGE})`);
  process.exit(2);
}

await runCli(async ({ config, logger, db, storage }) => {
  const grace = graceArg ?? config.sweepGraceSeconds;
  const policies = PolicyRegistry.load(config.policyFile, config.kindLimits);
  const media = new MediaService({ prisma: db.prisma, storage, policies, logger, expensive: new ExpensiveQueries(db.pool, config.expensiveQueries) });
  const report = await new SweepService({ prisma: db.prisma, pool: db.pool, storage, media, logger }).run({
    graceSeconds: grace,
    ...(values.tenant ? { tenant: values.tenant } : {}),
  });
  console.log(JSON.stringify(report ?? { skipped: 'another sweep holds the lock' }));
});
