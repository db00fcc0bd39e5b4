import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { CompleteDirectUploadDocument, CreateDirectUploadDocument } from '../generated/graphql.js';
import { newTenant, startTestApp, STORAGE_DRIVER, type TestApp } from '../helpers/app.js';
import { codeOf, gql, ok } from '../helpers/client.js';
import { jpeg, pdfBytes, png } from '../helpers/files.js';
import { htmlOfSize, openPut, serviceUploadUrl } from '../helpers/direct-put.js';
import { expectNothingStored, expectResponsive, recordUncaught, stagedFiles } from '../helpers/security.js';
import { storedKeys } from '../helpers/stored.js';
import { SignedIds } from '../../src/modules/direct-uploads/signed-id.js';
import { resolveSecrets } from '../../src/auth/secrets.js';
import { objectKeys, type Storage } from '../../src/storage/index.js';

/** Outstanding tickets a tenant may hold in this file's app (the cap test fills it). */
const CAP = 10;

let app: TestApp;
beforeAll(async () => {
  // The periodic sweep is off: a test here must see the objects it left.
  app = await startTestApp({ env: { DIRECT_UPLOAD_MAX_OUTSTANDING: String(CAP), SWEEP_INTERVAL_SECONDS: '0' } });
});
afterAll(() => app?.close());

// In production an uncaught exception ends the process; here vitest would only report it.
const uncaught = recordUncaught();

const b64sha = (b: Buffer) => createHash('sha256').update(b).digest('base64');

async function ticket(token: string, bytes: Buffer, contentType: string, overrides: { byteSize?: number; checksum?: string; filename?: string } = {}) {
  const { createDirectUpload } = await ok(
    app.url,
    CreateDirectUploadDocument,
    {
      input: {
        filename: overrides.filename ?? 'file.bin',
        contentType,
        byteSize: overrides.byteSize ?? bytes.length,
        checksum: overrides.checksum ?? b64sha(bytes),
      },
    },
    { token },
  );
  return createDirectUpload;
}

/** The PUT a browser makes: the returned url with exactly the returned headers. */
async function put(t: { url: string; headers: { all: Record<string, unknown> } }, bytes: Buffer): Promise<Response> {
  return fetch(t.url, { method: 'PUT', headers: t.headers.all as Record<string, string>, body: bytes });
}

