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
import { parseCliArgs } from './args.js';
import { runCli } from './bootstrap.js';

const values = parseCliArgs({ tenant: { type: 'string' } }, 'npm run keys:rotate [-- --tenant T]');

await runCli(async ({ config, logger, db, storage }) => {
  const ring = KeyRing.load(config.mediaKeys, config.dataDir);
  const decision = await ContentCrypto.detectMode(storage, ring, logger, { sseCOverHttp: config.sseCOverHttp });
  await reconcileStoredModes(db.prisma, decision, logger);
  const crypto = new ContentCrypto(ring, decision);
  const report = await new KeyRotation({ prisma: db.prisma, storage, crypto, logger, pending: new PendingWrites({ prisma: db.prisma, logger }) }).run(values.tenant ? { tenant: values.tenant } : {});
  console.log(JSON.stringify({ activeKey: ring.active.kid, ...report }));
  if (report.failed.length) process.exitCode = 1;
});
