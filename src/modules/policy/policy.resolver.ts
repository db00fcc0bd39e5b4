import { Ctx, Query, Resolver } from 'type-graphql';
import type { Context } from '../../graphql/context.js';
import { requireUser } from '../../graphql/context.js';
import { EntityPolicy } from './policy.type.js';

@Resolver()
export class PolicyResolver {
  @Query(() => [EntityPolicy], { description: 'Entity types with their security level, accepted types and size limit.' })
  mediaPolicies(@Ctx() ctx: Context) {
    requireUser(ctx);
    return ctx.services.policies.list().map((p) => ({ ...p, allowedMediaTypes: [...p.allowedMediaTypes] }));
  }
}
