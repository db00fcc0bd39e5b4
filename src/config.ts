import { z } from 'zod';
import os from 'node:os';
import path from 'node:path';
import { TENANT_RE } from './auth/principal.js';
import { parseClamdUrl, type ClamdAddress } from './scan/clamd.js';

// Configuration is read from the environment exactly once (loadConfig) and passed
// down as a frozen object; nothing else in the service reads process.env.


const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));

const boolString = z
  .enum(['true', 'false', '1', '0'])
  .optional()
  .transform((v) => (v === undefined ? undefined : v === 'true' || v === '1'));

/** What one worker key may do: claim these worker types, for these tenants ('*': any tenant, by explicit opt-in). */
export interface WorkerKeyGrant {
  readonly types: ReadonlySet<string>;
  readonly tenants: ReadonlySet<string> | '*';
}

export const WORKER_KEY_MIN_LENGTH = 32;
const WORKER_KEY_MAX_LENGTH = 512;
const WORKER_KEY_CHARS = /^[A-Za-z0-9._~+/=-]+$/;
const WORKER_TYPE_RE = /^[a-z][a-z0-9-]{0,63}$/;
const WORKER_KEYS_FORMAT = 'key:type1|type2:tenant1|tenant2,… (or key:types:* with WORKER_API_KEYS_ALLOW_ANY_TENANT=true)';

/**
 * Why a worker key is too weak to accept, or undefined. Keys are generated
 * secrets (e.g. `openssl rand -base64 32`): at least 32 characters, at least 8
 * distinct ones, no character over 40 % of the key, and not a short
 * pattern repeated. These catch typed-in and placeholder keys (and refuse no
 * measurable share of generated ones); they cannot prove randomness.
 */
export function weakWorkerKey(key: string): string | undefined {
  if (key.length < WORKER_KEY_MIN_LENGTH) return `must be at least ${WORKER_KEY_MIN_LENGTH} characters`;
  if (key.length > WORKER_KEY_MAX_LENGTH) return `must be at most ${WORKER_KEY_MAX_LENGTH} characters`;
  if (!WORKER_KEY_CHARS.test(key)) return 'may contain only letters, digits and . _ ~ + / = -';
  const counts = new Map<string, number>();
  for (const c of key) counts.set(c, (counts.get(c) ?? 0) + 1);
  if (counts.size < 8) return 'is not random enough (fewer than 8 distinct characters)';
  if (Math.max(...counts.values()) > key.length * 0.4) return 'is not random enough (one character makes up over 40 % of it)';
  for (let period = 1; period <= key.length / 2; period++) {
    let repeats = true;
    for (let i = period; i < key.length && repeats; i++) repeats = key[i] === key[i - period];
    if (repeats) return 'is not random enough (a short pattern repeated)';
  }
  return undefined;
}

// Entries are key:types:tenants. The key itself never appears in an error
// message (the message is logged); entries are named by their position.
const workerKeys = optionalString.transform((raw, ctx) => {
  const keys = new Map<string, WorkerKeyGrant>();
  if (!raw) return keys;
  const fail = (message: string) => {
    ctx.addIssue({ code: 'custom', message });
    return z.NEVER;
  };
  const entries = raw.split(',');
  for (const [index, entry] of entries.entries()) {
    const n = `entry ${index + 1}`;
    const fields = entry.split(':').map((f) => f.trim());
    if (fields.length === 2) {
      return fail(
        `${n} names no tenants. Each worker key is now bound to the tenants it may act for: ${WORKER_KEYS_FORMAT}. ` +
          'A key without tenants is refused rather than allowed to act for every tenant.',
      );
    }
    if (fields.length !== 3) return fail(`${n}: expected ${WORKER_KEYS_FORMAT}`);
    const [key, rawTypes, rawTenants] = fields as [string, string, string];
    if (!key) return fail(`${n}: the key is empty; expected ${WORKER_KEYS_FORMAT}`);
    const weak = weakWorkerKey(key);
    if (weak) return fail(`${n}: the key ${weak}`);
    if (keys.has(key)) return fail(`${n}: the same key appears twice`);
    const types = rawTypes.split('|').map((t) => t.trim()).filter(Boolean);
    if (types.length === 0) return fail(`${n}: the key is bound to no worker type; expected ${WORKER_KEYS_FORMAT}`);
    const badType = types.find((t) => !WORKER_TYPE_RE.test(t));
    if (badType !== undefined) return fail(`${n}: worker type "${badType.slice(0, 64)}" must match ${WORKER_TYPE_RE}`);
    let tenants: ReadonlySet<string> | '*';
    if (rawTenants === '*') tenants = '*';
    else {
      const list = rawTenants.split('|').map((t) => t.trim()).filter(Boolean);
      if (list.length === 0) return fail(`${n}: the key is bound to no tenant; expected ${WORKER_KEYS_FORMAT}`);
      const badTenant = list.find((t) => t === '*' || !TENANT_RE.test(t));
      if (badTenant !== undefined) return fail(`${n}: tenant "${badTenant.slice(0, 32)}" must match ${TENANT_RE} (or the whole list be *)`);
      tenants = new Set(list);
    }
    keys.set(key, Object.freeze({ types: new Set(types), tenants }));
  }
  return keys;
});

