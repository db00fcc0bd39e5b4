import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CompleteDirectUploadDocument, CreateDirectUploadDocument } from '../generated/graphql.js';
import { startTestApp, newTenant, type TestApp } from '../helpers/app.js';
import { gql, ok } from '../helpers/client.js';
import { png } from '../helpers/files.js';
import { htmlOfSize, serviceUploadUrl } from '../helpers/direct-put.js';
import { rawRequest } from '../helpers/raw-http.js';
import { recordUncaught } from '../helpers/security.js';
import { CLIENT_CODES, expectClientAnswer, expectHealthy, fuzzParameters } from '../helpers/fuzz.js';

// Property-based fuzzing of the service's own direct-upload endpoint,
// PUT /direct-uploads/{signedId} (issue 10): tickets declaring one size and bodies
// of another, wrong and missing types, forged and cut signed ids, bodies sent whole,
// chunked with pauses, or abandoned by the client. Every answer is below 500 with a
// client code; the process stays healthy; and whatever was PUT, a completion either
// refuses with a client code or creates a media whose served bytes are exactly the
// ones the ticket declared (size and SHA-256).

let app: TestApp;
const uncaught = recordUncaught('all');
let good: Buffer;

beforeAll(async () => {
  app = await startTestApp({ env: { SWEEP_INTERVAL_SECONDS: '0' } });
  good = Buffer.from(await (await png(64, 48)).arrayBuffer());
});
afterAll(async () => {
  await app?.close();
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest();

type Body = 'good' | 'short' | 'long' | 'empty' | 'html' | 'random';
type SignedIdShape = 'valid' | 'truncated' | 'flipped' | 'garbage' | 'extra-dot' | 'empty-mac';

interface Case {
  body: Body;
  randomBytes: Uint8Array;
  contentType: 'right' | 'wrong' | 'missing' | 'params';
  contentLength: boolean;
  pieces: number;
  abandon: boolean;
  signedId: SignedIdShape;
  puts: number;
}

const fuzzCase: fc.Arbitrary<Case> = fc.record({
  body: fc.constantFrom<Body>('good', 'good', 'short', 'long', 'long', 'empty', 'html', 'random'),
  randomBytes: fc.uint8Array({ maxLength: 4096 }),
  contentType: fc.constantFrom('right', 'right', 'wrong', 'missing', 'params'),
  contentLength: fc.boolean(),
  pieces: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 4 })),
  abandon: fc.boolean().map((b) => b && Math.random() < 0.3),
  signedId: fc.constantFrom<SignedIdShape>('valid', 'valid', 'valid', 'truncated', 'flipped', 'garbage', 'extra-dot', 'empty-mac'),
  puts: fc.integer({ min: 1, max: 2 }),
});

function bodyOf(c: Case): Buffer {
  switch (c.body) {
    case 'good':
      return good;
    case 'short':
      return good.subarray(0, good.length - 1);
    case 'long':
      return Buffer.concat([good, Buffer.from([0])]);
    case 'empty':
      return Buffer.alloc(0);
    case 'html':
      return htmlOfSize(good.length);
    case 'random':
      return Buffer.from(c.randomBytes);
  }
}

function shapeSignedId(signedId: string, shape: SignedIdShape): string {
  switch (shape) {
    case 'valid':
      return signedId;
    case 'truncated':
      return signedId.slice(0, Math.max(1, signedId.length - 5));
    case 'flipped':
      return signedId.slice(0, 10) + (signedId[10] === 'A' ? 'B' : 'A') + signedId.slice(11);
    case 'garbage':
      return 'x'.repeat(600);
    case 'extra-dot':
      return `${signedId}.x`;
    case 'empty-mac':
      return `${signedId.split('.')[0]}.`;
  }
}

describe('fuzz: PUT /direct-uploads/{signedId}', () => {
  it('every PUT gets a client answer, the process stays healthy, and a completion serves exactly the declared bytes or refuses', async () => {
    await fc.assert(
      fc.asyncProperty(fuzzCase, async (c) => {
        const tenant = newTenant('fzd');
        const token = await app.token(tenant);
        const { createDirectUpload: t } = await ok(
          app.url,
          CreateDirectUploadDocument,
          { input: { filename: 'f.png', contentType: 'image/png', byteSize: good.length, checksum: sha(good).toString('base64') } },
          { token },
        );
        const body = bodyOf(c);
        const headers: Record<string, string> = {};
        if (c.contentType === 'right') headers['content-type'] = 'image/png';
        if (c.contentType === 'wrong') headers['content-type'] = 'text/html';
        if (c.contentType === 'params') headers['content-type'] = 'image/png; charset=binary';
        if (c.contentLength) headers['content-length'] = String(body.length);
        const step = Math.max(1, Math.ceil(body.length / c.pieces));
        const chunks: (Buffer | number)[] = [];
        for (let i = 0; i < body.length; i += step) chunks.push(...(i ? [5] : []), body.subarray(i, i + step));
        const path = new URL(serviceUploadUrl(app.url, shapeSignedId(t.signedId, c.signedId))).pathname;
        for (let n = 0; n < c.puts; n++) {
          if (c.abandon) {
            // The client sends half and goes away.
            await rawRequest(app.url, { method: 'PUT', path, headers, chunks: chunks.slice(0, 1), end: false, timeoutMs: 300 }).catch(() => undefined);
            await new Promise((ok) => setTimeout(ok, 100));
          } else {
            const r = await rawRequest(app.url, { method: 'PUT', path, headers, chunks, timeoutMs: 5000 });
            expectClientAnswer(r, JSON.stringify({ ...c, randomBytes: c.randomBytes.length }));
          }
        }
        const done = await gql(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'property', id: 'fz' } }, { token });
        if (done.errors) {
          for (const e of done.errors) expect(CLIENT_CODES.has(e.extensions?.code ?? ''), JSON.stringify(done.errors)).toBe(true);
          expect(await app.db.prisma.media.count({ where: { tenantId: tenant } })).toBe(0);
        } else {
          const m = done.data!.completeDirectUpload;
          const served = Buffer.from(await (await fetch(`${app.url}/media/${m.id}/content`, { headers: { authorization: `Bearer ${token}` } })).arrayBuffer());
          expect(served.equals(good)).toBe(true);
          expect(m.checksum).toBe(sha(good).toString('hex'));
        }
        await expectHealthy(app, uncaught);
      }),
      fuzzParameters(80),
    );
  }, 240_000);
});
