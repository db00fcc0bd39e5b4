// npm run test:rgw needs a local Ceph (mon, osd, radosgw): fail at once, naming
// the apt command, when its binaries are not installed.
import { existsSync } from 'node:fs';
import path from 'node:path';

const needed = ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'monmaptool', 'ceph'];
const dirs = (process.env.PATH ?? '').split(path.delimiter);
const missing = needed.filter((b) => !dirs.some((d) => existsSync(path.join(d, b))));
if (missing.length) {
  console.error(`npm run test:rgw runs the integration suite on a local Ceph RGW, and ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not installed.`);
  console.error('Install them (as root, Debian or Ubuntu) with:');
  console.error('  apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw');
  process.exit(1);
}
