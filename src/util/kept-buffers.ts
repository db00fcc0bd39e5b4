/**
 * Buffers kept for reuse on the upload path, at most `max` of them, all released
 * once `idleMs` pass without a `take`. Reusing them spares the event loop a fresh
 * allocation per block or part (zero-fill, page faults) and the garbage collector
 * the churn; releasing them gives the memory back when uploads stop.
 */
export class KeptBuffers<T> {
  private free: T[] = [];
  private lastTake = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly make: () => T,
    private readonly max: number,
    private readonly idleMs = 15_000,
  ) {}

  take(): T {
    this.lastTake = Date.now();
    return this.free.pop() ?? this.make();
  }

  give(b: T): void {
    if (this.free.length >= this.max) return;
    this.free.push(b);
    if (this.timer) return;
    this.timer = setInterval(() => {
      if (Date.now() - this.lastTake < this.idleMs) return;
      this.free = [];
      clearInterval(this.timer);
      this.timer = undefined;
    }, this.idleMs);
    this.timer.unref();
  }

  /** Buffers waiting for reuse. */
  get kept(): number {
    return this.free.length;
  }
}
