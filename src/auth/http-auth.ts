import type { Request } from 'express';
import { errors } from '../errors/index.js';
import type { Services } from '../services.js';
import type { UserPrincipal } from './principal.js';
import { factsOf } from '../http/request-facts.js';

/** The user of a plain HTTP request, or UNAUTHENTICATED (no or bad token) / FORBIDDEN (worker credentials). */
export async function requireHttpUser(services: Services, req: Request): Promise<UserPrincipal> {
  const p = await services.auth.authenticate({
    authorization: req.headers.authorization,
    workerType: req.get('x-worker-type'),
    tenantId: req.get('x-tenant-id'),
  });
  factsOf(req.res).principal(p);
  if (!p) throw errors.unauthenticated();
  if (p.kind !== 'user') throw errors.forbiddenMessage('Worker credentials cannot use this endpoint');
  return p;
}

/** The user of a plain HTTP request with the given scope, or UNAUTHENTICATED / FORBIDDEN. */
export async function requireScope(services: Services, req: Request, scope: string): Promise<UserPrincipal> {
  const p = await requireHttpUser(services, req);
  if (!p.scopes.has(scope)) throw errors.forbidden(scope);
  return p;
}
