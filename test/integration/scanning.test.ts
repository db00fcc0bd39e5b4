import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import net from 'node:net';
import {
  CompleteDirectUploadDocument,
  CreateAssetDocument,
  CreateDirectUploadDocument,
  UploadDocument,
  UploadManyDocument,
  UploadSignedDocumentDocument,
} from '../generated/graphql.js';
import { newTenant, startTestApp, STORAGE_DRIVER, S3_STORE, type TestApp } from '../helpers/app.js';
import { codeOf, gql, ok, type GqlResult } from '../helpers/client.js';
import { jpeg, pdfBytes } from '../helpers/files.js';
import { EICAR, EICAR_SIGNATURE, startClamd, type RunningClamd } from '../helpers/clamd.js';
import { expectNothingStored } from '../helpers/security.js';
import { storedKeys } from '../helpers/stored.js';
import { Upload as TusUpload, type DetailedError } from 'tus-js-client';

// Malware scanning (issue 15): with CLAMD_URL every file, on every entry point, is
// streamed to clamd while it is stored; the EICAR test pattern is refused with
// MALWARE_DETECTED and nothing of it remains. clamd runs on loopback with a
// signature database the helper writes (the EICAR pattern, anywhere in a file).

const STORE = STORAGE_DRIVER === 'local' ? 'local disk' : S3_STORE;
const KEY = 'wk-scan-Qm3Xr9Tb2Zv6Ln0Pc5Hd8Jf4Gs7Kw1';
const TENANTS = Array.from({ length: 4 }, () => newTenant('sw'));

/** A PDF carrying the EICAR pattern in a comment (an allowed type, so the scan is what refuses it). */
const infectedPdf = () => Buffer.concat([pdfBytes(2), Buffer.from('%'), EICAR, Buffer.from('\n%%EOF\n')]);
const cleanPdf = () => Buffer.concat([pdfBytes(2), Buffer.from('%' + 'clean '.repeat(20_000) + '\n')]);
const b64sha = (b: Buffer) => createHash('sha256').update(b).digest('base64');

function expectMalware(r: GqlResult<unknown>, index?: number): void {
  expect(r.data ?? null).toBeNull();
  expect(r.errors?.[0]?.extensions).toMatchObject({ code: 'MALWARE_DETECTED', ...(index === undefined ? {} : { index }) });
  expect(r.errors?.[0]?.message).toContain(EICAR_SIGNATURE);
}

let clamd: RunningClamd;
let app: TestApp;

beforeAll(async () => {
  clamd = await startClamd();
  app = await startTestApp({ env: { CLAMD_URL: clamd.url, WORKER_API_KEYS: `${KEY}:signature-processor:${TENANTS.join('|')}`, METRICS_PORT: '0' } });
}, 120_000);
afterAll(async () => {
  await app?.close();
  await clamd?.stop();
});