async function mediaRows(tenant: string): Promise<number> {
  return app.db.prisma.media.count({ where: { tenantId: tenant } });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sha256hex = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const ticketIdOf = (t: { key: string }) => t.key.split('/')[1]!;
/** The service's own PUT endpoint, which exists on both drivers (on S3 the ticket's url is presigned instead). */
const serviceUrl = (t: { signedId: string }) => serviceUploadUrl(app.url, t.signedId);
/** Stored keys of the tenant outside the ticket's own group (what completion or a PUT may have put elsewhere). */
const keysOutside = async (tenant: string, ticketId: string) => (await storedKeys(app, tenant)).filter((k) => !k.startsWith(`${tenant}/${ticketId}/`));

/** Bytes the media serves, read through its url (presigned GET on S3, signed link on local disk). */
async function served(m: { url?: string | null }): Promise<Buffer> {
  const res = await fetch(m.url!);
  expect(res.status).toBe(200);
  return Buffer.from(await res.arrayBuffer());
}

async function readStored(storage: Storage, key: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of await storage.get(key)) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

const complete = (token: string, signedId: string) => gql(app.url, CompleteDirectUploadDocument, { signedId, entity: { type: 'property', id: 'p1' } }, { token });

describe(`direct uploads (${STORAGE_DRIVER})`, () => {
  it('create, PUT with the returned url and headers, complete: the media exists like an upload', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = Buffer.from(await (await jpeg(900, 600)).arrayBuffer());
    const t = await ticket(token, bytes, 'image/jpeg', { filename: 'front.jpg' });
    expect(t).toMatchObject({ filename: 'front.jpg', contentType: 'image/jpeg', byteSize: bytes.length, serviceName: STORAGE_DRIVER });
    expect(t.headers.all).toEqual({ 'Content-Type': 'image/jpeg' });
    expect(new Date(t.expiresAt).getTime()).toBeGreaterThan(Date.now());
    const res = await put(t, bytes);
    expect(res.status).toBe(200);

    const { completeDirectUpload: m } = await ok(
      app.url,
      CompleteDirectUploadDocument,
      { signedId: t.signedId, entity: { type: 'property', id: 'p1' }, tags: ['Direct'], role: 'PRIMARY_PHOTO' },
      { token },
    );
    expect(m).toMatchObject({ fileName: 'front.jpg', mediaType: 'image/jpeg', kind: 'IMAGE', fileSize: bytes.length, tags: ['direct'], width: 900, height: 600 });
    expect(m.checksum).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(m.roles.map((r) => r.role)).toEqual(['PRIMARY_PHOTO']);
    expect(m.variants.map((v) => v.name)).toEqual(['THUMB', 'MEDIUM']);
    const back = Buffer.from(await (await fetch(m.url!)).arrayBuffer());
    expect(back.equals(bytes)).toBe(true);

    // Usable once.
    const again = await gql(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'property', id: 'p2' } }, { token });
    expect(codeOf(again)).toBe('CONFLICT');
    expect(await mediaRows(tenant)).toBe(1);
  });

  it.each([
    // The local endpoint refuses the PUT itself; s3rver takes it and completion finds the size wrong.
    ['a size other than declared', 'BAD_USER_INPUT', { byteSize: pdfBytes(2).length + 10 }],
    ['a wrong checksum', 'INTEGRITY_ERROR', { checksum: b64sha(Buffer.from('something else')) }],
  ])('refuses %s at completion and stores nothing outside the ticket', async (_name, code, overrides) => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = pdfBytes(2);
    const t = await ticket(token, bytes, 'application/pdf', overrides);
    const res = await put(t, bytes);
    if ('checksum' in overrides) expect(res.status).toBe(200);
    const r = await gql(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'company', id: 'c1' } }, { token });
    expect(codeOf(r)).toBe(code);
    expect(await mediaRows(tenant)).toBe(0);
    // At most the PUT's own bytes, in the ticket's group (the sweep removes them once it expires).
    expect(await keysOutside(tenant, ticketIdOf(t))).toEqual([]);
  });

  it('names the media by its detected type, without bidi controls: "invoice\\u202Efdp.html" holding a PDF is invoicefdp.pdf', async () => {
    const token = await app.token(newTenant());
    const bytes = pdfBytes(1);
    const t = await ticket(token, bytes, 'application/pdf', { filename: 'invoice\u202Efdp.html' });
    expect((await put(t, bytes)).status).toBe(200);
    const { completeDirectUpload: m } = await ok(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'property', id: 'p1' } }, { token });
    expect(m.fileName).toBe('invoicefdp.pdf');
    const res = await fetch(m.url!);
    expect(res.headers.get('content-disposition')).toBe('attachment; filename=invoicefdp.pdf');
  });

  it('refuses content whose detected type is not the declared one (HTML declared as PNG)', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = Buffer.from('<!doctype html><html><body>hello</body></html>');
    const t = await ticket(token, bytes, 'image/png');
    expect((await put(t, bytes)).status).toBe(200);
    const r = await gql(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'property', id: 'p1' } }, { token });
    expect(codeOf(r)).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(await mediaRows(tenant)).toBe(0);
    expect(await keysOutside(tenant, ticketIdOf(t))).toEqual([]);
  });

  it('refuses a declared type that is not supported, and a size over the kind limit, at creation', async () => {
    const token = await app.token(newTenant());
    const svg = await gql(app.url, CreateDirectUploadDocument, { input: { filename: 'x.svg', contentType: 'image/svg+xml', byteSize: 10, checksum: b64sha(Buffer.from('x')) } }, { token });
    expect(codeOf(svg)).toBe('UNSUPPORTED_MEDIA_TYPE');
    const big = await gql(app.url, CreateDirectUploadDocument, { input: { filename: 'x.jpg', contentType: 'image/jpeg', byteSize: 10 * 1024 * 1024 + 1, checksum: b64sha(Buffer.from('x')) } }, { token });
    expect(codeOf(big)).toBe('PAYLOAD_TOO_LARGE');
    const sum = await gql(app.url, CreateDirectUploadDocument, { input: { filename: 'x.jpg', contentType: 'image/jpeg', byteSize: 10, checksum: 'abc' } }, { token });
    expect(codeOf(sum)).toBe('BAD_USER_INPUT');
  });

  it('refuses forged, expired and other tenants\' signed ids, and SENSITIVE entities', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = pdfBytes(1);
    const t = await ticket(token, bytes, 'application/pdf');
    expect((await put(t, bytes)).status).toBe(200);

    const forged = t.signedId.slice(0, -2) + (t.signedId.endsWith('AA') ? 'BB' : 'AA');
    expect(codeOf(await gql(app.url, CompleteDirectUploadDocument, { signedId: forged, entity: { type: 'company', id: 'c' } }, { token }))).toBe('BAD_USER_INPUT');

    const otherToken = await app.token(newTenant());
    expect(codeOf(await gql(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'company', id: 'c' } }, { token: otherToken }))).toBe('NOT_FOUND');
    // A signed id is bound to the user who created it: another user of the same tenant cannot complete it.
    const colleague = await app.token(tenant, { subject: 'someone-else' });
    expect(codeOf(await gql(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'company', id: 'c' } }, { token: colleague }))).toBe('NOT_FOUND');
    // Nor can an id re-signed for another owner be made without the key.
    const [body] = t.signedId.split('.');
    const fields = JSON.parse(Buffer.from(body!, 'base64url').toString()) as unknown[];
    fields[2] = 'x'.repeat(22);
    const reowned = `${Buffer.from(JSON.stringify(fields)).toString('base64url')}.${t.signedId.split('.')[1]}`;
    expect(codeOf(await gql(app.url, CompleteDirectUploadDocument, { signedId: reowned, entity: { type: 'company', id: 'c' } }, { token: colleague }))).toBe('BAD_USER_INPUT');

    const sensitive = await gql(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'person', id: 'x' } }, { token });
    expect(codeOf(sensitive)).toBe('BAD_USER_INPUT');
    const critical = await gql(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'property', id: 'x' }, role: 'ID_DOCUMENT' }, { token });
    expect(codeOf(critical)).toBe('BAD_USER_INPUT');

    // An expired id, signed with the service's own key (so only the expiry is wrong).
    const ids = new SignedIds(resolveSecrets(app.services.config).signedIdKey);
    const payload = JSON.parse(Buffer.from(t.signedId.split('.')[0]!, 'base64url').toString()) as [string, string, string, number];
    const expired = ids.sign({ id: payload[0], tenant: payload[1], owner: payload[2], exp: Math.floor(Date.now() / 1000) - 5 });
    const r = await gql(app.url, CompleteDirectUploadDocument, { signedId: expired, entity: { type: 'company', id: 'c' } }, { token });
    expect(codeOf(r)).toBe('BAD_USER_INPUT');
    expect(r.errors?.[0]?.message).toMatch(/expired/);

    // None of the refusals consumed the ticket or created anything.
    expect(await mediaRows(tenant)).toBe(0);
    const done = await ok(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'company', id: 'c' } }, { token });
    expect(done.completeDirectUpload.fileSize).toBe(bytes.length);
  });

  // Only the local driver has the service's own PUT endpoint (S3 hands out presigned URLs).
  if (STORAGE_DRIVER === 'local') it('the local PUT endpoint refuses a forged URL, a wrong Content-Type and a body larger than declared', async () => {
    const tenant = newTenant();
    const token = await app.token(tenant);
    const bytes = pdfBytes(1);
    const t = await ticket(token, bytes, 'application/pdf');
    const forgedUrl = t.url.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'));
    expect((await fetch(forgedUrl, { method: 'PUT', headers: { 'Content-Type': 'application/pdf' }, body: bytes })).status).toBe(403);
    expect((await fetch(t.url, { method: 'PUT', headers: { 'Content-Type': 'image/png' }, body: bytes })).status).toBe(400);
    const bigger = Buffer.concat([bytes, Buffer.from('extra')]);
    expect((await fetch(t.url, { method: 'PUT', headers: { 'Content-Type': 'application/pdf' }, body: bigger })).status).toBe(400);
    expect(await storedKeys(app, tenant)).toEqual([]);
  });
});

