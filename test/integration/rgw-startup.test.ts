// The service as `npm start` runs it (tsx src/main.ts, configured by environment
// only), pointed at Ceph RGW: it logs that the store enforces SSE-C and uses it, and
// a CRITICAL upload cannot be read from the store without its key. Runs on RGW only.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { inject } from 'vitest';
import { UploadDocument } from '../generated/graphql.js';
import { newTenant, S3_STORE, TEST_JWT_SECRET, testS3Env } from '../helpers/app.js';
import { ok } from '../helpers/client.js';
import { pdfBytes } from '../helpers/files.js';
import { md5Base64, radosBytes, rawGet, rawHead } from '../helpers/sse-c.js';
import { mintToken } from '../../src/auth/tokens.js';
import { KeyRing } from '../../src/crypto/key-ring.js';

const MiB = 1024 * 1024;
const MEDIA_KEYS = `prod1:${randomBytes(32).toString('base64')}`;
const MARKER = Buffer.from('CRITICAL-CLAUSE-DO-NOT-LEAK ');
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function lease(size: number): Buffer {
  const head = pdfBytes(1);
  const body = Buffer.alloc(size - head.length);
  for (let i = 0; i < body.length; i += MARKER.length) MARKER.copy(body, i);
  return Buffer.concat([head, body]);
}

interface Service {
  child: ChildProcess;
  url: string;
  /** Every JSON log line the process wrote to stdout, parsed. */
  logs: Record<string, unknown>[];
  exited: Promise<number | null>;
  stderr(): string;
}

/** Starts src/main.ts with tsx, as `npm start` does, and waits for its "listening" line. */
async function startService(env: Record<string, string>): Promise<Service> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: path.resolve(import.meta.dirname, '../..'),
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? os.tmpdir(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the service did not start within 60 s; stderr:\n${stderr}`)), 60_000);
    let pending = '';
    child.stdout!.on('data', (c: Buffer) => {
      pending += c.toString();
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        if (!line.startsWith('{')) continue;
        const entry = JSON.parse(line) as Record<string, unknown>;
        logs.push(entry);
        if (entry['msg'] === 'media API listening') {
          clearTimeout(timer);
          resolve(String(entry['url']).replace(/\/graphql$/, ''));
        }
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`the service exited with ${code} before listening; stderr:\n${stderr}`));
    });
  });
  return { child, url, logs, exited, stderr: () => stderr };
}

let service: Service | undefined;
let dataDir: string;
beforeAll(async () => {
  if (S3_STORE !== 'rgw') throw new Error('rgw-startup.test.ts runs on Ceph RGW only (TEST_RGW=1 npx vitest run --project rgw)');
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'media-api-start-'));
  service = await startService({
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    DATABASE_URL: inject('databaseUrl'),
    ...testS3Env(),
    JWT_SECRET: TEST_JWT_SECRET,
    MEDIA_KEYS,
    LOG_LEVEL: 'info',
  });
}, 90_000);
afterAll(async () => {
  if (service && service.child.exitCode === null && service.child.signalCode === null) {
    // SIGTERM, and SIGKILL (of this child only) if it has not gone after 15 s: the
    // exit code of a SIGTERM shutdown is not what this file tests (see the report).
    service.child.kill('SIGTERM');
    const timer = setTimeout(() => service!.child.kill('SIGKILL'), 15_000);
    await service.exited;
    clearTimeout(timer);
  }
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe('npm start against Ceph RGW', () => {
  it('logs at start-up that the store enforces SSE-C and that it is used (never the application-side fallback)', () => {
    const notes = service!.logs.filter((l) => String(l['msg']).startsWith('encryption at rest'));
    expect(notes).toHaveLength(1);
    expect(notes[0]).toMatchObject({ msg: 'encryption at rest: SSE-C (the store enforces customer keys)', level: 30, active: 'prod1', keys: ['prod1'] });
    expect(service!.logs.some((l) => String(l['msg']).includes('does not enforce SSE-C'))).toBe(false);
    expect(service!.logs.find((l) => l['msg'] === 'media API listening')).toMatchObject({ storage: 's3' });
    // Key ids are logged, key material never.
    expect(JSON.stringify(service!.logs)).not.toContain(MEDIA_KEYS.split(':')[1]!.slice(0, 16));
  });

  it.each([
    ['one PutObject', 200 * 1024],
    ['a multipart upload (17 MiB, default S3_CHECKSUMS=when_required)', 17 * MiB],
  ])('a CRITICAL PDF uploaded through %s cannot be read from the store without its key', async (_how, size) => {
    const tenant = newTenant();
    const token = await mintToken(TEST_JWT_SECRET, { tenant });
    const bytes = lease(size);
    const { upload } = await ok(service!.url, UploadDocument, { input: { file: new File([bytes], 'lease.pdf'), entity: { type: 'lease', id: 'L-1' }, role: 'LEASE_ORIGINAL' } }, { token });
    expect(upload).toMatchObject({ securityLevel: 'CRITICAL', encrypted: true, encryptionKeyId: 'prod1', url: null, checksum: sha(bytes) });

    const key = `${tenant}/${upload.id}/original`;
    for (const read of [await rawGet(key), await rawGet(key, randomBytes(32)), await rawHead(key)]) {
      expect(read.status).toBeGreaterThanOrEqual(400);
      expect(read.status).toBeLessThan(500);
    }
    // The key derived from the configured ring key opens it: SSE-C, not our segment format.
    const objectKey = KeyRing.parse(MEDIA_KEYS).objectKey('prod1', key);
    const withKey = await rawGet(key, objectKey);
    expect(withKey).toMatchObject({ status: 200, algorithm: 'AES256', keyMd5: md5Base64(objectKey) });
    expect(withKey.body!.equals(bytes)).toBe(true);
    expect((await radosBytes(key)).includes(MARKER)).toBe(false);

    const res = await fetch(`${service!.url}/media/${upload.id}/content`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    expect(sha(Buffer.from(await res.arrayBuffer()))).toBe(sha(bytes));
  });
});
