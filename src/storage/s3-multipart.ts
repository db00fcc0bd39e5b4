import {
  AbortMultipartUploadCommand,
  ChecksumAlgorithm,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
  type PutObjectCommandInput,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import { sha256Of } from '../crypto/off-thread-hash.js';
import { KeptBuffers } from '../util/kept-buffers.js';

// Multipart upload of a stream of unknown length.
//
// This replaces @aws-sdk/lib-storage on the upload path. lib-storage joins each
// part's chunks into a freshly allocated buffer (Buffer.concat), and the SDK then
// signs each part by hashing it on the event loop. Measured on a 1 GiB upload to
// s3rver, the service spent about 10 s of CPU per GiB, most of it in garbage
// collection driven by those buffers, and in that hashing. Here parts are filled in
// buffers that are reused from upload to upload, and a part's payload hash is
// computed on the hash worker thread, or not at all over TLS (see `signPayload`).

export interface MultipartOptions {
  /** Parts uploaded at once; with the part being filled, memory per upload is (queueSize + 1) × partSize. */
  queueSize: number;
  /**
   * true: each request carries the SHA-256 of its payload in its signature
   * (computed off the event loop). false: UNSIGNED-PAYLOAD, as the AWS CLI does
   * over HTTPS, where TLS already protects the bytes in transit.
   */
  signPayload: boolean;
  /**
   * The exact length the body must have: a body that runs past it fails at once,
   * and one that ends short fails before the object is written (nothing stored).
   */
  expectedSize?: number;
  /**
   * Milliseconds one request of the upload (a part, its creation, the abort) may take,
   * body included; a store that stops answering then fails the upload instead of
   * holding it forever (the SDK sets no timeout). Completion gets five times as long:
   * S3 may take minutes to assemble a large object. Default 60 s.
   */
  requestTimeoutMs?: number;
}

/** The object's parameters apart from its body. */
export type ObjectParams = Omit<PutObjectCommandInput, 'Body' | 'ContentLength'> & { Bucket: string; Key: string };

const MAX_PARTS = 10_000;

/** A body longer or shorter than the length its caller declared (nothing was stored). */
export class BodyLengthError extends Error {}

/**
 * Part buffers, kept between uploads. They are shared memory so that the hash
 * worker can read a part in place to sign it.
 */
export class PartBuffers extends KeptBuffers<Buffer> {
  constructor(
    readonly size: number,
    keep: number,
  ) {
    super(() => Buffer.from(new SharedArrayBuffer(size)), keep);
  }
}

/** Puts the payload hash (or UNSIGNED-PAYLOAD) in the request before it is signed. */
function withPayloadHash<C extends UploadPartCommand | PutObjectCommand>(command: C, hash: string): C {
  type Args = { request: { headers: Record<string, string> } };
  type Step = (next: (args: Args) => Promise<unknown>) => (args: Args) => Promise<unknown>;
  (command.middlewareStack as unknown as { add(m: Step, o: { step: 'build'; name: string }): void }).add(
    (next) => (args) => {
      args.request.headers['x-amz-content-sha256'] = hash;
      return next(args);
    },
    { step: 'build', name: 'mediaPayloadHash' },
  );
  return command;
}

function payloadHash(body: Buffer, sign: boolean): Promise<string> {
  return sign ? sha256Of(body) : Promise.resolve('UNSIGNED-PAYLOAD');
}

/**
 * Streams `body` into the object: one PutObject when it fits in one part, else a
 * multipart upload of `pool.size`-byte parts (at least 5 MiB, S3's minimum for all
 * but the last), `queueSize` of them in flight, aborted when anything fails
 * (the body's own error is rethrown as it is). Resolves with the byte count.
 */
export async function uploadStream(client: S3Client, params: ObjectParams, body: Readable, pool: PartBuffers, o: MultipartOptions): Promise<number> {
  const partSize = pool.size;
  const timeoutMs = o.requestTimeoutMs ?? 60_000;
  const timed = (factor = 1) => ({ abortSignal: AbortSignal.timeout(timeoutMs * factor) });
  const checksums = (await client.config.requestChecksumCalculation()) === 'WHEN_SUPPORTED';
  const parts: CompletedPart[] = [];
  const inFlight = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  let uploadId: string | undefined;
  let current: Buffer | undefined = pool.take();
  let fill = 0;
  let partNumber = 0;
  let size = 0;

  const dispatch = (buffer: Buffer, length: number, n: number): void => {
    const data = buffer.subarray(0, length);
    const p = (async () => {
      const hash = await payloadHash(data, o.signPayload);
      const out = await client.send(withPayloadHash(new UploadPartCommand({ ...partParams(params), UploadId: uploadId, PartNumber: n, Body: data, ContentLength: length }), hash), timed());
      if (!out.ETag) throw new Error(`part ${n} of ${params.Key} came back without an ETag`);
      parts.push({
        PartNumber: n,
        ETag: out.ETag,
        ...(out.ChecksumCRC32 && { ChecksumCRC32: out.ChecksumCRC32 }),
        ...(out.ChecksumCRC32C && { ChecksumCRC32C: out.ChecksumCRC32C }),
        ...(out.ChecksumCRC64NVME && { ChecksumCRC64NVME: out.ChecksumCRC64NVME }),
        ...(out.ChecksumSHA1 && { ChecksumSHA1: out.ChecksumSHA1 }),
        ...(out.ChecksumSHA256 && { ChecksumSHA256: out.ChecksumSHA256 }),
      });
    })()
      .catch((error: unknown) => {
        failure ??= { error };
      })
      .finally(() => {
        inFlight.delete(p);
        pool.give(buffer);
      });
    inFlight.add(p);
  };

  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      let at = 0;
      while (at < chunk.length) {
        if (fill === partSize) {
          // A full part with more bytes after it: it is not the last one.
          if (uploadId === undefined) {
            const created = await client.send(
              new CreateMultipartUploadCommand({ ...params, ...(checksums && !params.ChecksumAlgorithm ? { ChecksumAlgorithm: ChecksumAlgorithm.CRC32 } : {}) }),
              timed(),
            );
            uploadId = created.UploadId;
            if (!uploadId) throw new Error(`CreateMultipartUpload for ${params.Key} answered no UploadId`);
          }
          // The body may have failed while a request was in flight: send no part for it.
          if (body.errored) throw body.errored;
          if (++partNumber >= MAX_PARTS) throw new Error(`${params.Key} needs more than ${MAX_PARTS} parts of ${partSize} bytes`);
          dispatch(current!, fill, partNumber);
          current = undefined;
          while (inFlight.size >= o.queueSize && !failure && !body.errored) await Promise.race(inFlight);
          if (failure) throw failure.error;
          if (body.errored) throw body.errored;
          current = pool.take();
          fill = 0;
        }
        if (o.expectedSize !== undefined && size + Math.min(partSize - fill, chunk.length - at) > o.expectedSize) {
          throw new BodyLengthError(`the body of ${params.Key} is longer than its ${o.expectedSize} bytes`);
        }
        const n = chunk.copy(current!, fill, at);
        fill += n;
        at += n;
        size += n;
      }
    }
    if (o.expectedSize !== undefined && size !== o.expectedSize) throw new BodyLengthError(`the body of ${params.Key} ended after ${size} of its ${o.expectedSize} bytes`);
    if (uploadId === undefined) {
      const data = current!.subarray(0, fill);
      const hash = await payloadHash(data, o.signPayload);
      await client.send(withPayloadHash(new PutObjectCommand({ ...params, Body: data, ContentLength: fill }), hash), timed());
      return size;
    }
    dispatch(current!, fill, ++partNumber);
    current = undefined;
    while (inFlight.size > 0) await Promise.race(inFlight);
    if (failure) throw failure.error;
    parts.sort((a, b) => a.PartNumber! - b.PartNumber!);
    await client.send(new CompleteMultipartUploadCommand({ Bucket: params.Bucket, Key: params.Key, UploadId: uploadId, MultipartUpload: { Parts: parts }, ...sseCustomer(params) }), timed(5));
    return size;
  } catch (e) {
    // Parts still in flight finish first, or they could outlive the abort (S3 may
    // keep a part that completes after its upload was aborted).
    while (inFlight.size > 0) await Promise.race(inFlight);
    if (uploadId !== undefined) {
      await client.send(new AbortMultipartUploadCommand({ Bucket: params.Bucket, Key: params.Key, UploadId: uploadId }), timed()).catch(() => undefined);
    }
    // The body's own error (for-await rethrows it), or the failed part's.
    throw e;
  } finally {
    if (current) pool.give(current);
  }
}

/** The SSE-C fields every part request (and the completion) must repeat. */
function sseCustomer(p: ObjectParams) {
  return p.SSECustomerKey ? { SSECustomerAlgorithm: p.SSECustomerAlgorithm, SSECustomerKey: p.SSECustomerKey, SSECustomerKeyMD5: p.SSECustomerKeyMD5 } : {};
}

function partParams(p: ObjectParams) {
  return { Bucket: p.Bucket, Key: p.Key, ...sseCustomer(p) };
}
