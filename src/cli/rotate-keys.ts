// Re-encrypts stored media under the active key of MEDIA_KEYS (the first one):
//   npm run keys:rotate [-- --tenant T]
// Add the new key first in MEDIA_KEYS and keep the old ones after it; restart the
// service so new uploads use the new key; then run this. It can be interrupted and
// run again. With the embedded default, stop the service first.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config.js';
import { createLogger } from '../logger.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../db/embedded.js';
import { migrate } from '../db/migrate.js';
import { createDatabase } from '../db/prisma.js';
import { createStorage } from '../storage/index.js';
import { KeyRing } from '../crypto/key-ring.js';
import { ContentCrypto } from '../crypto/content-crypto.js';
import { KeyRotation } from '../crypto/rotation.js';

const config = loadConfig();
const { values } = parseArgs({ options: { tenant: { type: 'string' } } });
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
  const ring = KeyRing.load(config.mediaKeys, config.dataDir);
  const crypto = new ContentCrypto(ring, await ContentCrypto.detectMode(storage, ring, logger));
  const report = await new KeyRotation({ prisma: db.prisma, storage, crypto, logger }).run(values.tenant ? { tenant: values.tenant } : {});
  console.log(JSON.stringify({ activeKey: ring.active.kid, ...report }));
  await db.close();
  if (report.failed.length) process.exitCode = 1;
} finally {
  await embedded?.stop();
}
