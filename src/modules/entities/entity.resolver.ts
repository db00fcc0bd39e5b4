import { Arg, Ctx, FieldResolver, ID, Int, Query, Resolver, Root } from 'type-graphql';
import type { Context } from '../../graphql/context.js';
import { requireUser } from '../../graphql/context.js';
import { MediaKind, MediaRole } from '../../graphql/enums.js';
import { errors } from '../../errors/index.js';
import { checkFirst, decodeCursor } from '../media/cursor.js';
import type { EntityRef, MediaRecord, RoleRecord } from '../media/media.record.js';
import { Media, MediaConnection } from '../media/media.type.js';
import { Role } from '../roles/role.type.js';
import { Entity, EntityInput } from './entity.type.js';

const MAX_ENTITIES = 200;

/** The media holding `role` for an entity, through the per-request loaders. */
async function holderOf(ctx: Context, entity: EntityRef, role: MediaRole): Promise<MediaRecord | null> {
  const roles = await ctx.loaders.entityRoles.load(entity);
  const held = roles.find((r) => r.role === role);
  return held ? ctx.loaders.mediaById.load(held.mediaId) : null;
}

@Resolver(() => Entity)
export class EntityResolver {
  @Query(() => Entity, { description: 'A business entity, to read its media and roles.' })
  entity(@Arg('type', () => String) type: string, @Arg('id', () => ID) id: string, @Ctx() ctx: Context): EntityRef {
    requireUser(ctx, 'media:read');
    return ctx.services.media.entity({ type, id }, 'entity');
  }

  @Query(() => [Entity], { description: `Several entities at once (at most ${MAX_ENTITIES}); their media and roles are batched.` })
  entities(@Arg('refs', () => [EntityInput]) refs: EntityInput[], @Ctx() ctx: Context): EntityRef[] {
    requireUser(ctx, 'media:read');
    if (refs.length > MAX_ENTITIES) throw errors.badInput('refs', `At most ${MAX_ENTITIES} entities in one query`);
    return refs.map((r, i) => ctx.services.media.entity(r, `refs.${i}`));
  }

  @Query(() => Media, { nullable: true, description: 'The media holding this role for this entity, or null.' })
  mediaByRole(
    @Arg('entity', () => EntityInput) entity: EntityInput,
    @Arg('role', () => MediaRole) role: MediaRole,
    @Ctx() ctx: Context,
  ): Promise<MediaRecord | null> {
    requireUser(ctx, 'media:read');
    return holderOf(ctx, ctx.services.media.entity(entity), role);
  }

  @FieldResolver(() => MediaConnection, { name: 'media', description: 'Media attached to this entity, newest first. Batched per request (DataLoader).' })
  entityMedia(
    @Root() e: EntityRef,
    @Arg('kind', () => MediaKind, { nullable: true }) kind: MediaKind | null,
    @Arg('first', () => Int, { nullable: true, defaultValue: 50 }) first: number,
    @Arg('after', () => String, { nullable: true }) after: string | null,
    @Ctx() ctx: Context,
  ) {
    return ctx.loaders.entityMedia.load({ entity: e, kind: kind ?? null, first: checkFirst(first), after: decodeCursor(after) });
  }

  @FieldResolver(() => Media, { name: 'mediaByRole', nullable: true, description: 'The media holding this role for this entity, or null.' })
  entityMediaByRole(@Root() e: EntityRef, @Arg('role', () => MediaRole) role: MediaRole, @Ctx() ctx: Context) {
    return holderOf(ctx, e, role);
  }

  @FieldResolver(() => [Role], { description: 'Roles held for this entity.' })
  roles(@Root() e: EntityRef, @Ctx() ctx: Context): Promise<RoleRecord[]> {
    return ctx.loaders.entityRoles.load(e);
  }
}
