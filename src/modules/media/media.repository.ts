import { Prisma, type PrismaClient } from '../../generated/prisma/client.js';
import type { MediaKind } from '../../generated/prisma/enums.js';
import { mediaFromRow, type EntityRef, type MediaRecord, type MediaRow, type RoleRecord } from './media.record.js';
import { readRows } from '../../db/read.js';
import type { Statement } from '../../db/expensive-queries.js';

type Db = PrismaClient | Prisma.TransactionClient;

export interface Cursor {
  createdAt: Date;
  id: string;
}

export interface EntityPageArgs {
  kind: MediaKind | null;
  first: number;
  after: Cursor | null;
}

export interface EntityPage {
  rows: MediaRecord[];
  /** The exact count, or how to get it when it is asked for (a count can cost more than the page). */
  total: number | (() => Promise<number>);
}

/**
 * Rows read newest-first before a tag search gives up on finding its page among
 * them and asks the GIN index instead. Tags on more than about first/WINDOW of the
 * rows (1 % for a page of 50) are answered by the first step.
 */
export const TAG_SEARCH_WINDOW = 5000;

interface EntityMediaRow extends MediaRow {
  e_type: string;
  e_id: string;
  total: bigint | number | string;
}

const ORDER_NEWEST = Prisma.sql`ORDER BY m.created_at DESC, m.id DESC`;

/**
 * Read queries of media, attachments and roles. Every one takes the tenant and
 * filters by it; every one that serves many keys answers them in one statement
 * (the loaders rely on that).
 */
