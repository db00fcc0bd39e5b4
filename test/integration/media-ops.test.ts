import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stat, readdir } from 'node:fs/promises';
import path from 'node:path';
import {
  AssignRoleDocument,
  AttachMediaDocument,
  ClearRoleDocument,
  DeleteMediaDocument,
  DetachMediaDocument,
  EntityDocument,
  MediaByRoleDocument,
  MediaDocument,
  MediaForEntityDocument,
  MediaLibraryDocument,
  MediaPoliciesDocument,
  ReplaceMediaTagsDocument,
  SearchByTagsDocument,
  UploadDocument,
  UploadManyDocument,
} from '../generated/graphql.js';
import type { EntityInput, MediaKind, MediaRole, UploadMutation } from '../generated/graphql.js';
import { startTestApp, newTenant, STORAGE_DRIVER, type TestApp } from '../helpers/app.js';
import { codeOf, gql, ok } from '../helpers/client.js';
import { jpeg, pdf, png } from '../helpers/files.js';
import { storedKeys } from '../helpers/stored.js';

type Uploaded = UploadMutation['upload'];

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(() => app?.close());

/** A fresh tenant and a token with every user scope. */
async function tenantWithToken(prefix: string): Promise<{ tenant: string; token: string }> {
  const tenant = newTenant(prefix);
  return { tenant, token: await app.token(tenant) };
}

async function upload(
  token: string,
  file: File,
  entity: EntityInput,
  extra: { tags?: string[]; role?: MediaRole } = {},
): Promise<Uploaded> {
  return (await ok(app.url, UploadDocument, { input: { file, entity, ...extra } }, { token })).upload;
}

const property = (id: string): EntityInput => ({ type: 'property', id });
const unit = (id: string): EntityInput => ({ type: 'unit', id });

describe('uploadMany', () => {
  it('returns the new media in input order, each attached to its entity with its tags and role', async () => {
    const { token } = await tenantWithToken('um');
    const inputs = [
      { file: await jpeg(64, 48, 'zulu.jpg'), entity: property('um-1'), tags: ['Front, garden'] },
      { file: pdf(2, 'mike.pdf'), entity: property('um-1'), tags: ['contract'] },
      { file: await png(40, 30, 'alpha.png'), entity: unit('um-2'), role: 'PRIMARY_PHOTO' as const },
      { file: pdf(1, 'bravo.pdf'), entity: unit('um-3') },
    ];
    const { uploadMany } = await ok(app.url, UploadManyDocument, { inputs }, { token });

    expect(uploadMany.map((m) => [m.fileName, m.mediaType, m.kind])).toEqual([
      ['zulu.jpg', 'image/jpeg', 'IMAGE'],
      ['mike.pdf', 'application/pdf', 'DOCUMENT'],
      ['alpha.png', 'image/png', 'IMAGE'],
      ['bravo.pdf', 'application/pdf', 'DOCUMENT'],
    ]);
    expect(new Set(uploadMany.map((m) => m.id)).size).toBe(4);
    expect(uploadMany.map((m) => m.entities)).toEqual([[property('um-1')], [property('um-1')], [unit('um-2')], [unit('um-3')]]);
    expect(uploadMany.map((m) => m.tags)).toEqual([['front', 'garden'], ['contract'], [], []]);
    expect(uploadMany.map((m) => m.roles)).toEqual([[], [], [{ role: 'PRIMARY_PHOTO', entity: unit('um-2') }], []]);
    expect(uploadMany[1]!.pageCount).toBe(2);
    expect(uploadMany[0]!.width).toBe(64);
    expect(uploadMany.every((m) => m.version === 1)).toBe(true);

    // Every one is attached and readable.
    const [zulu, mike, alpha, bravo] = uploadMany.map((m) => m.id);
    const p1 = (await ok(app.url, MediaForEntityDocument, { entity: property('um-1') }, { token })).mediaForEntity;
    expect(p1.totalCount).toBe(2);
    expect(new Set(p1.nodes.map((n) => n.id))).toEqual(new Set([zulu, mike]));
    expect((await ok(app.url, MediaByRoleDocument, { entity: unit('um-2'), role: 'PRIMARY_PHOTO' }, { token })).mediaByRole?.id).toBe(alpha);
    expect((await ok(app.url, MediaForEntityDocument, { entity: unit('um-3') }, { token })).mediaForEntity.nodes.map((n) => n.id)).toEqual([bravo]);
    for (const m of uploadMany) {
      expect((await ok(app.url, MediaDocument, { id: m.id }, { token })).media).toMatchObject({ id: m.id, fileName: m.fileName, checksum: m.checksum });
    }
  });
});

