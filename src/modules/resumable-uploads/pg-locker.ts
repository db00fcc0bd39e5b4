import pg from 'pg';
import { ERRORS, type Lock, type Locker, type RequestRelease } from '@tus/utils';
import type { Logger } from '../../logger.js';

/**
 * Advisory lock class of resumable uploads, with hashtext(upload id) as the second
 * key (two-key form; 727274 is the migrations', 727275 the sweep's, 727276 direct
 * upload tickets'). Two ids with the same hash share a lock: they only wait for
 * each other, never mix.
 */
export const UPLOAD_LOCK_CLASS = 727277;
/** Where a request that waits for a lock asks its holder, on any instance, to let go. */
const RELEASE_CHANNEL = 'media_api_resumable_release';
const PING_MS = 5_000;
const LISTEN_RETRY_MS = 2_000;

/** tus answers (status and body) of a lock that could not be had. */
export const LOCK_BUSY = { status_code: 423, body: 'This upload is being written by another request; retry shortly\n' };
export const LOCKS_UNAVAILABLE = { status_code: 503, body: 'Upload locks are unavailable (database), try again later\n' };

export interface PgLockerOptions {
  connectionString: string;
  /** Connections of this locker: locks held at once plus requests waiting for one. */
  connections: number;
  /** How long lock() waits for a lock that another request holds (PostgreSQL's lock_timeout), and for a connection. */
  lockTimeoutMs: number;
  logger: Logger;
  /** How often a held lock's connection is checked (tests lower it). */
  pingMs?: number;
}

/**
 * @tus/server's Locker on PostgreSQL session advisory locks, so that any instance
 * can serve any request of an upload. Each held lock has a connection of its own,
 * from a pool of this locker's (not the service's: a PATCH holds its lock for as
 * long as its body streams). Waiting is PostgreSQL's: `pg_advisory_lock` under
 * `lock_timeout` (then 423 Locked, which tus clients retry); a request that goes
 * away while waiting drops its connection, and `client_connection_check_interval`
 * ends its wait on the server. The lock goes with unlock() or with the connection:
 * PostgreSQL releases a session's locks when it ends, so a crashed instance holds
 * nothing. A held lock's connection is pinged; when it fails, the lock is gone and
 * the holder is told twice: its request is asked to stop (tus's requestRelease)
 * and `lostSignal(id)` aborts at once, which the store's write listens to, so that
 * no byte is written without the lock.
 *
 * tus's protocol lets a new request take over an upload from one that stalls (a
 * half-open connection): a waiter NOTIFYs RELEASE_CHANNEL with the id, and every
 * instance that holds that lock calls its holder's requestRelease (tus then ends
 * the holder's body after its lockDrainTimeout).
 */