// Each entry is an origin exactly as a browser sends it in the Origin header
// (scheme://host[:port], lower case, no default port, no path), compared as a
// string: no wildcards and no patterns. "*" is refused, not supported: every
// deployment can list its front ends, and a listed origin is a decision.
const corsOrigins = optionalString.transform((raw, ctx) => {
  const origins = new Set<string>();
  if (!raw) return origins;
  for (const [index, rawEntry] of raw.split(',').entries()) {
    const entry = rawEntry.trim();
    if (entry === '') continue;
    const n = `entry ${index + 1} (${JSON.stringify(entry.slice(0, 100))})`;
    const fail = (message: string) => {
      ctx.addIssue({ code: 'custom', message: `${n} ${message}` });
      return z.NEVER;
    };
    // (URL parsing accepts "*" in a host name: https://*.example.com would be kept as a literal name.)
    if (entry.includes('*')) return fail('is a wildcard: list each origin allowed to call the API (https://app.example.com); "*" is not supported');
    let url: URL;
    try {
      url = new URL(entry);
    } catch {
      return fail('is not an origin; expected scheme://host[:port], e.g. https://app.example.com');
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') return fail('must be an http: or https: origin');
    if (url.origin !== entry) {
      return fail(`is not an origin as browsers send it (scheme://host[:port], lower case, no default port, no path or trailing slash): did you mean ${url.origin}?`);
    }
    origins.add(entry);
  }
  return origins;
});

/**
 * The embedded PostgreSQL's port on 127.0.0.1: fixed, so that psql, a maintenance
 * command or a second instance can reach it (0: a free port at each start). Above
 * the 5432-5439 that installed clusters use.
 */
export const DEFAULT_EMBEDDED_PG_PORT = 54329;

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);
/** JWKS must come over TLS: whoever can alter it mints tokens. Plain http only to this machine (local identity providers, tests). */
function jwksUrlProblem(raw: string): string | undefined {
  const u = new URL(raw);
  if (u.protocol === 'https:') return undefined;
  const loopback = LOOPBACK_HOSTS.has(u.hostname) || /^127(\.\d{1,3}){3}$/.test(u.hostname) || u.hostname.endsWith('.localhost');
  if (u.protocol === 'http:' && loopback) return undefined;
  return 'JWT_JWKS_URL: must be an https: URL (http: only for a loopback host)';
}