describe('entity media pagination', () => {
  let token: string;
  /** Uploaded one after the other, oldest first: DOCUMENT, IMAGE, DOCUMENT, IMAGE, DOCUMENT. */
  let uploaded: Uploaded[];
  const entity = property('pg-1');

  beforeAll(async () => {
    ({ token } = await tenantWithToken('pg'));
    uploaded = [];
    for (let i = 1; i <= 5; i++) {
      const file = i % 2 === 1 ? pdf(1, `m${i}.pdf`) : await png(20, 20, `m${i}.png`);
      uploaded.push(await upload(token, file, entity));
    }
    // Media of other entities never count.
    await upload(token, pdf(1, 'other.pdf'), property('pg-2'));
    await upload(token, pdf(1, 'other-unit.pdf'), unit('pg-1'));
  });

  const ids = (...n: number[]) => n.map((i) => uploaded[i - 1]!.id);

  it('mediaForEntity pages newest first with opaque cursors and an exact totalCount on every page', async () => {
    const page1 = (await ok(app.url, MediaForEntityDocument, { entity, first: 2 }, { token })).mediaForEntity;
    expect(page1.nodes.map((n) => n.id)).toEqual(ids(5, 4));
    expect(page1.totalCount).toBe(5);
    expect(page1.pageInfo.hasNextPage).toBe(true);
    expect(page1.pageInfo.endCursor).toEqual(expect.any(String));
    expect(page1.pageInfo.endCursor).not.toContain(uploaded[3]!.id);
    // Newest first by createdAt.
    const times = page1.nodes.map((n) => Date.parse(n.createdAt));
    expect(times[0]!).toBeGreaterThanOrEqual(times[1]!);

    const page2 = (await ok(app.url, MediaForEntityDocument, { entity, first: 2, after: page1.pageInfo.endCursor }, { token })).mediaForEntity;
    expect(page2.nodes.map((n) => n.id)).toEqual(ids(3, 2));
    expect(page2.totalCount).toBe(5);
    expect(page2.pageInfo.hasNextPage).toBe(true);
    expect(page2.pageInfo.endCursor).not.toBe(page1.pageInfo.endCursor);

    const page3 = (await ok(app.url, MediaForEntityDocument, { entity, first: 2, after: page2.pageInfo.endCursor }, { token })).mediaForEntity;
    expect(page3.nodes.map((n) => n.id)).toEqual(ids(1));
    expect(page3.totalCount).toBe(5);
    expect(page3.pageInfo.hasNextPage).toBe(false);
    expect(page3.pageInfo.endCursor).toEqual(expect.any(String));
    // After the last one: an empty page that still knows the total.
    const past = (await ok(app.url, MediaForEntityDocument, { entity, first: 2, after: page3.pageInfo.endCursor }, { token })).mediaForEntity;
    expect(past).toEqual({ nodes: [], totalCount: 5, pageInfo: { endCursor: null, hasNextPage: false } });

    // All five exactly once, newest first.
    const all = [...page1.nodes, ...page2.nodes, ...page3.nodes];
    expect(all.map((n) => n.id)).toEqual(ids(5, 4, 3, 2, 1));
    const created = all.map((n) => Date.parse(n.createdAt));
    expect([...created].sort((a, b) => b - a)).toEqual(created);

    // The whole list in one page has no next page.
    const whole = (await ok(app.url, MediaForEntityDocument, { entity, first: 5 }, { token })).mediaForEntity;
    expect(whole.nodes.map((n) => n.id)).toEqual(ids(5, 4, 3, 2, 1));
    expect(whole.pageInfo.hasNextPage).toBe(false);
  });

  it('mediaForEntity filters by kind, with totals and cursors of the filtered list', async () => {
    const docs1 = (await ok(app.url, MediaForEntityDocument, { entity, kind: 'DOCUMENT', first: 2 }, { token })).mediaForEntity;
    expect(docs1.nodes.map((n) => n.id)).toEqual(ids(5, 3));
    expect(docs1.nodes.every((n) => n.kind === 'DOCUMENT')).toBe(true);
    expect(docs1.totalCount).toBe(3);
    expect(docs1.pageInfo.hasNextPage).toBe(true);
    const docs2 = (await ok(app.url, MediaForEntityDocument, { entity, kind: 'DOCUMENT', first: 2, after: docs1.pageInfo.endCursor }, { token }))
      .mediaForEntity;
    expect(docs2.nodes.map((n) => n.id)).toEqual(ids(1));
    expect(docs2.totalCount).toBe(3);
    expect(docs2.pageInfo.hasNextPage).toBe(false);

    const images = (await ok(app.url, MediaForEntityDocument, { entity, kind: 'IMAGE' }, { token })).mediaForEntity;
    expect(images.nodes.map((n) => [n.id, n.kind])).toEqual([
      [uploaded[3]!.id, 'IMAGE'],
      [uploaded[1]!.id, 'IMAGE'],
    ]);
    expect(images.totalCount).toBe(2);

    const videos = (await ok(app.url, MediaForEntityDocument, { entity, kind: 'VIDEO' }, { token })).mediaForEntity;
    expect(videos).toEqual({ nodes: [], totalCount: 0, pageInfo: { endCursor: null, hasNextPage: false } });
  });

  it('Entity.media pages the same way through the entity query', async () => {
    const vars = { type: entity.type, id: String(entity.id), first: 2 };
    const e1 = (await ok(app.url, EntityDocument, vars, { token })).entity;
    expect(e1).toMatchObject({ type: 'property', id: 'pg-1', primary: null, roles: [] });
    expect(e1.media.nodes.map((n) => [n.id, n.fileName])).toEqual([
      [uploaded[4]!.id, 'm5.pdf'],
      [uploaded[3]!.id, 'm4.png'],
    ]);
    expect(e1.media.totalCount).toBe(5);
    expect(e1.media.pageInfo.hasNextPage).toBe(true);

    const e2 = (await ok(app.url, EntityDocument, { ...vars, after: e1.media.pageInfo.endCursor }, { token })).entity;
    expect(e2.media.nodes.map((n) => n.id)).toEqual(ids(3, 2));
    expect(e2.media.totalCount).toBe(5);
    expect(e2.media.pageInfo.hasNextPage).toBe(true);

    const e3 = (await ok(app.url, EntityDocument, { ...vars, after: e2.media.pageInfo.endCursor }, { token })).entity;
    expect(e3.media.nodes.map((n) => n.id)).toEqual(ids(1));
    expect(e3.media.totalCount).toBe(5);
    expect(e3.media.pageInfo.hasNextPage).toBe(false);

    const images = (await ok(app.url, EntityDocument, { ...vars, kind: 'IMAGE' as MediaKind, first: 1 }, { token })).entity;
    expect(images.media.nodes.map((n) => n.id)).toEqual(ids(4));
    expect(images.media.totalCount).toBe(2);
    expect(images.media.pageInfo.hasNextPage).toBe(true);
    const images2 = (await ok(app.url, EntityDocument, { ...vars, kind: 'IMAGE' as MediaKind, first: 1, after: images.media.pageInfo.endCursor }, { token }))
      .entity;
    expect(images2.media.nodes.map((n) => n.id)).toEqual(ids(2));
    expect(images2.media.totalCount).toBe(2);
    expect(images2.media.pageInfo.hasNextPage).toBe(false);
  });
});

