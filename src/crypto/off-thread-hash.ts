import { Worker } from 'node:worker_threads';
import { KeptBuffers } from '../util/kept-buffers.js';

// SHA-256 of upload streams, computed on a worker thread so that hashing (about
// 0.8 s of CPU per GiB) is off the event loop that parses the multipart body and
// feeds storage. Chunks are copied into 1 MiB blocks whose memory is moved (not
// copied) to the worker and moved back once hashed, so blocks are reused: a fresh
// 1 MiB allocation per block cost the event loop more (zero-fill and page faults)
// than the copy itself. At most IN_FLIGHT bytes wait at the worker before the
// stream is slowed down (back-pressure), so memory stays bounded.
//
// sha256Of hashes one buffer in a single message; a buffer over a
// SharedArrayBuffer (the S3 driver's part buffers) is read by the worker in place.

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
  } else if (m.t === 's') {
    const hex = createHash('sha256').update(new Uint8Array(m.b, m.o, m.n)).digest('hex');
    parentPort.postMessage({ t: 'd', id: m.id, hex });
  }
});
`;

const BLOCK = 1024 * 1024;
const IN_FLIGHT = 16 * 1024 * 1024;
/** Blocks kept for reuse once the worker hands them back: one upload's worth in flight. */
const blocks = new KeptBuffers(() => new ArrayBuffer(BLOCK), IN_FLIGHT / BLOCK);

interface Job {
  inFlight: number;
  drained: (() => void) | null;
  digest: { resolve: (hex: string) => void; reject: (e: Error) => void } | null;
}

let worker: Worker | null = null;
let nextId = 1;
const jobs = new Map<number, Job>();

// The worker keeps the process alive only while it has work: a command that has
// hashed what it needed ends by itself, and one that awaits a digest is not ended
// under it.
function addJob(id: number, job: Job): void {
  jobs.set(id, job);
  if (jobs.size === 1) worker?.ref();
}

function removeJob(id: number): void {
  if (jobs.delete(id) && jobs.size === 0) worker?.unref();
}

function getWorker(): Worker {
  if (worker) return worker;
  // Plain CommonJS, whatever flags this process runs with (--input-type=module would make the source ESM).
  const w = new Worker(WORKER_SOURCE, { eval: true, execArgv: [] });
  w.on('message', (m: { t: string; id: number; n?: number; b?: ArrayBuffer; hex?: string }) => {
    const job = jobs.get(m.id);
    if (m.b) blocks.give(m.b);
    if (!job) return;
    if (m.t === 'a') {
      job.inFlight -= m.n!;
      if (job.drained && job.inFlight <= IN_FLIGHT / 2) {
        const d = job.drained;
        job.drained = null;
        d();
      }
    } else if (m.t === 'd') {
      removeJob(m.id);
      job.digest?.resolve(m.hex!);
    }
  });
  const fail = (e: Error) => {
    worker = null;
    for (const [id, job] of jobs) {
      removeJob(id);
      job.drained?.();
      job.digest?.reject(e);
    }
  };
  w.on('error', fail);
  w.on('exit', (code) => code !== 0 && fail(new Error(`hash worker exited with code ${code}`)));
  // Unreferenced last (a 'message' listener added after unref() refs the worker's
  // port again, and the worker kept the process alive after everything had ended);
  // addJob refs it while it has work.
  w.unref();
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
    addJob(this.id, this.job);
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
      this.block ??= new Uint8Array(blocks.take());
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
    removeJob(this.id);
    if (this.block) blocks.give(this.block.buffer as ArrayBuffer);
    this.block = null;
    this.w.postMessage({ t: 'x', id: this.id });
  }
}

/** Hex SHA-256 of one buffer, computed on the worker; read in place when the buffer is shared memory. */
export function sha256Of(data: Uint8Array): Promise<string> {
  if (!(data.buffer instanceof SharedArrayBuffer)) {
    const h = new OffThreadSha256();
    const wait = h.update(data);
    return wait ? wait.then(() => h.digest()) : h.digest();
  }
  const w = getWorker();
  const id = nextId++;
  return new Promise((resolve, reject) => {
    addJob(id, { inFlight: 0, drained: null, digest: { resolve, reject } });
    w.postMessage({ t: 's', id, b: data.buffer, o: data.byteOffset, n: data.byteLength });
  });
}
