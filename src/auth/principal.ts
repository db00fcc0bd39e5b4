export const SCOPES = ['media:read', 'media:create', 'media:update', 'media:delete', 'asset:read', 'asset:manage'] as const;
export type Scope = (typeof SCOPES)[number];

export const TENANT_RE = /^[a-z][a-z0-9]{2,15}$/;

export interface UserPrincipal {
  readonly kind: 'user';
  readonly tenant: string;
  readonly subject: string;
  readonly scopes: ReadonlySet<string>;
}

export interface WorkerPrincipal {
  readonly kind: 'worker';
  readonly tenant: string;
  readonly workerType: string;
}

export type Principal = UserPrincipal | WorkerPrincipal;
