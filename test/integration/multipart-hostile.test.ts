import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, newTenant, type TestApp } from '../helpers/app.js';
import { jpeg, pdfBytes } from '../helpers/files.js';
import { expectNothingStored, expectResponsive, multipartBody, recordUncaught, rowCounts } from '../helpers/security.js';
import { errorCode, errorMessage, rawRequest, type RawExchange } from '../helpers/raw-http.js';

// Hostile multipart requests (issue 10, defects 1 and 7): none may end the process,
// hang, or leave anything stored; each gets a 4xx with a code, or the GraphQL error
// of the field it broke.

let app: TestApp;
/** Errors nobody handled while this file runs: each one would have ended a real process. */
const uncaught = recordUncaught('all');
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(() => app?.close());

const KiB = 1024;
const UPLOAD = 'mutation($input: UploadInput!) { upload(input: $input) { id fileName fileSize } }';
const preflight = { 'apollo-require-preflight': 'true' };
const property = { type: 'property', id: 'p-1' };

const jpegBytes = async (w = 64, h = 64) => Buffer.from(await (await jpeg(w, h)).arrayBuffer());

/** Nothing went unhandled (which would end the process), and /healthz answers within a second. */
async function expectAlive(): Promise<void> {
  await new Promise((ok) => setTimeout(ok, 50));
  expect(uncaught.map(String)).toEqual([]);
  const r = await fetch(`${app.url}/healthz`, { signal: AbortSignal.timeout(1000) });
  expect(r.status).toBe(200);
}

/** A 4xx answer with a client code (never a 5xx, never a hang). */
function expectClientError(r: RawExchange, code = 'BAD_USER_INPUT'): void {
  expect(r.ended, 'the server answered').toBe('response');
  expect(r.status, r.text).toBeGreaterThanOrEqual(400);
  expect(r.status, r.text).toBeLessThan(500);
  expect(errorCode(r), r.text).toBe(code);
}

/** The upload field's error in a GraphQL answer (status 200, data null). */
function uploadError(r: RawExchange): { code?: string; message?: string } {
  expect(r.ended, 'the server answered').toBe('response');
  const j = r.json as { errors?: { message: string; extensions?: { code?: string } }[] };
  expect(j?.errors?.length, r.text).toBeGreaterThan(0);
  return { code: j.errors![0]!.extensions?.code, message: j.errors![0]!.message };
}