describe(`the direct-upload PUT survives hostile bodies (${STORAGE_DRIVER})`, () => {
  it.each([
    ['in one chunk', (b: Buffer) => [b]],
    ['the extra byte in a late chunk', (b: Buffer) => [b.subarray(0, -1), b.subarray(-1)]],
  ])('a chunked PUT one byte longer than declared (%s) is 400 with a code; nothing is stored; the process lives', async (_label, split) => {
    const tenant = newTenant('dput');
    const token = await app.token(tenant);
    const bytes = pdfBytes(1);
    const t = await ticket(token, bytes, 'application/pdf');
    const p = openPut(serviceUrl(t), { 'content-type': 'application/pdf' });
    const [first, ...rest] = split(Buffer.concat([bytes, Buffer.from('!')]));
    p.req.write(first);
    for (const chunk of rest) {
      await sleep(100);
      p.req.write(chunk);
    }
    p.req.end();
    const res = await p.response;
    expect(res.status).toBe(400);
    expect(res.json?.error?.code).toBe('BAD_USER_INPUT');
    expect(res.json?.error?.message).toMatch(/larger than the declared/);
    await expectNothingStored(app, tenant);
    await expectResponsive(app, token);
    expect(uncaught).toEqual([]);
    // The refused PUT did not spoil the ticket.
    expect((await fetch(serviceUrl(t), { method: 'PUT', headers: { 'content-type': 'application/pdf' }, body: bytes })).status).toBe(200);
    expect((await complete(token, t.signedId)).errors).toBeUndefined();
  });

  it('a chunked PUT that ends one byte short is 400 with a code, promptly; nothing is stored', async () => {
    const tenant = newTenant('dput');
    const token = await app.token(tenant);
    const bytes = pdfBytes(1);
    const t = await ticket(token, bytes, 'application/pdf');
    const p = openPut(serviceUrl(t), { 'content-type': 'application/pdf' });
    p.req.end(bytes.subarray(0, -1));
    const res = await p.response;
    expect(res.status).toBe(400);
    expect(res.json?.error).toMatchObject({ code: 'BAD_USER_INPUT', message: `Expected ${bytes.length} bytes, received ${bytes.length - 1}` });
    await expectNothingStored(app, tenant);
    expect(uncaught).toEqual([]);
  });

  it('a client that disconnects mid-body leaves no temporary file and no object; the ticket stays usable', async () => {
    const tenant = newTenant('dput');
    const token = await app.token(tenant);
    const bytes = pdfBytes(40);
    const t = await ticket(token, bytes, 'application/pdf');
    const p = openPut(serviceUrl(t), { 'content-type': 'application/pdf', 'content-length': String(bytes.length) });
    p.req.write(bytes.subarray(0, bytes.length >> 1));
    await sleep(300);
    p.req.destroy();
    await expect(p.response).rejects.toThrow();
    // The server notices the reset and cleans up on its own.
    const deadline = Date.now() + 5000;
    for (;;) {
      const left = [...(await storedKeys(app, tenant)), ...(STORAGE_DRIVER === 'local' ? await stagedFiles(app) : [])];
      if (left.length === 0) break;
      if (Date.now() > deadline) expect(left).toEqual([]);
      await sleep(100);
    }
    await expectNothingStored(app, tenant);
    await expectResponsive(app, token);
    expect(uncaught).toEqual([]);
    expect((await fetch(serviceUrl(t), { method: 'PUT', headers: { 'content-type': 'application/pdf' }, body: bytes })).status).toBe(200);
    expect((await complete(token, t.signedId)).errors).toBeUndefined();
  });
});

