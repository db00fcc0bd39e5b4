import { randomUUID } from 'node:crypto';
import type { Prisma, PrismaClient } from '../generated/prisma/client.js';
import { errors } from '../errors/index.js';
import type { Logger } from '../logger.js';
import { mayHaveCommitted } from './transact.js';

/** How often a live writer refreshes its rows. */
export const PENDING_HEARTBEAT_MS = 60_000;
/** A pending write nobody refreshed for this long is a crashed writer's: the sweep removes it. */
export const PENDING_STALE_SECONDS = 600;

/**
 * Writes in progress into object groups ({tenant}/{id}/), recorded in the
 * database so that the sweep can tell them from leftovers by state, not by age
 * (SPEC 15): a row is written before the first object of a write and removed in
 * the transaction that commits the rows pointing at its objects. While a write
 * runs, one timer per process refreshes `touched_at` of all its live rows (the
 * database's clock); a row left by a crashed process stops being refreshed and
 * the sweep removes it after PENDING_STALE_SECONDS.
 */
export class PendingWrites {
  private readonly live = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly deps: { prisma: PrismaClient; logger: Logger },
    private readonly heartbeatMs = PENDING_HEARTBEAT_MS,
  ) {}

  /** Records a write into {tenant}/{groupId}/; call before its first object. */
  async begin(tenant: string, groupId: string): Promise<PendingWrite> {
    const token = randomUUID();
    try {
      await this.deps.prisma.$executeRaw`INSERT INTO pending_write (token, tenant_id, group_id) VALUES (${token}::uuid, ${tenant}, ${groupId}::uuid)`;
    } catch (e) {
      throw errors.storageUnavailable(e);
    }
    this.live.add(token);
    this.schedule();
    return new PendingWrite(token, this);
  }

  /** Tokens whose rows are refreshed (tests). */
  get size(): number {
    return this.live.size;
  }

  /** @internal */
  async end(token: string, remove: boolean): Promise<void> {
    this.live.delete(token);
    if (this.live.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
    if (!remove) return;
    await this.deps.prisma.$executeRaw`DELETE FROM pending_write WHERE token = ${token}::uuid`.catch((err: unknown) => {
      this.deps.logger.warn({ err, token }, 'could not remove a pending-write record; the sweep removes it once stale');
    });
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.touch(), this.heartbeatMs);
    this.timer.unref();
  }

  private async touch(): Promise<void> {
    const tokens = [...this.live];
    if (tokens.length === 0) return;
    await this.deps.prisma.$executeRaw`UPDATE pending_write SET touched_at = now() WHERE token = ANY(${tokens}::uuid[])`.catch((err: unknown) => {
      this.deps.logger.warn({ err, count: tokens.length }, 'could not refresh pending-write records');
    });
  }
}

/** One write in progress (see PendingWrites). */
export class PendingWrite {
  private closed = false;
  private settled = false;

  constructor(
    readonly token: string,
    private readonly owner: PendingWrites,
  ) {}

  /**
   * In the transaction that commits the rows for this write: removes the record.
   * A record that is gone was given up by the sweep (this writer stalled for
   * longer than PENDING_STALE_SECONDS), which may have deleted its objects: the
   * transaction must not commit.
   */
  async settle(tx: Prisma.TransactionClient): Promise<void> {
    const n = await tx.$executeRaw`DELETE FROM pending_write WHERE token = ${this.token}::uuid`;
    if (n !== 1) throw errors.storageUnavailable(new Error('this write stalled for so long that the sweep gave it up; its objects may be gone'));
    this.settled = true;
  }

  /**
   * Ends the write. Without an error, the rows pointing at its objects are in
   * place (committed with settle, which removed the record; or written by the
   * caller before closing): the record goes if it is still there. After an error,
   * the record is removed too (the caller has deleted the objects, or leaves them
   * to the sweep), unless the error says the commit may have taken effect: then it
   * stays until it goes stale, and the sweep judges the objects by the rows then.
   */
  async close(error?: unknown): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const remove = error === undefined ? !this.settled : !mayHaveCommitted(error);
    await this.owner.end(this.token, remove);
  }
}
