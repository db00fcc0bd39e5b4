// A single-node Ceph cluster with a RADOS Gateway, on loopback, for tests and
// benchmarks: one ceph-mon, one ceph-osd (memstore: objects in RAM) and one
// radosgw, all in a temporary directory of their own, started in the foreground
// as children of this process and stopped by the PIDs it started. Settings that
// matter are explained in ../shared/ENVIRONMENT.md ("Ceph RGW").
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../src/db/embedded.js';

const run = promisify(execFile);

export const RGW_APT_COMMAND = 'apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw';
export const RGW_BUCKET = 'media-test';

const BINARIES = ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'monmaptool', 'ceph'];

/** The Ceph binaries this helper needs that are not on PATH (empty when all are). */
export function missingCephBinaries(): string[] {
  const dirs = (process.env['PATH'] ?? '').split(path.delimiter);
  return BINARIES.filter((b) => !dirs.some((d) => existsSync(path.join(d, b))));
}

export interface RunningRgw {
  /** http://127.0.0.1:port */
  readonly endpoint: string;
  readonly bucket: string;
  readonly credentials: { accessKeyId: string; secretAccessKey: string };
  readonly dir: string;
  /** Stops radosgw only (the store becomes unreachable; mon and osd keep the data). */
  stopGateway(): Promise<void>;
  /** Starts radosgw again on the same port after stopGateway(). */
  startGateway(): Promise<void>;
  /** Stops every daemon this helper started and removes its directory. */
  close(): Promise<void>;
}