describe(`verified bytes cannot be swapped (${STORAGE_DRIVER})`, () => {
  it('a PUT still arriving when completeDirectUpload verifies is refused; the media keeps the verified bytes', async () => {
    const tenant = newTenant('swap');
    const token = await app.token(tenant);
    const good = Buffer.from(await (await png(400, 300)).arrayBuffer());
    const evil = htmlOfSize(good.length);
    const t = await ticket(token, good, 'image/png', { filename: 'logo.png' });
    expect((await put(t, good)).status).toBe(200);

    // The second PUT sends half of its body, then waits while the ticket is completed.
    const late = openPut(serviceUrl(t), { 'content-type': 'image/png', 'content-length': String(good.length) });
    late.req.write(evil.subarray(0, good.length >> 1));
    await sleep(500);
    const done = await complete(token, t.signedId);
    expect(done.errors).toBeUndefined();
    const m = done.data!.completeDirectUpload;
    expect(m).toMatchObject({ mediaType: 'image/png', checksum: sha256hex(good) });
    late.req.end(evil.subarray(good.length >> 1));
    const res = await late.response;
    expect(res.status).toBe(409);
    expect(res.json?.error?.code).toBe('CONFLICT');

    // What is served, what is stored and what the row says all agree, and are the PNG.
    const bytes = await served(m);
    expect(bytes.equals(good)).toBe(true);
    const row = await app.db.prisma.media.findFirstOrThrow({ where: { tenantId: tenant, id: m.id } });
    expect(row.checksum).toBe(sha256hex(bytes));
    expect((await readStored(app.services.storage, row.storageKey)).equals(good)).toBe(true);
    // The media has an id (and object group) of its own; the ticket's group is gone.
    expect(m.id).not.toBe(ticketIdOf(t));
    expect((await storedKeys(app, tenant)).filter((k) => k.startsWith(`${tenant}/${ticketIdOf(t)}/`))).toEqual([]);
    expect(uncaught).toEqual([]);
  });

  it('a PUT to the ticket url after completion changes nothing that is served', async () => {
    const tenant = newTenant('swap');
    const token = await app.token(tenant);
    const good = Buffer.from(await (await png(400, 300)).arrayBuffer());
    const t = await ticket(token, good, 'image/png');
    expect((await put(t, good)).status).toBe(200);
    const m = (await ok(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'property', id: 'p1' } }, { token })).completeDirectUpload;
    const mediaKeys = (await storedKeys(app, tenant)).filter((k) => k.startsWith(objectKeys.prefix(tenant, m.id)));
    expect(mediaKeys).toContain(objectKeys.original(tenant, m.id));

    // A presigned S3 URL cannot be revoked: the store takes the PUT (the service's own endpoint refuses it).
    const res = await put(t, htmlOfSize(good.length));
    if (STORAGE_DRIVER === 'local') expect(res.status).toBe(409);
    expect((await served(m)).equals(good)).toBe(true);
    expect((await readStored(app.services.storage, objectKeys.original(tenant, m.id))).equals(good)).toBe(true);
    // Whatever landed is in the ticket's staging group only, which the sweep deletes with the ticket.
    for (const k of await storedKeys(app, tenant)) {
      if (!mediaKeys.includes(k)) expect(k).toBe(t.key);
    }
  });
});

