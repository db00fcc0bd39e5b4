import path from 'node:path';

/** The package root: `npm run` runs its scripts there, so a relative DATA_DIR resolves against it. */
const PACKAGE_ROOT = path.resolve(import.meta.dirname, '../..');

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * The command that mints a development token for the service running on dataDir
 * (printed in the start-up banner): `npm run token` reads DATA_DIR like the service,
 * so a DATA_DIR other than the default must be passed to it too.
 */
export function tokenCommand(dataDir: string): string {
  const command = 'npm run token -- --tenant demo';
  return path.resolve(dataDir) === path.join(PACKAGE_ROOT, '.data') ? command : `DATA_DIR=${shellQuote(path.resolve(dataDir))} ${command}`;
}
