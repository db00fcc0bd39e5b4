// Runs the orphan sweep once: `npm run sweep [-- --grace-seconds N] [--tenant T]`.
// With the embedded default, stop the service first (it sweeps periodically
// itself); with DATABASE_URL this can run beside live instances.
import { parseArgs } from 'node:util';
import { ExpensiveQueries } from '../db/expensive-queries.js';
import { MediaService } from '../modules/media/media.service.js';
import { PolicyRegistry } from '../modules/policy/policy.js';
import { MIN_SWEEP_GRACE_SECONDS, SweepService } from '../modules/sweep/sweep.service.js';
import { runCli } from './bootstrap.js';

const { values } = parseArgs({ options: { 'grace-seconds': { type: 'string' }, tenant: { type: 'string' } } });

await runCli(async ({ config, logger, db, storage }) => {
  const grace = values['grace-seconds'] !== undefined ? Number(values['grace-seconds']) : config.sweepGraceSeconds;
  if (!Number.isInteger(grace) || grace < MIN_SWEEP_GRACE_SECONDS) throw new Error(`--grace-seconds must be an integer of at least ${MIN_SWEEP_GRACE_SECONDS}`);
  const policies = PolicyRegistry.load(config.policyFile, config.kindLimits);
  const media = new MediaService({ prisma: db.prisma, storage, policies, logger, expensive: new ExpensiveQueries(db.pool, config.expensiveQueries) });
  const report = await new SweepService({ prisma: db.prisma, pool: db.pool, storage, media, logger }).run({
    graceSeconds: grace,
    ...(values.tenant ? { tenant: values.tenant } : {}),
  });
  console.log(JSON.stringify(report ?? { skipped: 'another sweep holds the lock' }));
});