describe(`a completion that fails leaves the ticket usable (${STORAGE_DRIVER})`, () => {
  it('completeDirectUpload before the PUT: BAD_USER_INPUT, then the PUT and a completion work', async () => {
    const tenant = newTenant('early');
    const token = await app.token(tenant);
    const bytes = pdfBytes(2);
    const t = await ticket(token, bytes, 'application/pdf');
    const early = await complete(token, t.signedId);
    expect(early.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'signedId' });
    expect(early.errors?.[0]?.message).toMatch(/Nothing was uploaded/);
    expect((await put(t, bytes)).status).toBe(200);
    const done = await complete(token, t.signedId);
    expect(done.errors).toBeUndefined();
    expect(done.data!.completeDirectUpload.checksum).toBe(sha256hex(bytes));
    expect(await mediaRows(tenant)).toBe(1);
  });

  it('a wrong checksum: INTEGRITY_ERROR, nothing created; a corrected PUT then completes', async () => {
    const tenant = newTenant('fix');
    const token = await app.token(tenant);
    const bytes = pdfBytes(2);
    const corrupt = Buffer.from(bytes);
    corrupt[corrupt.length >> 1] = corrupt[corrupt.length >> 1]! ^ 0xff; // same size, still a PDF, another checksum
    const t = await ticket(token, bytes, 'application/pdf');
    expect((await put(t, corrupt)).status).toBe(200);
    expect(codeOf(await complete(token, t.signedId))).toBe('INTEGRITY_ERROR');
    expect(await mediaRows(tenant)).toBe(0);
    expect(await keysOutside(tenant, ticketIdOf(t))).toEqual([]);
    expect((await put(t, bytes)).status).toBe(200);
    const done = await complete(token, t.signedId);
    expect(done.errors).toBeUndefined();
    expect(done.data!.completeDirectUpload.checksum).toBe(sha256hex(bytes));
    expect((await served(done.data!.completeDirectUpload)).equals(bytes)).toBe(true);
  });

  it('a wrong type: UNSUPPORTED_MEDIA_TYPE; the real PNG then completes', async () => {
    const tenant = newTenant('fix');
    const token = await app.token(tenant);
    const good = Buffer.from(await (await png(200, 100)).arrayBuffer());
    const t = await ticket(token, good, 'image/png');
    expect((await put(t, htmlOfSize(good.length))).status).toBe(200);
    expect(codeOf(await complete(token, t.signedId))).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect((await put(t, good)).status).toBe(200);
    const done = await complete(token, t.signedId);
    expect(done.errors).toBeUndefined();
    expect(done.data!.completeDirectUpload).toMatchObject({ mediaType: 'image/png', width: 200, height: 100 });
  });

  it('concurrent completions of one ticket create exactly one media; the others are CONFLICT', async () => {
    const tenant = newTenant('race');
    const token = await app.token(tenant);
    const bytes = Buffer.from(await (await jpeg(640, 480)).arrayBuffer());
    const t = await ticket(token, bytes, 'image/jpeg');
    expect((await put(t, bytes)).status).toBe(200);
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => gql(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'property', id: `p${i}` } }, { token })));
    const codes = results.map((r) => codeOf(r) ?? 'OK').sort();
    expect(codes).toEqual(['CONFLICT', 'CONFLICT', 'CONFLICT', 'CONFLICT', 'CONFLICT', 'OK']);
    expect(await mediaRows(tenant)).toBe(1);
    const winner = results.find((r) => !r.errors)!.data!.completeDirectUpload;
    // Only the winner's objects remain: the losers never copied anything.
    expect((await storedKeys(app, tenant)).every((k) => k.startsWith(objectKeys.prefix(tenant, winner.id)))).toBe(true);
  });

  it('a crashed completion holds the ticket only for its lease', async () => {
    const tenant = newTenant('lease');
    const token = await app.token(tenant);
    const bytes = pdfBytes(1);
    const t = await ticket(token, bytes, 'application/pdf');
    expect((await put(t, bytes)).status).toBe(200);
    const id = ticketIdOf(t);
    // A completion took the claim and died: while its lease runs, nobody else completes or PUTs.
    await app.db.prisma.$executeRaw`UPDATE direct_upload SET claim_token = gen_random_uuid(), claimed_until = now() + interval '1 minute' WHERE id = ${id}::uuid`;
    const busy = await complete(token, t.signedId);
    expect(codeOf(busy)).toBe('CONFLICT');
    expect(busy.errors?.[0]?.message).toMatch(/being completed/);
    const refused = await fetch(serviceUrl(t), { method: 'PUT', headers: { 'content-type': 'application/pdf' }, body: bytes });
    expect(refused.status).toBe(409);
    // Once the lease has run out, the ticket is free again.
    await app.db.prisma.$executeRaw`UPDATE direct_upload SET claimed_until = now() - interval '1 second' WHERE id = ${id}::uuid`;
    const done = await complete(token, t.signedId);
    expect(done.errors).toBeUndefined();
    expect(await mediaRows(tenant)).toBe(1);
  });
});

