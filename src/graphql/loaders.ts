import DataLoader from 'dataloader';
import type { PrismaClient } from '../generated/prisma/client.js';
import type { MediaKind } from '../generated/prisma/enums.js';
import type { AssetRecord } from '../modules/assets/asset.record.js';
import { assetRepository } from '../modules/assets/asset.repository.js';
import type { Connection, EntityRef, MediaRecord, RoleRecord } from '../modules/media/media.record.js';
import { entityKey, mediaRepository, type Cursor } from '../modules/media/media.repository.js';
import { toConnection } from '../modules/media/media.service.js';

export interface EntityMediaKey {
  entity: EntityRef;
  kind: MediaKind | null;
  first: number;
  after: Cursor | null;
}

export interface Loaders {
  mediaById: DataLoader<string, MediaRecord | null>;
  entityMedia: DataLoader<EntityMediaKey, Connection<MediaRecord>, string>;
  entityRoles: DataLoader<EntityRef, RoleRecord[], string>;
  mediaRoles: DataLoader<string, RoleRecord[]>;
  mediaEntities: DataLoader<string, EntityRef[]>;
  assetById: DataLoader<string, AssetRecord | null>;
}

function groupBy<K, V>(items: readonly V[], key: (v: V) => K): Map<K, V[]> {
  const m = new Map<K, V[]>();
  for (const v of items) {
    const k = key(v);
    const list = m.get(k);
    if (list) list.push(v);
    else m.set(k, [v]);
  }
  return m;
}

/**
 * DataLoaders for one request. A request acts for exactly one tenant (from its
 * credentials), so the loaders are bound to it and cache keys cannot cross tenants.
 * Each batch function answers all its keys with one SQL statement (the entity media
 * loader: one per distinct (kind, first, after), normally one).
 */
export function createLoaders(prisma: PrismaClient, tenant: string | null): Loaders {
  const t = tenant ?? '';
  const mediaById = new DataLoader<string, MediaRecord | null>(async (ids) => {
    const rows = tenant ? await mediaRepository.byIds(prisma, t, ids) : [];
    const byId = new Map(rows.map((r) => [r.id, r]));
    return ids.map((id) => byId.get(id) ?? null);
  });

  const prime = (records: readonly MediaRecord[]) => {
    for (const r of records) mediaById.prime(r.id, r);
  };

  const entityMedia = new DataLoader<EntityMediaKey, Connection<MediaRecord>, string>(
    async (keys) => {
      const groups = groupBy(keys, (k) => JSON.stringify([k.kind, k.first, k.after]));
      const results = new Map<string, Connection<MediaRecord>>();
      for (const group of groups.values()) {
        const { kind, first, after } = group[0]!;
        const pages = await mediaRepository.pagesForEntities(prisma, t, group.map((k) => k.entity), { kind, first, after });
        for (const k of group) {
          const page = pages.get(entityKey(k.entity)) ?? { rows: [], total: 0 };
          prime(page.rows);
          results.set(entityMediaCacheKey(k), toConnection(page, first));
        }
      }
      return keys.map((k) => results.get(entityMediaCacheKey(k))!);
    },
    { cacheKeyFn: entityMediaCacheKey },
  );

  const entityRoles = new DataLoader<EntityRef, RoleRecord[], string>(
    async (entities) => {
      const withMedia = await mediaRepository.rolesForEntities(prisma, t, entities);
      prime(withMedia.map((x) => x.media));
      const rows = withMedia.map((x) => x.role);
      const byEntity = groupBy(rows, (r) => entityKey({ type: r.entityType, id: r.entityId }));
      return entities.map((e) => byEntity.get(entityKey(e)) ?? []);
    },
    { cacheKeyFn: entityKey },
  );

  const mediaRoles = new DataLoader<string, RoleRecord[]>(async (ids) => {
    const rows = await mediaRepository.rolesForMedia(prisma, t, ids);
    const byMedia = groupBy(rows, (r) => r.mediaId);
    return ids.map((id) => byMedia.get(id) ?? []);
  });

  const mediaEntities = new DataLoader<string, EntityRef[]>(async (ids) => {
    const rows = await mediaRepository.entitiesForMedia(prisma, t, ids);
    const byMedia = groupBy(rows, (r) => r.mediaId);
    return ids.map((id) => (byMedia.get(id) ?? []).map((r) => r.entity));
  });

  const assetById = new DataLoader<string, AssetRecord | null>(async (ids) => {
    const rows = tenant ? await assetRepository.byIds(prisma, t, ids) : [];
    const byId = new Map(rows.map((r) => [r.id, r]));
    return ids.map((id) => byId.get(id) ?? null);
  });

  return { mediaById, entityMedia, entityRoles, mediaRoles, mediaEntities, assetById };
}

function entityMediaCacheKey(k: EntityMediaKey): string {
  return JSON.stringify([k.entity.type, k.entity.id, k.kind, k.first, k.after?.createdAt.toISOString() ?? null, k.after?.id ?? null]);
}
