import type { Principal, UserPrincipal, WorkerPrincipal } from '../auth/principal.js';
import { AppError, errors } from '../errors/index.js';
import type { Loaders } from './loaders.js';
import type { RequestFacts } from '../http/request-facts.js';
import type { Services } from '../services.js';

export interface Context {
  readonly requestId: string;
  /** What the request's access line reports (src/http/request-facts.ts): resolvers and plugins add to it. */
  readonly facts: RequestFacts;
  /** Null when the request carried no credentials. */
  readonly principal: Principal | null;
  /** Set when credentials were sent but are invalid; raised by the first guarded field. */
  readonly authError: AppError | null;
  readonly services: Services;
  /** Per-request DataLoaders, bound to the principal's tenant. */
  readonly loaders: Loaders;
}

/** The user behind the request, or UNAUTHENTICATED / FORBIDDEN naming the missing scope. */
export function requireUser(ctx: Context, scope?: string): UserPrincipal {
  if (ctx.authError) throw ctx.authError;
  const p = ctx.principal;
  if (!p) throw errors.unauthenticated();
  if (p.kind !== 'user') throw errors.forbiddenMessage('Worker credentials cannot use this operation');
  if (scope && !p.scopes.has(scope)) throw errors.forbidden(scope);
  return p;
}

export function requireWorker(ctx: Context): WorkerPrincipal {
  if (ctx.authError) throw ctx.authError;
  const p = ctx.principal;
  if (!p) throw errors.unauthenticated();
  if (p.kind !== 'worker') throw errors.forbiddenMessage('This operation needs worker credentials');
  return p;
}