describe('a completion that outlives its lease creates nothing', () => {
  // Copies of tickets listed in `hold` wait until the test lets them go.
  const hold = new Map<string, Promise<void>>();
  let slow: TestApp;
  beforeAll(async () => {
    slow = await startTestApp({
      storage: (_dataDir, real) =>
        new Proxy(real, {
          get(target, p) {
            if (p === 'copy') {
              return async (from: string, to: string) => {
                const gate = [...hold.entries()].find(([ticketId]) => from.includes(ticketId));
                if (gate) {
                  hold.delete(gate[0]);
                  await gate[1];
                }
                return target.copy(from, to);
              };
            }
            const v: unknown = Reflect.get(target, p, target);
            return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
          },
        }),
    });
  });
  afterAll(() => slow?.close());

  it('the completion that took the ticket over wins; the stale one is CONFLICT and leaves nothing', async () => {
    const tenant = newTenant('stale');
    const token = await slow.token(tenant);
    const bytes = pdfBytes(2);
    const { createDirectUpload: t } = await ok(
      slow.url,
      CreateDirectUploadDocument,
      { input: { filename: 'a.pdf', contentType: 'application/pdf', byteSize: bytes.length, checksum: b64sha(bytes) } },
      { token },
    );
    expect((await put(t, bytes)).status).toBe(200);
    const id = ticketIdOf(t);
    let release!: () => void;
    hold.set(id, new Promise<void>((r) => (release = r)));
    const first = gql(slow.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'property', id: 'p1' } }, { token });
    // Wait for the first completion's claim, then let its lease run out.
    for (let i = 0; !(await slow.db.prisma.directUpload.findFirst({ where: { id, claimedUntil: { not: null } } })); i++) {
      if (i > 100) throw new Error('the first completion never claimed the ticket');
      await sleep(50);
    }
    await slow.db.prisma.$executeRaw`UPDATE direct_upload SET claimed_until = now() - interval '1 second' WHERE id = ${id}::uuid`;
    const second = await gql(slow.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'property', id: 'p2' } }, { token });
    expect(second.errors).toBeUndefined();
    release();
    const stale = await first;
    expect(codeOf(stale)).toBe('CONFLICT');
    expect(await slow.db.prisma.media.count({ where: { tenantId: tenant } })).toBe(1);
    const winner = second.data!.completeDirectUpload;
    expect((await storedKeys(slow, tenant)).every((k) => k.startsWith(objectKeys.prefix(tenant, winner.id)))).toBe(true);
  });
  it('a PUT that takes over a lapsed claim ends it: the stale completion is CONFLICT, and a new one gets the new bytes', async () => {
    const tenant = newTenant('stput');
    const token = await slow.token(tenant);
    const first = pdfBytes(2);
    const second = Buffer.concat([first.subarray(0, first.length - 1), Buffer.from('\n')]);
    const { createDirectUpload: t } = await ok(
      slow.url,
      CreateDirectUploadDocument,
      { input: { filename: 'a.pdf', contentType: 'application/pdf', byteSize: first.length, checksum: b64sha(second) } },
      { token },
    );
    // The first bytes do not match the declared checksum, but the stale completion never gets to verify them.
    expect((await put(t, first)).status).toBe(200);
    const id = ticketIdOf(t);
    let release!: () => void;
    hold.set(id, new Promise<void>((r) => (release = r)));
    const stale = gql(slow.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'property', id: 'p1' } }, { token });
    for (let i = 0; !(await slow.db.prisma.directUpload.findFirst({ where: { id, claimedUntil: { not: null } } })); i++) {
      if (i > 100) throw new Error('the completion never claimed the ticket');
      await sleep(50);
    }
    await slow.db.prisma.$executeRaw`UPDATE direct_upload SET claimed_until = now() - interval '1 second' WHERE id = ${id}::uuid`;
    const replaced = await fetch(serviceUploadUrl(slow.url, t.signedId), { method: 'PUT', headers: { 'content-type': 'application/pdf' }, body: second });
    expect(replaced.status).toBe(200);
    release();
    expect(codeOf(await stale)).toBe('CONFLICT');
    expect(await slow.db.prisma.media.count({ where: { tenantId: tenant } })).toBe(0);
    const done = await gql(slow.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'property', id: 'p1' } }, { token });
    expect(done.errors).toBeUndefined();
    const served = Buffer.from(await (await fetch(`${slow.url}/media/${done.data!.completeDirectUpload.id}/content`, { headers: { authorization: `Bearer ${token}` } })).arrayBuffer());
    expect(served.equals(second)).toBe(true);
  });
});

