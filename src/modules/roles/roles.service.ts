import type { PrismaClient } from '../../generated/prisma/client.js';
import type { MediaRole } from '../../generated/prisma/enums.js';
import { errors, isRetryableTxError } from '../../errors/index.js';
import type { EntityRef, RoleRecord } from '../media/media.record.js';
import type { MediaService } from '../media/media.service.js';
import { CRITICAL_ROLES } from '../policy/policy.js';
import type { Prisma } from '../../generated/prisma/client.js';

/**
 * Gives `role` for `entity` to `mediaId`, taking it from any previous holder. The
 * move is one upsert on the (tenant, entity, role) primary key, so concurrent
 * calls serialise on that row and the last one wins; none fails.
 */
export async function upsertRole(
  tx: Prisma.TransactionClient,
  tenant: string,
  entity: EntityRef,
  mediaId: string,
  role: MediaRole,
): Promise<RoleRecord> {
  const rows = await tx.$queryRaw<{ assigned_at: Date }[]>`
    INSERT INTO media_role (tenant_id, entity_type, entity_id, role, media_id, assigned_at)
    VALUES (${tenant}, ${entity.type}, ${entity.id}, ${role}::"MediaRole", ${mediaId}::uuid, clock_timestamp())
    ON CONFLICT (tenant_id, entity_type, entity_id, role)
    DO UPDATE SET media_id = EXCLUDED.media_id, assigned_at = EXCLUDED.assigned_at
    RETURNING assigned_at`;
  return { role, entityType: entity.type, entityId: entity.id, mediaId, assignedAt: new Date(rows[0]!.assigned_at) };
}

/** The roles that need CRITICAL media refuse anything lower (it would be stored in plaintext). */
export function checkRoleLevel(role: MediaRole, level: string, field = 'role'): void {
  if (CRITICAL_ROLES.has(role) && level !== 'CRITICAL') {
    throw errors.badInput(field, `Role ${role} needs CRITICAL media; upload the document with this role instead`);
  }
}

export class RolesService {
  constructor(private readonly deps: { prisma: PrismaClient; media: MediaService }) {}

  async assign(tenant: string, ref: EntityRef, mediaId: string, role: MediaRole): Promise<RoleRecord> {
    const entity = this.deps.media.entity(ref);
    const media = await this.deps.media.require(tenant, mediaId);
    checkRoleLevel(role, media.securityLevel);
    this.deps.media.checkAttachable(media, entity);
    // Upserts cannot conflict with each other, but a deadlock between the attachment
    // insert and the role row is possible under heavy concurrency: retry those.
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.deps.prisma.$transaction(async (tx) => {
          await tx.$executeRaw`
            INSERT INTO media_attachment (tenant_id, entity_type, entity_id, media_id)
            SELECT tenant_id, ${entity.type}, ${entity.id}, id FROM media
            WHERE tenant_id = ${tenant} AND id = ${mediaId}::uuid AND deleted_at IS NULL
            ON CONFLICT DO NOTHING`;
          const exists = await tx.$queryRaw<{ id: string }[]>`
            UPDATE media SET version = version + 1, updated_at = now()
            WHERE tenant_id = ${tenant} AND id = ${mediaId}::uuid AND deleted_at IS NULL RETURNING id`;
          if (!exists[0]) throw errors.mediaNotFound(mediaId);
          return upsertRole(tx, tenant, entity, mediaId, role);
        });
      } catch (e) {
        if (attempt < 5 && isRetryableTxError(e)) continue;
        throw e;
      }
    }
  }

  async clear(tenant: string, ref: EntityRef, role: MediaRole): Promise<boolean> {
    const entity = this.deps.media.entity(ref);
    const n = await this.deps.prisma.$executeRaw`
      DELETE FROM media_role WHERE tenant_id = ${tenant} AND entity_type = ${entity.type}
        AND entity_id = ${entity.id} AND role = ${role}::"MediaRole"`;
    return n > 0;
  }
}