describe('searchByTags', () => {
  let token: string;
  let a: Uploaded, b: Uploaded, c: Uploaded, d: Uploaded;

  beforeAll(async () => {
    ({ token } = await tenantWithToken('st'));
    // Oldest first: a, b, c, d.
    a = await upload(token, pdf(1, 'a.pdf'), property('s-1'), { tags: ['red', 'blue'] });
    b = await upload(token, pdf(1, 'b.pdf'), property('s-1'), { tags: ['red'] });
    c = await upload(token, pdf(1, 'c.pdf'), property('s-2'), { tags: ['blue', 'green'] });
    d = await upload(token, pdf(1, 'd.pdf'), property('s-2'), { tags: ['red', 'blue', 'green'] });
    // Another tenant with the same tags is never seen.
    const other = await tenantWithToken('st');
    await upload(other.token, pdf(1, 'x.pdf'), property('s-1'), { tags: ['red', 'blue', 'green'] });
  });

  const search = async (vars: { tags: string[]; matchAll?: boolean; entity?: EntityInput; first?: number; after?: string | null }) =>
    (await ok(app.url, SearchByTagsDocument, vars, { token })).searchByTags;

  it('matchAll=true finds media carrying every tag (@>), newest first', async () => {
    const r = await search({ tags: ['red', 'blue'], matchAll: true });
    expect(r.nodes.map((n) => n.id)).toEqual([d.id, a.id]);
    expect(r.totalCount).toBe(2);
    expect(r.pageInfo.hasNextPage).toBe(false);
    expect(r.nodes[0]!.tags).toEqual(['red', 'blue', 'green']);
    // matchAll defaults to true.
    expect((await search({ tags: ['blue', 'green'] })).nodes.map((n) => n.id)).toEqual([d.id, c.id]);
    expect((await search({ tags: ['red', 'blue', 'green'] })).nodes.map((n) => n.id)).toEqual([d.id]);
    expect(await search({ tags: ['red', 'purple'], matchAll: true })).toMatchObject({ nodes: [], totalCount: 0 });
  });

  it('matchAll=false finds media carrying any of the tags (&&)', async () => {
    const r = await search({ tags: ['red', 'blue'], matchAll: false });
    expect(r.nodes.map((n) => n.id)).toEqual([d.id, c.id, b.id, a.id]);
    expect(r.totalCount).toBe(4);
    expect((await search({ tags: ['green', 'purple'], matchAll: false })).nodes.map((n) => n.id)).toEqual([d.id, c.id]);
    expect((await search({ tags: ['purple'], matchAll: false })).totalCount).toBe(0);
  });

  it('searches within one entity', async () => {
    expect((await search({ tags: ['red'], matchAll: true, entity: property('s-1') })).nodes.map((n) => n.id)).toEqual([b.id, a.id]);
    const any = await search({ tags: ['green', 'blue'], matchAll: false, entity: property('s-1') });
    expect(any.nodes.map((n) => n.id)).toEqual([a.id]);
    expect(any.totalCount).toBe(1);
    const all = await search({ tags: ['green', 'blue'], matchAll: true, entity: property('s-2') });
    expect(all.nodes.map((n) => n.id)).toEqual([d.id, c.id]);
    expect((await search({ tags: ['red'], entity: property('s-3') })).totalCount).toBe(0);
  });

  it('paginates with cursors and an exact totalCount on every page', async () => {
    const p1 = await search({ tags: ['red', 'blue', 'green'], matchAll: false, first: 3 });
    expect(p1.nodes.map((n) => n.id)).toEqual([d.id, c.id, b.id]);
    expect(p1.totalCount).toBe(4);
    expect(p1.pageInfo.hasNextPage).toBe(true);
    const p2 = await search({ tags: ['red', 'blue', 'green'], matchAll: false, first: 3, after: p1.pageInfo.endCursor });
    expect(p2.nodes.map((n) => n.id)).toEqual([a.id]);
    expect(p2.totalCount).toBe(4);
    expect(p2.pageInfo.hasNextPage).toBe(false);

    const q1 = await search({ tags: ['red'], first: 1 });
    expect(q1.nodes.map((n) => n.id)).toEqual([d.id]);
    expect(q1.totalCount).toBe(3);
    const q2 = await search({ tags: ['red'], first: 1, after: q1.pageInfo.endCursor });
    expect(q2.nodes.map((n) => n.id)).toEqual([b.id]);
    expect(q2.totalCount).toBe(3);
    expect(q2.pageInfo.hasNextPage).toBe(true);
  });

  it('normalises the tags of the query like those of an upload', async () => {
    const r = await search({ tags: ['  RED ', 'Blue'], matchAll: true });
    expect(r.nodes.map((n) => n.id)).toEqual([d.id, a.id]);
    const commas = await search({ tags: ['Red,BLUE', 'red'], matchAll: true });
    expect(commas.nodes.map((n) => n.id)).toEqual([d.id, a.id]);
    expect(commas.totalCount).toBe(2);
    const any = await search({ tags: [' GREEN,purple '], matchAll: false, entity: property('s-2') });
    expect(any.nodes.map((n) => n.id)).toEqual([d.id, c.id]);
  });
});

