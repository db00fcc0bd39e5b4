import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, newTenant, type TestApp } from '../helpers/app.js';
import { jpeg, pdfBytes } from '../helpers/files.js';
import { expectNothingStored, rowCounts, recordUncaught } from '../helpers/security.js';
import { Transform, type Readable } from 'node:stream';
import type { Storage } from '../../src/storage/index.js';
import type { PutOptions } from '../../src/storage/storage.js';
import { rawRequest } from '../helpers/raw-http.js';
import { CLIENT_CODES, expectClientAnswer, expectHealthy, fuzzParameters } from '../helpers/fuzz.js';

// Property-based fuzzing of POST /graphql multipart bodies (issue 10): valid upload
// requests cut at any offset, with corrupted, oversized, duplicated, missing and
// reordered parts, broken map entries and flipped bytes. Every case must get an
// answer within 5 s with a status below 500 and client codes only, leave the
// process healthy (nothing unhandled, /healthz fast, no temporary file), and a
// refused request must leave no row and no object.

let app: TestApp;
/** The same service on a storage that fails where `storageFault` says (fault injection beside the real runs). */
let faulty: TestApp;
const uncaught = recordUncaught('all');
let jpg: Buffer;

/** Where the next request's storage fails: a write or a read of its tenant's objects, after `after` bytes. */
let storageFault: { tenant: string; on: 'put' | 'get'; after: number; variantsOnly: boolean } | null = null;

function breakAfter(source: Readable, after: number): Readable {
  let seen = 0;
  const t = new Transform({
    transform(chunk: Buffer, _e, done) {
      seen += chunk.length;
      if (seen > after) return done(new Error('ECONNRESET: injected storage fault'));
      done(null, chunk);
    },
  });
  source.on('error', (e) => t.destroy(e));
  return source.pipe(t);
}

