import type pg from 'pg';
import type { Prisma } from '../generated/prisma/client.js';
import { errors } from '../errors/index.js';
import { ConcurrencyLimiter, LimitReached, type LimiterStats } from '../util/concurrency-limiter.js';

export interface ExpensiveQueryLimits {
  /** Expensive queries of one tenant running at once. */
  readonly perTenant: number;
  /** Expensive queries of all tenants running at once (below the pool size). */
  readonly total: number;
  /** How long one waits for its turn (both stages together). */
  readonly waitMs: number;
  /** How long PostgreSQL lets the statements of one run, together. */
  readonly timeoutMs: number;
}

/** Runs one statement of a timed session; its rows come from pg (int8 as strings). */
export type Statement = <R extends unknown[]>(sql: Prisma.Sql) => Promise<R>;

/** Queries of one tenant waiting for a turn; one more is refused at once. */
export const WAITING_PER_TENANT = 16;

/**
 * Keeps one tenant's expensive queries from stalling the others. A query is
 * expensive when its cost is set by the caller's arguments rather than bounded
 * by an index: a regular expression (whose backtracking can take seconds on one
 * 255-character name), a substring search over every file name, a count over
 * the matches of many tags. Each of those holds a pool connection and a
 * PostgreSQL backend, which spins on a core, for as long as it runs.
 *
 * So a tenant gets at most `perTenant` of them at once, all tenants together at
 * most `total` (fewer than the pool's connections, so cheap queries always find
 * one). A query over the limit waits its turn, first come first served, for at
 * most `waitMs`, and is then refused: TOO_MANY_REQUESTS when its tenant is at
 * its own limit, SERVICE_BUSY when the shared one is full. Waiting (rather than
 * refusing at once) also slows a client that resends as soon as it is answered.
 * `run` gives the query a read-only transaction whose statements PostgreSQL
 * cancels once `timeoutMs` have passed since the first began (SQLSTATE 57014),
 * which is what frees the core.
 */
export class ExpensiveQueries {
  private readonly tenants = new Map<string, ConcurrencyLimiter>();
  private readonly shared: ConcurrencyLimiter;
  private readonly refused = { tenant: 0, shared: 0 };

  constructor(
    private readonly pool: pg.Pool,
    readonly limits: ExpensiveQueryLimits,
  ) {
    this.shared = new ConcurrencyLimiter({ concurrency: limits.total, maxWaiting: 4 * limits.total, maxWaitMs: limits.waitMs });
  }

  /** Runs `job` in the tenant's turn, in a timed read-only session (see the class). */
  run<T>(tenant: string, what: string, job: (query: Statement) => Promise<T>): Promise<T> {
    return this.limit(tenant, what, () => this.session(job));
  }

  /** Runs `job` in the tenant's turn, with no session of its own (a count whose cost is the tenant's own data). */
  async limit<T>(tenant: string, what: string, job: () => Promise<T>): Promise<T> {
    const started = performance.now();
    let limiter = this.tenants.get(tenant);
    if (!limiter) {
      limiter = new ConcurrencyLimiter({ concurrency: this.limits.perTenant, maxWaiting: WAITING_PER_TENANT, maxWaitMs: this.limits.waitMs });
      this.tenants.set(tenant, limiter);
    }
    try {
      const releaseTenant = await limiter.acquire().catch((e: unknown) => {
        throw this.refusal(e, 'tenant', what);
      });
      try {
        const releaseShared = await this.shared.acquire({ maxWaitMs: this.limits.waitMs - (performance.now() - started) }).catch((e: unknown) => {
          throw this.refusal(e, 'shared', what);
        });
        try {
          return await job();
        } finally {
          releaseShared();
        }
      } finally {
        releaseTenant();
      }
    } finally {
      // Forget idle tenants, so the map holds only those with queries in flight.
      if (limiter.idle && this.tenants.get(tenant) === limiter) this.tenants.delete(tenant);
    }
  }

  stats(): { running: number; waiting: number; tenants: number; refused: { tenant: number; shared: number }; shared: LimiterStats } {
    let waiting = 0;
    for (const l of this.tenants.values()) waiting += l.stats().waiting;
    const shared = this.shared.stats();
    return { running: shared.running, waiting: waiting + shared.waiting, tenants: this.tenants.size, refused: { ...this.refused }, shared };
  }

  private async session<T>(job: (query: Statement) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    // The server can close a checked-out connection between statements (a restart): heard here, not fatal.
    const onError = (err: Error) => (broken ??= err);
    client.on('error', onError);
    try {
      await client.query('BEGIN READ ONLY');
      const deadline = performance.now() + this.limits.timeoutMs;
      const query: Statement = async <R extends unknown[]>(sql: Prisma.Sql) => {
        const left = Math.max(1, Math.ceil(deadline - performance.now()));
        await client.query(`SELECT set_config('statement_timeout', $1, true)`, [String(left)]);
        return (await client.query(sql.text, sql.values as unknown[])).rows as R;
      };
      try {
        const result = await job(query);
        await client.query('COMMIT');
        return result;
      } catch (e) {
        await client.query('ROLLBACK').catch((err: unknown) => (broken = err as Error));
        throw e;
      }
    } catch (e) {
      // A connection that failed outside a statement (network, protocol) is not reused.
      if (!(e as { code?: unknown }).code) broken ??= e as Error;
      throw e;
    } finally {
      client.removeListener('error', onError);
      client.release(broken);
    }
  }

  private refusal(e: unknown, stage: 'tenant' | 'shared', what: string): unknown {
    if (!(e instanceof LimitReached)) return e;
    this.refused[stage]++;
    const retryAfterSeconds = Math.max(1, Math.ceil(this.limits.timeoutMs / 1000));
    if (stage === 'tenant') {
      const why = e.reason === 'queue-full' ? `${WAITING_PER_TENANT} more are already waiting` : `none finished within ${this.limits.waitMs} ms`;
      return errors.tooManyRequests(
        `Too many expensive queries at once for this tenant (${what}): at most ${this.limits.perTenant} run at a time and ${why}; retry later or send fewer at once`,
        { reason: 'TENANT_EXPENSIVE_QUERIES', limit: this.limits.perTenant, retryAfterSeconds },
      );
    }
    return errors.busy(`The service is running as many expensive queries as it allows (${this.limits.total}); retry later`, {
      reason: 'EXPENSIVE_QUERIES',
      limit: this.limits.total,
      retryAfterSeconds,
    });
  }
}