export class PgLocker implements Locker {
  /** @internal */
  readonly pool: pg.Pool;
  /** Locks held by this instance, by upload id. */
  private readonly held = new Map<string, Set<PgLock>>();
  private listener: pg.Client | undefined;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly o: PgLockerOptions) {
    this.pool = new pg.Pool({
      connectionString: o.connectionString,
      max: o.connections,
      connectionTimeoutMillis: o.lockTimeoutMs,
      idleTimeoutMillis: 30_000,
      keepAlive: true,
      // In the start-up packet: every statement of these sessions waits at most this long for a lock.
      options: `-c lock_timeout=${o.lockTimeoutMs} -c client_connection_check_interval=1000`,
    });
    // An idle connection the server closed: the pool replaces it; unheard, the event would end the process.
    this.pool.on('error', (err) => o.logger.warn({ err: { message: err.message } }, 'resumable upload locks: an idle connection failed'));
  }

  newLock(id: string): PgLock {
    return new PgLock(id, this, this.o);
  }

  /** Takes the lock if it is free, without waiting (the sweep); null when another request holds it. */
  async tryLock(id: string): Promise<PgLock | null> {
    const lock = new PgLock(id, this, this.o);
    return (await lock.tryLock()) ? lock : null;
  }

  /** Aborts when the lock this instance holds for `id` is lost (undefined: none held here). */
  lostSignal(id: string): AbortSignal | undefined {
    const set = this.held.get(id);
    return set ? [...set][0]?.lost.signal : undefined;
  }

  /** Listens for release requests of other instances. */
  async start(): Promise<void> {
    await this.listen().catch((err: unknown) => {
      this.o.logger.warn({ err }, 'resumable upload locks: cannot listen for release requests yet; retrying');
      this.scheduleListen();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    const listener = this.listener;
    this.listener = undefined;
    await listener?.end().catch(() => undefined);
    await this.pool.end().catch(() => undefined);
  }

  /** @internal */
  register(lock: PgLock): void {
    let set = this.held.get(lock.id);
    if (!set) this.held.set(lock.id, (set = new Set()));
    set.add(lock);
  }

  /** @internal */
  unregister(lock: PgLock): void {
    const set = this.held.get(lock.id);
    set?.delete(lock);
    if (set?.size === 0) this.held.delete(lock.id);
  }

  /** @internal Asks the holders of `id` here (and, through `client`, on every instance) to let go. */
  async askRelease(id: string, client: pg.PoolClient): Promise<void> {
    this.releaseHere(id);
    await client.query('SELECT pg_notify($1, $2)', [RELEASE_CHANNEL, id]);
  }

  private releaseHere(id: string): void {
    for (const lock of this.held.get(id) ?? []) lock.askToRelease();
  }

  private async listen(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({ connectionString: this.o.connectionString, keepAlive: true });
    client.on('error', (err) => {
      if (this.listener !== client) return;
      this.listener = undefined;
      this.o.logger.warn({ err: { message: err.message } }, 'resumable upload locks: the release listener failed; reconnecting');
      client.end().catch(() => undefined);
      this.scheduleListen();
    });
    client.on('notification', (msg) => {
      if (msg.channel === RELEASE_CHANNEL && msg.payload) this.releaseHere(msg.payload);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${RELEASE_CHANNEL}`);
    } catch (e) {
      await client.end().catch(() => undefined);
      throw e;
    }
    if (this.closed) return void (await client.end().catch(() => undefined));
    this.listener = client;
  }

  private scheduleListen(): void {
    if (this.closed || this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.listen().catch(() => this.scheduleListen());
    }, LISTEN_RETRY_MS);
    this.retry.unref();
  }
}

/** One request's lock of one upload. */
export class PgLock implements Lock {
  /** Aborts when the lock is lost while held (its connection failed). */
  readonly lost = new AbortController();
  private client: pg.PoolClient | undefined;
  private failure: Error | undefined;
  private ping: NodeJS.Timeout | undefined;
  private requestRelease: RequestRelease = () => undefined;
  private readonly onError = (err: Error) => this.loseLock(err);

  constructor(
    readonly id: string,
    private readonly locker: PgLocker,
    private readonly o: PgLockerOptions,
  ) {}

  /**
   * Takes the lock, waiting at most lockTimeoutMs for another holder (asked to let
   * go), and rejects with tus's answers: ABORTED when the request went away, 423
   * when the wait timed out, 503 when the database could not be reached.
   */
  async lock(signal: AbortSignal, requestRelease: RequestRelease): Promise<void> {
    if (signal.aborted) throw ERRORS.ABORTED;
    const client = await this.connect();
    let aborted = false;
    // A wait cannot be cancelled by the pg client: the connection goes instead
    // (the server notices within client_connection_check_interval and ends the wait).
    const onAbort = () => {
      aborted = true;
      this.drop(client, new Error('the request went away while waiting for its lock'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      const r = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [UPLOAD_LOCK_CLASS, this.id]);
      if (!r.rows[0]?.ok) {
        await this.locker.askRelease(this.id, client);
        await client.query('SELECT pg_advisory_lock($1, hashtext($2))', [UPLOAD_LOCK_CLASS, this.id]);
      }
    } catch (e) {
      if (aborted) throw ERRORS.ABORTED;
      signal.removeEventListener('abort', onAbort);
      // The session may hold the lock (an error after it was granted): it must end.
      this.drop(client, e);
      if ((e as { code?: string }).code === '55P03') throw LOCK_BUSY;
      this.o.logger.warn({ err: e, uploadId: this.id }, 'resumable upload locks: could not take a lock');
      throw LOCKS_UNAVAILABLE;
    }
    signal.removeEventListener('abort', onAbort);
    if (aborted) throw ERRORS.ABORTED;
    this.hold(client, requestRelease);
  }

  /** @internal The lock if free, without waiting; false when it is held (connection failures reject). */
  async tryLock(): Promise<boolean> {
    const client = await this.connect();
    let ok: boolean;
    try {
      ok = (await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [UPLOAD_LOCK_CLASS, this.id])).rows[0]?.ok === true;
    } catch (e) {
      this.drop(client, e);
      throw e;
    }
    if (!ok) {
      this.drop(client);
      return false;
    }
    this.hold(client, () => undefined);
    return true;
  }

  async unlock(): Promise<void> {
    const client = this.client;
    if (!client) return;
    this.client = undefined;
    clearInterval(this.ping);
    this.locker.unregister(this);
    if (!this.failure) {
      await client.query('SELECT pg_advisory_unlock($1, hashtext($2))', [UPLOAD_LOCK_CLASS, this.id]).catch((err: unknown) => {
        this.failure = err instanceof Error ? err : new Error(String(err));
      });
    }
    // A connection that failed is destroyed: its session, and any lock it still had, end with it.
    this.drop(client, this.failure);
  }

  /** Gives the connection back to the pool, or (with an error) closes it: its session and locks end. */
  private drop(client: pg.PoolClient, err?: unknown): void {
    client.removeListener('error', this.onError);
    if (err === undefined) return client.release();
    // Errors of a connection being closed are nobody's news now; unheard, one would end the process.
    client.on('error', () => undefined);
    client.release(err instanceof Error ? err : new Error(String(err)));
  }

  /** @internal Another request wants this lock. */
  askToRelease(): void {
    try {
      void Promise.resolve(this.requestRelease()).catch(() => undefined);
    } catch {
      // requestRelease should not throw; nothing to do if it does.
    }
  }

  private async connect(): Promise<pg.PoolClient> {
    let client: pg.PoolClient;
    try {
      client = await this.locker.pool.connect();
    } catch (e) {
      this.o.logger.warn({ err: e, uploadId: this.id }, 'resumable upload locks: no database connection');
      throw LOCKS_UNAVAILABLE;
    }
    client.on('error', this.onError);
    return client;
  }

  private hold(client: pg.PoolClient, requestRelease: RequestRelease): void {
    this.client = client;
    this.requestRelease = requestRelease;
    this.locker.register(this);
    if (this.failure) this.loseLock(this.failure, true);
    const every = this.o.pingMs ?? PING_MS;
    this.ping = setInterval(() => {
      if (this.failure || this.client !== client) return;
      // pg honours a per-query read timeout (its types do not list it): a connection that no longer answers is a lost one.
      (client.query({ text: 'SELECT 1', query_timeout: every } as pg.QueryConfig) as Promise<unknown>).catch((err: unknown) => this.loseLock(err instanceof Error ? err : new Error(String(err))));
    }, every);
    this.ping.unref();
  }

  private loseLock(err: Error, again = false): void {
    if (this.failure && !again) return;
    this.failure = err;
    if (!this.client) return;
    this.o.logger.warn({ err: { message: err.message }, uploadId: this.id }, 'resumable upload locks: a held lock was lost (its connection failed); its request is stopped');
    this.lost.abort(new Error(`the lock of upload ${this.id} was lost: ${err.message}`));
    this.askToRelease();
  }
}