export const mediaRepository = {
  async byIds(db: Db, tenant: string, ids: readonly string[]): Promise<MediaRecord[]> {
    const rows = await readRows<MediaRow[]>(db, Prisma.sql`
      SELECT m.* FROM media m
      WHERE m.tenant_id = ${tenant} AND m.id = ANY(${ids as string[]}::uuid[]) AND m.deleted_at IS NULL`);
    return rows.map(mediaFromRow);
  },

  /**
   * Newest-first pages of media for many entities in one statement: counts per
   * entity before the cursor applies (totalCount is exact), then first+1 rows per
   * entity after it (the extra row tells whether a next page exists).
   */
  async pagesForEntities(db: Db, tenant: string, entities: readonly EntityRef[], args: EntityPageArgs): Promise<Map<string, EntityPage>> {
    const types = entities.map((e) => e.type);
    const ids = entities.map((e) => e.id);
    const kind = args.kind ? Prisma.sql`AND m.kind = ${args.kind}::"MediaKind"` : Prisma.empty;
    const cursor = args.after
      ? Prisma.sql`WHERE (x.created_at, x.id) < (${args.after.createdAt}::timestamptz, ${args.after.id}::uuid)`
      : Prisma.empty;
    const rows = await readRows<EntityMediaRow[]>(db, Prisma.sql`
      SELECT * FROM (
        SELECT x.*, row_number() OVER (PARTITION BY x.e_type, x.e_id ORDER BY x.created_at DESC, x.id DESC) AS rn
        FROM (
          SELECT a.entity_type AS e_type, a.entity_id AS e_id, m.*,
                 count(*) OVER (PARTITION BY a.entity_type, a.entity_id) AS total
          FROM unnest(${types}::text[], ${ids}::text[]) AS k(entity_type, entity_id)
          JOIN media_attachment a ON a.tenant_id = ${tenant} AND a.entity_type = k.entity_type AND a.entity_id = k.entity_id
          JOIN media m ON m.tenant_id = a.tenant_id AND m.id = a.media_id AND m.deleted_at IS NULL ${kind}
        ) x ${cursor}
      ) y WHERE y.rn <= ${args.first + 1}
      ORDER BY y.e_type, y.e_id, y.created_at DESC, y.id DESC`);
    const totals = args.after ? await this.countForEntities(db, tenant, entities, args.kind) : null;
    const out = new Map<string, EntityPage>();
    for (const r of rows) {
      const key = entityKey({ type: r.e_type, id: r.e_id });
      let page = out.get(key);
      if (!page) {
        page = { rows: [], total: Number(r.total) };
        out.set(key, page);
      }
      page.rows.push(mediaFromRow(r));
    }
    if (totals) {
      for (const [key, total] of totals) {
        const page = out.get(key);
        if (page) page.total = total;
        else out.set(key, { rows: [], total });
      }
    }
    return out;
  },

  /** Counts per entity; only needed after a cursor, when the page query no longer sees every row. */
  async countForEntities(db: Db, tenant: string, entities: readonly EntityRef[], kind: MediaKind | null): Promise<Map<string, number>> {
    const kindSql = kind ? Prisma.sql`AND m.kind = ${kind}::"MediaKind"` : Prisma.empty;
    const rows = await readRows<{ e_type: string; e_id: string; total: bigint | string }[]>(db, Prisma.sql`
      SELECT a.entity_type AS e_type, a.entity_id AS e_id, count(*) AS total
      FROM unnest(${entities.map((e) => e.type)}::text[], ${entities.map((e) => e.id)}::text[]) AS k(entity_type, entity_id)
      JOIN media_attachment a ON a.tenant_id = ${tenant} AND a.entity_type = k.entity_type AND a.entity_id = k.entity_id
      JOIN media m ON m.tenant_id = a.tenant_id AND m.id = a.media_id AND m.deleted_at IS NULL ${kindSql}
      GROUP BY a.entity_type, a.entity_id`);
    return new Map(rows.map((r) => [entityKey({ type: r.e_type, id: r.e_id }), Number(r.total)]));
  },

  /**
   * Roles of many entities with their holders' rows in the same statement, so the
   * loaders can prime the media of each role and `Role.media` never needs another
   * query (the statement count stays the same whatever order the batches finish in).
   */
  async rolesForEntities(db: Db, tenant: string, entities: readonly EntityRef[]): Promise<{ role: RoleRecord; media: MediaRecord }[]> {
    const rows = await readRows<(MediaRow & { r_role: RoleRecord['role']; r_entity_type: string; r_entity_id: string; r_assigned_at: Date })[]>(db, Prisma.sql`
      SELECT r.role AS r_role, r.entity_type AS r_entity_type, r.entity_id AS r_entity_id, r.assigned_at AS r_assigned_at, m.*
      FROM unnest(${entities.map((e) => e.type)}::text[], ${entities.map((e) => e.id)}::text[]) AS k(entity_type, entity_id)
      JOIN media_role r ON r.tenant_id = ${tenant} AND r.entity_type = k.entity_type AND r.entity_id = k.entity_id
      JOIN media m ON m.tenant_id = r.tenant_id AND m.id = r.media_id AND m.deleted_at IS NULL
      ORDER BY r.entity_type, r.entity_id, r.role`);
    return rows.map((r) => ({
      role: roleFromRow({ role: r.r_role, entity_type: r.r_entity_type, entity_id: r.r_entity_id, media_id: r.id, assigned_at: r.r_assigned_at }),
      media: mediaFromRow(r),
    }));
  },

  async rolesForMedia(db: Db, tenant: string, mediaIds: readonly string[]): Promise<RoleRecord[]> {
    const rows = await readRows<{ role: RoleRecord['role']; entity_type: string; entity_id: string; media_id: string; assigned_at: Date }[]>(db, Prisma.sql`
      SELECT r.role, r.entity_type, r.entity_id, r.media_id, r.assigned_at FROM media_role r
      WHERE r.tenant_id = ${tenant} AND r.media_id = ANY(${mediaIds as string[]}::uuid[])
      ORDER BY r.entity_type, r.entity_id, r.role`);
    return rows.map(roleFromRow);
  },

  async entitiesForMedia(db: Db, tenant: string, mediaIds: readonly string[]): Promise<{ mediaId: string; entity: EntityRef }[]> {
    const rows = await readRows<{ media_id: string; entity_type: string; entity_id: string }[]>(db, Prisma.sql`
      SELECT a.media_id, a.entity_type, a.entity_id FROM media_attachment a
      WHERE a.tenant_id = ${tenant} AND a.media_id = ANY(${mediaIds as string[]}::uuid[])
      ORDER BY a.attached_at, a.entity_type, a.entity_id`);
    return rows.map((r) => ({ mediaId: r.media_id, entity: { type: r.entity_type, id: r.entity_id } }));
  },

  /**
   * Media carrying every tag (matchAll, `@>`) or any of them (`&&`), newest first.
   *
   * One tag, or any of several, is read from media_tag in page order (below).
   * Several tags that must all match are searched as follows. Left to itself, the planner picks one plan from its statistics: walk the
   * newest-first index filtering on tags (right for frequent tags), or collect the
   * matches from the GIN index and sort them (right for rare ones). A tag that the
   * statistics call frequent but that this tenant's rows lack (absent here, common
   * for another tenant; or two frequent tags never found together) makes it walk
   * the whole index for a page that never fills: measured at 0.6-1 s over 1M rows.
   * So the search takes both paths in turn, each bounded:
   *   1. the newest TAG_SEARCH_WINDOW rows, by the index, filtered on tags, read
   *      only as far as the page needs: when the page fills from them it is the
   *      right page, as they are a prefix of the order;
   *   2. otherwise the matches are collected from the GIN index of tenant-scoped
   *      tags (media_tenant_tags; a MATERIALIZED CTE, so the planner cannot turn
   *      it back into the walk) and sorted: for tags this sparse, at most about
   *      1 % of the rows.
   * The count runs only when totalCount is asked for. `npm run bench:search`
   * measures every kind of tag over 1M rows.
   *
   * Each page's ids are collected once (`= ANY(ARRAY(...))`, an init plan) before
   * the rows are read: with `IN (SELECT ...)`, statistics that do not know a
   * tenant yet (its first rows written since the last ANALYZE) made the planner
   * run the page's subquery once per row of the tenant, a nested loop of
   * 6,500 x 5,000 rows that took 34 s.
   */
  async searchByTags(
    db: Db,
    tenant: string,
    args: { tags: string[]; matchAll: boolean; entity: EntityRef | null; first: number; after: Cursor | null },
  ): Promise<EntityPage> {
    const op = args.matchAll ? Prisma.sql`@>` : Prisma.sql`&&`;
    // On a row at hand (the window), the array itself; to find rows, the tenant-scoped index.
    const tagCond = Prisma.sql`m.tags ${op} ${args.tags}::text[]`;
    const indexedTagCond = Prisma.sql`media_tenant_tags(m.tenant_id, m.tags) ${op} media_tenant_tags(${tenant}, ${args.tags}::text[])`;
    const entityCond = args.entity
      ? Prisma.sql`AND EXISTS (SELECT 1 FROM media_attachment a WHERE a.tenant_id = m.tenant_id AND a.media_id = m.id
                     AND a.entity_type = ${args.entity.type} AND a.entity_id = ${args.entity.id})`
      : Prisma.empty;
    const live = Prisma.sql`m.tenant_id = ${tenant} AND m.deleted_at IS NULL`;
    const cursor = args.after
      ? Prisma.sql`AND (m.created_at, m.id) < (${args.after.createdAt}::timestamptz, ${args.after.id}::uuid)`
      : Prisma.empty;
    const limit = args.first + 1;
    // One tag, or any of several: newest first straight from media_tag, about a page
    // of index entries per tag whatever their number.
    if (!args.entity && (!args.matchAll || args.tags.length === 1)) {
      const tagCursor = args.after
        ? Prisma.sql`AND (t.created_at, t.media_id) < (${args.after.createdAt}::timestamptz, ${args.after.id}::uuid)`
        : Prisma.empty;
      const rows = await readRows<MediaRow[]>(db, Prisma.sql`
        WITH p AS (
          SELECT DISTINCT ON (h.created_at, h.media_id) h.media_id FROM unnest(${args.tags}::text[]) AS q(tag)
          CROSS JOIN LATERAL (
            SELECT t.media_id, t.created_at FROM media_tag t WHERE t.tenant_id = ${tenant} AND t.tag = q.tag ${tagCursor}
            ORDER BY t.created_at DESC, t.media_id DESC LIMIT ${limit}
          ) h
          ORDER BY h.created_at DESC, h.media_id DESC LIMIT ${limit}
        )
        SELECT m.* FROM media m WHERE m.tenant_id = ${tenant} AND m.id = ANY(ARRAY(SELECT media_id FROM p)) AND m.deleted_at IS NULL ${ORDER_NEWEST}`);
      const count = async () => {
        // One row per media and tag: with one tag a plain count (index only) is exact.
        const counted = args.tags.length === 1 ? Prisma.sql`count(*)` : Prisma.sql`count(DISTINCT t.media_id)`;
        const [row] = await readRows<{ total: bigint | string }[]>(db, Prisma.sql`
          SELECT ${counted} AS total FROM media_tag t WHERE t.tenant_id = ${tenant} AND t.tag = ANY(${args.tags}::text[])`);
        return Number(row?.total ?? 0);
      };
      return { rows: rows.map(mediaFromRow), total: count };
    }
    const total = async () => {
      const count = await readRows<{ total: bigint | string }[]>(db, Prisma.sql`SELECT count(*) AS total FROM media m WHERE ${live} AND ${indexedTagCond} ${entityCond}`);
      return Number(count[0]?.total ?? 0);
    };

    // Within one entity the attachment key narrows the rows first; no window needed.
    if (args.entity) {
      const rows = await readRows<MediaRow[]>(db, Prisma.sql`SELECT m.* FROM media m WHERE ${live} AND ${tagCond} ${entityCond} ${cursor} ${ORDER_NEWEST} LIMIT ${limit}`);
      return { rows: rows.map(mediaFromRow), total };
    }

    // The window streams (a subquery, not a materialized CTE): for a frequent tag the
    // page fills after a few rows and the rest of the window is never read.
    const windowed = await readRows<MediaRow[]>(db, Prisma.sql`
      WITH p AS (SELECT m.id FROM (SELECT m.id, m.created_at, m.tags FROM media m WHERE ${live} ${cursor} ${ORDER_NEWEST} LIMIT ${TAG_SEARCH_WINDOW}) m
                 WHERE ${tagCond} ${ORDER_NEWEST} LIMIT ${limit})
      SELECT m.* FROM media m WHERE m.tenant_id = ${tenant} AND m.id = ANY(ARRAY(SELECT id FROM p)) ${ORDER_NEWEST}`);
    if (windowed.length === limit) return { rows: windowed.map(mediaFromRow), total };
    const rows = await readRows<MediaRow[]>(db, Prisma.sql`
      WITH hits AS MATERIALIZED (SELECT m.id, m.created_at FROM media m WHERE ${live} AND ${indexedTagCond} ${cursor})
      SELECT m.* FROM media m
      WHERE m.tenant_id = ${tenant} AND m.id = ANY(ARRAY(SELECT h.id FROM hits h ORDER BY h.created_at DESC, h.id DESC LIMIT ${limit}))
      ${ORDER_NEWEST}`);
    return { rows: rows.map(mediaFromRow), total };
  },

  async library(db: Db, tenant: string, args: LibraryArgs): Promise<EntityPage> {
    const st = libraryStatements(tenant, args);
    const [rows, count] = await Promise.all([readRows<MediaRow[]>(db, st.page), readRows<{ total: bigint | string }[]>(db, st.count)]);
    return { rows: rows.map(mediaFromRow), total: Number(count[0]?.total ?? 0) };
  },

  /** The same, one statement after the other in a timed session (ExpensiveQueries), where both share one deadline. */
  async libraryInOrder(query: Statement, tenant: string, args: LibraryArgs): Promise<EntityPage> {
    const st = libraryStatements(tenant, args);
    const rows = await query<MediaRow[]>(st.page);
    const count = await query<{ total: string }[]>(st.count);
    return { rows: rows.map(mediaFromRow), total: Number(count[0]?.total ?? 0) };
  },
};