function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function waitFor(what: string, until: () => Promise<boolean>, timeoutMs: number, child?: ChildProcess, logFile?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await until()) return;
    if (child && child.exitCode !== null) throw new Error(`${what} exited with code ${child.exitCode}${await tail(logFile)}`);
    if (Date.now() > deadline) throw new Error(`${what} did not come up in ${timeoutMs} ms${await tail(logFile)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function tail(file?: string): Promise<string> {
  if (!file) return '';
  const text = await readFile(file, 'utf8').catch(() => '');
  return text ? `\n--- ${file} (last lines) ---\n${text.split('\n').slice(-25).join('\n')}` : '';
}

function stopChild(child: ChildProcess | undefined, graceMs: number): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/**
 * Daemons started by this process. However it ends (a test run stopped with
 * SIGTERM exits from inside vitest, before any teardown), they go with it: the
 * cluster keeps its objects in memory only, so SIGKILL loses nothing.
 */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of running) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** RGW's pools, created up front: otherwise the first CreateBucket and PutObject each stall while RGW creates them. */
const POOLS = [
  '.rgw.root',
  'default.rgw.control',
  'default.rgw.meta',
  'default.rgw.log',
  'default.rgw.buckets.index',
  'default.rgw.buckets.non-ec',
  'default.rgw.buckets.data',
];

/**
 * Brings up mon + osd + radosgw in `dir` (created; removed by close()). Throws at
 * once, naming the apt command, when the Ceph binaries are missing.
 */
export async function startRgw(dir: string, options: { memoryBytes?: number; bucket?: string; log?: (line: string) => void } = {}): Promise<RunningRgw> {
  const missing = missingCephBinaries();
  if (missing.length) throw new Error(`Ceph RGW tests need ${missing.join(', ')}: install them with\n  ${RGW_APT_COMMAND}`);
  const say = options.log ?? (() => undefined);
  await rm(dir, { recursive: true, force: true });
  for (const d of ['mon', 'osd', 'run', 'log', 'rgw']) await mkdir(path.join(dir, d), { recursive: true });
  const monPort = await freePort();
  const rgwPort = await freePort();
  const fsid = randomUUID();
  const conf = path.join(dir, 'ceph.conf');
  const logFile = (name: string) => path.join(dir, 'log', `${name}.log`);
  await writeFile(
    conf,
    [
      '[global]',
      `fsid = ${fsid}`,
      `mon_host = [v2:127.0.0.1:${monPort}]`,
      'public_addr = 127.0.0.1',
      'cluster_addr = 127.0.0.1',
      'ms_bind_ipv6 = false',
      'ms_bind_msgr1 = false',
      'auth_cluster_required = none',
      'auth_service_required = none',
      'auth_client_required = none',
      // Without it radosgw loops on "get_initial_auth_request returned -13".
      'ms_mon_client_mode = crc',
      'osd_pool_default_size = 1',
      'osd_pool_default_min_size = 1',
      'mon_allow_pool_size_one = true',
      'mon_warn_on_pool_no_redundancy = false',
      'osd_crush_chooseleaf_type = 0',
      'osd_pool_default_pg_num = 8',
      'osd_pool_default_pgp_num = 8',
      'osd_pool_default_pg_autoscale_mode = off',
      'paxos_propose_interval = 0.05',
      // The monitor stops below 5 % free disk by default; a test cluster should not.
      'mon_data_avail_crit = 1',
      'mon_data_avail_warn = 2',
      `run_dir = ${path.join(dir, 'run')}`,
      `admin_socket = ${path.join(dir, 'run')}/$name.asok`,
      `pid_file = ${path.join(dir, 'run')}/$name.pid`,
      `log_file = ${path.join(dir, 'log')}/$name.log`,
      'log_to_stderr = false',
      'err_to_stderr = false',
      `keyring = ${path.join(dir, 'keyring')}`,
      '',
      '[mon]',
      `mon_data = ${path.join(dir, 'mon')}/$id`,
      '',
      '[osd]',
      `osd_data = ${path.join(dir, 'osd')}/$id`,
      'osd_objectstore = memstore',
      `memstore_device_bytes = ${options.memoryBytes ?? 6 * 1024 ** 3}`,
      'osd_max_object_size = 134217728',
      '',
      '[client]',
      // SSE-C over plain HTTP on loopback (otherwise 400 InvalidRequest).
      'rgw_crypt_require_ssl = false',
      `rgw_frontends = beast endpoint=127.0.0.1:${rgwPort}`,
      'rgw_thread_pool_size = 64',
      `rgw_data = ${path.join(dir, 'rgw')}`,
      'rgw_dns_name = 127.0.0.1',
      'rgw_enable_usage_log = false',
      // Deleted objects' tails are collected soon, so memstore memory comes back.
      'rgw_gc_obj_min_wait = 10',
      'rgw_gc_processor_period = 10',
      '',
    ].join('\n'),
  );
  const children: ChildProcess[] = [];
  let gateway: ChildProcess | undefined;
  const daemon = (cmd: string, args: string[]): ChildProcess => {
    const child = spawn(cmd, ['-f', '-c', conf, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr?.on('data', (c: Buffer) => say(`${cmd}: ${c.toString().trim()}`));
    child.on('error', (e) => say(`${cmd}: ${e.message}`));
    children.push(child);
    running.add(child);
    child.once('exit', () => running.delete(child));
    return child;
  };
  const ceph = async (...args: string[]): Promise<string> => {
    const { stdout } = await run('ceph', ['-c', conf, '--connect-timeout', '20', ...args], { timeout: 60_000 });
    return stdout;
  };
  const stopAll = async () => {
    await stopChild(gateway, 5000);
    for (const c of [...children].reverse()) await stopChild(c, 5000);
  };
  try {
    const t0 = Date.now();
    await run('monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', `[v2:127.0.0.1:${monPort}]`, path.join(dir, 'monmap')]);
    await run('ceph-mon', ['-c', conf, '--mkfs', '-i', 'a', '--monmap', path.join(dir, 'monmap')]);
    const mon = daemon('ceph-mon', ['-i', 'a']);
    await waitFor('ceph-mon', () => portAnswers(monPort), 20_000, mon, logFile('mon.a'));
    const osdUuid = randomUUID();
    const id = (await ceph('osd', 'new', osdUuid)).trim();
    await mkdir(path.join(dir, 'osd', id), { recursive: true });
    await run('ceph-osd', ['-c', conf, '-i', id, '--mkfs', '--osd-uuid', osdUuid], { timeout: 60_000 });
    const osd = daemon('ceph-osd', ['-i', id]);
    await waitFor(
      'ceph-osd',
      async () => {
        const out = await ceph('osd', 'stat', '--format', 'json').catch(() => '{}');
        const s = JSON.parse(out) as { num_up_osds?: number; num_in_osds?: number };
        return (s.num_up_osds ?? 0) >= 1 && (s.num_in_osds ?? 0) >= 1;
      },
      30_000,
      osd,
      logFile(`osd.${id}`),
    );
    for (const pool of POOLS) {
      await ceph('osd', 'pool', 'create', pool, '8', '8');
      await ceph('osd', 'pool', 'application', 'enable', pool, 'rgw');
    }
    const startGateway = async () => {
      gateway = daemon('radosgw', ['-n', 'client.rgw.test']);
      await waitFor('radosgw', () => portAnswers(rgwPort), 30_000, gateway, logFile('client.rgw.test'));
    };
    await startGateway();
    const credentials = { accessKeyId: `T${randomBytes(9).toString('hex').toUpperCase()}`, secretAccessKey: randomBytes(24).toString('base64url') };
    await run(
      'radosgw-admin',
      ['-c', conf, '-n', 'client.rgw.test', 'user', 'create', '--uid', 'media-test', '--display-name', 'media test', '--access-key', credentials.accessKeyId, '--secret-key', credentials.secretAccessKey],
      { timeout: 60_000 },
    );
    const endpoint = `http://127.0.0.1:${rgwPort}`;
    const bucket = options.bucket ?? RGW_BUCKET;
    await createBucket(endpoint, credentials, bucket);
    say(`Ceph RGW up at ${endpoint} in ${Date.now() - t0} ms`);
    return {
      endpoint,
      bucket,
      credentials,
      dir,
      stopGateway: async () => {
        await stopChild(gateway, 5000);
        gateway = undefined;
      },
      startGateway: async () => {
        if (gateway && gateway.exitCode === null && gateway.signalCode === null) return;
        await startGateway();
      },
      close: async () => {
        await stopAll();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    await stopAll();
    throw e;
  }
}

async function createBucket(endpoint: string, credentials: { accessKeyId: string; secretAccessKey: string }, bucket: string): Promise<void> {
  const { S3Client, CreateBucketCommand } = await import('@aws-sdk/client-s3');
  const client = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials });
  try {
    // The gateway may answer its port a moment before it serves requests.
    for (let attempt = 0; ; attempt++) {
      try {
        await client.send(new CreateBucketCommand({ Bucket: bucket }));
        return;
      } catch (e) {
        if (attempt >= 50) throw e;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  } finally {
    client.destroy();
  }
}
