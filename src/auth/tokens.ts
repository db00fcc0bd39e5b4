import { SignJWT, jwtVerify, createRemoteJWKSet, errors as joseErrors, type JWTVerifyGetKey } from 'jose';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Config, WorkerKeyGrant } from '../config.js';
import { AppError, errors } from '../errors/index.js';
import { TENANT_RE, type Principal, type UserPrincipal } from './principal.js';
import type { Secrets } from './secrets.js';
import { unstorableText } from '../util/storable-text.js';

export interface Authenticator {
  /** Turns request headers into a principal; null when no credentials were sent. Throws UNAUTHENTICATED. */
  authenticate(headers: { authorization?: string | undefined; workerType?: string | undefined; tenantId?: string | undefined }): Promise<Principal | null>;
  /** What the verified-token cache holds (entries, approximate bytes). */
  cacheStats(): { entries: number; bytes: number };
}

const enc = new TextEncoder();
/** Verified tokens remembered at most this long, and in at most this many bytes (the oldest go first). */
const VERIFIED_TTL_MS = 60_000;
export const VERIFIED_MAX_BYTES = 4 * 1024 * 1024;
/** Longest bearer credential accepted; longer ones are refused before any parsing. */
export const MAX_TOKEN_CHARS = 8 * 1024;

/** Approximate memory of one cache entry: the strings (UTF-16) and a fixed overhead for the objects. */
function entryBytes(token: string, p: UserPrincipal): number {
  let chars = token.length + p.tenant.length + p.subject.length;
  for (const s of p.scopes) chars += s.length + 16;
  return chars * 2 + 256;
}

