// Runs the orphan sweep once: `npm run sweep [-- --grace-seconds N] [--tenant T]`.
// With the embedded default, stop the service first (it sweeps periodically
// itself); with DATABASE_URL this can run beside live instances.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config.js';
import { createLogger } from '../logger.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../db/embedded.js';
import { migrate } from '../db/migrate.js';
import { createDatabase } from '../db/prisma.js';
import { createStorage } from '../storage/index.js';
import { MediaService } from '../modules/media/media.service.js';
import { PolicyRegistry } from '../modules/policy/policy.js';
import { SweepService } from '../modules/sweep/sweep.service.js';

const config = loadConfig();
const { values } = parseArgs({ options: { 'grace-seconds': { type: 'string' }, tenant: { type: 'string' } } });
const grace = values['grace-seconds'] !== undefined ? Number(values['grace-seconds']) : config.sweepGraceSeconds;
if (!Number.isInteger(grace) || grace < 0) {
  console.error('--grace-seconds must be a non-negative integer');
  process.exit(2);
}
const logger = createLogger(config.logLevel);
let embedded: EmbeddedDatabase | undefined;
let url = config.databaseUrl;
if (!url) {
  embedded = await startEmbeddedPostgres({ dir: path.join(config.dataDir, 'pg'), database: 'media', logger });
  url = embedded.url;
}
try {
  await migrate(url);
  const db = createDatabase({ url, poolSize: 2 });
  const storage = createStorage(config);
  const media = new MediaService({ prisma: db.prisma, storage, policies: PolicyRegistry.load(config.policyFile, config.kindLimits), logger });
  const report = await new SweepService({ prisma: db.prisma, storage, media, logger }).run({ graceSeconds: grace, ...(values.tenant ? { tenant: values.tenant } : {}) });
  console.log(JSON.stringify(report ?? { skipped: 'another sweep holds the lock' }));
  await db.close();
} finally {
  await embedded?.stop();
}
