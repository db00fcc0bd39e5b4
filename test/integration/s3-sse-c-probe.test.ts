// SSE-C is chosen only when proven, and only where the customer key travels
// protected (issue 12, items 1 and 2). On s3rver (it accepts SSE-C headers and
// ignores them) the keyless probe GET is made to answer 403 or 404, as a store that
// ignores SSE-C may for other reasons: the service must not take that for
// enforcement. On Ceph RGW (it enforces SSE-C, over plain http on loopback) SSE-C is
// used only with S3_SSE_C_OVER_HTTP=loopback; without it the service encrypts on the
// application side, and refuses to start while media are stored with SSE-C.
import { afterAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { GetObjectCommand, S3ServiceException } from '@aws-sdk/client-s3';
import { UploadDocument } from '../generated/graphql.js';
import { newTenant, S3_STORE, startTestApp, testS3Options, type TestApp } from '../helpers/app.js';
import { ok } from '../helpers/client.js';
import { pdfBytes } from '../helpers/files.js';
import { rawGet } from '../helpers/sse-c.js';
import { S3Storage } from '../../src/storage/s3.js';
import { ContentCrypto, EncryptionModeMismatch, reconcileStoredModes } from '../../src/crypto/content-crypto.js';
import { KeyRing } from '../../src/crypto/key-ring.js';
import { decodeHeader } from '../../src/crypto/segmented-gcm.js';
import { createLogger } from '../../src/logger.js';

const MARKER = 'TOP-SECRET-LEASE-CLAUSE ';
const leasePdf = () => Buffer.concat([pdfBytes(2), Buffer.from('%' + MARKER.repeat(5_000) + '\n')]);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const MEDIA_KEYS = `probe1:${randomBytes(32).toString('base64')}`;

/**
 * The run's store, except that a GET without a customer key of a start-up probe
 * object fails with `status` (the real request is made; its answer is replaced).
 */
function answeringKeylessProbe(status: 403 | 404): S3Storage {
  const storage = new S3Storage(testS3Options());
  storage.client.middlewareStack.add(
    (next, context) => async (args) => {
      const out = await next(args);
      const input = args.input as { Key?: string; SSECustomerKey?: string };
      if (context.commandName === 'GetObjectCommand' && input.Key?.startsWith('_probe/sse-c-') && !input.SSECustomerKey) {
        (out.output as { Body?: { destroy?: () => void } }).Body?.destroy?.();
        throw new S3ServiceException({
          name: status === 403 ? 'AccessDenied' : 'NoSuchKey',
          $fault: 'client',
          $metadata: { httpStatusCode: status },
          message: status === 403 ? 'Access Denied' : 'The specified key does not exist.',
        });
      }
      return out;
    },
    { step: 'initialize', name: 'keylessProbeAnswers' },
  );
  return storage;
}

function memoryLogger() {
  const lines: Record<string, unknown>[] = [];
  return { lines, logger: createLogger('info', { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) }) };
}

async function uploadLease(app: TestApp) {
  const tenant = newTenant();
  const token = await app.token(tenant);
  const bytes = leasePdf();
  const { upload } = await ok(
    app.url,
    UploadDocument,
    { input: { file: new File([bytes], 'lease.pdf', { type: 'application/pdf' }), entity: { type: 'lease', id: 'l-1' }, role: 'LEASE_ORIGINAL' } },
    { token },
  );
  expect(upload).toMatchObject({ securityLevel: 'CRITICAL', encrypted: true, checksum: sha(bytes) });
  const key = `${tenant}/${upload.id}/original`;
  const [row] = await app.db.prisma.$queryRaw<{ encryption_mode: string | null }[]>`SELECT encryption_mode FROM media WHERE id = ${upload.id}::uuid`;
  return { tenant, token, bytes, id: upload.id, key, mode: row!.encryption_mode };
}

const apps: TestApp[] = [];
afterAll(async () => {
  await Promise.all(apps.map((a) => a.close()));
});