const clamdUrl = optionalString.transform((raw, ctx) => {
  if (raw === undefined) return undefined;
  try {
    return { url: raw, address: parseClamdUrl(raw) };
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

const EnvSchema = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(4000),
  HOST: optionalString,
  METRICS_PORT: optionalString.pipe(z.string().regex(/^\d{1,5}$/, 'must be a port number').transform(Number).pipe(z.number().int().min(0).max(65535)).optional()),
  METRICS_TOKEN: optionalString.pipe(z.string().min(32, 'must be at least 32 characters').optional()),
  DATA_DIR: z.string().default('.data'),
  DATABASE_URL: optionalString.pipe(z.string().url().optional()),
  EMBEDDED_PG_PORT: z.coerce.number().int().min(0).max(65535).default(DEFAULT_EMBEDDED_PG_PORT),
  DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),
  S3_BUCKET: optionalString,
  S3_ENDPOINT: optionalString.pipe(z.string().url().optional()),
  S3_REGION: optionalString,
  S3_FORCE_PATH_STYLE: boolString,
  S3_CHECKSUMS: z.enum(['when_required', 'when_supported']).default('when_required'),
  S3_SSE_C_OVER_HTTP: optionalString.pipe(z.enum(['loopback']).optional()),
  CORS_ORIGINS: corsOrigins,
  PUBLIC_BASE_URL: optionalString.pipe(z.string().url().optional()),
  JWT_SECRET: optionalString.pipe(z.string().min(32, 'must be at least 32 characters').optional()),
  JWT_JWKS_URL: optionalString.pipe(z.string().url().optional()),
  JWT_ISSUER: optionalString,
  JWT_AUDIENCE: optionalString,
  SIGNING_SECRET: optionalString.pipe(z.string().min(32, 'must be at least 32 characters').optional()),
  JWT_MAX_TOKEN_AGE_SECONDS: z.coerce.number().int().min(60).max(30 * 24 * 3600).default(24 * 3600),
  JWT_CLOCK_TOLERANCE_SECONDS: z.coerce.number().int().min(0).max(300).default(30),
  WORKER_API_KEYS: workerKeys,
  WORKER_API_KEYS_ALLOW_ANY_TENANT: boolString,
  DEV_ALLOW_GENERATED_SECRETS: boolString,
  MEDIA_KEYS: optionalString,
  MEDIA_POLICY_FILE: optionalString,
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  NODE_ENV: optionalString,
  INTROSPECTION: boolString,
  SIGNED_URL_TTL_SECONDS: z.coerce.number().int().min(10).max(7 * 24 * 3600).default(900),
  DIRECT_UPLOAD_TTL_SECONDS: z.coerce.number().int().min(10).max(7 * 24 * 3600).default(900),
  DIRECT_UPLOAD_MAX_OUTSTANDING: z.coerce.number().int().min(1).max(100_000).default(100),
  RESUMABLE_UPLOAD_TTL_SECONDS: z.coerce.number().int().min(60).max(30 * 24 * 3600).default(24 * 3600),
  RESUMABLE_UPLOAD_MAX_OUTSTANDING: z.coerce.number().int().min(1).max(100_000).default(100),
  RESUMABLE_LOCK_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(20_000),
  RESUMABLE_LOCK_CONNECTIONS: z.coerce.number().int().min(1).max(1000).default(20),
  MEDIA_KIND_LIMITS_MB: optionalString.transform((raw, ctx) => {
    const out: Partial<Record<'IMAGE' | 'VIDEO' | 'AUDIO' | 'DOCUMENT', number>> = {};
    if (!raw) return out;
    for (const part of raw.split(',')) {
      const m = /^\s*(IMAGE|VIDEO|AUDIO|DOCUMENT)\s*=\s*(\d+(?:\.\d+)?)\s*$/.exec(part);
      if (!m) {
        ctx.addIssue({ code: 'custom', message: 'expected KIND=megabytes,… with KIND one of IMAGE, VIDEO, AUDIO, DOCUMENT' });
        return z.NEVER;
      }
      out[m[1] as 'IMAGE'] = Math.floor(Number(m[2]) * 1024 * 1024);
    }
    return out;
  }),
  HTTP_HEADERS_TIMEOUT_SECONDS: z.coerce.number().int().min(1).max(600).default(20),
  HTTP_REQUEST_TIMEOUT_SECONDS: z.coerce.number().int().min(0).default(0),
  HTTP_IDLE_TIMEOUT_SECONDS: z.coerce.number().int().min(0).max(3600).default(60),
  HTTP_KEEP_ALIVE_TIMEOUT_SECONDS: z.coerce.number().int().min(1).max(600).default(5),
  SWEEP_INTERVAL_SECONDS: z.coerce.number().int().min(0).default(3600),
  // Writes in progress are protected by their pending-write records; the grace period is a second guard, never below a minute.
  SWEEP_GRACE_SECONDS: z.coerce.number().int().min(60).default(3600),
  // The maintenance commands' progress log lines when stderr is not a terminal.
  PROGRESS_INTERVAL_MS: z.coerce.number().int().min(100).max(3_600_000).default(10_000),
  ASSET_LINKS_ALLOW_PRIVATE_HOSTS: boolString,
  TENANT_EXPENSIVE_QUERY_LIMIT: z.coerce.number().int().min(1).max(200).optional(),
  EXPENSIVE_QUERY_LIMIT: z.coerce.number().int().min(1).max(200).optional(),
  EXPENSIVE_QUERY_WAIT_MS: z.coerce.number().int().min(0).max(60_000).default(2000),
  EXPENSIVE_QUERY_TIMEOUT_MS: z.coerce.number().int().min(50).max(600_000).default(1000),
  IMAGE_CONCURRENCY: z.coerce.number().int().min(1).max(256).optional(),
  IMAGE_QUEUE_LENGTH: z.coerce.number().int().min(0).max(10_000).optional(),
  IMAGE_QUEUE_WAIT_MS: z.coerce.number().int().min(0).max(600_000).default(60_000),
  IMAGE_MEMORY_MB: z.coerce.number().int().min(64).max(1_048_576).default(512),
  RENDER_WARM_THUMBS: boolString,
  // Renders (?w=&h=) restricted to these sizes: a comma-separated list of whole numbers from 1 to 4096.
  RENDER_SIZES: optionalString.transform((raw, ctx) => {
    if (!raw) return undefined;
    const sizes = raw.split(',').map((x) => x.trim()).filter(Boolean);
    const bad = sizes.find((x) => !/^[0-9]{1,4}$/.test(x) || Number(x) < 1 || Number(x) > 4096);
    if (bad !== undefined || sizes.length === 0 || sizes.length > 64) {
      ctx.addIssue({ code: 'custom', message: `expected up to 64 comma-separated sizes from 1 to 4096 (e.g. 160,320,640,1280)${bad !== undefined ? `; "${bad.slice(0, 16)}" is not one` : ''}` });
      return z.NEVER;
    }
    return [...new Set(sizes.map(Number))].sort((a, b) => a - b);
  }),
  // Node's own variable (the libuv thread pool, 4 by default); read here only to size the image queue.
  UV_THREADPOOL_SIZE: z.coerce.number().int().min(1).max(1024).default(4),
  CLAMD_URL: clamdUrl,
  CLAMD_TIMEOUT_MS: optionalString.pipe(
    z
      .string()
      .regex(/^\d+$/, 'must be a whole number of milliseconds')
      .transform(Number)
      .pipe(z.number().min(100, 'must be at least 100 (milliseconds)').max(600_000, 'must be at most 600000 (10 minutes)'))
      .optional(),
  ),
  CLAMD_FAIL_OPEN: optionalString.pipe(z.enum(['true', 'false', '1', '0'], { message: 'must be true or false (or 1 or 0)' }).transform((v) => v === 'true' || v === '1').optional()),
});

