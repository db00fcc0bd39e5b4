import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import {
  AssignRoleDocument,
  AttachMediaDocument,
  ClearRoleDocument,
  DeleteMediaDocument,
  DetachMediaDocument,
  EntitiesWithMediaAndRolesDocument,
  EntityDocument,
  MediaByRoleDocument,
  MediaDocument,
  MediaForEntityDocument,
  MediaLibraryDocument,
  ReplaceMediaTagsDocument,
  SearchByTagsDocument,
  UploadDocument,
  type MediaQuery,
} from '../generated/graphql.js';
import { startTestApp, newTenant, STORAGE_DRIVER, type TestApp } from '../helpers/app.js';
import { codeOf, gql, ok } from '../helpers/client.js';
import { jpeg, pdf } from '../helpers/files.js';
import { rowCounts } from '../helpers/security.js';
import { storedKeys } from '../helpers/stored.js';

let app: TestApp;
const A = newTenant('ta');
const B = newTenant('tb');
let tokenA: string;
let tokenB: string;
const entity = { type: 'property', id: 'shared-42' };
let photo: NonNullable<MediaQuery['media']>;
let doc: NonNullable<MediaQuery['media']>;

/** What A has, as A sees it: rows, objects and the bytes of every object. */
async function snapshotOfA() {
  // Signed urls carry their expiry, so they are compared without them.
  const media = await Promise.all(
    [photo.id, doc.id].map(async (id) => {
      const m = (await ok(app.url, MediaDocument, { id }, { token: tokenA })).media!;
      return { ...m, url: m.url ? new URL(m.url).pathname : null, variants: m.variants.map((v) => ({ ...v, url: new URL(v.url).pathname })) };
    }),
  );
  const keys = await storedKeys(app, A);
  const objects: Record<string, string> = {};
  for (const key of keys) {
    const body = await app.services.storage.get(key);
    const hash = createHash('sha256');
    for await (const chunk of body) hash.update(chunk as Buffer);
    objects[key] = hash.digest('hex');
  }
  const entityView = (await ok(app.url, EntityDocument, { type: entity.type, id: entity.id }, { token: tokenA })).entity;
  return { media, keys, objects, entityView, rows: await rowCounts(app, A) };
}

let before: Awaited<ReturnType<typeof snapshotOfA>>;

beforeAll(async () => {
  app = await startTestApp();
  tokenA = await app.token(A, { subject: 'alice' });
  tokenB = await app.token(B, { subject: 'bob' });
  photo = (await ok(app.url, UploadDocument, { input: { file: await jpeg(400, 300, 'front.jpg'), entity, tags: ['shared', 'front'], role: 'PRIMARY_PHOTO' } }, { token: tokenA })).upload;
  doc = (await ok(app.url, UploadDocument, { input: { file: pdf(2, 'deed.pdf'), entity, tags: ['shared', 'deed'] } }, { token: tokenA })).upload;
  expect(photo.variants.map((v) => v.name)).toContain('THUMB');
  before = await snapshotOfA();
  expect(before.keys).toContain(`${A}/${photo.id}/original`);
  expect(before.rows).toEqual({ media: 2, attachments: 2, roles: 1 });
});
afterAll(() => app?.close());