// Each store gets the cases it can show (registered only there, never skipped).
if (S3_STORE === 's3rver') describe('a store that ignores SSE-C but answers 403/404 to the keyless probe GET (s3rver)', () => {
  it.each([403, 404] as const)('keyless GET answers %i: application-side encryption, a CRITICAL PDF is not plaintext at rest', async (status) => {
    const app = await startTestApp({ storage: () => answeringKeylessProbe(status) });
    apps.push(app);
    expect(app.services.crypto.mode).toBe('app');
    const notes = app.logs.filter((l) => String(l['msg']).startsWith('encryption at rest'));
    expect(notes).toHaveLength(1);
    expect(notes[0]).toMatchObject({ mode: 'app', level: 40 });
    expect(String(notes[0]!['reason'])).toContain(`keyless GET answered ${status}`);
    expect(String(notes[0]!['reason'])).toContain('not an SSE-C refusal');

    const lease = await uploadLease(app);
    expect(lease.mode).toBe('app');
    // What the store holds, read by an outsider without any key: our segment format, no plaintext.
    const stored = await rawGet(lease.key);
    expect(stored.status).toBe(200);
    expect(stored.body!.includes(Buffer.from(MARKER))).toBe(false);
    expect(decodeHeader(stored.body!).kid).toBe(app.services.crypto.ring.active.kid);
    const res = await fetch(`${app.url}/media/${lease.id}/content`, { headers: { authorization: `Bearer ${lease.token}` } });
    expect(res.status).toBe(200);
    expect(sha(Buffer.from(await res.arrayBuffer()))).toBe(sha(lease.bytes));
  });

  it('the probe itself: a 403 or 404 is no proof, a 200 says the store ignores SSE-C', async () => {
    for (const status of [403, 404] as const) {
      const p = await answeringKeylessProbe(status).probeSseC();
      expect(p).toMatchObject({ enforced: false, legacyEnforced: true });
    }
    expect(await new S3Storage(testS3Options()).probeSseC()).toEqual({ enforced: false, legacyEnforced: false, reason: 'store does not enforce SSE-C (keyless GET answered 200)' });
  });

  it('refuses to start while media are recorded as SSE-C and this store cannot serve them, naming the count and the modes', async () => {
    const ring = KeyRing.parse(MEDIA_KEYS);
    const { logger } = memoryLogger();
    const decision = await ContentCrypto.detectMode(answeringKeylessProbe(403), ring, logger);
    expect(decision).toMatchObject({ mode: 'app', legacyMode: 'sse-c' });
    // Rows other test files must not see: inserted and checked inside a transaction that is rolled back.
    const app = apps[0] ?? (await startTestApp());
    if (!apps.includes(app)) apps.push(app);
    const { prisma } = app.db;
    const tenant = newTenant();
    const rollback = new Error('rollback');
    const seen = await prisma
      .$transaction(async (tx) => {
        for (const mode of ['sse-c', 'sse-c', null]) {
          const id = randomUUID();
          await tx.$executeRaw`
            INSERT INTO media (id, tenant_id, file_name, media_type, kind, file_size, checksum, security_level, encrypted, encryption_key_id, encryption_mode, storage_key)
            VALUES (${id}::uuid, ${tenant}, 'l.pdf', 'application/pdf', 'DOCUMENT', 1, ${'0'.repeat(64)}, 'CRITICAL', true, 'probe1', ${mode}, ${`${tenant}/${id}/original`})`;
        }
        const error = await reconcileStoredModes(tx, decision, logger).then(
          () => null,
          (e: unknown) => e,
        );
        const [legacy] = await tx.$queryRaw<{ n: bigint }[]>`SELECT count(*) AS n FROM media WHERE tenant_id = ${tenant} AND encryption_mode = 'sse-c'`;
        throw Object.assign(rollback, { error, legacy: Number(legacy!.n) });
      })
      .catch((e: unknown) => e as Error & { error: unknown; legacy: number });
    expect(seen).toBe(rollback);
    // The legacy row got the mode the earlier probe would have chosen here (any 4xx: SSE-C), then the check refused.
    expect(seen.legacy).toBe(3);
    expect(seen.error).toBeInstanceOf(EncryptionModeMismatch);
    expect(String((seen.error as Error).message)).toMatch(/refusing to start: \d+ media are stored with SSE-C .*'sse-c'.*keyless GET answered 403/);
  });
});

