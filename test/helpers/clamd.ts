// A real clamd for tests, on loopback and a unix socket, with a signature
// database of one line: the EICAR test file. ClamAV's own database cannot be
// downloaded here (freshclam needs the internet) and is not needed: clamd starts
// with any database that loads, in about 30 ms with this one (it refuses to start
// with an empty one: "Can't open file or directory").
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../src/db/embedded.js';

export const CLAMD_APT_COMMAND = 'apt-get install -y --no-install-recommends clamav-daemon';

/** The EICAR anti-virus test file: 68 bytes every scanner recognises, harmless. */
export const EICAR = Buffer.from('X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*', 'latin1');
/** The name the test database gives it (clamd adds ".UNOFFICIAL" to signatures not from ClamAV's own databases). */
export const EICAR_SIGNATURE = 'Eicar-Test-Signature';

export interface ClamdLimits {
  /** clamd.conf sizes (`25M`, `1024M`, `4G`). */
  streamMaxLength?: string;
  maxFileSize?: string;
  maxScanSize?: string;
}

export interface RunningClamd {
  /** tcp://127.0.0.1:port */
  readonly url: string;
  readonly socketPath?: string;
  readonly dir: string;
  readonly logFile: string;
  /** From spawn to PONG. */
  readonly startupMs: number;
  /** Signals clamd (SIGKILL: as if it crashed) and waits for it to exit; the directory stays. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Stops clamd and removes its directory. */
  stop(): Promise<void>;
}

function clamdBinary(): string | undefined {
  const candidates = ['/usr/sbin/clamd', ...(process.env['PATH'] ?? '').split(path.delimiter).map((d) => path.join(d, 'clamd'))];
  return candidates.find((c) => existsSync(c));
}

/** One raw PING: true when clamd answers PONG. */
function pongs(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let reply = '';
    const timer = setTimeout(() => s.destroy(), 1000);
    s.on('error', () => resolve(false));
    s.on('data', (c: Buffer) => (reply += c.toString('latin1')));
    s.on('close', () => {
      clearTimeout(timer);
      resolve(reply.startsWith('PONG'));
    });
    s.end('zPING\0');
  });
}

async function tail(file: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text ? `\n--- ${file} (last lines) ---\n${text.split('\n').slice(-25).join('\n')}` : '';
}

/** clamd processes this process started: they go with it however it ends. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of running) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/**
 * Starts clamd in a fresh temporary directory (config, database, log, socket,
 * its spool of streamed files) and waits until it answers PING. The default
 * limits let 1 GiB through and scan all of it; AlertExceedsMax reports a file
 * clamd did not scan whole as `Heuristics.Limits.Exceeded.*` rather than OK.
 */
export async function startClamd(limits: ClamdLimits = {}): Promise<RunningClamd> {
  const binary = clamdBinary();
  if (!binary) throw new Error(`clamd is not installed (tests start a real one): install it with\n  ${CLAMD_APT_COMMAND}`);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'clamd-'));
  const db = path.join(dir, 'db');
  const spool = path.join(dir, 'tmp');
  await mkdir(db);
  await mkdir(spool);
  // .ndb: Name:TargetType:Offset:HexSignature; target 0 (any file), offset * (anywhere), so EICAR is found inside other bytes too.
  await writeFile(path.join(db, 'test.ndb'), `${EICAR_SIGNATURE}:0:*:${EICAR.toString('hex')}\n`);
  const port = await freePort();
  const socketPath = path.join(dir, 'clamd.sock');
  const logFile = path.join(dir, 'clamd.log');
  const conf = path.join(dir, 'clamd.conf');
  await writeFile(
    conf,
    [
      'Foreground yes',
      `DatabaseDirectory ${db}`,
      `TCPSocket ${port}`,
      'TCPAddr 127.0.0.1',
      `LocalSocket ${socketPath}`,
      `LogFile ${logFile}`,
      'LogTime yes',
      `PidFile ${path.join(dir, 'clamd.pid')}`,
      `TemporaryDirectory ${spool}`,
      // No User: clamd runs as whoever starts it (root included); User would need root.
      `StreamMaxLength ${limits.streamMaxLength ?? '1024M'}`,
      `MaxFileSize ${limits.maxFileSize ?? '1024M'}`,
      `MaxScanSize ${limits.maxScanSize ?? '1024M'}`,
      'AlertExceedsMax yes',
      '',
    ].join('\n'),
  );
  const t0 = performance.now();
  const child = spawn(binary, ['--foreground', `--config-file=${conf}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  running.add(child);
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  let spawnError: Error | undefined;
  child.on('error', (e) => (spawnError = e));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exited.then(() => running.delete(child));
  const kill = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const hard = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.kill(signal);
    await exited;
    clearTimeout(hard);
  };
  const stop = async () => {
    await kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (await pongs(port)) break;
      if (spawnError) throw new Error(`clamd did not start: ${spawnError.message}`);
      if (child.exitCode !== null) throw new Error(`clamd exited with code ${child.exitCode}${stderr ? `\n${stderr}` : ''}${await tail(logFile)}`);
      if (Date.now() > deadline) throw new Error(`clamd did not answer PING within 20 s${await tail(logFile)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { url: `tcp://127.0.0.1:${port}`, socketPath, dir, logFile, startupMs: Math.round(performance.now() - t0), kill, stop };
}
