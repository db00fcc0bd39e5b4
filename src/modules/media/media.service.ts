import type { Prisma, PrismaClient } from '../../generated/prisma/client.js';

import type { MediaKind, SecurityLevel } from '../../generated/prisma/enums.js';
import type { ExpensiveQueries } from '../../db/expensive-queries.js';
import { dbSqlState, errors } from '../../errors/index.js';
import type { Logger } from '../../logger.js';
import type { Storage } from '../../storage/index.js';
import { objectKeys } from '../../storage/index.js';
import type { PolicyRegistry } from '../policy/policy.js';
import { levelAtLeast } from '../policy/policy.js';
import { checkFirst, decodeCursor, encodeCursor, isUuid } from './cursor.js';
import type { Connection, EntityRef, MediaRecord, MediaRow } from './media.record.js';
import { mediaFromRow } from './media.record.js';
import { mediaRepository, type EntityPage } from './media.repository.js';
import { normaliseTags } from './tags.js';

export interface MediaServiceDeps {
  prisma: PrismaClient;
  storage: Storage;
  policies: PolicyRegistry;
  logger: Logger;
  /** Searches over every file name and counts over many tags take a turn here. */
  expensive: ExpensiveQueries;
}

export function toConnection(page: EntityPage, first: number): Connection<MediaRecord> {
  const hasNextPage = page.rows.length > first;
  const nodes = hasNextPage ? page.rows.slice(0, first) : page.rows;
  const last = nodes[nodes.length - 1];
  const pageInfo = { hasNextPage, endCursor: last ? encodeCursor(last) : null };
  const { total } = page;
  if (typeof total === 'number') return { nodes, totalCount: total, pageInfo };
  // A getter: GraphQL reads the field only when the query selects it, so the count
  // runs only then, once.
  let counted: Promise<number> | undefined;
  return {
    nodes,
    pageInfo,
    get totalCount() {
      return (counted ??= total());
    },
  };
}

/** Media reads and the writes that do not take a file: tags, attachments, deletion. */
export class MediaService {
  constructor(private readonly deps: MediaServiceDeps) {}

  /** Validates an entity reference against the policy (unknown type: BAD_USER_INPUT). */
  entity(ref: EntityRef, field = 'entity'): EntityRef {
    this.deps.policies.get(ref.type, `${field}.type`);
    if (ref.id.length === 0 || ref.id.length > 128) throw errors.badInput(`${field}.id`, 'Entity id must be 1-128 characters');
    return { type: ref.type, id: ref.id };
  }

  /** A media of the tenant, or NOT_FOUND (another tenant's ids included). */
  async require(tenant: string, id: string): Promise<MediaRecord> {
    if (!isUuid(id)) throw errors.mediaNotFound(id);
    const [m] = await mediaRepository.byIds(this.deps.prisma, tenant, [id]);
    if (!m) throw errors.mediaNotFound(id);
    return m;
  }

  async searchByTags(
    tenant: string,
    args: { tags: string[]; matchAll: boolean; entity: EntityRef | null; first: number | null; after: string | null },
  ): Promise<Connection<MediaRecord>> {
    const tags = normaliseTags(args.tags);
    if (tags.length === 0) throw errors.badInput('tags', 'Give at least one tag');
    const first = checkFirst(args.first);
    const entity = args.entity ? this.entity(args.entity) : null;
    const page = await mediaRepository.searchByTags(this.deps.prisma, tenant, {
      tags,
      matchAll: args.matchAll,
      entity,
      first,
      after: decodeCursor(args.after),
    });
    // The count reads every match of every tag asked for (up to 32 of them): the
    // tenant's own data, so it is not cut short, but it takes a turn.
    const { total } = page;
    if (typeof total === 'function') page.total = () => this.deps.expensive.limit(tenant, 'searchByTags totalCount', total);
    return toConnection(page, first);
  }

  async library(tenant: string, args: { page: number; pageSize: number; kind: MediaKind | null; search: string | null }) {
    if (!Number.isInteger(args.page) || args.page < 1) throw errors.badInput('page', 'page starts at 1');
    if (!Number.isInteger(args.pageSize) || args.pageSize < 1 || args.pageSize > 100) throw errors.badInput('pageSize', 'pageSize must be between 1 and 100');
    const search = args.search?.trim() ? args.search.trim().slice(0, 200) : null;
    const libraryArgs = { offset: (args.page - 1) * args.pageSize, limit: args.pageSize, kind: args.kind, search };
    // A search reads the name of every media of the tenant (no index serves a substring): it takes a turn and a deadline.
    const { expensive } = this.deps;
    const res = search
      ? await expensive.run(tenant, 'mediaLibrary(search:)', (query) => mediaRepository.libraryInOrder(query, tenant, libraryArgs)).catch((e: unknown) => {
          if (dbSqlState(e) !== '57014') throw e;
          throw errors.badInput('search', `The search took longer than ${expensive.limits.timeoutMs} ms; narrow it with kind or a longer text`);
        })
      : await mediaRepository.library(this.deps.prisma, tenant, libraryArgs);
    return { items: res.rows, total: res.total, page: args.page, pageSize: args.pageSize };
  }

