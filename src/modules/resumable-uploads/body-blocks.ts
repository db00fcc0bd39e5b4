import { KeptBuffers } from '../../util/kept-buffers.js';

/**
 * The blocks that request bodies of resumable uploads are gathered into before tus
 * reads them (src/http/resumable.routes.ts), reused once their bytes are on disk
 * (the local tus store gives them back). A fresh 1 MiB allocation per block cost
 * the event loop about as much as the rest of receiving (garbage collection of
 * external memory, page faults); reuse spares it.
 *
 * The contract that makes reuse safe: only the local store's writer gives a block
 * back, once the file holds its bytes, and every stage between gathering and that
 * writer passes chunks on or copies what it keeps (tus's PassThrough and
 * StreamLimiter, and the head gate, which copies the first bytes it holds back and
 * feeds the inspection, whose hash and probes copy). A block that is never given back (the
 * S3 store, an error) is simply collected.
 */
export const BLOCK_BYTES = 1024 * 1024;

const kept = new KeptBuffers(() => new ArrayBuffer(BLOCK_BYTES), 16);
const ours = new WeakSet<ArrayBufferLike>();

/** A block to gather body bytes into. */
export function takeBlock(): Buffer {
  const block = kept.take();
  ours.add(block);
  return Buffer.from(block);
}

/** Gives back the block of a chunk (a view from its start) that nothing reads any more; other chunks are left alone. */
export function giveBack(chunk: Uint8Array): void {
  const block = chunk.buffer;
  if (chunk.byteOffset !== 0 || !(block instanceof ArrayBuffer) || !ours.has(block)) return;
  // Once: a block given back is no longer ours until it is taken again.
  ours.delete(block);
  kept.give(block);
}