function faultyStorage(real: Storage): Storage {
  const applies = (key: string, on: 'put' | 'get') =>
    storageFault && storageFault.on === on && key.startsWith(`${storageFault.tenant}/`) && (!storageFault.variantsOnly || !key.endsWith('/original'));
  return new Proxy(real, {
    get(target, prop) {
      if (prop === 'put') return (key: string, body: Readable, options?: PutOptions) => target.put(key, applies(key, 'put') ? breakAfter(body, storageFault!.after) : body, options);
      if (prop === 'get')
        return async (...args: Parameters<Storage['get']>) => {
          const body = await target.get(...args);
          return applies(args[0], 'get') ? breakAfter(body, storageFault!.after) : body;
        };
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

beforeAll(async () => {
  app = await startTestApp();
  faulty = await startTestApp({ storage: (_dir, real) => faultyStorage(real) });
  jpg = Buffer.from(await (await jpeg(48, 32)).arrayBuffer());
});
afterAll(async () => {
  await app?.close();
  await faulty?.close();
});

interface Part {
  headers: string[];
  data: Buffer;
}

const UPLOAD_MANY = 'mutation($inputs: [UploadInput!]!) { uploadMany(inputs: $inputs) { id fileName } }';

/** A valid two-file uploadMany request, as parts. */
function validParts(files: Buffer[]): Part[] {
  const ops = JSON.stringify({ query: UPLOAD_MANY, variables: { inputs: files.map(() => ({ file: null, entity: { type: 'property', id: 'fz' }, tags: ['fuzz'] })) } });
  const map = JSON.stringify(Object.fromEntries(files.map((_, i) => [String(i), [`variables.inputs.${i}.file`]])));
  return [
    { headers: ['Content-Disposition: form-data; name="operations"'], data: Buffer.from(ops) },
    { headers: ['Content-Disposition: form-data; name="map"'], data: Buffer.from(map) },
    ...files.map((data, i) => ({ headers: [`Content-Disposition: form-data; name="${i}"; filename="f${i}.bin"`, 'Content-Type: application/octet-stream'], data })),
  ];
}

function serialize(parts: Part[], boundary: string, closing: boolean): Buffer {
  const out: Buffer[] = [];
  for (const p of parts) {
    out.push(Buffer.from(`--${boundary}\r\n${p.headers.join('\r\n')}\r\n\r\n`, 'latin1'), p.data, Buffer.from('\r\n'));
  }
  if (closing) out.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(out);
}

/** Header lines a hostile client might send. */
const hostileHeader = fc.oneof(
  fc.constant('Content-Disposition form-data'),
  fc.constant('Content-Disposition: attachment; name="operations"'),
  fc.constant('Content-Disposition: form-data'),
  fc.constant('Content-Disposition: form-data; name='),
  fc.constant('Content-Disposition: form-data; name="0"; filename*=UTF-8\'\'%E2%80%AEgnp.exe'),
  fc.integer({ min: 15 * 1024, max: 20 * 1024 }).map((n) => `X-Pad: ${'a'.repeat(n)}`),
  fc.integer({ min: 1, max: 120 * 1024 }).map((n) => `Content-Disposition: form-data; name="0"; filename="${'n'.repeat(n)}.jpg"`),
  fc.string({ maxLength: 200 }).map((s) => s.replace(/\r?\n/g, ' ')),
  fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString('latin1')),
);

/** A JSON value for operations/map, or broken text. */
const hostileJson = fc.oneof(
  fc.json({ maxDepth: 3 }),
  fc.constant('{"0":["variables.inputs.0.file"],"1":["variables.inputs.0.file"]}'),
  fc.constant('{"0":["variables.__proto__.x"]}'),
  fc.constant('{"0":["variables.inputs.0.file","variables.inputs.1.file"]}'),
  fc.constant('{"0":[],"1":["variables.inputs.1.file"]}'),
  fc.constant('{"0":["variables.inputs.0.file.deeper"]}'),
  fc.constant('{"0":["variables.inputs.9.file"]}'),
  fc.constant(JSON.stringify(Object.fromEntries(Array.from({ length: 25 }, (_, i) => [String(i), [`variables.inputs.${i}.file`]])))),
  fc.constant('[' .repeat(5000)),
  fc.string({ maxLength: 100 }),
);

type Mutation =
  | { kind: 'cut'; at: number }
  | { kind: 'header'; part: number; line: string; replace: boolean }
  | { kind: 'json'; part: 0 | 1; value: string }
  | { kind: 'duplicate'; part: number }
  | { kind: 'drop'; part: number }
  | { kind: 'swap'; a: number; b: number }
  | { kind: 'flip'; at: number; byte: number }
  | { kind: 'noClosing' }
  | { kind: 'boundary'; value: string };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.double({ min: 0, max: 1, noNaN: true }).map((at) => ({ kind: 'cut' as const, at })),
  fc.record({ kind: fc.constant('header' as const), part: fc.nat({ max: 3 }), line: hostileHeader, replace: fc.boolean() }),
  fc.record({ kind: fc.constant('json' as const), part: fc.constantFrom(0 as const, 1 as const), value: hostileJson }),
  fc.record({ kind: fc.constant('duplicate' as const), part: fc.nat({ max: 3 }) }),
  fc.record({ kind: fc.constant('drop' as const), part: fc.nat({ max: 3 }) }),
  fc.record({ kind: fc.constant('swap' as const), a: fc.nat({ max: 3 }), b: fc.nat({ max: 3 }) }),
  fc.record({ kind: fc.constant('flip' as const), at: fc.double({ min: 0, max: 1, noNaN: true }), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.constant({ kind: 'noClosing' as const }),
  fc.constantFrom('', 'x', 'a'.repeat(80), '"quoted"', 'wrong').map((value) => ({ kind: 'boundary' as const, value })),
);

interface Case {
  mutations: Mutation[];
  withToken: boolean;
  chunked: boolean;
  secondIsPdf: boolean;
}

const fuzzCase: fc.Arbitrary<Case> = fc.record({
  mutations: fc.array(mutation, { minLength: 1, maxLength: 3 }),
  withToken: fc.boolean(),
  chunked: fc.boolean(),
  secondIsPdf: fc.boolean(),
});

/** The body and content type of a case: the valid request with its mutations applied in order. */
function build(c: Case): { body: Buffer; contentType: string } {
  const boundary = `fz${Math.random().toString(16).slice(2, 10)}`;
  let parts = validParts([jpg, c.secondIsPdf ? pdfBytes(2) : jpg]);
  let closing = true;
  let announced = boundary;
  let cutAt: number | undefined;
  const flips: { at: number; byte: number }[] = [];
  for (const m of c.mutations) {
    const i = (n: number) => (parts.length ? n % parts.length : 0);
    switch (m.kind) {
      case 'cut':
        cutAt = m.at;
        break;
      case 'header':
        if (!parts.length) break;
        parts = parts.map((p, k) => (k === i(m.part) ? { ...p, headers: m.replace ? [m.line] : [...p.headers, m.line] } : p));
        break;
      case 'json':
        if (parts[m.part]) parts = parts.map((p, k) => (k === m.part ? { ...p, data: Buffer.from(m.value) } : p));
        break;
      case 'duplicate':
        if (parts.length) parts = [...parts.slice(0, i(m.part) + 1), parts[i(m.part)]!, ...parts.slice(i(m.part) + 1)];
        break;
      case 'drop':
        parts = parts.filter((_, k) => k !== i(m.part));
        break;
      case 'swap': {
        if (parts.length < 2) break;
        const next = [...parts];
        [next[i(m.a)], next[i(m.b)]] = [next[i(m.b)]!, next[i(m.a)]!];
        parts = next;
        break;
      }
      case 'flip':
        flips.push(m);
        break;
      case 'noClosing':
        closing = false;
        break;
      case 'boundary':
        announced = m.value;
        break;
    }
  }
  let body = serialize(parts, boundary, closing);
  for (const f of flips) {
    body = Buffer.from(body);
    body[Math.floor(f.at * (body.length - 1))] = f.byte;
  }
  if (cutAt !== undefined) body = body.subarray(0, Math.floor(cutAt * body.length));
  return { body, contentType: announced === '' ? 'multipart/form-data' : `multipart/form-data; boundary=${announced}` };
}

describe('fuzz: POST /graphql multipart bodies', () => {
  it('every mutated upload request gets a client answer, stores nothing when refused, and leaves the process healthy', async () => {
    await fc.assert(
      fc.asyncProperty(fuzzCase, async (c) => {
        const tenant = newTenant('fz');
        const { body, contentType } = build(c);
        const headers: Record<string, string> = { 'apollo-require-preflight': 'true', 'content-type': contentType };
        if (c.withToken) headers['authorization'] = `Bearer ${await app.token(tenant)}`;
        if (!c.chunked) headers['content-length'] = String(body.length);
        // Chunked bodies arrive in two pieces with a pause, so the parser sees a split too.
        const split = Math.floor(body.length / 2);
        const chunks = c.chunked ? [body.subarray(0, split), 5, body.subarray(split)] : [body];
        const r = await rawRequest(app.url, { headers, chunks, timeoutMs: 5000 });
        expectClientAnswer(r, JSON.stringify(c.mutations).slice(0, 300));
        const j = r.json as { data?: { uploadMany?: unknown[] } | null; errors?: unknown[] } | undefined;
        if (j?.data?.uploadMany) {
          expect(j.errors).toBeUndefined();
          expect((await rowCounts(app, tenant)).media).toBe(j.data.uploadMany.length);
        } else {
          await expectNothingStored(app, tenant);
        }
        await expectHealthy(app, uncaught);
      }),
      fuzzParameters(120),
    );
  }, 240_000);

  it('with the storage failing mid-write or mid-read, every upload is STORAGE_UNAVAILABLE or a client error, leaves nothing, and the process stays healthy', async () => {
    const fault = fc.record({
      on: fc.constantFrom('put' as const, 'get' as const),
      after: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 4096 })),
      variantsOnly: fc.boolean(),
      mutate: fc.option(mutation, { freq: 3 }),
      chunked: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(fault, async (f) => {
        const tenant = newTenant('fzs');
        const { body, contentType } = build({ mutations: f.mutate ? [f.mutate] : [], withToken: true, chunked: f.chunked, secondIsPdf: false });
        const headers: Record<string, string> = { 'apollo-require-preflight': 'true', 'content-type': contentType, authorization: `Bearer ${await faulty.token(tenant)}` };
        if (!f.chunked) headers['content-length'] = String(body.length);
        storageFault = { tenant, on: f.on, after: f.after, variantsOnly: f.variantsOnly };
        let r;
        try {
          r = await rawRequest(faulty.url, { headers, chunks: [body], timeoutMs: 10_000 });
        } finally {
          storageFault = null;
        }
        expect(r.ended, 'the server answered').toBe('response');
        expect(r.status ?? 0, r.text.slice(0, 300)).toBeLessThan(500);
        const j = r.json as { data?: { uploadMany?: unknown[] } | null; errors?: { extensions?: { code?: string } }[] } | undefined;
        for (const e of j?.errors ?? []) {
          const code = e.extensions?.code ?? '';
          expect(CLIENT_CODES.has(code) || code === 'STORAGE_UNAVAILABLE', r.text.slice(0, 300)).toBe(true);
        }
        if (j?.data?.uploadMany) expect((await rowCounts(faulty, tenant)).media).toBe(j.data.uploadMany.length);
        else await expectNothingStored(faulty, tenant);
        expect(faulty.services.images.stats()).toMatchObject({ running: 0, waiting: 0 });
        await expectHealthy(faulty, uncaught);
      }),
      fuzzParameters(40),
    );
  }, 240_000);
});
