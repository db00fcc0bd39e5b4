import { Worker } from 'node:worker_threads';

// SHA-256 of upload streams, computed on a worker thread so that hashing (about
// 0.8 s of CPU per GiB) is off the event loop that parses the multipart body and
// feeds storage. Chunks are copied into 1 MiB blocks whose memory is moved (not
// copied) to the worker and moved back once hashed, so blocks are reused: a fresh
// 1 MiB allocation per block cost the event loop more (zero-fill and page faults)
// than the copy itself. At most IN_FLIGHT bytes wait at the worker before the
// stream is slowed down (back-pressure), so memory stays bounded.

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const jobs = new Map();
parentPort.on('message', (m) => {
  if (m.t === 'u') {
    let h = jobs.get(m.id);
    if (!h) { h = createHash('sha256'); jobs.set(m.id, h); }
    h.update(new Uint8Array(m.b, 0, m.n));
    parentPort.postMessage({ t: 'a', id: m.id, n: m.n, b: m.b }, [m.b]);
  } else if (m.t === 'd') {
    const h = jobs.get(m.id) || createHash('sha256');
    jobs.delete(m.id);
    parentPort.postMessage({ t: 'd', id: m.id, hex: h.digest('hex') });
  } else if (m.t === 'x') {
    jobs.delete(m.id);
  }
});
`;

const BLOCK = 1 * 1024 * 1024;
const IN_FLIGHT = 16 * 1024 * 1024;
/** Blocks kept for reuse once the worker hands them back (16 MiB). */
const KEEP_FREE = 4;
const freeBlocks: ArrayBuffer[] = [];

function takeBlock(): Uint8Array {
  return new Uint8Array(freeBlocks.pop() ?? new ArrayBuffer(BLOCK));
}

interface Job {
  inFlight: number;
  drained: (() => void) | null;
  digest: { resolve: (hex: string) => void; reject: (e: Error) => void } | null;
}

let worker: Worker | null = null;
let nextId = 1;
const jobs = new Map<number, Job>();

function getWorker(): Worker {
  if (worker) return worker;
  const w = new Worker(WORKER_SOURCE, { eval: true });
  w.unref();
  w.on('message', (m: { t: string; id: number; n?: number; b?: ArrayBuffer; hex?: string }) => {
    const job = jobs.get(m.id);
    if (!job) {
      if (m.b && freeBlocks.length < KEEP_FREE) freeBlocks.push(m.b);
      return;
    }
    if (m.t === 'a') {
      if (freeBlocks.length < KEEP_FREE) freeBlocks.push(m.b!);
      job.inFlight -= m.n!;
      if (job.drained && job.inFlight <= IN_FLIGHT / 2) {
        const d = job.drained;
        job.drained = null;
        d();
      }
    } else if (m.t === 'd') {
      jobs.delete(m.id);
      job.digest?.resolve(m.hex!);
    }
  });
  const fail = (e: Error) => {
    worker = null;
    for (const [id, job] of jobs) {
      jobs.delete(id);
      job.drained?.();
      job.digest?.reject(e);
    }
  };
  w.on('error', fail);
  w.on('exit', (code) => code !== 0 && fail(new Error(`hash worker exited with code ${code}`)));
  worker = w;
  return w;
}

export class OffThreadSha256 {
  private readonly id = nextId++;
  private readonly job: Job = { inFlight: 0, drained: null, digest: null };
  private block: Uint8Array | null = null;
  private filled = 0;
  private readonly w = getWorker();
  private done = false;

  constructor() {
    jobs.set(this.id, this.job);
  }

  private send(): void {
    if (!this.block || this.filled === 0) return;
    const buffer = this.block.buffer as ArrayBuffer;
    this.job.inFlight += this.filled;
    this.w.postMessage({ t: 'u', id: this.id, b: buffer, n: this.filled }, [buffer]);
    this.block = null;
    this.filled = 0;
  }

  /** Adds a chunk; returns a promise when the caller should wait before sending more. */
  update(chunk: Uint8Array): Promise<void> | undefined {
    let at = 0;
    while (at < chunk.length) {
      this.block ??= takeBlock();
      const n = Math.min(chunk.length - at, BLOCK - this.filled);
      this.block.set(at === 0 && n === chunk.length ? chunk : chunk.subarray(at, at + n), this.filled);
      this.filled += n;
      at += n;
      if (this.filled === BLOCK) this.send();
    }
    if (this.job.inFlight <= IN_FLIGHT) return undefined;
    return new Promise((resolve) => (this.job.drained = resolve));
  }

  /** Hex SHA-256 of everything passed to update. */
  digest(): Promise<string> {
    this.send();
    this.done = true;
    return new Promise((resolve, reject) => {
      this.job.digest = { resolve, reject };
      this.w.postMessage({ t: 'd', id: this.id });
    });
  }

  /** Forgets the job (the stream failed). */
  abort(): void {
    if (this.done) return;
    this.done = true;
    jobs.delete(this.id);
    if (this.block && freeBlocks.length < KEEP_FREE) freeBlocks.push(this.block.buffer as ArrayBuffer);
    this.block = null;
    this.w.postMessage({ t: 'x', id: this.id });
  }
}