describe('replaceMediaTags', () => {
  it('replaces the whole set, normalised, and bumps version and updatedAt', async () => {
    const { token } = await tenantWithToken('rt');
    const m = await upload(token, pdf(1, 'tags.pdf'), property('rt-1'), { tags: ['old', 'keep'] });
    expect(m.tags).toEqual(['old', 'keep']);
    expect(m.version).toBe(1);
    await new Promise((r) => setTimeout(r, 5));

    const { replaceMediaTags } = await ok(app.url, ReplaceMediaTagsDocument, { id: m.id, tags: [' Sea-View ', 'KEEP,pool', 'keep', 'a_1'] }, { token });
    expect(replaceMediaTags.id).toBe(m.id);
    expect(replaceMediaTags.tags).toEqual(['sea-view', 'keep', 'pool', 'a_1']);
    expect(replaceMediaTags.version).toBe(2);
    expect(Date.parse(replaceMediaTags.updatedAt)).toBeGreaterThan(Date.parse(m.updatedAt));

    const { media } = await ok(app.url, MediaDocument, { id: m.id }, { token });
    expect(media).toMatchObject({ tags: ['sea-view', 'keep', 'pool', 'a_1'], version: 2, updatedAt: replaceMediaTags.updatedAt, createdAt: m.createdAt });

    // The old tag is gone from searches, the new ones find it.
    expect((await ok(app.url, SearchByTagsDocument, { tags: ['old'] }, { token })).searchByTags.totalCount).toBe(0);
    expect((await ok(app.url, SearchByTagsDocument, { tags: ['sea-view', 'pool'] }, { token })).searchByTags.nodes.map((n) => n.id)).toEqual([m.id]);

    // Replacing with an empty list clears them, and is a write too.
    const cleared = (await ok(app.url, ReplaceMediaTagsDocument, { id: m.id, tags: [] }, { token })).replaceMediaTags;
    expect(cleared.tags).toEqual([]);
    expect(cleared.version).toBe(3);
    expect(Date.parse(cleared.updatedAt)).toBeGreaterThanOrEqual(Date.parse(replaceMediaTags.updatedAt));
  });
});