if (S3_STORE === 'rgw') describe('SSE-C over plain http (Ceph RGW on loopback)', () => {
  it('without S3_SSE_C_OVER_HTTP: application side, with the reason; with =loopback: SSE-C', async () => {
    const ring = KeyRing.parse(MEDIA_KEYS);
    const storage = new S3Storage(testS3Options());
    const probe = await storage.probeSseC();
    expect(probe).toMatchObject({ enforced: true, legacyEnforced: true });

    const without = memoryLogger();
    expect(await ContentCrypto.detectMode(storage, ring, without.logger)).toEqual({
      mode: 'app',
      reason: 'endpoint is http: and S3_SSE_C_OVER_HTTP is not set',
      legacyMode: 'sse-c',
    });
    expect(without.lines.filter((l) => String(l['msg']).startsWith('encryption at rest'))).toHaveLength(1);

    const allowed = memoryLogger();
    expect(await ContentCrypto.detectMode(storage, ring, allowed.logger, { sseCOverHttp: 'loopback' })).toMatchObject({
      mode: 'sse-c',
      reason: 'store enforces SSE-C over http: on loopback (S3_SSE_C_OVER_HTTP=loopback)',
    });
    expect(allowed.lines.filter((l) => String(l['msg']).startsWith('encryption at rest'))).toMatchObject([{ level: 30, mode: 'sse-c' }]);

    // A loopback allowance never covers another host.
    const remote = new S3Storage(testS3Options());
    Object.defineProperty(remote, 'endpoint', { value: testS3Options().endpoint!.replace('127.0.0.1', 'rgw.example.internal') });
    expect(remote.transport()).toMatchObject({ https: false, loopback: false });
  });

  it('the app with the setting (the test default on rgw) records each encrypted media as sse-c and the store refuses it without the key', async () => {
    const app = await startTestApp({ env: { MEDIA_KEYS } });
    apps.push(app);
    expect(app.services.crypto.mode).toBe('sse-c');
    const lease = await uploadLease(app);
    expect(lease.mode).toBe('sse-c');
    expect((await rawGet(lease.key)).status).toBe(400);
  });

  it('without the setting the service refuses to start while media are stored with SSE-C, naming the count', async () => {
    // The previous case stored at least one SSE-C media in the run's database.
    const error = await startTestApp({ env: { MEDIA_KEYS, S3_SSE_C_OVER_HTTP: '' } }).then(
      async (app) => {
        await app.close();
        return null;
      },
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(EncryptionModeMismatch);
    expect(String((error as Error).message)).toMatch(/refusing to start: [1-9]\d* media are stored with SSE-C .*endpoint is http: and S3_SSE_C_OVER_HTTP is not set/);
  });

  it('a keyless GET of an SSE-C object on RGW is an SSE-C refusal (400), not 403/404', async () => {
    const storage = new S3Storage(testS3Options());
    const key = `_probe/check-${randomUUID()}`;
    const { Readable } = await import('node:stream');
    await storage.put(key, Readable.from([Buffer.from('x')]), { sseKey: randomBytes(32) });
    try {
      const e = await storage.client.send(new GetObjectCommand({ Bucket: storage.bucket, Key: key })).then(
        () => null,
        (err: unknown) => err as S3ServiceException,
      );
      expect(e?.$metadata.httpStatusCode).toBe(400);
    } finally {
      await storage.delete(key);
    }
  });
});
