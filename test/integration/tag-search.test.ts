import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SearchByTagsDocument, type SearchByTagsQuery } from '../generated/graphql.js';
import { newTenant, startTestApp, STORAGE_DRIVER, type TestApp } from '../helpers/app.js';
import { ok } from '../helpers/client.js';
import { TAG_SEARCH_WINDOW } from '../../src/modules/media/media.repository.js';

// searchByTags answers from the newest rows when its page is among them, else from
// the tenant-scoped GIN index (media.repository.ts). A tenant with more rows than
// the window, written with SQL, and every answer compared with plain SQL: tags
// dense enough for the first step, sparse ones for the second, absent ones, a tag
// frequent only in another tenant, match-all and match-any, page after page.

let app: TestApp;
let tenant: string;
let other: string;
const ROWS = TAG_SEARCH_WINDOW + 1500;

beforeAll(async () => {
  app = await startTestApp();
  tenant = newTenant();
  other = newTenant();
  const seed = (t: string, rows: number, extra: string) =>
    app.db.prisma.$executeRawUnsafe(
      `INSERT INTO media (id, tenant_id, file_name, media_type, kind, file_size, checksum, security_level, storage_key, tags, created_at)
       SELECT gen_random_uuid(), $1, 'f' || g || '.jpg', 'image/jpeg', 'IMAGE', 1, md5(g::text), 'STANDARD', $1 || '/' || g,
              array_remove(ARRAY[
                CASE WHEN g % 3 = 0 THEN 'dense' END,
                CASE WHEN g % 997 = 5 THEN 'sparse' END,
                CASE WHEN g % 2 = 0 THEN 'even' END,
                CASE WHEN g % 2 = 1 THEN 'odd' END,
                ${extra}
              ], NULL),
              -- a few equal timestamps, so the order falls back to the id
              now() - ((g / 3) || ' seconds')::interval
       FROM generate_series(1, $2) AS g`,
      t,
      rows,
    );
  await seed(tenant, ROWS, `CASE WHEN g = 4242 THEN 'deleted' END`);
  await seed(other, 3000, `'elsewhere'`);
  // A deleted media never shows.
  await app.db.prisma.$executeRawUnsafe(`UPDATE media SET deleted_at = now() WHERE tenant_id = $1 AND 'deleted' = ANY(tags)`, tenant);
}, 120_000);
afterAll(() => app?.close());

async function expected(tags: string[], matchAll: boolean): Promise<string[]> {
  const rows = await app.db.prisma.$queryRawUnsafe<{ id: string }[]>(
    `SELECT id FROM media WHERE tenant_id = $1 AND deleted_at IS NULL AND tags ${matchAll ? '@>' : '&&'} $2::text[] ORDER BY created_at DESC, id DESC`,
    tenant,
    tags,
  );
  return rows.map((r) => r.id);
}

/** Every page of the search, through GraphQL. */
async function allPages(token: string, tags: string[], matchAll: boolean, first: number): Promise<{ ids: string[]; pages: number; totals: number[] }> {
  const ids: string[] = [];
  const totals: number[] = [];
  let after: string | null = null;
  let pages = 0;
  for (;;) {
    const res: SearchByTagsQuery = await ok(app.url, SearchByTagsDocument, { tags, matchAll, first, after }, { token });
    const s = res.searchByTags;
    ids.push(...s.nodes.map((n) => n.id));
    totals.push(s.totalCount);
    pages++;
    if (!s.pageInfo.hasNextPage) break;
    expect(s.nodes).toHaveLength(first);
    after = s.pageInfo.endCursor!;
    if (pages > 200) throw new Error('too many pages');
  }
  return { ids, pages, totals };
}