describe('attachMedia / detachMedia', () => {
  it('links a media to more entities and unlinks it, dropping only its roles for that entity', async () => {
    const { token } = await tenantWithToken('ad');
    const m = await upload(token, await png(30, 30, 'shared.png'), property('ad-1'), { role: 'PRIMARY_PHOTO' });
    const other = await upload(token, await png(30, 30, 'other.png'), property('ad-1'), { role: 'AVATAR' });
    expect(m.version).toBe(1);

    const attached = (await ok(app.url, AttachMediaDocument, { id: m.id, entity: unit('ad-2') }, { token })).attachMedia;
    expect(attached.version).toBe(2);
    expect(attached.entities).toEqual([property('ad-1'), unit('ad-2')]);
    expect((await ok(app.url, MediaForEntityDocument, { entity: unit('ad-2') }, { token })).mediaForEntity.nodes.map((n) => n.id)).toEqual([m.id]);

    // A role for the second entity, so that detaching from the first must keep it.
    const role = (await ok(app.url, AssignRoleDocument, { entity: unit('ad-2'), mediaId: m.id, role: 'PRIMARY_PHOTO' }, { token })).assignRole;
    expect(role.media).toEqual({ id: m.id, version: 3 });

    const before = (await ok(app.url, MediaDocument, { id: m.id }, { token })).media!;
    const detached = (await ok(app.url, DetachMediaDocument, { id: m.id, entity: property('ad-1') }, { token })).detachMedia;
    expect(detached.version).toBe(4);
    expect(detached.entities).toEqual([unit('ad-2')]);
    expect(detached.roles).toEqual([{ role: 'PRIMARY_PHOTO', entity: unit('ad-2') }]);
    const after = (await ok(app.url, MediaDocument, { id: m.id }, { token })).media!;
    expect(after.version).toBe(4);
    expect(Date.parse(after.updatedAt)).toBeGreaterThanOrEqual(Date.parse(before.updatedAt));

    // The first entity lost the media and its PRIMARY_PHOTO, but the other media keeps its AVATAR there.
    const e1 = (await ok(app.url, EntityDocument, { type: 'property', id: 'ad-1' }, { token })).entity;
    expect(e1.media.nodes.map((n) => n.id)).toEqual([other.id]);
    expect(e1.media.totalCount).toBe(1);
    expect(e1.primary).toBeNull();
    expect(e1.roles).toEqual([{ role: 'AVATAR', media: { id: other.id } }]);
    expect((await ok(app.url, MediaByRoleDocument, { entity: unit('ad-2'), role: 'PRIMARY_PHOTO' }, { token })).mediaByRole?.id).toBe(m.id);
    expect((await ok(app.url, MediaDocument, { id: other.id }, { token })).media).toMatchObject({ version: 1, roles: [{ role: 'AVATAR', entity: property('ad-1') }] });

    // Attaching back works and bumps again.
    const again = (await ok(app.url, AttachMediaDocument, { id: m.id, entity: property('ad-1') }, { token })).attachMedia;
    expect(again.version).toBe(5);
    expect(new Set(again.entities.map((e) => `${e.type}/${e.id}`))).toEqual(new Set(['property/ad-1', 'unit/ad-2']));
  });
});

