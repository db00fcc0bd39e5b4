// Re-encrypts stored media under the active key of MEDIA_KEYS (the first one):
//   npm run keys:rotate [-- --tenant T]
// Add the new key first in MEDIA_KEYS and keep the old ones after it; restart the
// service so new uploads use the new key; then run this. It can be interrupted (even
// killed) at any point and run again; the sweep removes what an interrupted run left.
// Run one at a time. With the embedded default it connects to the cluster of the
// running service (DATA_DIR), or starts it for its own run when no service runs.
import { KeyRing } from '../crypto/key-ring.js';
import { ContentCrypto, reconcileStoredModes } from '../crypto/content-crypto.js';
import { KeyRotation } from '../crypto/rotation.js';
import { PendingWrites } from '../db/pending-writes.js';
import { parseCliArgs, PROGRESS_ENV, STORE_ENV, tenantArg } from './args.js';
import { runCli } from './bootstrap.js';

const USAGE = 'npm run keys:rotate [-- --tenant T]';
const values = parseCliArgs(
  { tenant: { type: 'string' } },
  {
    usage: USAGE,
    summary:
      'Re-encrypts stored media under the active key of MEDIA_KEYS (the first one). Add the new key first in MEDIA_KEYS, keep the old ones after it, ' +
      'restart the service, then run this. It can be interrupted and run again. Progress: one line redrawn on stderr when it is a terminal, log lines otherwise; the report (JSON) last on stdout; exit code 1 when some media failed.',
    options: { '--tenant T': 'rotate one tenant\'s media only' },
    env: { ...STORE_ENV, ...PROGRESS_ENV },
  },
);
const tenant = tenantArg(values.tenant, USAGE);

await runCli(async ({ config, logger, db, storage, progress }) => {
  const ring = KeyRing.load(config.mediaKeys, config.dataDir);
  const decision = await ContentCrypto.detectMode(storage, ring, logger, { sseCOverHttp: config.sseCOverHttp });
  await reconcileStoredModes(db.prisma, decision, logger);
  const crypto = new ContentCrypto(ring, decision);
  const shown = progress('key rotation');
  const report = await new KeyRotation({ prisma: db.prisma, storage, crypto, logger, pending: new PendingWrites({ prisma: db.prisma, logger }) }).run({
    ...(tenant ? { tenant } : {}),
    onProgress: shown.update,
  });
  shown.finish({ text: `${report.rotated} rotated to ${ring.active.kid}, ${report.failed.length} failed`, fields: { activeKey: ring.active.kid, rotated: report.rotated, failed: report.failed.length } });
  console.log(JSON.stringify({ activeKey: ring.active.kid, ...report }));
  if (report.failed.length) process.exitCode = 1;
});
