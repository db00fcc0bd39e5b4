import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AssignRoleDocument, AttachMediaDocument, EntitiesWithMediaAndRolesDocument, UploadDocument } from '../generated/graphql.js';
import type { EntitiesWithMediaAndRolesQuery, MediaRole } from '../generated/graphql.js';
import { startTestApp, newTenant, type TestApp } from '../helpers/app.js';
import { ok } from '../helpers/client.js';
import { pdf, png } from '../helpers/files.js';

/**
 * SPEC 14 "Batching": listing media with roles for 100 entities costs a constant
 * number of SQL statements (at most 4), the same as for 2 entities. The count is
 * read from the app's pg pool (every statement Prisma or raw SQL sends passes it).
 */

const ENTITY_COUNT = 100;
const MEDIA_COUNT = 5;

let app: TestApp;
let tenant: string;
let token: string;
/** The uploaded media, oldest first. */
const media: { id: string; fileName: string; createdAt: string; tags: string[] }[] = [];
/** What each entity must list: attached media ids and roles. */
const expected = new Map<string, { mediaIds: Set<string>; roles: Map<MediaRole, string> }>();

const entityId = (i: number) => `b-${String(i).padStart(3, '0')}`;

/** Runs `fn` over `items` with at most `limit` in flight. */
async function pool<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

beforeAll(async () => {
  app = await startTestApp();
  tenant = newTenant('bat');
  token = await app.token(tenant);
  // A few small files uploaded to a source entity, one request each (distinct createdAt).
  for (let k = 0; k < MEDIA_COUNT; k++) {
    const file = k % 2 === 0 ? pdf(1, `doc-${k}.pdf`) : await png(32, 32, `img-${k}.png`);
    const { upload } = await ok(app.url, UploadDocument, { input: { file, entity: { type: 'property', id: 'source' }, tags: [`t${k}`, 'batch'] } }, { token });
    media.push({ id: upload.id, fileName: upload.fileName, createdAt: upload.createdAt, tags: upload.tags });
  }
  // Spread them over 100 property entities: entity i gets media i%5 attached and
  // media (i+1)%5 as PRIMARY_PHOTO (assignRole attaches it); every third entity
  // also gets media i%5 as AVATAR.
  const ops: (() => Promise<void>)[] = [];
  for (let i = 0; i < ENTITY_COUNT; i++) {
    const entity = { type: 'property', id: entityId(i) };
    const a = media[i % MEDIA_COUNT]!.id;
    const b = media[(i + 1) % MEDIA_COUNT]!.id;
    const roles = new Map<MediaRole, string>([['PRIMARY_PHOTO', b]]);
    if (i % 3 === 0) roles.set('AVATAR', a);
    expected.set(entity.id, { mediaIds: new Set([a, b]), roles });
    ops.push(async () => {
      await ok(app.url, AttachMediaDocument, { id: a, entity }, { token });
      await ok(app.url, AssignRoleDocument, { entity, mediaId: b, role: 'PRIMARY_PHOTO' }, { token });
      if (i % 3 === 0) await ok(app.url, AssignRoleDocument, { entity, mediaId: a, role: 'AVATAR' }, { token });
    });
  }
  await pool(ops, 4, (op) => op());
}, 120_000);

afterAll(() => app?.close());

/** Runs the query for the first `n` entities and returns its data and the number of SQL statements it cost. */
async function measure(n: number): Promise<{ data: EntitiesWithMediaAndRolesQuery; statements: number }> {
  const refs = Array.from({ length: n }, (_, i) => ({ type: 'property', id: entityId(i) }));
  const before = app.services.db.statementCount();
  const data = await ok(app.url, EntitiesWithMediaAndRolesDocument, { refs }, { token });
  const statements = app.services.db.statementCount() - before;
  return { data, statements };
}