describe('roles', () => {
  it('assignRole moves a role from one media to another; clearRole removes it once', async () => {
    const { token } = await tenantWithToken('ro');
    const entity = property('r-1');
    const x = await upload(token, await png(24, 24, 'x.png'), entity, { role: 'PRIMARY_PHOTO' });
    const y = await upload(token, await png(24, 24, 'y.png'), entity);
    expect((await ok(app.url, MediaByRoleDocument, { entity, role: 'PRIMARY_PHOTO' }, { token })).mediaByRole?.id).toBe(x.id);
    const firstAssigned = (await ok(app.url, EntityDocument, { type: 'property', id: 'r-1' }, { token })).entity;
    expect(firstAssigned.primary?.id).toBe(x.id);

    const { assignRole } = await ok(app.url, AssignRoleDocument, { entity, mediaId: y.id, role: 'PRIMARY_PHOTO' }, { token });
    expect(assignRole).toMatchObject({ role: 'PRIMARY_PHOTO', entity, media: { id: y.id, version: 2 } });
    expect(Number.isNaN(Date.parse(assignRole.assignedAt))).toBe(false);

    expect((await ok(app.url, MediaByRoleDocument, { entity, role: 'PRIMARY_PHOTO' }, { token })).mediaByRole).toEqual({ id: y.id, fileName: 'y.png' });
    expect((await ok(app.url, MediaDocument, { id: x.id }, { token })).media?.roles).toEqual([]);
    expect((await ok(app.url, MediaDocument, { id: y.id }, { token })).media?.roles).toEqual([{ role: 'PRIMARY_PHOTO', entity }]);
    const e = (await ok(app.url, EntityDocument, { type: 'property', id: 'r-1' }, { token })).entity;
    expect(e.primary?.id).toBe(y.id);
    expect(e.roles).toEqual([{ role: 'PRIMARY_PHOTO', media: { id: y.id } }]);
    // Both stay attached.
    expect(e.media.totalCount).toBe(2);

    // Assigning the same holder again keeps one holder.
    await ok(app.url, AssignRoleDocument, { entity, mediaId: y.id, role: 'PRIMARY_PHOTO' }, { token });
    expect((await ok(app.url, EntityDocument, { type: 'property', id: 'r-1' }, { token })).entity.roles).toEqual([{ role: 'PRIMARY_PHOTO', media: { id: y.id } }]);

    expect((await ok(app.url, ClearRoleDocument, { entity, role: 'PRIMARY_PHOTO' }, { token })).clearRole).toBe(true);
    expect((await ok(app.url, MediaByRoleDocument, { entity, role: 'PRIMARY_PHOTO' }, { token })).mediaByRole).toBeNull();
    expect((await ok(app.url, MediaDocument, { id: y.id }, { token })).media?.roles).toEqual([]);
    expect((await ok(app.url, ClearRoleDocument, { entity, role: 'PRIMARY_PHOTO' }, { token })).clearRole).toBe(false);
    // Clearing a role does not detach the media.
    expect((await ok(app.url, MediaForEntityDocument, { entity }, { token })).mediaForEntity.totalCount).toBe(2);
  });

  it('assignRole attaches a media that is not yet attached to the entity', async () => {
    const { token } = await tenantWithToken('ro');
    const z = await upload(token, await png(24, 24, 'z.png'), property('r-2'));
    const target = unit('r-3');
    expect((await ok(app.url, MediaForEntityDocument, { entity: target }, { token })).mediaForEntity.totalCount).toBe(0);

    const { assignRole } = await ok(app.url, AssignRoleDocument, { entity: target, mediaId: z.id, role: 'AVATAR' }, { token });
    expect(assignRole).toMatchObject({ role: 'AVATAR', entity: target, media: { id: z.id } });
    expect(assignRole.media.version).toBeGreaterThan(1);

    const media = (await ok(app.url, MediaDocument, { id: z.id }, { token })).media!;
    expect(media.entities).toEqual([property('r-2'), target]);
    expect(media.roles).toEqual([{ role: 'AVATAR', entity: target }]);
    const list = (await ok(app.url, MediaForEntityDocument, { entity: target }, { token })).mediaForEntity;
    expect(list.nodes.map((n) => n.id)).toEqual([z.id]);
    expect(list.totalCount).toBe(1);
    expect((await ok(app.url, MediaByRoleDocument, { entity: target, role: 'AVATAR' }, { token })).mediaByRole?.id).toBe(z.id);
  });
});