  async replaceTags(tenant: string, id: string, rawTags: string[]): Promise<MediaRecord> {
    const tags = normaliseTags(rawTags);
    if (!isUuid(id)) throw errors.mediaNotFound(id);
    const rows = await this.deps.prisma.$queryRaw<MediaRow[]>`
      UPDATE media SET tags = ${tags}::text[], version = version + 1, updated_at = now()
      WHERE tenant_id = ${tenant} AND id = ${id}::uuid AND deleted_at IS NULL RETURNING *`;
    if (!rows[0]) throw errors.mediaNotFound(id);
    return mediaFromRow(rows[0]);
  }

  /**
   * Checks that a media may be attached to an entity: its detected type is allowed
   * there, and its level is at least the entity's (sensitive entities never get
   * plaintext content).
   */
  checkAttachable(media: MediaRecord, entity: EntityRef, field = 'entity'): void {
    const policy = this.deps.policies.get(entity.type, `${field}.type`);
    if (!policy.allowedMediaTypes.includes(media.mediaType)) {
      throw errors.unsupportedType(`Media of type ${media.mediaType} cannot be attached to entity type "${entity.type}"`);
    }
    if (!levelAtLeast(media.securityLevel, policy.securityLevel)) {
      throw errors.badInput(
        field,
        `Entity type "${entity.type}" needs ${policy.securityLevel} media; this media is ${media.securityLevel as SecurityLevel}: upload it to the entity instead`,
      );
    }
  }

  async attach(tenant: string, id: string, ref: EntityRef): Promise<MediaRecord> {
    const entity = this.entity(ref);
    const media = await this.require(tenant, id);
    this.checkAttachable(media, entity);
    return this.deps.prisma.$transaction(async (tx) => {
      const inserted = await tx.$executeRaw`
        INSERT INTO media_attachment (tenant_id, entity_type, entity_id, media_id)
        SELECT tenant_id, ${entity.type}, ${entity.id}, id FROM media
        WHERE tenant_id = ${tenant} AND id = ${id}::uuid AND deleted_at IS NULL
        ON CONFLICT DO NOTHING`;
      return inserted > 0 ? bump(tx, tenant, id) : this.require(tenant, id);
    });
  }

  /** Unlinks a media from an entity and drops its roles there. Detaching a media that is not attached changes nothing. */
  async detach(tenant: string, id: string, ref: EntityRef): Promise<MediaRecord> {
    const entity = this.entity(ref);
    await this.require(tenant, id);
    return this.deps.prisma.$transaction(async (tx) => {
      await tx.$executeRaw`DELETE FROM media_role WHERE tenant_id = ${tenant} AND media_id = ${id}::uuid
        AND entity_type = ${entity.type} AND entity_id = ${entity.id}`;
      const removed = await tx.$executeRaw`DELETE FROM media_attachment WHERE tenant_id = ${tenant} AND media_id = ${id}::uuid
        AND entity_type = ${entity.type} AND entity_id = ${entity.id}`;
      return removed > 0 ? bump(tx, tenant, id) : this.require(tenant, id);
    });
  }

  /**
   * The row is marked deleted and unlinked in one transaction, so the media leaves
   * every read at once; then its objects are purged and the row removed. A crash
   * between the two leaves a deleted row that the sweep finishes.
   */
  async delete(tenant: string, id: string): Promise<boolean> {
    if (!isUuid(id)) throw errors.mediaNotFound(id);
    const marked = await this.deps.prisma.$transaction(async (tx) => {
      const n = await tx.$executeRaw`UPDATE media SET deleted_at = now(), version = version + 1, updated_at = now()
        WHERE tenant_id = ${tenant} AND id = ${id}::uuid AND deleted_at IS NULL`;
      if (n === 0) return false;
      await tx.$executeRaw`DELETE FROM media_role WHERE tenant_id = ${tenant} AND media_id = ${id}::uuid`;
      await tx.$executeRaw`DELETE FROM media_attachment WHERE tenant_id = ${tenant} AND media_id = ${id}::uuid`;
      return true;
    });
    if (!marked) throw errors.mediaNotFound(id);
    await this.purge(tenant, id);
    return true;
  }

  /**
   * Removes a deleted media's objects, then its row. Safe to repeat. The row goes
   * only once every object is gone: a store that could not delete one (deletePrefix
   * throws) leaves the row marked deleted for the sweep. True when purged.
   */
  async purge(tenant: string, id: string): Promise<boolean> {
    try {
      await this.deps.storage.deletePrefix(objectKeys.prefix(tenant, id));
      await this.deps.prisma.$executeRaw`DELETE FROM image_render WHERE tenant_id = ${tenant} AND owner_id = ${id}::uuid`;
      await this.deps.prisma.$executeRaw`DELETE FROM media WHERE tenant_id = ${tenant} AND id = ${id}::uuid AND deleted_at IS NOT NULL`;
      return true;
    } catch (e) {
      // The row stays marked deleted; the sweep retries later.
      this.deps.logger.warn({ err: e, mediaId: id }, 'purge of deleted media failed; left for the sweep');
      return false;
    }
  }
}

/** Bumps version and updatedAt of a media inside a transaction and returns it. */
export async function bump(tx: Prisma.TransactionClient, tenant: string, id: string): Promise<MediaRecord> {
  const rows = await tx.$queryRaw<MediaRow[]>`
    UPDATE media SET version = version + 1, updated_at = now()
    WHERE tenant_id = ${tenant} AND id = ${id}::uuid AND deleted_at IS NULL RETURNING *`;
  if (!rows[0]) throw errors.mediaNotFound(id);
  return mediaFromRow(rows[0]);
}

