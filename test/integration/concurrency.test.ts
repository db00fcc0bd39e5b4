// Concurrent role assignments (SPEC 6, 15): one holder per (tenant, entity, role),
// and no call fails, whatever the interleaving. Real HTTP, real PostgreSQL.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  FltAssignRoleDocument,
  FltMediaByRoleDocument,
  FltMediaDocument,
  FltMediaForEntityDocument,
  FltUploadDocument,
  FltUploadManyDocument,
} from '../generated/graphql.js';
import { newTenant, startTestApp, type TestApp } from '../helpers/app.js';
import { gql, ok, type GqlResult } from '../helpers/client.js';
import { png } from '../helpers/files.js';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(() => app?.close());

const N = 20;

/** Uploads `n` small PNGs attached to `entity` (in batches, all-or-nothing each) and returns their ids. */
async function uploadMedia(token: string, entity: { type: string; id: string }, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let start = 0; start < n; start += 10) {
    const count = Math.min(10, n - start);
    const inputs = await Promise.all(Array.from({ length: count }, async (_, i) => ({ file: await png(24 + start + i, 16, `m${start + i}.png`), entity })));
    const { uploadMany } = await ok(app.url, FltUploadManyDocument, { inputs }, { token });
    ids.push(...uploadMany.map((m) => m.id));
  }
  return ids;
}

async function roleRows(tenant: string, entity: { type: string; id: string }, role: 'PRIMARY_PHOTO' | 'AVATAR') {
  return app.db.prisma.mediaRoleAssignment.findMany({ where: { tenantId: tenant, entityType: entity.type, entityId: entity.id, role } });
}

/** Every response succeeded: no error of any kind (an INTERNAL_SERVER_ERROR least of all). */
function expectAllSucceeded<T>(results: GqlResult<T>[]): T[] {
  const failures = results.filter((r) => r.errors?.length || !r.data).map((r) => r.errors);
  expect(failures, JSON.stringify(failures)).toEqual([]);
  return results.map((r) => r.data!);
}

describe('concurrent assignRole for one entity and role', () => {
  it(`${N} calls naming ${N} different attached media all succeed and leave exactly one holder`, async () => {
    const tenant = newTenant('ca');
    const token = await app.token(tenant);
    const entity = { type: 'property', id: 'house-1' };
    const ids = await uploadMedia(token, entity, N);
    expect(new Set(ids).size).toBe(N);

    const results = await Promise.all(ids.map((mediaId) => gql(app.url, FltAssignRoleDocument, { entity, mediaId, role: 'PRIMARY_PHOTO' }, { token })));
    const data = expectAllSucceeded(results);
    // Each call reports the media it assigned.
    expect(data.map((d) => d.assignRole.media.id)).toEqual(ids);
    for (const d of data) expect(d.assignRole).toMatchObject({ role: 'PRIMARY_PHOTO', entity });

    const rows = await roleRows(tenant, entity, 'PRIMARY_PHOTO');
    expect(rows).toHaveLength(1);
    const holder = rows[0]!.mediaId;
    expect(ids).toContain(holder);
    const { mediaByRole } = await ok(app.url, FltMediaByRoleDocument, { entity, role: 'PRIMARY_PHOTO' }, { token });
    expect(mediaByRole?.id).toBe(holder);
    // Nothing else changed: still N media attached, one attachment each.
    const { mediaForEntity } = await ok(app.url, FltMediaForEntityDocument, { entity, first: 100 }, { token });
    expect(mediaForEntity.totalCount).toBe(N);
    expect(await app.db.prisma.mediaAttachment.count({ where: { tenantId: tenant } })).toBe(N);

    // A second round on the same row, now contended from an existing holder, behaves the same.
    const again = await Promise.all([...ids].reverse().map((mediaId) => gql(app.url, FltAssignRoleDocument, { entity, mediaId, role: 'PRIMARY_PHOTO' }, { token })));
    expectAllSucceeded(again);
    const after = await roleRows(tenant, entity, 'PRIMARY_PHOTO');
    expect(after).toHaveLength(1);
    const { mediaByRole: finalHolder } = await ok(app.url, FltMediaByRoleDocument, { entity, role: 'PRIMARY_PHOTO' }, { token });
    expect(finalHolder?.id).toBe(after[0]!.mediaId);
  });

  it(`${N} calls naming ${N} media not yet attached: each is attached, one holder`, async () => {
    const tenant = newTenant('cn');
    const token = await app.token(tenant);
    const elsewhere = { type: 'unit', id: 'storage-room' };
    const entity = { type: 'property', id: 'house-2' };
    const ids = await uploadMedia(token, elsewhere, N);
    expect((await ok(app.url, FltMediaForEntityDocument, { entity, first: 100 }, { token })).mediaForEntity.totalCount).toBe(0);

    const results = await Promise.all(ids.map((mediaId) => gql(app.url, FltAssignRoleDocument, { entity, mediaId, role: 'PRIMARY_PHOTO' }, { token })));
    expectAllSucceeded(results);

    const rows = await roleRows(tenant, entity, 'PRIMARY_PHOTO');
    expect(rows).toHaveLength(1);
    expect(ids).toContain(rows[0]!.mediaId);
    const { mediaByRole } = await ok(app.url, FltMediaByRoleDocument, { entity, role: 'PRIMARY_PHOTO' }, { token });
    expect(mediaByRole?.id).toBe(rows[0]!.mediaId);

    // assignRole attached every one of them to the entity, and left the old attachment alone.
    const { mediaForEntity } = await ok(app.url, FltMediaForEntityDocument, { entity, first: 100 }, { token });
    expect(mediaForEntity.totalCount).toBe(N);
    expect(new Set(mediaForEntity.nodes.map((m) => m.id))).toEqual(new Set(ids));
    expect((await ok(app.url, FltMediaForEntityDocument, { entity: elsewhere, first: 100 }, { token })).mediaForEntity.totalCount).toBe(N);
    const { media } = await ok(app.url, FltMediaDocument, { id: ids[0]! }, { token });
    expect(media?.entities).toEqual(expect.arrayContaining([elsewhere, entity]));
  });

  it('concurrent calls for different roles and entities do not disturb each other', async () => {
    const tenant = newTenant('cd');
    const token = await app.token(tenant);
    const a = { type: 'property', id: 'a' };
    const b = { type: 'property', id: 'b' };
    const ids = await uploadMedia(token, a, 10);
    const calls = ids.flatMap((mediaId) => [
      gql(app.url, FltAssignRoleDocument, { entity: a, mediaId, role: 'PRIMARY_PHOTO' }, { token }),
      gql(app.url, FltAssignRoleDocument, { entity: a, mediaId, role: 'AVATAR' }, { token }),
      gql(app.url, FltAssignRoleDocument, { entity: b, mediaId, role: 'PRIMARY_PHOTO' }, { token }),
    ]);
    expectAllSucceeded(await Promise.all(calls));
    for (const [entity, role] of [
      [a, 'PRIMARY_PHOTO'],
      [a, 'AVATAR'],
      [b, 'PRIMARY_PHOTO'],
    ] as const) {
      const rows = await roleRows(tenant, entity, role);
      expect(rows).toHaveLength(1);
      const { mediaByRole } = await ok(app.url, FltMediaByRoleDocument, { entity, role }, { token });
      expect(mediaByRole?.id).toBe(rows[0]!.mediaId);
    }
    expect(await app.db.prisma.mediaRoleAssignment.count({ where: { tenantId: tenant } })).toBe(3);
  });
});