describe('deleteMedia', () => {
  it('removes the media from every read at once and purges its stored objects', async () => {
    const { tenant, token } = await tenantWithToken('dm');
    const doomed = await upload(token, await jpeg(400, 300, 'doomed-photo.jpg'), property('d-1'), { tags: ['doomed', 'shared'], role: 'PRIMARY_PHOTO' });
    await ok(app.url, AttachMediaDocument, { id: doomed.id, entity: unit('d-2') }, { token });
    const keeper = await upload(token, pdf(1, 'keeper.pdf'), property('d-1'), { tags: ['shared'] });
    expect(doomed.variants.map((v) => v.name)).toEqual(['THUMB']);
    // Its THUMB is rendered (and stored beside the original) on its first request.
    expect((await fetch(`${app.url}/media/${doomed.id}/variants/THUMB`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);

    const keysBefore = (await storedKeys(app, tenant)).filter((k) => k.startsWith(`${tenant}/${doomed.id}/`)).sort();
    expect(keysBefore).toEqual([`${tenant}/${doomed.id}/original`, expect.stringMatching(new RegExp(`^${tenant}/${doomed.id}/r-[0-9a-f]{32}$`))]);
    const dir = path.join(app.dataDir, 'blobs', tenant, doomed.id);
    if (STORAGE_DRIVER === 'local') expect((await readdir(dir)).sort()).toEqual(['original', expect.stringMatching(/^r-[0-9a-f]{32}$/)]);

    expect((await ok(app.url, DeleteMediaDocument, { id: doomed.id }, { token })).deleteMedia).toBe(true);

    expect((await ok(app.url, MediaDocument, { id: doomed.id }, { token })).media).toBeNull();
    const d1 = (await ok(app.url, MediaForEntityDocument, { entity: property('d-1') }, { token })).mediaForEntity;
    expect(d1.nodes.map((n) => n.id)).toEqual([keeper.id]);
    expect(d1.totalCount).toBe(1);
    expect((await ok(app.url, MediaForEntityDocument, { entity: unit('d-2') }, { token })).mediaForEntity).toMatchObject({ nodes: [], totalCount: 0 });
    expect((await ok(app.url, SearchByTagsDocument, { tags: ['doomed'] }, { token })).searchByTags).toMatchObject({ nodes: [], totalCount: 0 });
    const shared = (await ok(app.url, SearchByTagsDocument, { tags: ['shared'], matchAll: false }, { token })).searchByTags;
    expect(shared.nodes.map((n) => n.id)).toEqual([keeper.id]);
    expect(shared.totalCount).toBe(1);
    const lib = (await ok(app.url, MediaLibraryDocument, {}, { token })).mediaLibrary;
    expect(lib.items.map((i) => i.id)).toEqual([keeper.id]);
    expect(lib.total).toBe(1);
    expect((await ok(app.url, MediaLibraryDocument, { search: 'doomed' }, { token })).mediaLibrary).toMatchObject({ items: [], total: 0 });
    expect((await ok(app.url, MediaByRoleDocument, { entity: property('d-1'), role: 'PRIMARY_PHOTO' }, { token })).mediaByRole).toBeNull();
    expect((await ok(app.url, EntityDocument, { type: 'property', id: 'd-1' }, { token })).entity.roles).toEqual([]);

    // Its objects are gone from storage (the local driver: the directory under blobs/).
    expect((await storedKeys(app, tenant)).filter((k) => k.includes(doomed.id))).toEqual([]);
    expect(await app.services.storage.head(`${tenant}/${doomed.id}/original`)).toBeNull();
    if (STORAGE_DRIVER === 'local') await expect(stat(dir)).rejects.toMatchObject({ code: 'ENOENT' });
    // The keeper's objects are untouched.
    expect(await app.services.storage.head(`${tenant}/${keeper.id}/original`)).toEqual({ size: keeper.fileSize });

    // Content is no longer served, and a second delete is NOT_FOUND.
    const res = await fetch(`${app.url}${doomed.contentPath}`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(404);
    await res.arrayBuffer();
    expect(codeOf(await gql(app.url, DeleteMediaDocument, { id: doomed.id }, { token }))).toBe('NOT_FOUND');
  });
});

describe('mediaLibrary', () => {
  let token: string;
  const names = ['Annual-REPORT.pdf', 'report_final.pdf', 'photo-1.png', 'Photo-2.png', '100%_done.pdf', 'a_b.pdf', 'axb.pdf', '1000_done.pdf'];
  const byName = new Map<string, string>();

  beforeAll(async () => {
    ({ token } = await tenantWithToken('ml'));
    const inputs = await Promise.all(
      names.map(async (name, i) => ({ file: name.endsWith('.png') ? await png(16, 16, name) : pdf(1, name), entity: property(`ml-${i % 3}`) })),
    );
    const { uploadMany } = await ok(app.url, UploadManyDocument, { inputs }, { token });
    for (const m of uploadMany) byName.set(m.fileName, m.id);
    expect([...byName.keys()]).toEqual(names);
  });

  const library = async (vars: { page?: number; pageSize?: number; kind?: MediaKind; search?: string }) =>
    (await ok(app.url, MediaLibraryDocument, vars, { token })).mediaLibrary;
  const namesOf = (items: { fileName: string }[]) => items.map((i) => i.fileName).sort();

  it('pages by number with pageSize and an exact total', async () => {
    const all = await library({ pageSize: 100 });
    expect(all.total).toBe(8);
    expect(namesOf(all.items)).toEqual([...names].sort());

    const def = await library({});
    expect(def).toMatchObject({ page: 1, pageSize: 10, total: 8 });
    expect(def.items.map((i) => i.id)).toEqual(all.items.map((i) => i.id));

    const pages = [];
    for (let page = 1; page <= 3; page++) {
      const p = await library({ page, pageSize: 3 });
      expect(p).toMatchObject({ page, pageSize: 3, total: 8 });
      pages.push(p.items);
    }
    expect(pages.map((p) => p.length)).toEqual([3, 3, 2]);
    // The pages are consecutive slices of one newest-first order, with no overlap or gap.
    expect(pages.flat().map((i) => i.id)).toEqual(all.items.map((i) => i.id));
    const beyond = await library({ page: 4, pageSize: 3 });
    expect(beyond).toMatchObject({ items: [], total: 8, page: 4, pageSize: 3 });
  });

  it('filters by kind', async () => {
    const images = await library({ kind: 'IMAGE' });
    expect(namesOf(images.items)).toEqual(['Photo-2.png', 'photo-1.png']);
    expect(images.items.every((i) => i.kind === 'IMAGE')).toBe(true);
    expect(images.total).toBe(2);
    const docs = await library({ kind: 'DOCUMENT', pageSize: 4 });
    expect(docs.total).toBe(6);
    expect(docs.items).toHaveLength(4);
    expect(docs.items.every((i) => i.kind === 'DOCUMENT')).toBe(true);
    expect(await library({ kind: 'VIDEO' })).toMatchObject({ items: [], total: 0 });
  });

  it('searches file names case-insensitively, combined with kind and paging', async () => {
    const report = await library({ search: 'report' });
    expect(namesOf(report.items)).toEqual(['Annual-REPORT.pdf', 'report_final.pdf']);
    expect(report.total).toBe(2);
    expect(namesOf((await library({ search: 'PHOTO' })).items)).toEqual(['Photo-2.png', 'photo-1.png']);
    expect(namesOf((await library({ search: 'Photo-1' })).items)).toEqual(['photo-1.png']);
    expect(namesOf((await library({ search: 'photo', kind: 'DOCUMENT' })).items)).toEqual([]);
    expect(namesOf((await library({ search: '.PNG', kind: 'IMAGE' })).items)).toEqual(['Photo-2.png', 'photo-1.png']);
    const paged = await library({ search: 'pdf', pageSize: 4, page: 2 });
    expect(paged).toMatchObject({ total: 6, page: 2, pageSize: 4 });
    expect(paged.items).toHaveLength(2);
    expect(await library({ search: 'nothing-like-this' })).toMatchObject({ items: [], total: 0 });
  });

  it('treats % and _ in the search as literal characters', async () => {
    // As LIKE wildcards, "%" would match every name and "_" any character.
    const percent = await library({ search: '%' });
    expect(namesOf(percent.items)).toEqual(['100%_done.pdf']);
    expect(percent.total).toBe(1);
    expect(namesOf((await library({ search: '0%' })).items)).toEqual(['100%_done.pdf']);
    const underscore = await library({ search: '_' });
    expect(namesOf(underscore.items)).toEqual(['1000_done.pdf', '100%_done.pdf', 'a_b.pdf', 'report_final.pdf'].sort());
    expect(underscore.total).toBe(4);
    expect(namesOf((await library({ search: 'a_b' })).items)).toEqual(['a_b.pdf']);
    expect(namesOf((await library({ search: '%_' })).items)).toEqual(['100%_done.pdf']);
    expect(namesOf((await library({ search: '\\' })).items)).toEqual([]);
  });
});

describe('mediaPolicies', () => {
  it('lists the five default entity types with their levels, allowed types and sizes', async () => {
    const { token } = await tenantWithToken('po');
    const { mediaPolicies } = await ok(app.url, MediaPoliciesDocument, {}, { token });
    const MiB = 1024 * 1024;
    const images = ['image/jpeg', 'image/png', 'image/gif', 'image/webp'];
    const office = [
      'application/msword',
      'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
      'application/vnd.ms-excel',
      'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
    ];
    const byType = new Map(mediaPolicies.map((p) => [p.entityType, { ...p, allowedMediaTypes: [...p.allowedMediaTypes].sort() }]));
    expect([...byType.keys()].sort()).toEqual(['company', 'lease', 'person', 'property', 'unit']);
    expect(mediaPolicies).toHaveLength(5);
    const want = (entityType: string, securityLevel: string, allowed: string[], maxFileSize: number) => ({
      entityType,
      securityLevel,
      allowedMediaTypes: [...allowed].sort(),
      maxFileSize,
    });
    expect(byType.get('property')).toEqual(want('property', 'STANDARD', [...images, 'application/pdf', 'video/mp4'], 100 * MiB));
    expect(byType.get('unit')).toEqual(want('unit', 'STANDARD', [...images, 'application/pdf', 'video/mp4'], 100 * MiB));
    expect(byType.get('person')).toEqual(want('person', 'SENSITIVE', [...images, 'application/pdf'], 10 * MiB));
    expect(byType.get('lease')).toEqual(want('lease', 'CRITICAL', ['application/pdf', ...images], 20 * MiB));
    expect(byType.get('company')).toEqual(want('company', 'STANDARD', [...images, 'application/pdf', ...office], 20 * MiB));
  });
});
