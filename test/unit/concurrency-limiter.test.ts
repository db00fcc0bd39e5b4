import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { ExpensiveQueries, WAITING_PER_TENANT } from '../../src/db/expensive-queries.js';
import { AppError } from '../../src/errors/index.js';
import { ImageQueue } from '../../src/modules/renders/image-queue.js';
import { ConcurrencyLimiter, LimitReached } from '../../src/util/concurrency-limiter.js';

/** A job that runs until `finish()` is called, and records that it started. */
function gatedJob() {
  let finish!: () => void;
  let started = false;
  const done = new Promise<void>((r) => (finish = r));
  return {
    job: async () => {
      started = true;
      await done;
      return 'done';
    },
    get started() {
      return started;
    },
    finish: () => finish(),
  };
}

const tick = () => new Promise((r) => setTimeout(r, 5));

async function refusal(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a refusal');
    },
    (e: unknown) => e,
  );
}

describe('ConcurrencyLimiter', () => {
  it('runs at most `concurrency` jobs, first come first served, and lets waiting ones in as others end', async () => {
    const limiter = new ConcurrencyLimiter({ concurrency: 2, maxWaiting: 10, maxWaitMs: 10_000 });
    const jobs = Array.from({ length: 5 }, gatedJob);
    const results = jobs.map((j) => limiter.run(j.job));
    await tick();
    expect(jobs.map((j) => j.started)).toEqual([true, true, false, false, false]);
    expect(limiter.stats()).toMatchObject({ running: 2, waiting: 3 });
    jobs[1]!.finish();
    await tick();
    expect(jobs.map((j) => j.started)).toEqual([true, true, true, false, false]);
    for (const j of jobs) j.finish();
    expect(await Promise.all(results)).toEqual(['done', 'done', 'done', 'done', 'done']);
    expect(limiter.stats()).toMatchObject({ running: 0, waiting: 0, peakRunning: 2 });
    expect(limiter.idle).toBe(true);
  });

  it('refuses at once beyond maxWaiting, and after maxWaitMs when no turn comes', async () => {
    const limiter = new ConcurrencyLimiter({ concurrency: 1, maxWaiting: 1, maxWaitMs: 50 });
    const holder = gatedJob();
    const running = limiter.run(holder.job);
    const waiting = limiter.run(async () => 'late');
    const over = await refusal(limiter.run(async () => 'never'));
    expect(over).toBeInstanceOf(LimitReached);
    expect((over as LimitReached).reason).toBe('queue-full');
    const timedOut = await refusal(waiting);
    expect((timedOut as LimitReached).reason).toBe('wait-timeout');
    expect((timedOut as LimitReached).waitedMs).toBeGreaterThanOrEqual(40);
    expect(limiter.stats().refused).toEqual({ 'queue-full': 1, 'wait-timeout': 1 });
    holder.finish();
    await running;
    expect(limiter.idle).toBe(true);
  });

  it('gives the turn back when a job fails', async () => {
    const limiter = new ConcurrencyLimiter({ concurrency: 1, maxWaiting: 1, maxWaitMs: 1000 });
    await expect(limiter.run(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await limiter.run(async () => 'next')).toBe('next');
  });

  it('shares a weight budget: heavy jobs wait for room, and a light one never overtakes a waiting heavy one', async () => {
    const limiter = new ConcurrencyLimiter({ concurrency: 10, capacity: 100, maxWaiting: 10, maxWaitMs: 10_000 });
    const a = gatedJob();
    const b = gatedJob();
    const c = gatedJob();
    const ra = limiter.run(a.job, { weight: 60 });
    const rb = limiter.run(b.job, { weight: 60 });
    const rc = limiter.run(c.job, { weight: 10 });
    await tick();
    expect([a.started, b.started, c.started]).toEqual([true, false, false]);
    expect(limiter.stats().inUse).toBe(60);
    a.finish();
    await tick();
    expect([b.started, c.started]).toEqual([true, true]);
    expect(limiter.stats().inUse).toBe(70);
    b.finish();
    c.finish();
    await Promise.all([ra, rb, rc]);
    expect(limiter.stats().inUse).toBe(0);
    await expect(limiter.acquire({ weight: 101 })).rejects.toThrow(RangeError);
  });
});

describe('ExpensiveQueries', () => {
  const noPool = {} as pg.Pool;
  const limits = { perTenant: 1, total: 2, waitMs: 100, timeoutMs: 1000 };

  it("keeps each tenant to its own limit: another tenant's query runs while the first tenant's wait", async () => {
    const gate = new ExpensiveQueries(noPool, limits);
    const a1 = gatedJob();
    const ra1 = gate.limit('tenanta', 'test', a1.job);
    const ra2 = refusal(gate.limit('tenanta', 'test', async () => 'a2'));
    const b = await gate.limit('tenantb', 'test', async () => 'b');
    expect(b).toBe('b');
    const e = (await ra2) as AppError;
    expect(e).toBeInstanceOf(AppError);
    expect(e.code).toBe('TOO_MANY_REQUESTS');
    expect(e.status).toBe(429);
    expect(e.extensions).toMatchObject({ code: 'TOO_MANY_REQUESTS', reason: 'TENANT_EXPENSIVE_QUERIES', limit: 1, retryAfterSeconds: 1 });
    expect(e.message).toMatch(/at most 1 run at a time and none finished within 100 ms/);
    a1.finish();
    expect(await ra1).toBe('done');
    // Idle tenants are forgotten.
    expect(gate.stats()).toMatchObject({ running: 0, waiting: 0, tenants: 0, refused: { tenant: 1, shared: 0 } });
  });

  it(`refuses at once beyond ${WAITING_PER_TENANT} waiting queries of one tenant`, async () => {
    const gate = new ExpensiveQueries(noPool, { ...limits, waitMs: 10_000 });
    const holder = gatedJob();
    const running = gate.limit('tenanta', 'test', holder.job);
    const waiting = Array.from({ length: WAITING_PER_TENANT }, () => gate.limit('tenanta', 'test', async () => 'w'));
    const e = (await refusal(gate.limit('tenanta', 'test', async () => 'x'))) as AppError;
    expect(e.code).toBe('TOO_MANY_REQUESTS');
    expect(e.message).toMatch(new RegExp(`${WAITING_PER_TENANT} more are already waiting`));
    holder.finish();
    await running;
    expect(await Promise.all(waiting)).toEqual(Array(WAITING_PER_TENANT).fill('w'));
  });

  it('answers SERVICE_BUSY when the limit shared by all tenants is full', async () => {
    const gate = new ExpensiveQueries(noPool, limits);
    const a = gatedJob();
    const b = gatedJob();
    const ra = gate.limit('tenanta', 'test', a.job);
    const rb = gate.limit('tenantb', 'test', b.job);
    const e = (await refusal(gate.limit('tenantc', 'test', async () => 'c'))) as AppError;
    expect(e.code).toBe('SERVICE_BUSY');
    expect(e.status).toBe(503);
    expect(e.extensions).toMatchObject({ reason: 'EXPENSIVE_QUERIES', limit: 2 });
    a.finish();
    b.finish();
    await Promise.all([ra, rb]);
  });
});

describe('ImageQueue', () => {
  it('runs at most `concurrency` jobs and refuses beyond its queue with SERVICE_BUSY', async () => {
    const queue = new ImageQueue({ concurrency: 1, maxWaiting: 1, waitMs: 10_000, memoryBytes: 1000 });
    const a = gatedJob();
    const b = gatedJob();
    const ra = queue.run(a.job);
    const rb = queue.run(b.job);
    const e = (await refusal(queue.run(async () => 'c'))) as AppError;
    expect(e.code).toBe('SERVICE_BUSY');
    expect(e.extensions).toMatchObject({ reason: 'IMAGE_QUEUE_FULL', limit: 1 });
    expect(queue.stats()).toMatchObject({ running: 1, waiting: 1 });
    a.finish();
    b.finish();
    await Promise.all([ra, rb]);
    expect(queue.stats()).toMatchObject({ running: 0, waiting: 0, peakRunning: 1, memoryInUse: 0 });
  });

  it('lets jobs that hold a turn wait for memory, and gives it back when they end', async () => {
    const queue = new ImageQueue({ concurrency: 3, maxWaiting: 3, waitMs: 10_000, memoryBytes: 1000 });
    const order: string[] = [];
    const big = (name: string, bytes: number, hold: Promise<void>) =>
      queue.run(async (reserve) => {
        await reserve(bytes);
        order.push(`${name} decodes`);
        await hold;
        order.push(`${name} done`);
      });
    let releaseFirst!: () => void;
    const first = big('first', 700, new Promise((r) => (releaseFirst = r)));
    const second = big('second', 700, Promise.resolve());
    const small = big('small', 200, Promise.resolve());
    await tick();
    expect(order).toEqual(['first decodes']);
    expect(queue.stats()).toMatchObject({ running: 3, memoryInUse: 700 });
    releaseFirst();
    await Promise.all([first, second, small]);
    // The small one waited behind the second (first come first served), then both fit beside each other.
    expect(order).toEqual(['first decodes', 'first done', 'second decodes', 'small decodes', 'second done', 'small done']);
    expect(queue.stats().memoryInUse).toBe(0);
  });
});
