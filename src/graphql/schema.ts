import 'reflect-metadata';
import { buildSchema } from 'type-graphql';
import type { GraphQLSchema } from 'graphql';
import { MediaResolver } from '../modules/media/media.resolver.js';
import { EntityResolver } from '../modules/entities/entity.resolver.js';
import { RoleResolver } from '../modules/roles/role.resolver.js';
import { PolicyResolver } from '../modules/policy/policy.resolver.js';
import { DirectUploadResolver } from '../modules/direct-uploads/direct-upload.resolver.js';
import { WorkerResolver } from '../modules/workers/worker.resolver.js';
import { AssetResolver } from '../modules/assets/asset.resolver.js';
import { ResumableUploadResolver } from '../modules/resumable-uploads/resumable-upload.resolver.js';

export const resolvers = [MediaResolver, EntityResolver, RoleResolver, PolicyResolver, DirectUploadResolver, WorkerResolver, AssetResolver, ResumableUploadResolver] as const;

let cached: Promise<GraphQLSchema> | undefined;

/** The executable schema, built once from the resolver classes. */
export function buildAppSchema(): Promise<GraphQLSchema> {
  cached ??= buildSchema({ resolvers: [...resolvers], validate: false });
  return cached;
}