describe('concurrent uploads with a role', () => {
  it('8 uploads at once with PRIMARY_PHOTO for the same entity all succeed, one holder', async () => {
    const tenant = newTenant('cu');
    const token = await app.token(tenant);
    const entity = { type: 'property', id: 'house-3' };
    const files = await Promise.all(Array.from({ length: 8 }, (_, i) => png(40 + i, 30, `p${i}.png`)));
    const results = await Promise.all(files.map((file) => gql(app.url, FltUploadDocument, { input: { file, entity, role: 'PRIMARY_PHOTO' } }, { token })));
    const data = expectAllSucceeded(results);
    const ids = data.map((d) => d.upload.id);
    expect(new Set(ids).size).toBe(8);
    // Roles are read after the commit: each upload shows the role, or nothing when a later one already took it.
    for (const d of data) expect([[], [{ role: 'PRIMARY_PHOTO', entity }]]).toContainEqual(d.upload.roles);

    const rows = await roleRows(tenant, entity, 'PRIMARY_PHOTO');
    expect(rows).toHaveLength(1);
    expect(ids).toContain(rows[0]!.mediaId);
    const { mediaByRole } = await ok(app.url, FltMediaByRoleDocument, { entity, role: 'PRIMARY_PHOTO' }, { token });
    expect(mediaByRole?.id).toBe(rows[0]!.mediaId);
    const { mediaForEntity } = await ok(app.url, FltMediaForEntityDocument, { entity, first: 100 }, { token });
    expect(mediaForEntity.totalCount).toBe(8);
  });

  it('uploads and assignRole calls racing for the same role end with one holder and no error', async () => {
    const tenant = newTenant('cm');
    const token = await app.token(tenant);
    const entity = { type: 'property', id: 'house-4' };
    const existing = await uploadMedia(token, entity, 6);
    const files = await Promise.all(Array.from({ length: 6 }, (_, i) => png(60 + i, 30, `n${i}.png`)));
    const results = await Promise.all([
      ...files.map((file) => gql(app.url, FltUploadDocument, { input: { file, entity, role: 'PRIMARY_PHOTO' } }, { token })),
      ...existing.map((mediaId) => gql(app.url, FltAssignRoleDocument, { entity, mediaId, role: 'PRIMARY_PHOTO' }, { token })),
    ]);
    expectAllSucceeded(results as GqlResult<unknown>[]);
    const rows = await roleRows(tenant, entity, 'PRIMARY_PHOTO');
    expect(rows).toHaveLength(1);
    const { mediaByRole } = await ok(app.url, FltMediaByRoleDocument, { entity, role: 'PRIMARY_PHOTO' }, { token });
    expect(mediaByRole?.id).toBe(rows[0]!.mediaId);
    expect((await ok(app.url, FltMediaForEntityDocument, { entity, first: 100 }, { token })).mediaForEntity.totalCount).toBe(12);
  });
});