describe(`malware scanning on every entry point (${STORE})`, () => {
  it('upload: EICAR refused with MALWARE_DETECTED, nothing kept; a clean file accepted', async () => {
    const tenant = newTenant('sc');
    const token = await app.token(tenant);
    const r = await gql(app.url, UploadDocument, { input: { file: new File([infectedPdf()], 'bad.pdf'), entity: { type: 'property', id: 'p1' } } }, { token });
    expectMalware(r);
    await expectNothingStored(app, tenant);
    // Encrypted content is scanned the same way (the plaintext goes to clamd, the ciphertext to storage).
    const sealed = await gql(app.url, UploadDocument, { input: { file: new File([infectedPdf()], 'bad.pdf'), entity: { type: 'lease', id: 'l1' } } }, { token });
    expectMalware(sealed);
    await expectNothingStored(app, tenant);
    // An image with the pattern after its pixels.
    const photo = Buffer.concat([Buffer.from(await (await jpeg(300, 200)).arrayBuffer()), EICAR]);
    expectMalware(await gql(app.url, UploadDocument, { input: { file: new File([photo], 'bad.jpg'), entity: { type: 'property', id: 'p1' } } }, { token }));
    await expectNothingStored(app, tenant);
    const clean = cleanPdf();
    const { upload } = await ok(app.url, UploadDocument, { input: { file: new File([clean], 'good.pdf'), entity: { type: 'property', id: 'p1' } } }, { token });
    expect(upload.fileSize).toBe(clean.length);
    const logged = app.logs.filter((l) => l['event'] === 'SCAN_INFECTED' && l['tenant'] === tenant);
    expect(logged).toHaveLength(3);
    expect(logged.every((l) => String(l['signature']).startsWith(EICAR_SIGNATURE) && l['source'] === 'upload')).toBe(true);
    const metrics = await (await fetch(`${app.metricsUrl}/metrics`)).text();
    expect(Number(/^media_scans_total\{outcome="infected",source="upload"\} (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(3);
    expect(Number(/^media_scans_total\{outcome="clean",source="upload"\} (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
  });

  it('uploadMany: one infected input refuses the batch, naming its index; nothing of the batch is kept', async () => {
    const tenant = newTenant('sc');
    const token = await app.token(tenant);
    const inputs = [cleanPdf(), infectedPdf(), cleanPdf()].map((b, i) => ({ file: new File([b], `f${i}.pdf`), entity: { type: 'property', id: 'p1' } }));
    expectMalware(await gql(app.url, UploadManyDocument, { inputs }, { token }), 1);
    await expectNothingStored(app, tenant);
  });

  it('direct upload: refused at completion with MALWARE_DETECTED; no media, no copy, and the staged bytes are gone', async () => {
    const tenant = newTenant('sc');
    const token = await app.token(tenant);
    const bytes = infectedPdf();
    const { createDirectUpload: t } = await ok(app.url, CreateDirectUploadDocument, { input: { filename: 'bad.pdf', contentType: 'application/pdf', byteSize: bytes.length, checksum: b64sha(bytes) } }, { token });
    const put = await fetch(t.url, { method: 'PUT', headers: t.headers.all as Record<string, string>, body: bytes });
    expect(put.status).toBeLessThan(300);
    expectMalware(await gql(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'property', id: 'p1' } }, { token }));
    expect(await app.db.prisma.media.count({ where: { tenantId: tenant } })).toBe(0);
    expect(await storedKeys(app, tenant)).toEqual([]);
    // The ticket is spent: completing it again is CONFLICT; the service's own PUT endpoint
    // refuses it (a presigned S3 URL cannot be revoked: what it stores, the sweep removes).
    expect(codeOf(await gql(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'property', id: 'p1' } }, { token }))).toBe('CONFLICT');
    if (STORAGE_DRIVER === 'local') {
      const again = await fetch(t.url, { method: 'PUT', headers: t.headers.all as Record<string, string>, body: bytes });
      expect(again.status).toBeGreaterThanOrEqual(400);
      expect(await storedKeys(app, tenant)).toEqual([]);
    }
    expect(await app.db.prisma.media.count({ where: { tenantId: tenant } })).toBe(0);
  });

  it('assets: an infected file is refused and no asset row or object remains', async () => {
    const tenant = newTenant('sc');
    const token = await app.token(tenant);
    expectMalware(await gql(app.url, CreateAssetDocument, { input: { type: 'BLOB', access: 'PUBLIC', key: 'bad', file: new File([infectedPdf()], 'bad.pdf') } }, { token }));
    expect(await app.db.prisma.asset.count({ where: { tenantId: tenant } })).toBe(0);
    expect(await storedKeys(app, tenant)).toEqual([]);
    const { createAsset } = await ok(app.url, CreateAssetDocument, { input: { type: 'BLOB', access: 'PUBLIC', key: 'good', file: new File([cleanPdf()], 'good.pdf') } }, { token });
    expect(createAsset.key).toBe('good');
  });

  it("uploadSignedDocument: a worker's infected PDF is refused and nothing of it is kept", async () => {
    const tenant = TENANTS[0]!;
    const token = await app.token(tenant);
    const { upload: original } = await ok(app.url, UploadDocument, { input: { file: new File([cleanPdf()], 'lease.pdf'), entity: { type: 'lease', id: 'L-1' }, role: 'LEASE_ORIGINAL' } }, { token });
    const before = await storedKeys(app, tenant);
    const r = await gql(app.url, UploadSignedDocumentDocument, { mediaId: original.id, file: new File([infectedPdf()], 'signed.pdf', { type: 'application/pdf' }) }, {
      headers: { authorization: `Bearer ${KEY}`, 'x-worker-type': 'signature-processor', 'x-tenant-id': tenant },
    });
    expectMalware(r);
    expect(await app.db.prisma.media.count({ where: { tenantId: tenant } })).toBe(1);
    expect(await storedKeys(app, tenant)).toEqual(before);
  });

  it('resumable (tus): an infected upload is refused when its last byte arrives (422 MALWARE_DETECTED) and nothing of it remains; a clean one is stored', async () => {
    const tenant = newTenant('sc');
    const token = await app.token(tenant);
    const send = (data: Buffer, filename: string) =>
      new Promise<{ status?: number; body?: string; mediaId?: string | null }>((resolve) => {
        const upload = new TusUpload(data, {
          endpoint: `${app.url}/uploads/resumable`,
          headers: { Authorization: `Bearer ${token}` },
          metadata: { entityType: 'property', entityId: 'p1', filename },
          retryDelays: [],
          chunkSize: 64 * 1024,
          onSuccess: ({ lastResponse }) => resolve({ mediaId: lastResponse.getHeader('Media-Id') }),
          onError: (e) => {
            const res = (e as DetailedError).originalResponse;
            resolve({ status: res?.getStatus(), body: res?.getBody() });
          },
        });
        upload.start();
      });
    const bad = await send(infectedPdf(), 'bad.pdf');
    expect(bad.status).toBe(422);
    expect(bad.body).toContain('MALWARE_DETECTED');
    expect(await app.db.prisma.media.count({ where: { tenantId: tenant } })).toBe(0);
    expect(await storedKeys(app, tenant)).toEqual([]);
    const clean = cleanPdf();
    const good = await send(clean, 'good.pdf');
    expect(good.mediaId).toBeTruthy();
    const m = await app.db.prisma.media.findFirstOrThrow({ where: { tenantId: tenant, id: good.mediaId! } });
    expect(Number(m.fileSize)).toBe(clean.length);
    expect(app.logs.some((l) => l['event'] === 'SCAN_INFECTED' && l['tenant'] === tenant && l['source'] === 'resumable')).toBe(true);
  });

  it('/readyz checks the scanner', async () => {
    const r = await fetch(`${app.url}/readyz`);
    expect(r.status).toBe(200);
    expect(((await r.json()) as { checks: Record<string, string> }).checks).toMatchObject({ scanner: 'ok' });
  });
});

describe(`clamd unreachable (${STORE})`, () => {
  let closedPort: number;
  let closed: TestApp;
  let open: TestApp;

  beforeAll(async () => {
    // A port nothing listens on.
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    closedPort = (srv.address() as net.AddressInfo).port;
    await new Promise((r) => srv.close(r));
    [closed, open] = await Promise.all([
      startTestApp({ env: { CLAMD_URL: `tcp://127.0.0.1:${closedPort}`, CLAMD_TIMEOUT_MS: '2000' } }),
      startTestApp({ env: { CLAMD_URL: `tcp://127.0.0.1:${closedPort}`, CLAMD_TIMEOUT_MS: '2000', CLAMD_FAIL_OPEN: 'true' } }),
    ]);
  }, 60_000);
  afterAll(async () => {
    await Promise.all([closed?.close(), open?.close()]);
  });

  it('refuses uploads with SCANNER_UNAVAILABLE and stores nothing; /readyz says so', async () => {
    const tenant = newTenant('sd');
    const token = await closed.token(tenant);
    const r = await gql(closed.url, UploadDocument, { input: { file: new File([cleanPdf()], 'good.pdf'), entity: { type: 'property', id: 'p1' } } }, { token });
    expect(r.errors?.[0]?.extensions).toMatchObject({ code: 'SCANNER_UNAVAILABLE' });
    expect(r.errors?.[0]?.message).not.toContain(String(closedPort));
    await expectNothingStored(closed, tenant);
    const ready = await fetch(`${closed.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { checks: Record<string, string> }).checks).toMatchObject({ scanner: 'unavailable' });
  });

  it('with CLAMD_FAIL_OPEN=true accepts the file unscanned and says so in the log', async () => {
    const tenant = newTenant('sd');
    const token = await open.token(tenant);
    const { upload } = await ok(open.url, UploadDocument, { input: { file: new File([cleanPdf()], 'good.pdf'), entity: { type: 'property', id: 'p1' } } }, { token });
    expect(upload.id).toBeTruthy();
    expect(open.logs.some((l) => l['event'] === 'SCAN_UNSCANNED' && l['tenant'] === tenant)).toBe(true);
  });
});