describe("another tenant cannot see or touch a tenant's media", () => {
  it('media(id) is null for B', async () => {
    for (const id of [photo.id, doc.id]) {
      const r = await gql(app.url, MediaDocument, { id }, { token: tokenB });
      expect(r.errors).toBeUndefined();
      expect(r.data?.media).toBeNull();
    }
  });

  it('mediaForEntity, entity, entities and mediaByRole show B nothing on the same entity ids', async () => {
    const list = await ok(app.url, MediaForEntityDocument, { entity }, { token: tokenB });
    expect(list.mediaForEntity).toEqual({ nodes: [], totalCount: 0, pageInfo: { endCursor: null, hasNextPage: false } });

    const e = await ok(app.url, EntityDocument, { type: entity.type, id: entity.id }, { token: tokenB });
    expect(e.entity).toMatchObject({ media: { nodes: [], totalCount: 0 }, primary: null, roles: [] });

    const many = await ok(app.url, EntitiesWithMediaAndRolesDocument, { refs: [entity, { type: 'property', id: 'other' }] }, { token: tokenB });
    for (const x of many.entities) expect(x).toMatchObject({ media: { nodes: [], totalCount: 0 }, roles: [] });

    const byRole = await gql(app.url, MediaByRoleDocument, { entity, role: 'PRIMARY_PHOTO' }, { token: tokenB });
    expect(byRole.errors).toBeUndefined();
    expect(byRole.data?.mediaByRole).toBeNull();

    // A sees its own on the very same ids (the empty answers above are isolation, not emptiness).
    const own = await ok(app.url, MediaForEntityDocument, { entity }, { token: tokenA });
    expect(own.mediaForEntity.totalCount).toBe(2);
  });

  it('searchByTags and mediaLibrary show B nothing', async () => {
    for (const matchAll of [true, false]) {
      const s = await ok(app.url, SearchByTagsDocument, { tags: ['shared', 'front'], matchAll }, { token: tokenB });
      expect(s.searchByTags).toMatchObject({ nodes: [], totalCount: 0 });
      const within = await ok(app.url, SearchByTagsDocument, { tags: ['shared'], matchAll, entity }, { token: tokenB });
      expect(within.searchByTags).toMatchObject({ nodes: [], totalCount: 0 });
    }
    for (const search of [null, 'front', 'deed']) {
      const lib = await ok(app.url, MediaLibraryDocument, { search }, { token: tokenB });
      expect(lib.mediaLibrary).toMatchObject({ items: [], total: 0 });
    }
    const ownSearch = await ok(app.url, SearchByTagsDocument, { tags: ['shared'] }, { token: tokenA });
    expect(ownSearch.searchByTags.totalCount).toBe(2);
  });

  it('every mutation on A\'s ids is NOT_FOUND for B', async () => {
    const attempts = [
      ['replaceMediaTags', gql(app.url, ReplaceMediaTagsDocument, { id: photo.id, tags: ['pwned'] }, { token: tokenB })],
      ['attachMedia', gql(app.url, AttachMediaDocument, { id: photo.id, entity: { type: 'property', id: 'b-own' } }, { token: tokenB })],
      ['attachMedia (same entity)', gql(app.url, AttachMediaDocument, { id: doc.id, entity }, { token: tokenB })],
      ['detachMedia', gql(app.url, DetachMediaDocument, { id: photo.id, entity }, { token: tokenB })],
      ['assignRole', gql(app.url, AssignRoleDocument, { entity, mediaId: photo.id, role: 'PRIMARY_PHOTO' }, { token: tokenB })],
      ['assignRole (other role)', gql(app.url, AssignRoleDocument, { entity, mediaId: doc.id, role: 'AVATAR' }, { token: tokenB })],
      ['deleteMedia', gql(app.url, DeleteMediaDocument, { id: photo.id }, { token: tokenB })],
      ['deleteMedia (doc)', gql(app.url, DeleteMediaDocument, { id: doc.id }, { token: tokenB })],
    ] as const;
    for (const [label, p] of attempts) {
      const r = await p;
      expect(codeOf(r), `${label}: ${JSON.stringify(r.errors)}`).toBe('NOT_FOUND');
      expect(r.data ?? null, label).toBeNull();
    }
    // clearRole names no media: for B nobody holds the role, and A's holder stays.
    const cleared = await ok(app.url, ClearRoleDocument, { entity, role: 'PRIMARY_PHOTO' }, { token: tokenB });
    expect(cleared.clearRole).toBe(false);
  });

  it('the content and variant routes answer 404 JSON to B', async () => {
    const paths = [`/media/${photo.id}/content`, `/media/${photo.id}/variants/THUMB`, `/media/${doc.id}/content`];
    for (const path of paths) {
      for (const method of ['GET', 'HEAD']) {
        const res = await fetch(`${app.url}${path}`, { method, headers: { authorization: `Bearer ${tokenB}` } });
        expect(res.status, `${method} ${path}`).toBe(404);
        const text = await res.text();
        if (method === 'GET') {
          expect(res.headers.get('content-type')).toMatch(/^application\/json/);
          expect(JSON.parse(text)).toMatchObject({ error: { code: 'NOT_FOUND' } });
        }
        // Nothing of the media leaks: not its checksum (the ETag), not its bytes.
        expect(res.headers.get('etag') ?? '').not.toContain(photo.checksum);
        expect(res.headers.get('etag') ?? '').not.toContain(doc.checksum);
        expect(res.headers.get('content-disposition')).toBeNull();
      }
    }
  });

  it('B using the same entity ids and role gets its own, separate state', async () => {
    const mine = (await ok(app.url, UploadDocument, { input: { file: await jpeg(100, 100, 'bob.jpg'), entity, tags: ['shared'], role: 'PRIMARY_PHOTO' } }, { token: tokenB })).upload;
    const bView = await ok(app.url, EntityDocument, { type: entity.type, id: entity.id }, { token: tokenB });
    expect(bView.entity.media.nodes.map((n) => n.id)).toEqual([mine.id]);
    expect(bView.entity.primary?.id).toBe(mine.id);
    const aView = await ok(app.url, EntityDocument, { type: entity.type, id: entity.id }, { token: tokenA });
    expect(aView.entity.primary?.id).toBe(photo.id);
    expect(aView.entity.media.nodes.map((n) => n.id).sort()).toEqual([photo.id, doc.id].sort());
    // B's search does not reach A's media either, even now that B has some with the same tag.
    const s = await ok(app.url, SearchByTagsDocument, { tags: ['shared'] }, { token: tokenB });
    expect(s.searchByTags.nodes.map((n) => n.id)).toEqual([mine.id]);
    // B's media is no more reachable from A.
    expect((await gql(app.url, MediaDocument, { id: mine.id }, { token: tokenA })).data?.media).toBeNull();
    expect(codeOf(await gql(app.url, DeleteMediaDocument, { id: mine.id }, { token: tokenA }))).toBe('NOT_FOUND');
  });

  it("A's rows, objects and bytes are unchanged after all of B's attempts", async () => {
    const after = await snapshotOfA();
    expect(after).toEqual(before);
    expect(after.media[0]).toMatchObject({ id: photo.id, version: 1, tags: ['shared', 'front'], roles: [{ role: 'PRIMARY_PHOTO', entity }] });
  });
});