export interface LibraryArgs {
  offset: number;
  limit: number;
  kind: MediaKind | null;
  search: string | null;
}

/** The page and the count of `mediaLibrary`; `search` matches file names case-insensitively, as a plain substring. */
function libraryStatements(tenant: string, args: LibraryArgs): { page: Prisma.Sql; count: Prisma.Sql } {
  const kind = args.kind ? Prisma.sql`AND m.kind = ${args.kind}::"MediaKind"` : Prisma.empty;
  const search = args.search
    ? Prisma.sql`AND m.file_name ILIKE ${'%' + args.search.replace(/[\\%_]/g, (c) => '\\' + c) + '%'}`
    : Prisma.empty;
  const where = Prisma.sql`m.tenant_id = ${tenant} AND m.deleted_at IS NULL ${kind} ${search}`;
  return {
    page: Prisma.sql`SELECT m.* FROM media m WHERE ${where} ${ORDER_NEWEST} LIMIT ${args.limit} OFFSET ${args.offset}`,
    count: Prisma.sql`SELECT count(*) AS total FROM media m WHERE ${where}`,
  };
}

export function entityKey(e: EntityRef): string {
  return `${e.type}\u0000${e.id}`;
}

function roleFromRow(r: { role: RoleRecord['role']; entity_type: string; entity_id: string; media_id: string; assigned_at: Date }): RoleRecord {
  return { role: r.role, entityType: r.entity_type, entityId: r.entity_id, mediaId: r.media_id, assignedAt: new Date(r.assigned_at) };
}
