// The pieces of issue 13 that need no process: reading postmaster.pid, the port's
// configuration, and the token command the start-up banner prints.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { parsePostmasterPid } from '../../src/db/embedded.js';
import { tokenCommand } from '../../src/cli/token-command.js';

const ROOT = path.resolve(import.meta.dirname, '../..');

describe('parsePostmasterPid', () => {
  it('reads pid, data directory, port, listen address and status (PostgreSQL pidfile.h lines)', () => {
    const text = '17752\n/tmp/d/pg\n1796206511\n34349\n\n127.0.0.1\n  2162719    163849\nready   \n';
    expect(parsePostmasterPid(text)).toEqual({ pid: 17752, dataDir: '/tmp/d/pg', port: 34349, listenAddress: '127.0.0.1', status: 'ready' });
  });
  it('takes a file written only in part (a server starting) without a port or address', () => {
    expect(parsePostmasterPid('42\n/tmp/d/pg\n1796206511\n')).toEqual({ pid: 42, dataDir: '/tmp/d/pg', port: undefined, listenAddress: undefined, status: undefined });
  });
  it('a wildcard listen address is no address to connect to', () => {
    expect(parsePostmasterPid('42\n/d\n1\n5432\n/tmp\n*\n')?.listenAddress).toBeUndefined();
  });
  it('names no process for an empty or garbled file', () => {
    for (const t of ['', '\n', 'abc\n', '-3\n', '0\n']) expect(parsePostmasterPid(t), JSON.stringify(t)).toBeUndefined();
  });
});

describe('EMBEDDED_PG_PORT', () => {
  it('is 54329 by default; 0 asks for a free port', () => {
    expect(loadConfig({}).embeddedPgPort).toBe(54329);
    expect(loadConfig({ EMBEDDED_PG_PORT: '0' }).embeddedPgPort).toBe(0);
  });
  it('refuses a value that is no port, naming the variable', () => {
    expect(() => loadConfig({ EMBEDDED_PG_PORT: '70000' })).toThrow(/EMBEDDED_PG_PORT/);
    expect(() => loadConfig({ EMBEDDED_PG_PORT: 'x' })).toThrow(/EMBEDDED_PG_PORT/);
  });
});

describe('tokenCommand', () => {
  it('is the plain command for the default DATA_DIR (npm runs scripts in the package root)', () => {
    expect(tokenCommand(path.join(ROOT, '.data'))).toBe('npm run token -- --tenant demo');
  });
  it('carries any other DATA_DIR, absolute, quoted for the shell when it must be', () => {
    expect(tokenCommand('/srv/media')).toBe('DATA_DIR=/srv/media npm run token -- --tenant demo');
    expect(tokenCommand("/srv/my media/it's")).toBe(`DATA_DIR='/srv/my media/it'\\''s' npm run token -- --tenant demo`);
  });
});