describe('signed links are bound to their tenant, path and expiry', () => {
  const contentPath = () => `/media/${photo.id}/content`;
  const fetchLink = (path: string, token: string) => fetch(`${app.url}${path}?token=${encodeURIComponent(token)}`);

  it('a link signed for the path serves the bytes without other credentials', async () => {
    const res = await fetchLink(contentPath(), app.services.links.sign(A, contentPath(), 60));
    expect(res.status).toBe(200);
    expect(res.headers.get('etag')).toBe(`"${photo.checksum}"`);
    expect(createHash('sha256').update(Buffer.from(await res.arrayBuffer())).digest('hex')).toBe(photo.checksum);
  });

  it('an altered token is refused with 401', async () => {
    const good = app.services.links.sign(A, contentPath(), 60);
    const [tenant, exp, mac] = good.split('.') as [string, string, string];
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
    const altered = [
      `${tenant}.${exp}.${flip(mac, 5)}`,
      `${tenant}.${exp}.${mac.slice(0, -1)}`,
      `${tenant}.${Number(exp) + 3600}.${mac}`,
      `${B}.${exp}.${mac}`,
      `${tenant}.${exp}`,
      `${tenant}..${mac}`,
      '',
    ];
    for (const token of altered) {
      const res = await fetchLink(contentPath(), token);
      expect(res.status, token).toBe(401);
      expect(await res.json()).toMatchObject({ error: { code: 'UNAUTHENTICATED' } });
    }
  });

  it("a link made for one media is refused on another media's path or on a variant path", async () => {
    const token = app.services.links.sign(A, contentPath(), 60);
    for (const path of [`/media/${doc.id}/content`, `/media/${photo.id}/variants/THUMB`]) {
      const res = await fetchLink(path, token);
      expect(res.status, path).toBe(401);
    }
  });

  it("a correctly signed link for another tenant does not reach A's media", async () => {
    const res = await fetchLink(contentPath(), app.services.links.sign(B, contentPath(), 60));
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: 'NOT_FOUND' } });
  });

  it('the url handed out to A works without a token; altered, it is refused', async () => {
    const { media } = await ok(app.url, MediaDocument, { id: photo.id }, { token: tokenA });
    const url = new URL(media!.url!);
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(createHash('sha256').update(Buffer.from(await res.arrayBuffer())).digest('hex')).toBe(photo.checksum);
    if (STORAGE_DRIVER === 'local') {
      // A signed link to the service's own route: altering its token is 401, moving it to another media too.
      expect(url.pathname).toBe(contentPath());
      const token = url.searchParams.get('token')!;
      const tampered = new URL(url);
      tampered.searchParams.set('token', token.slice(0, -2) + (token.endsWith('AA') ? 'BB' : 'AA'));
      expect((await fetch(tampered)).status).toBe(401);
      const moved = new URL(url);
      moved.pathname = `/media/${doc.id}/content`;
      expect((await fetch(moved)).status).toBe(401);
    } else {
      // A presigned S3 GET (the test s3rver does not check signatures, so what is
      // checked here is what was signed): A's object key only, limited lifetime.
      expect(url.pathname.endsWith(`/${A}/${photo.id}/original`)).toBe(true);
      expect(url.searchParams.get('X-Amz-Expires')).toBe(String(app.services.config.signedUrlTtlSeconds));
      expect(url.searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
    }
  });
});