export function createAuthenticator(config: Config, secrets: Secrets): Authenticator {
  const hsKey = secrets.jwtSecret ? enc.encode(secrets.jwtSecret) : undefined;
  const jwks: JWTVerifyGetKey | undefined = config.jwt.jwksUrl ? createRemoteJWKSet(new URL(config.jwt.jwksUrl)) : undefined;
  const { maxTokenAgeSeconds, clockToleranceSeconds } = config.jwt;

  // Worker keys are compared as HMACs under a key of this process: every
  // comparison is between two 32-byte digests, so neither a key's length nor its
  // content shows in the timing, and every configured key is compared each time.
  const macKey = randomBytes(32);
  const digest = (s: string) => createHmac('sha256', macKey).update(s).digest();
  const workerKeys = [...config.workerKeys].map(([key, grant]) => ({ digest: digest(key), grant }));

  // Verified tokens, so that a client sending the same token on every request pays
  // for its signature once (jose verifies through WebCrypto: a key import and an
  // HMAC, measured at about 5 % of the service's time serving media(id)). An entry
  // is used until the token's exp, and at most VERIFIED_TTL_MS after it was checked.
  // The cache is bounded by the bytes it holds (tokens are at most MAX_TOKEN_CHARS).
  const verified = new Map<string, { principal: UserPrincipal; until: number; bytes: number }>();
  let verifiedBytes = 0;
  const forget = (token: string) => {
    const e = verified.get(token);
    if (!e) return;
    verified.delete(token);
    verifiedBytes -= e.bytes;
  };

  async function verifyUser(token: string): Promise<UserPrincipal> {
    const now = Date.now();
    const hit = verified.get(token);
    if (hit && now < hit.until) return hit.principal;
    if (hit) forget(token);
    const { principal, exp, iat } = await verifyUncached(token);
    const bytes = entryBytes(token, principal);
    while (verified.size > 0 && verifiedBytes + bytes > VERIFIED_MAX_BYTES) forget(verified.keys().next().value!);
    // Never past the moment verification itself would refuse the token (exp, or its maximum age).
    const until = Math.min((exp + clockToleranceSeconds) * 1000, (iat + maxTokenAgeSeconds + clockToleranceSeconds) * 1000, now + VERIFIED_TTL_MS);
    verified.set(token, { principal, until, bytes });
    verifiedBytes += bytes;
    return principal;
  }


  async function verifyUncached(token: string): Promise<{ principal: UserPrincipal; exp: number; iat: number }> {
    let payload;
    try {
      const options = {
        ...(config.jwt.issuer ? { issuer: config.jwt.issuer } : {}),
        ...(config.jwt.audience ? { audience: config.jwt.audience } : {}),
        requiredClaims: ['exp', 'sub', 'iat'],
        maxTokenAge: maxTokenAgeSeconds,
        clockTolerance: clockToleranceSeconds,
      };
      payload = jwks
        ? (await jwtVerify(token, jwks, { ...options, algorithms: ['RS256', 'ES256'] })).payload
        : (await jwtVerify(token, hsKey!, { ...options, algorithms: ['HS256'] })).payload;
    } catch (e) {
      if (e instanceof joseErrors.JWTExpired) throw errors.unauthenticated('Token expired');
      throw errors.unauthenticated('Invalid token');
    }
    const tenant = payload['tenant'];
    if (typeof tenant !== 'string' || !TENANT_RE.test(tenant)) throw errors.unauthenticated('Token has no valid tenant claim');
    // The subject becomes created_by: it must be text PostgreSQL can store, and of a sane length.
    const sub = payload.sub;
    if (typeof sub !== 'string' || sub.length === 0 || sub.length > 255 || unstorableText(sub)) throw errors.unauthenticated('Token has no valid sub claim');
    const scope = payload['scope'];
    const scopes = new Set(typeof scope === 'string' ? scope.split(' ').filter(Boolean) : []);
    return { principal: { kind: 'user', tenant, subject: sub, scopes }, exp: payload.exp!, iat: payload.iat! };
  }

  return {
    cacheStats: () => ({ entries: verified.size, bytes: verifiedBytes }),
    async authenticate({ authorization, workerType, tenantId }) {
      if (!authorization) return null;
      if (authorization.length > MAX_TOKEN_CHARS + 64) throw errors.unauthenticated('Token too long');
      const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
      if (!m) throw errors.unauthenticated('Authorization must be "Bearer <token>"');
      const token = m[1]!;
      if (token.length > MAX_TOKEN_CHARS) throw errors.unauthenticated('Token too long');
      if (workerKeys.length > 0) {
        const given = digest(token);
        let grant: WorkerKeyGrant | undefined;
        for (const k of workerKeys) if (timingSafeEqual(k.digest, given) && !grant) grant = k.grant;
        if (grant) {
          if (!workerType || !grant.types.has(workerType)) throw errors.unauthenticated('Worker key is not valid for this X-Worker-Type');
          if (!tenantId || !TENANT_RE.test(tenantId)) throw errors.unauthenticated('X-Tenant-ID is missing or invalid');
          if (grant.tenants !== '*' && !grant.tenants.has(tenantId)) throw errors.unauthenticated('Worker key is not valid for this X-Tenant-ID');
          return { kind: 'worker', tenant: tenantId, workerType };
        }
      }
      return verifyUser(token);
    },
  };
}

export interface MintOptions {
  tenant: string;
  subject?: string;
  scopes?: readonly string[];
  expiresIn?: string | number;
}

export const ALL_USER_SCOPES = ['media:read', 'media:create', 'media:update', 'media:delete', 'asset:read', 'asset:manage'];

/** Mints an HS256 user token, as an integrator would with the shared secret. */
export async function mintToken(secret: string, o: MintOptions): Promise<string> {
  if (!TENANT_RE.test(o.tenant)) throw new AppError('BAD_USER_INPUT', `tenant must match ${TENANT_RE}`);
  return new SignJWT({ tenant: o.tenant, scope: (o.scopes ?? ALL_USER_SCOPES).join(' ') })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(o.subject ?? 'dev-user')
    .setIssuedAt()
    .setExpirationTime(o.expiresIn ?? '12h')
    .sign(enc.encode(secret));
}