function checkData(data: EntitiesWithMediaAndRolesQuery, n: number): void {
  expect(data.entities).toHaveLength(n);
  const byId = new Map(media.map((m) => [m.id, m]));
  data.entities.forEach((e, i) => {
    expect(e.type).toBe('property');
    expect(e.id).toBe(entityId(i));
    const want = expected.get(e.id)!;
    // Newest first: media were uploaded one after the other, so a higher index is newer.
    const wantOrder = [...want.mediaIds].sort((x, y) => media.findIndex((m) => m.id === y) - media.findIndex((m) => m.id === x));
    expect(e.media.nodes.map((m) => m.id)).toEqual(wantOrder);
    expect(e.media.totalCount).toBe(2);
    for (const node of e.media.nodes) {
      expect(node.fileName).toBe(byId.get(node.id)!.fileName);
      expect(node.tags).toEqual(byId.get(node.id)!.tags);
    }
    // Roles are listed in role order (enum order: AVATAR before PRIMARY_PHOTO).
    expect(e.roles.map((r) => [r.role, r.media.id, r.media.fileName])).toEqual(
      [...want.roles.entries()].sort(([x], [y]) => x.localeCompare(y)).map(([role, id]) => [role, id, byId.get(id)!.fileName]),
    );
    for (const r of e.roles) expect(Number.isNaN(Date.parse(r.assignedAt))).toBe(false);
  });
}

describe('batching (DataLoader)', () => {
  it('serves media and roles of 100 entities with as many SQL statements as for 2, and at most 4', async () => {
    // Warm-up so that nothing first-time (connections, prepared plans) is counted.
    await measure(2);
    await measure(ENTITY_COUNT);

    // Several rounds, alternating: the count must not depend on which batch finishes first either.
    const small: number[] = [];
    const large: number[] = [];
    for (let round = 0; round < 5; round++) {
      const s = await measure(2);
      const l = await measure(ENTITY_COUNT);
      if (round === 0) {
        checkData(s.data, 2);
        checkData(l.data, ENTITY_COUNT);
      }
      small.push(s.statements);
      large.push(l.statements);
    }
    console.log(`SQL statements for EntitiesWithMediaAndRoles: 2 entities -> ${small.join(', ')}; ${ENTITY_COUNT} entities -> ${large.join(', ')}`);

    const count = small[0]!;
    expect(count).toBeGreaterThan(0);
    expect(small).toEqual(small.map(() => count));
    expect(large).toEqual(large.map(() => count));
    expect(count).toBeLessThanOrEqual(4);
  });

  it('keeps the count constant when role holders are not in the media page', async () => {
    // media(first: 10) shows at most 10 media; an entity with 12 attached media
    // whose AVATAR is the oldest one must still resolve the holder in a batch.
    const extra: string[] = [];
    for (let k = 0; k < 12; k++) {
      const { upload } = await ok(app.url, UploadDocument, { input: { file: pdf(1, `many-${k}.pdf`), entity: { type: 'unit', id: 'crowded' } } }, { token });
      extra.push(upload.id);
    }
    await ok(app.url, AssignRoleDocument, { entity: { type: 'unit', id: 'crowded' }, mediaId: extra[0]!, role: 'AVATAR' }, { token });
    const refs = (n: number) => [{ type: 'unit', id: 'crowded' }, ...Array.from({ length: n - 1 }, (_, i) => ({ type: 'property', id: entityId(i) }))];

    const run = async (n: number) => {
      const before = app.services.db.statementCount();
      const data = await ok(app.url, EntitiesWithMediaAndRolesDocument, { refs: refs(n) }, { token });
      return { data, statements: app.services.db.statementCount() - before };
    };
    const small = await run(2);
    const large = await run(ENTITY_COUNT);
    console.log(`SQL statements with an off-page role holder: 2 entities -> ${small.statements}; ${ENTITY_COUNT} entities -> ${large.statements}`);

    const crowded = large.data.entities[0]!;
    expect(crowded.media.totalCount).toBe(12);
    expect(crowded.media.nodes.map((n) => n.id)).toEqual(extra.slice(2).reverse());
    expect(crowded.roles.map((r) => [r.role, r.media.id, r.media.fileName])).toEqual([['AVATAR', extra[0], 'many-0.pdf']]);
    expect(large.data.entities).toHaveLength(ENTITY_COUNT);
    expect(large.statements).toBe(small.statements);
    expect(large.statements).toBeLessThanOrEqual(4);
  });
});