describe('malformed bodies never end the process (no token needed)', () => {
  it('the reported 83-byte request (a part header without colon) answers 400 BAD_USER_INPUT', async () => {
    const body = '--x\r\nContent-Disposition form-data\r\n\r\n{}\r\n--x--\r\n';
    const r = await rawRequest(app.url, { headers: { ...preflight, 'content-type': 'multipart/form-data; boundary=x' }, chunks: [body] });
    expectClientError(r);
    await expectAlive();
  });

  it('a part header over 16 KiB answers 400 and the process lives on', async () => {
    const body = `--x\r\nContent-Disposition: form-data; name="operations"\r\nX-Pad: ${'a'.repeat(17 * KiB)}\r\n\r\n{}\r\n--x--\r\n`;
    const r = await rawRequest(app.url, { headers: { ...preflight, 'content-type': 'multipart/form-data; boundary=x' }, chunks: [body] });
    expectClientError(r);
    await expectAlive();
  });

  it('a 100 KB file name, after a valid operations and map, fails the upload with BAD_USER_INPUT', async () => {
    const tenant = newTenant('mph');
    const token = await app.token(tenant);
    const ops = JSON.stringify({ query: UPLOAD, variables: { input: { file: null, entity: property } } });
    const { body, contentType } = multipartBody([
      { name: 'operations', value: ops },
      { name: 'map', value: '{"0":["variables.input.file"]}' },
      { name: '0', filename: `${'n'.repeat(100 * KiB)}.jpg`, type: 'image/jpeg', data: await jpegBytes() },
    ]);
    const r = await rawRequest(app.url, { headers: { ...preflight, authorization: `Bearer ${token}`, 'content-type': contentType }, chunks: [body] });
    expect(uploadError(r).code).toBe('BAD_USER_INPUT');
    await expectNothingStored(app, tenant);
    await expectResponsive(app, token);
    await expectAlive();
  });

  it('a multipart body cut mid-file inside a cleanly ended chunked body is BAD_USER_INPUT, not STORAGE_UNAVAILABLE', async () => {
    const tenant = newTenant('mpc');
    const token = await app.token(tenant);
    const ops = JSON.stringify({ query: UPLOAD, variables: { input: { file: null, entity: property } } });
    const { body, contentType } = multipartBody([
      { name: 'operations', value: ops },
      { name: 'map', value: '{"0":["variables.input.file"]}' },
      { name: '0', filename: 'doc.pdf', type: 'application/pdf', data: Buffer.concat([pdfBytes(40), Buffer.alloc(400 * KiB, 0x20)]) },
    ]);
    // Cut in the middle of the file: the storage write is under way when the body ends.
    const cut = body.subarray(0, body.length - 150 * KiB);
    const r = await rawRequest(app.url, { headers: { ...preflight, authorization: `Bearer ${token}`, 'content-type': contentType }, chunks: [cut.subarray(0, 1000), 20, cut.subarray(1000)] });
    expect(uploadError(r).code).toBe('BAD_USER_INPUT');
    await expectNothingStored(app, tenant);
    await expectAlive();
  });

  it('a client that goes away mid-file leaves nothing stored and nothing half-written', async () => {
    const tenant = newTenant('mpg');
    const token = await app.token(tenant);
    const ops = JSON.stringify({ query: UPLOAD, variables: { input: { file: null, entity: property } } });
    const { body, contentType } = multipartBody([
      { name: 'operations', value: ops },
      { name: 'map', value: '{"0":["variables.input.file"]}' },
      { name: '0', filename: 'doc.pdf', type: 'application/pdf', data: Buffer.concat([pdfBytes(10), Buffer.alloc(512 * KiB, 0x20)]) },
    ]);
    // The request is abandoned after 300 KiB: rawRequest gives up at its timeout and destroys the socket.
    await rawRequest(app.url, { headers: { ...preflight, authorization: `Bearer ${token}`, 'content-type': contentType }, chunks: [body.subarray(0, 300 * KiB)], end: false, timeoutMs: 500 }).catch(() => undefined);
    await new Promise((ok) => setTimeout(ok, 300));
    await expectNothingStored(app, tenant);
    await expectResponsive(app, token);
    await expectAlive();
  });

  it('a prototype path in the map is refused with 400', async () => {
    const ops = JSON.stringify({ query: UPLOAD, variables: { input: { file: null, entity: property } } });
    const { body, contentType } = multipartBody([
      { name: 'operations', value: ops },
      { name: 'map', value: '{"0":["variables.__proto__.polluted"]}' },
      { name: '0', filename: 'a.jpg', type: 'image/jpeg', data: await jpegBytes() },
    ]);
    const r = await rawRequest(app.url, { headers: { ...preflight, 'content-type': contentType }, chunks: [body] });
    expectClientError(r);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('21 files in the map: "at most 20 files", not a size error', async () => {
    const map = Object.fromEntries(Array.from({ length: 21 }, (_, i) => [String(i), [`variables.inputs.${i}.file`]]));
    const ops = JSON.stringify({
      query: 'mutation($inputs: [UploadInput!]!) { uploadMany(inputs: $inputs) { id } }',
      variables: { inputs: Array.from({ length: 21 }, () => ({ file: null, entity: property })) },
    });
    const jpg = await jpegBytes();
    const { body, contentType } = multipartBody([
      { name: 'operations', value: ops },
      { name: 'map', value: JSON.stringify(map) },
      ...Array.from({ length: 21 }, (_, i) => ({ name: String(i), filename: `${i}.jpg`, type: 'image/jpeg', data: jpg })),
    ]);
    const r = await rawRequest(app.url, { headers: { ...preflight, 'content-type': contentType }, chunks: [body] });
    expectClientError(r);
    expect(errorMessage(r)).toMatch(/at most 20 files/i);
  });
});

describe('multipart requests never hang', () => {
  it('a map with two entries for one path answers at once with 400', async () => {
    const ops = JSON.stringify({ query: UPLOAD, variables: { input: { file: null, entity: property } } });
    const jpg = await jpegBytes();
    const { body, contentType } = multipartBody([
      { name: 'operations', value: ops },
      { name: 'map', value: '{"0":["variables.input.file"],"1":["variables.input.file"]}' },
      { name: '0', filename: 'a.jpg', type: 'image/jpeg', data: jpg },
      { name: '1', filename: 'b.jpg', type: 'image/jpeg', data: jpg },
    ]);
    const r = await rawRequest(app.url, { headers: { ...preflight, 'content-type': contentType }, chunks: [body], timeoutMs: 5000 });
    expectClientError(r);
  });

  it('an unused mapped file (1 MiB) sent before the used one: the upload completes', async () => {
    const tenant = newTenant('mpu');
    const token = await app.token(tenant);
    const ops = JSON.stringify({ query: UPLOAD, variables: { input: { file: null, entity: property }, unused: null } });
    const { body, contentType } = multipartBody([
      { name: 'operations', value: ops },
      { name: 'map', value: '{"1":["variables.unused"],"0":["variables.input.file"]}' },
      { name: '1', filename: 'pad.bin', type: 'application/octet-stream', data: Buffer.alloc(1024 * KiB, 7) },
      { name: '0', filename: 'a.jpg', type: 'image/jpeg', data: await jpegBytes() },
    ]);
    const r = await rawRequest(app.url, { headers: { ...preflight, authorization: `Bearer ${token}`, 'content-type': contentType }, chunks: [body], timeoutMs: 8000 });
    expect(r.ended).toBe('response');
    const j = r.json as { data?: { upload?: { fileName: string } }; errors?: unknown };
    expect(j.errors, r.text).toBeUndefined();
    expect(j.data?.upload?.fileName).toBe('a.jpg');
    expect(await rowCounts(app, tenant)).toEqual({ media: 1, attachments: 1, roles: 0 });
  });

  it('files used in the opposite order of the wire: the first read succeeds, the skipped one is a clear BAD_USER_INPUT', async () => {
    const tenant = newTenant('mpo');
    const token = await app.token(tenant);
    const ops = JSON.stringify({
      query: `mutation($a: UploadInput!, $b: UploadInput!) { second: upload(input: $b) { id fileName } first: upload(input: $a) { id fileName } }`,
      variables: { a: { file: null, entity: property }, b: { file: null, entity: property } },
    });
    const { body, contentType } = multipartBody([
      { name: 'operations', value: ops },
      { name: 'map', value: '{"a":["variables.a.file"],"b":["variables.b.file"]}' },
      { name: 'a', filename: 'a.jpg', type: 'image/jpeg', data: await jpegBytes(400, 300) },
      { name: 'b', filename: 'b.jpg', type: 'image/jpeg', data: await jpegBytes(300, 200) },
    ]);
    // However fast the body arrives (all at once, or slowly), the outcome is the same.
    for (const chunks of [[body], [body.subarray(0, 600), 50, body.subarray(600, 2000), 50, body.subarray(2000)]]) {
      const r = await rawRequest(app.url, { headers: { ...preflight, authorization: `Bearer ${token}`, 'content-type': contentType }, chunks, timeoutMs: 8000 });
      expect(r.ended).toBe('response');
      // `upload` is non-null: its error nulls the whole mutation result; "second" ran and stored b.
      const j = r.json as { data?: unknown; errors?: { path: string[]; message: string; extensions: { code: string } }[] };
      expect(j.errors?.map((e) => [e.path[0], e.extensions.code]), r.text).toEqual([['first', 'BAD_USER_INPUT']]);
      expect(j.errors?.[0]?.message).toMatch(/order/);
    }
    const names = await app.services.db.prisma.media.findMany({ where: { tenantId: tenant }, select: { fileName: true } });
    expect(names.map((n) => n.fileName)).toEqual(['b.jpg', 'b.jpg']);
  });

  it('a field refused before it reads its 1 MiB file answers at once; the file is read past', async () => {
    const tenant = newTenant('mpf');
    const token = await app.token(tenant, { scopes: ['media:read'] });
    const ops = JSON.stringify({ query: UPLOAD, variables: { input: { file: null, entity: property } } });
    const { body, contentType } = multipartBody([
      { name: 'operations', value: ops },
      { name: 'map', value: '{"0":["variables.input.file"]}' },
      { name: '0', filename: 'pad.pdf', type: 'application/pdf', data: Buffer.concat([pdfBytes(2), Buffer.alloc(1024 * KiB, 0x20)]) },
    ]);
    const r = await rawRequest(app.url, { headers: { ...preflight, authorization: `Bearer ${token}`, 'content-type': contentType }, chunks: [body], timeoutMs: 5000 });
    expect(uploadError(r).code).toBe('FORBIDDEN');
    await expectNothingStored(app, tenant);
  });

  it('a second part with the same name is read past; the first one is stored', async () => {
    const tenant = newTenant('mpd');
    const token = await app.token(tenant);
    const ops = JSON.stringify({ query: UPLOAD, variables: { input: { file: null, entity: property } } });
    const { body, contentType } = multipartBody([
      { name: 'operations', value: ops },
      { name: 'map', value: '{"0":["variables.input.file"]}' },
      { name: '0', filename: 'first.jpg', type: 'image/jpeg', data: await jpegBytes() },
      { name: '0', filename: 'second.jpg', type: 'image/jpeg', data: await jpegBytes(80, 80) },
    ]);
    const r = await rawRequest(app.url, { headers: { ...preflight, authorization: `Bearer ${token}`, 'content-type': contentType }, chunks: [body], timeoutMs: 8000 });
    const j = r.json as { data?: { upload?: { fileName: string } }; errors?: unknown };
    expect(j.errors, r.text).toBeUndefined();
    expect(j.data?.upload?.fileName).toBe('first.jpg');
  });

  it('a map entry whose file never comes: the field fails with BAD_USER_INPUT once the body ends', async () => {
    const tenant = newTenant('mpm');
    const token = await app.token(tenant);
    const ops = JSON.stringify({ query: UPLOAD, variables: { input: { file: null, entity: property } } });
    const { body, contentType } = multipartBody([
      { name: 'operations', value: ops },
      { name: 'map', value: '{"0":["variables.input.file"]}' },
      { name: 'other', filename: 'x.jpg', type: 'image/jpeg', data: await jpegBytes() },
    ]);
    const r = await rawRequest(app.url, { headers: { ...preflight, authorization: `Bearer ${token}`, 'content-type': contentType }, chunks: [body], timeoutMs: 5000 });
    expect(uploadError(r).code).toBe('BAD_USER_INPUT');
    await expectNothingStored(app, tenant);
  });
});