export interface Config {
  readonly port: number;
  readonly host: string | undefined;
  /**
   * Where GET /metrics is served: on a second HTTP server on `port` (METRICS_PORT,
   * same HOST; 0: an ephemeral port), and on the public port to requests with
   * `Authorization: Bearer <token>` (METRICS_TOKEN). Neither set: not served.
   */
  readonly metrics: { readonly port: number | undefined; readonly token: string | undefined };
  readonly dataDir: string;
  readonly databaseUrl: string | undefined;
  /** Port of the embedded PostgreSQL (without DATABASE_URL); 0: a free one at each start. */
  readonly embeddedPgPort: number;
  readonly databasePoolSize: number;
  readonly s3:
    | {
        readonly bucket: string;
        readonly endpoint?: string;
        readonly region?: string;
        readonly forcePathStyle: boolean;
        /** Request checksums: 'WHEN_REQUIRED' for stores that mishandle the SDK's default CRC32 (s3rver). */
        readonly checksums: 'WHEN_REQUIRED' | 'WHEN_SUPPORTED';
      }
    | undefined;
  /**
   * SSE-C over a plain http: endpoint: never by default (the customer key, and the
   * plaintext, would travel in clear); 'loopback' allows it when the endpoint's host
   * is 127.0.0.1, ::1 or localhost (tests, a store on the same machine).
   */
  readonly sseCOverHttp: 'loopback' | undefined;
  readonly publicBaseUrl: string | undefined;
  /**
   * Browser origins allowed to call the API cross-origin (CORS_ORIGINS); empty:
   * CORS is off and no response carries CORS headers. See src/http/cors.ts.
   */
  readonly corsOrigins: ReadonlySet<string>;
  readonly jwt: {
    readonly secret: string | undefined;
    readonly jwksUrl: string | undefined;
    readonly issuer: string | undefined;
    readonly audience: string | undefined;
    /** Tokens issued (iat) longer ago than this are refused, whatever their exp. */
    readonly maxTokenAgeSeconds: number;
    /** Clock skew allowed between the token's issuer and this service (exp, nbf, iat). */
    readonly clockToleranceSeconds: number;
  };
  /** Secret the keys of signed links and signed direct upload ids are derived from (see auth/secrets.ts). */
  readonly signingSecret: string | undefined;
  /** Worker API keys and what each may do. */
  readonly workerKeys: ReadonlyMap<string, WorkerKeyGrant>;
  readonly mediaKeys: string | undefined;
  readonly policyFile: string | undefined;
  /** Per-kind size limits (bytes) replacing the built-in ones. */
  readonly kindLimits: Readonly<Partial<Record<'IMAGE' | 'VIDEO' | 'AUDIO' | 'DOCUMENT', number>>>;
  readonly logLevel: string;
  /** NODE_ENV=production: the defaults of a public deployment (introspection off). */
  readonly production: boolean;
  /** Schema introspection; when off, error messages do not describe the schema either. */
  readonly introspection: boolean;
  readonly signedUrlTtlSeconds: number;
  readonly directUploadTtlSeconds: number;
  /** Server timeouts (milliseconds); see src/http/server-timeouts.ts. */
  readonly http: {
    /** Time to receive a request's headers. */
    readonly headersTimeoutMs: number;
    /** Time to receive a whole request, body included (0: no limit; stalls are cut by the idle timeout). */
    readonly requestTimeoutMs: number;
    /** A connection on which no byte moves in either direction for this long is closed (0: never). */
    readonly idleTimeoutMs: number;
    /** How long an idle keep-alive connection waits for its next request. */
    readonly keepAliveTimeoutMs: number;
  };
  /** Direct upload tickets a tenant may hold at once (unexpired, not completed). */
  readonly directUploadMaxOutstanding: number;
  /** Resumable (tus) uploads, /uploads/resumable: see src/modules/resumable-uploads/. */
  readonly resumable: {
    /** An upload expires this long after its creation: unfinished, it is refused (410) and swept; finished, its record goes. */
    readonly ttlSeconds: number;
    /** Unfinished, unexpired uploads a tenant may hold at once. */
    readonly maxOutstanding: number;
    /** How long a request waits for the upload's lock (another request holds it) before 423 Locked. */
    readonly lockTimeoutMs: number;
    /** Database connections for upload locks per instance: the tus requests this instance serves at once. */
    readonly lockConnections: number;
  };
  /** How often the orphan sweep runs inside the service (0: never). */
  readonly sweepIntervalSeconds: number;
  /** Age below which the sweep leaves things alone (in-flight uploads). */
  readonly sweepGraceSeconds: number;
  /** How often the maintenance commands (sweep, keys:rotate) log their progress when stderr is not a terminal. */
  readonly progressIntervalMs: number;
  /** LINK asset urls may name loopback, private, link-local and local-network hosts (intranet deployments). */
  readonly assetLinksAllowPrivateHosts: boolean;
  /**
   * Queries whose cost one tenant controls and no index bounds (regular
   * expressions in `q`, `mediaLibrary(search:)`, counts over every match):
   * how many run at once per tenant and in all, how long one waits for its
   * turn, and how long PostgreSQL lets it run.
   */
  readonly expensiveQueries: {
    readonly perTenant: number;
    readonly total: number;
    readonly waitMs: number;
    readonly timeoutMs: number;
  };
  /** RENDER_WARM_THUMBS: render each new image's THUMB in the background after its upload, when the image queue is idle. */
  readonly renderWarmThumbs: boolean;
  /** RENDER_SIZES: when set, the only widths and heights a render may ask for. */
  readonly renderSizes: readonly number[] | undefined;
  /**
   * Malware scanning of uploads by clamd (CLAMD_URL; undefined: no scanning):
   * where clamd listens, how long it may take to read and to answer, and
   * whether a file it cannot scan is accepted (fail open) or refused (the default).
   */
  readonly clamd:
    | {
        readonly url: string;
        readonly address: ClamdAddress;
        readonly timeoutMs: number;
        readonly failOpen: boolean;
      }
    | undefined;
  /** Image decoding and resizing: jobs at once, jobs waiting, how long one waits, and the memory the running ones may need. */
  readonly images: {
    readonly concurrency: number;
    readonly maxWaiting: number;
    readonly waitMs: number;
    readonly memoryBytes: number;
  };
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Parses and validates the environment. Throws ConfigError naming every bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  const e = parsed.data;
  if (e.JWT_SECRET && e.JWT_JWKS_URL) {
    throw new ConfigError('invalid configuration:\n  JWT_SECRET and JWT_JWKS_URL are exclusive: set one');
  }
  if (e.JWT_JWKS_URL) {
    // An identity provider serves many applications with the same keys: without
    // both checks, a token it issued for any of them would be accepted here.
    const problems = [
      jwksUrlProblem(e.JWT_JWKS_URL),
      e.JWT_ISSUER ? undefined : 'JWT_ISSUER: required with JWT_JWKS_URL (the identity provider\'s issuer)',
      e.JWT_AUDIENCE ? undefined : 'JWT_AUDIENCE: required with JWT_JWKS_URL (this API\'s audience at the identity provider)',
      // Without a shared secret, each instance would key signed links and ids from its own DATA_DIR.
      e.SIGNING_SECRET ? undefined : 'SIGNING_SECRET: required with JWT_JWKS_URL (the secret signed links and direct upload ids are derived from, the same on every instance)',
    ].filter(Boolean);
    if (problems.length > 0) throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`);
  }
  // With a database or a bucket that other instances can share, secrets generated
  // under this DATA_DIR would differ from theirs: each instance would read the
  // others' encrypted media as corrupt and reject their tokens.
  if ((e.DATABASE_URL || e.S3_BUCKET) && !e.DEV_ALLOW_GENERATED_SECRETS) {
    const shared = e.DATABASE_URL ? 'DATABASE_URL' : 'S3_BUCKET';
    const problems = [
      e.MEDIA_KEYS ? undefined : `MEDIA_KEYS: required with ${shared} (every instance must encrypt and decrypt with the same key ring; generate one with: node -e "console.log('k1:' + require('crypto').randomBytes(32).toString('base64'))")`,
      e.JWT_SECRET || e.JWT_JWKS_URL ? undefined : `JWT_SECRET: required with ${shared} (or JWT_JWKS_URL): every instance must accept the same tokens`,
    ].filter(Boolean);
    if (problems.length > 0) {
      throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}\n  (for a single development instance, DEV_ALLOW_GENERATED_SECRETS=true generates them under DATA_DIR instead)`);
    }
  }
  if (!e.WORKER_API_KEYS_ALLOW_ANY_TENANT && [...e.WORKER_API_KEYS.values()].some((g) => g.tenants === '*')) {
    throw new ConfigError(
      'invalid configuration:\n  WORKER_API_KEYS: a key bound to every tenant (*) needs WORKER_API_KEYS_ALLOW_ANY_TENANT=true; otherwise list its tenants (key:types:tenant1|tenant2)',
    );
  }
  if (e.HTTP_REQUEST_TIMEOUT_SECONDS > 0 && e.HTTP_REQUEST_TIMEOUT_SECONDS < e.HTTP_HEADERS_TIMEOUT_SECONDS) {
    throw new ConfigError('invalid configuration:\n  HTTP_REQUEST_TIMEOUT_SECONDS: must be 0 (no limit) or at least HTTP_HEADERS_TIMEOUT_SECONDS');
  }
  if (e.METRICS_PORT !== undefined && e.METRICS_PORT !== 0 && e.METRICS_PORT === e.PORT) {
    throw new ConfigError('invalid configuration:\n  METRICS_PORT: must differ from PORT (the metrics server is a second server; use METRICS_TOKEN to serve /metrics on the public port)');
  }
  if ((e.CLAMD_TIMEOUT_MS !== undefined || e.CLAMD_FAIL_OPEN !== undefined) && !e.CLAMD_URL) {
    throw new ConfigError('invalid configuration:\n  CLAMD_URL: required when CLAMD_TIMEOUT_MS or CLAMD_FAIL_OPEN is set (without it nothing is scanned)');
  }
  if ((e.S3_ENDPOINT || e.S3_REGION || e.S3_FORCE_PATH_STYLE !== undefined) && !e.S3_BUCKET) {
    throw new ConfigError('invalid configuration:\n  S3_BUCKET: required when S3_ENDPOINT, S3_REGION or S3_FORCE_PATH_STYLE is set');
  }
  // Half the cores for one tenant's expensive queries (at least one): a regular
  // expression spinning in a PostgreSQL backend takes a whole core, and the other
  // tenants need the rest. At most half the pool for all of them together.
  const cores = os.availableParallelism();
  const halfPool = Math.max(1, Math.floor(e.DATABASE_POOL_SIZE / 2));
  const perTenant = e.TENANT_EXPENSIVE_QUERY_LIMIT ?? Math.min(Math.max(1, Math.floor(cores / 2)), halfPool);
  const total = e.EXPENSIVE_QUERY_LIMIT ?? Math.max(perTenant, halfPool);
  if (perTenant > total) {
    throw new ConfigError('invalid configuration:\n  TENANT_EXPENSIVE_QUERY_LIMIT: must not exceed EXPENSIVE_QUERY_LIMIT');
  }
  if (total >= e.DATABASE_POOL_SIZE && e.DATABASE_POOL_SIZE > 1) {
    throw new ConfigError('invalid configuration:\n  EXPENSIVE_QUERY_LIMIT: must be below DATABASE_POOL_SIZE, so that cheap queries always find a connection');
  }
  // One image job per core, and never so many that they hold every libuv thread
  // (a running sharp pipeline blocks one): file system and crypto work needs them too.
  const imageConcurrency = e.IMAGE_CONCURRENCY ?? Math.max(1, Math.min(cores, e.UV_THREADPOOL_SIZE - 2));
  return Object.freeze({
    port: e.PORT,
    host: e.HOST,
    metrics: Object.freeze({ port: e.METRICS_PORT, token: e.METRICS_TOKEN }),
    dataDir: path.resolve(e.DATA_DIR),
    databaseUrl: e.DATABASE_URL,
    embeddedPgPort: e.EMBEDDED_PG_PORT,
    databasePoolSize: e.DATABASE_POOL_SIZE,
    s3: e.S3_BUCKET
      ? Object.freeze({
          bucket: e.S3_BUCKET,
          ...(e.S3_ENDPOINT ? { endpoint: e.S3_ENDPOINT } : {}),
          ...(e.S3_REGION ? { region: e.S3_REGION } : {}),
          forcePathStyle: e.S3_FORCE_PATH_STYLE ?? false,
          checksums: e.S3_CHECKSUMS === 'when_supported' ? ('WHEN_SUPPORTED' as const) : ('WHEN_REQUIRED' as const),
        })
      : undefined,
    sseCOverHttp: e.S3_SSE_C_OVER_HTTP,
    publicBaseUrl: e.PUBLIC_BASE_URL?.replace(/\/+$/, ''),
    corsOrigins: e.CORS_ORIGINS,
    jwt: Object.freeze({
      secret: e.JWT_SECRET,
      jwksUrl: e.JWT_JWKS_URL,
      issuer: e.JWT_ISSUER,
      audience: e.JWT_AUDIENCE,
      maxTokenAgeSeconds: e.JWT_MAX_TOKEN_AGE_SECONDS,
      clockToleranceSeconds: e.JWT_CLOCK_TOLERANCE_SECONDS,
    }),
    signingSecret: e.SIGNING_SECRET,
    workerKeys: e.WORKER_API_KEYS,
    mediaKeys: e.MEDIA_KEYS,
    policyFile: e.MEDIA_POLICY_FILE,
    kindLimits: Object.freeze(e.MEDIA_KIND_LIMITS_MB),
    logLevel: e.LOG_LEVEL,
    production: e.NODE_ENV === 'production',
    introspection: e.INTROSPECTION ?? e.NODE_ENV !== 'production',
    signedUrlTtlSeconds: e.SIGNED_URL_TTL_SECONDS,
    directUploadTtlSeconds: e.DIRECT_UPLOAD_TTL_SECONDS,
    http: Object.freeze({
      headersTimeoutMs: e.HTTP_HEADERS_TIMEOUT_SECONDS * 1000,
      requestTimeoutMs: e.HTTP_REQUEST_TIMEOUT_SECONDS * 1000,
      idleTimeoutMs: e.HTTP_IDLE_TIMEOUT_SECONDS * 1000,
      keepAliveTimeoutMs: e.HTTP_KEEP_ALIVE_TIMEOUT_SECONDS * 1000,
    }),
    directUploadMaxOutstanding: e.DIRECT_UPLOAD_MAX_OUTSTANDING,
    resumable: Object.freeze({
      ttlSeconds: e.RESUMABLE_UPLOAD_TTL_SECONDS,
      maxOutstanding: e.RESUMABLE_UPLOAD_MAX_OUTSTANDING,
      lockTimeoutMs: e.RESUMABLE_LOCK_TIMEOUT_MS,
      lockConnections: e.RESUMABLE_LOCK_CONNECTIONS,
    }),
    sweepIntervalSeconds: e.SWEEP_INTERVAL_SECONDS,
    sweepGraceSeconds: e.SWEEP_GRACE_SECONDS,
    progressIntervalMs: e.PROGRESS_INTERVAL_MS,
    assetLinksAllowPrivateHosts: e.ASSET_LINKS_ALLOW_PRIVATE_HOSTS ?? false,
    expensiveQueries: Object.freeze({ perTenant, total, waitMs: e.EXPENSIVE_QUERY_WAIT_MS, timeoutMs: e.EXPENSIVE_QUERY_TIMEOUT_MS }),
    renderSizes: e.RENDER_SIZES ? Object.freeze(e.RENDER_SIZES) : undefined,
    renderWarmThumbs: e.RENDER_WARM_THUMBS ?? false,
    clamd: e.CLAMD_URL
      ? Object.freeze({ url: e.CLAMD_URL.url, address: Object.freeze(e.CLAMD_URL.address), timeoutMs: e.CLAMD_TIMEOUT_MS ?? 30_000, failOpen: e.CLAMD_FAIL_OPEN ?? false })
      : undefined,
    images: Object.freeze({
      concurrency: imageConcurrency,
      // A waiting render holds nothing but its request (the original is read in its turn).
      maxWaiting: e.IMAGE_QUEUE_LENGTH ?? 16 * imageConcurrency,
      waitMs: e.IMAGE_QUEUE_WAIT_MS,
      memoryBytes: e.IMAGE_MEMORY_MB * 1024 * 1024,
    }),
  });
}
