import os from 'node:os';
import sharp from 'sharp';
import { errors } from '../../errors/index.js';
import { ConcurrencyLimiter, LimitReached, type LimiterStats } from '../../util/concurrency-limiter.js';

export interface ImageQueueOptions {
  /** Jobs decoding and resizing at once. */
  readonly concurrency: number;
  /** Jobs waiting for a turn; one more is refused at once. */
  readonly maxWaiting: number;
  /** How long a job waits for its turn (and for memory) before it is refused. */
  readonly waitMs: number;
  /** Memory the running jobs may need together, by their own estimates (see reserve). */
  readonly memoryBytes: number;
}

/** Reserves memory for the rest of a job (once, when it knows its image); waits until the running jobs leave room. */
export type Reserve = (bytes: number) => Promise<void>;

export interface ImageQueueStats extends LimiterStats {
  /** Estimated bytes reserved by the running jobs. */
  memoryInUse: number;
}

/**
 * Every decode and resize of an image runs here: uploads, direct uploads and
 * assets now, renders on demand later. A job is any async function; the queue
 * bounds how many run (`concurrency`, one per core by default), how many wait
 * and for how long (then SERVICE_BUSY), and the memory of those running: a job
 * reserves the bytes its image needs decoded (width x height x bands x bytes per
 * sample, with a margin) before it decodes, and waits while the others hold the
 * budget, so a few huge images run one after the other while small ones run
 * side by side. An image that alone needs more than the budget is refused by
 * the caller before it reserves (PAYLOAD_TOO_LARGE).
 *
 * sharp is set up here for the whole process, once:
 * - one libvips thread per pipeline when the queue runs one job per core
 *   (`sharp.concurrency`): more threads per job would only compete for the same
 *   cores and keep more buffers;
 * - no libvips operation cache (`sharp.cache(false)`): every image is decoded
 *   once, so a cache holds memory and never hits.
 * A running pipeline blocks one libuv thread (the pool of 4 that file system,
 * crypto and DNS work share), which is why the configured default concurrency
 * leaves two of them free.
 */
export class ImageQueue {
  private readonly jobs: ConcurrencyLimiter;
  private readonly memory: ConcurrencyLimiter;

  constructor(readonly options: ImageQueueOptions) {
    sharp.concurrency(Math.max(1, Math.floor(os.availableParallelism() / options.concurrency)));
    sharp.cache(false);
    this.jobs = new ConcurrencyLimiter({ concurrency: options.concurrency, maxWaiting: options.maxWaiting, maxWaitMs: options.waitMs });
    // Only jobs holding a turn reserve, so at most `concurrency` wait here.
    this.memory = new ConcurrencyLimiter({ concurrency: Infinity, capacity: options.memoryBytes, maxWaiting: Infinity, maxWaitMs: options.waitMs });
  }

  get memoryBytes(): number {
    return this.options.memoryBytes;
  }

  /** Runs `job` in its turn (SERVICE_BUSY when it gets none in time); its reservation is given back when it ends. */
  async run<T>(job: (reserve: Reserve) => Promise<T>): Promise<T> {
    const started = performance.now();
    const release = await this.jobs.acquire().catch((e: unknown) => {
      throw this.busy(e);
    });
    let releaseMemory: (() => void) | undefined;
    const reserve: Reserve = async (bytes) => {
      if (releaseMemory) throw new Error('an image job reserves memory once');
      // The caller refuses images over the budget; one that slips through runs alone.
      const weight = Math.min(Math.max(0, Math.ceil(bytes)), this.options.memoryBytes);
      releaseMemory = await this.memory.acquire({ weight, maxWaitMs: this.options.waitMs - (performance.now() - started) }).catch((e: unknown) => {
        throw this.busy(e);
      });
    };
    try {
      return await job(reserve);
    } finally {
      releaseMemory?.();
      release();
    }
  }

  stats(): ImageQueueStats {
    const jobs = this.jobs.stats();
    const memory = this.memory.stats();
    return {
      ...jobs,
      memoryInUse: memory.inUse,
      refused: { 'queue-full': jobs.refused['queue-full'], 'wait-timeout': jobs.refused['wait-timeout'] + memory.refused['wait-timeout'] },
    };
  }

  private busy(e: unknown): unknown {
    if (!(e instanceof LimitReached)) return e;
    const why = e.reason === 'queue-full' ? `${this.options.maxWaiting} are already waiting` : `none finished within ${this.options.waitMs} ms`;
    return errors.busy(`Too many images are being processed at once: ${this.options.concurrency} run at a time and ${why}; retry later`, {
      reason: 'IMAGE_QUEUE_FULL',
      limit: this.options.concurrency,
      retryAfterSeconds: 5,
    });
  }
}
