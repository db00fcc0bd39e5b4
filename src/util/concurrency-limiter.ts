/** Why a job was not let in: too many were already waiting, or its turn did not come in time. */
export type Refusal = 'queue-full' | 'wait-timeout';

/** Thrown by ConcurrencyLimiter when a job is refused; callers turn it into the error their clients see. */
export class LimitReached extends Error {
  override name = 'LimitReached';
  constructor(
    readonly reason: Refusal,
    readonly waitedMs: number,
  ) {
    super(reason === 'queue-full' ? 'too many jobs are waiting' : `no turn within ${Math.round(waitedMs)} ms`);
  }
}

export interface LimiterOptions {
  /** Jobs holding a turn at once. */
  concurrency: number;
  /**
   * A budget shared by the jobs holding a turn (e.g. bytes of memory): a job
   * asks for a weight, and waits until the weights in use leave room for it.
   * Infinite unless given. A weight larger than the whole budget never fits:
   * callers check it first (acquire refuses it at once).
   */
  capacity?: number;
  /** Jobs waiting for a turn; one more is refused at once. */
  maxWaiting: number;
  /** How long a job waits for its turn before it is refused. */
  maxWaitMs: number;
}

export interface LimiterStats {
  running: number;
  waiting: number;
  /** Weights held by the running jobs. */
  inUse: number;
  /** The most jobs that ever held a turn at the same time. */
  peakRunning: number;
  refused: Record<Refusal, number>;
}

interface Waiter {
  weight: number;
  grant: () => void;
  timer: NodeJS.Timeout;
}

/**
 * A semaphore with a bounded, first-come first-served queue: at most
 * `concurrency` jobs (and `capacity` of weight) at once, at most `maxWaiting`
 * waiting, none waiting longer than `maxWaitMs`. A job never overtakes one that
 * waits longer, so a heavy job is not starved by a stream of light ones.
 */
export class ConcurrencyLimiter {
  private running = 0;
  private inUse = 0;
  private peakRunning = 0;
  private readonly queue: Waiter[] = [];
  private readonly refused: Record<Refusal, number> = { 'queue-full': 0, 'wait-timeout': 0 };

  constructor(readonly options: LimiterOptions) {
    if (!(options.concurrency >= 1)) throw new RangeError('concurrency must be at least 1');
  }

  get capacity(): number {
    return this.options.capacity ?? Infinity;
  }

  stats(): LimiterStats {
    return { running: this.running, waiting: this.queue.length, inUse: this.inUse, peakRunning: this.peakRunning, refused: { ...this.refused } };
  }

  /** Nothing running and nothing waiting. */
  get idle(): boolean {
    return this.running === 0 && this.queue.length === 0;
  }

  /**
   * Waits for a turn (rejecting with LimitReached when refused) and resolves to
   * the function that gives it back; call it exactly once, in a `finally`.
   */
  acquire(options: { weight?: number; maxWaitMs?: number } = {}): Promise<() => void> {
    const weight = options.weight ?? 0;
    if (weight > this.capacity) return Promise.reject(new RangeError(`weight ${weight} exceeds the capacity ${this.capacity}`));
    if (this.queue.length === 0 && this.fits(weight)) return Promise.resolve(this.take(weight));
    if (this.queue.length >= this.options.maxWaiting) {
      this.refused['queue-full']++;
      return Promise.reject(new LimitReached('queue-full', 0));
    }
    const maxWaitMs = Math.max(0, Math.min(options.maxWaitMs ?? this.options.maxWaitMs, this.options.maxWaitMs));
    return new Promise((resolve, reject) => {
      const since = performance.now();
      const waiter: Waiter = {
        weight,
        grant: () => {
          clearTimeout(waiter.timer);
          resolve(this.take(weight));
        },
        timer: setTimeout(() => {
          const i = this.queue.indexOf(waiter);
          if (i < 0) return;
          this.queue.splice(i, 1);
          this.refused['wait-timeout']++;
          reject(new LimitReached('wait-timeout', performance.now() - since));
          // The head may have been what held the others back.
          this.pump();
        }, maxWaitMs),
      };
      this.queue.push(waiter);
    });
  }

  /** Runs `job` in its turn; the turn is given back however the job ends. */
  async run<T>(job: () => Promise<T>, options: { weight?: number; maxWaitMs?: number } = {}): Promise<T> {
    const release = await this.acquire(options);
    try {
      return await job();
    } finally {
      release();
    }
  }

  private fits(weight: number): boolean {
    return this.running < this.options.concurrency && this.inUse + weight <= this.capacity;
  }

  private take(weight: number): () => void {
    this.running++;
    this.inUse += weight;
    this.peakRunning = Math.max(this.peakRunning, this.running);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.running--;
      this.inUse -= weight;
      this.pump();
    };
  }

  private pump(): void {
    while (this.queue.length && this.fits(this.queue[0]!.weight)) this.queue.shift()!.grant();
  }
}
