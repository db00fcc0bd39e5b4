import { Arg, Ctx, FieldResolver, ID, Mutation, Resolver, Root } from 'type-graphql';
import type { Context } from '../../graphql/context.js';
import { requireUser } from '../../graphql/context.js';
import { MediaRole } from '../../graphql/enums.js';
import { errors } from '../../errors/index.js';
import { Entity, EntityInput } from '../entities/entity.type.js';
import type { EntityRef, MediaRecord, RoleRecord } from '../media/media.record.js';
import { Media } from '../media/media.type.js';
import { Role } from './role.type.js';

@Resolver(() => Role)
export class RoleResolver {
  @Mutation(() => Role, { description: 'Gives the role for the entity to the media (attaching it if needed), moving it from any previous holder atomically.' })
  assignRole(
    @Arg('entity', () => EntityInput) entity: EntityInput,
    @Arg('mediaId', () => ID) mediaId: string,
    @Arg('role', () => MediaRole) role: MediaRole,
    @Ctx() ctx: Context,
  ): Promise<RoleRecord> {
    const user = requireUser(ctx, 'media:update');
    return ctx.services.roles.assign(user.tenant, entity, mediaId, role);
  }

  @Mutation(() => Boolean, { description: 'Removes the role from the entity; false when nobody held it.' })
  clearRole(@Arg('entity', () => EntityInput) entity: EntityInput, @Arg('role', () => MediaRole) role: MediaRole, @Ctx() ctx: Context) {
    const user = requireUser(ctx, 'media:update');
    return ctx.services.roles.clear(user.tenant, entity, role);
  }

  @FieldResolver(() => Entity, { description: 'The entity the role is held for.' })
  entity(@Root() r: RoleRecord): EntityRef {
    return { type: r.entityType, id: r.entityId };
  }

  @FieldResolver(() => Media, { description: 'The media holding the role.' })
  async media(@Root() r: RoleRecord, @Ctx() ctx: Context): Promise<MediaRecord> {
    const m = await ctx.loaders.mediaById.load(r.mediaId);
    if (!m) throw errors.mediaNotFound(r.mediaId);
    return m;
  }
}