describe(`searchByTags over more rows than its window (${STORAGE_DRIVER})`, () => {
  it.each([
    { tags: ['sparse'], matchAll: true, first: 3 },
    { tags: ['dense', 'sparse'], matchAll: true, first: 2 },
    { tags: ['sparse', 'elsewhere'], matchAll: false, first: 4 },
    { tags: ['even', 'odd'], matchAll: true, first: 50 },
    { tags: ['elsewhere'], matchAll: true, first: 50 },
    { tags: ['deleted'], matchAll: true, first: 50 },
  ])('$tags (matchAll $matchAll), page by page', async ({ tags, matchAll, first }) => {
    const token = await app.token(tenant);
    const want = await expected(tags, matchAll);
    const got = await allPages(token, tags, matchAll, first);
    expect(got.ids).toEqual(want);
    expect(new Set(got.totals)).toEqual(new Set([want.length]));
  });

  it('pages of a dense tag, from the newest rows and past the window', async () => {
    const token = await app.token(tenant);
    const want = await expected(['dense'], true);
    expect(want.length).toBeGreaterThan(TAG_SEARCH_WINDOW / 3 - 1);
    // The first pages come from the window; a cursor deep in the table starts a new one.
    const first = await ok(app.url, SearchByTagsDocument, { tags: ['dense'], first: 100 }, { token });
    expect(first.searchByTags.nodes.map((n) => n.id)).toEqual(want.slice(0, 100));
    const got = await allPages(token, ['dense'], true, 100);
    expect(got.ids).toEqual(want);
  });

  it('a tag frequent in another tenant only: nothing, and no other tenant row', async () => {
    const token = await app.token(tenant);
    const { searchByTags: s } = await ok(app.url, SearchByTagsDocument, { tags: ['elsewhere'] }, { token });
    expect(s.nodes).toEqual([]);
    expect(s.totalCount).toBe(0);
    const theirs = await ok(app.url, SearchByTagsDocument, { tags: ['elsewhere'], first: 5 }, { token: await app.token(other) });
    expect(theirs.searchByTags.totalCount).toBe(3000);
    expect(theirs.searchByTags.nodes).toHaveLength(5);
  });
  it('media_tag follows every change of media: new tags, soft delete, undelete, purge, duplicates', async () => {
    const t = newTenant();
    const q = (sqlText: string, ...v: unknown[]) => app.db.prisma.$executeRawUnsafe(sqlText, ...v);
    await q(
      `INSERT INTO media (id, tenant_id, file_name, media_type, kind, file_size, checksum, security_level, storage_key, tags)
       SELECT gen_random_uuid(), $1, 'f', 'image/jpeg', 'IMAGE', 1, 'x', 'STANDARD', $1 || '/' || g, ARRAY['a' || (g % 3), 'b', 'b'] FROM generate_series(1, 30) g`,
      t,
    );
    const ids = (await app.db.prisma.$queryRawUnsafe<{ id: string }[]>(`SELECT id FROM media WHERE tenant_id = $1 ORDER BY id`, t)).map((r) => r.id);
    await q(`UPDATE media SET tags = ARRAY['c', 'a0'] WHERE tenant_id = $1 AND id = ANY($2::uuid[])`, t, ids.slice(0, 5));
    await q(`UPDATE media SET deleted_at = now() WHERE tenant_id = $1 AND id = ANY($2::uuid[])`, t, ids.slice(5, 10));
    await q(`UPDATE media SET deleted_at = NULL WHERE tenant_id = $1 AND id = $2::uuid`, t, ids[6]);
    await q(`UPDATE media SET file_name = 'renamed' WHERE tenant_id = $1`, t);
    await q(`DELETE FROM media WHERE tenant_id = $1 AND id = ANY($2::uuid[])`, t, ids.slice(10, 12));
    const kept = await app.db.prisma.$queryRawUnsafe<{ tag: string; media_id: string; created_at: Date }[]>(
      `SELECT tag, media_id, created_at FROM media_tag WHERE tenant_id = $1 ORDER BY tag, media_id`,
      t,
    );
    const derived = await app.db.prisma.$queryRawUnsafe<{ tag: string; media_id: string; created_at: Date }[]>(
      `SELECT DISTINCT u.tag, m.id AS media_id, m.created_at FROM media m CROSS JOIN LATERAL unnest(m.tags) AS u(tag)
       WHERE m.tenant_id = $1 AND m.deleted_at IS NULL ORDER BY u.tag, m.id`,
      t,
    );
    expect(kept).toEqual(derived);
    expect(kept.length).toBe(5 * 2 + (30 - 5 - 5 - 2 + 1) * 2);
  });
});