describe(`outstanding tickets are capped per tenant (${STORAGE_DRIVER})`, () => {
  const create = (token: string, i: number) =>
    gql(app.url, CreateDirectUploadDocument, { input: { filename: `f${i}.pdf`, contentType: 'application/pdf', byteSize: 100, checksum: b64sha(Buffer.from(String(i))) } }, { token });

  it(`${CAP * 5} concurrent createDirectUpload calls issue exactly ${CAP}; the rest are TOO_MANY_REQUESTS with the limit`, async () => {
    const tenant = newTenant('cap');
    const token = await app.token(tenant);
    const results = await Promise.all(Array.from({ length: CAP * 5 }, (_, i) => create(token, i)));
    const issued = results.filter((r) => !r.errors);
    const refused = results.filter((r) => r.errors);
    expect(issued).toHaveLength(CAP);
    for (const r of refused) expect(r.errors?.[0]?.extensions).toMatchObject({ code: 'TOO_MANY_REQUESTS', reason: 'DIRECT_UPLOAD_TICKETS', limit: CAP });
    const wait = refused[0]!.errors![0]!.extensions!['retryAfterSeconds'] as number;
    expect(wait).toBeGreaterThan(0);
    expect(wait).toBeLessThanOrEqual(900);
    expect(refused[0]!.errors![0]!.message).toMatch(/direct uploads in progress/);
    expect(await app.db.prisma.directUpload.count({ where: { tenantId: tenant } })).toBe(CAP);

    // Another tenant is not affected.
    expect((await create(await app.token(newTenant('cap')), 0)).errors).toBeUndefined();

    // A completed ticket and an expired one no longer count.
    const bytes = pdfBytes(1);
    const t = await ticket(token, bytes, 'application/pdf').catch((e: unknown) => e);
    expect(String(t)).toMatch(/in progress/);
    const [a, b] = issued.map((r) => r.data!.createDirectUpload);
    await app.db.prisma.$executeRaw`UPDATE direct_upload SET completed_at = now() WHERE id = ${ticketIdOf(a!)}::uuid`;
    await app.db.prisma.$executeRaw`UPDATE direct_upload SET expires_at = now() - interval '1 second' WHERE id = ${ticketIdOf(b!)}::uuid`;
    const again = await Promise.all([create(token, 100), create(token, 101), create(token, 102)]);
    expect(again.map((r) => codeOf(r) ?? 'OK').sort()).toEqual(['OK', 'OK', 'TOO_MANY_REQUESTS']);
  });
});
