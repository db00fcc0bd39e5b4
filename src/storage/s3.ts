import {
  CopyObjectCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { Readable, Transform } from 'node:stream';
import { AppError, errors } from '../errors/index.js';
import { createHash, randomUUID } from 'node:crypto';
import { BodyLengthError, PartBuffers, uploadStream } from './s3-multipart.js';
import type { ByteRange, GetOptions, ListedObject, ObjectInfo, PresignGetOptions, PresignPutOptions, PutOptions, Storage } from './storage.js';

export interface S3StorageOptions {
  bucket: string;
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  /**
   * 'WHEN_REQUIRED' for stores that mishandle the SDK's default CRC32 request
   * checksums (s3rver stores the aws-chunked framing as data); the service checks
   * size and SHA-256 of what it wrote itself, so nothing is lost.
   */
  checksums?: 'WHEN_SUPPORTED' | 'WHEN_REQUIRED';
  /** Multipart part size for streams of unknown length. */
  partSize?: number;
  /** Parts uploaded in parallel. */
  queueSize?: number;
  /**
   * Sign request payloads (their SHA-256 in the signature). Default: only when the
   * endpoint is plain http; over https TLS protects the bytes, as the AWS CLI assumes.
   */
  signPayload?: boolean;
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /**
   * Milliseconds a request other than an upload or a copy may wait for the store's answer
   * (its status line; a body then streams for as long as it takes), retries
   * included; then it fails with STORAGE_UNAVAILABLE. Default 10 s. Without it a
   * store that accepts connections and never answers holds reads (and /readyz)
   * forever: the SDK sets no timeout of its own.
   */
  responseTimeoutMs?: number;
}

const NOT_FOUND_NAMES = new Set(['NoSuchKey', 'NotFound', 'NoSuchBucket']);

function isNotFound(e: unknown): boolean {
  if (e instanceof S3ServiceException) return NOT_FOUND_NAMES.has(e.name) || e.$metadata?.httpStatusCode === 404;
  return !!e && typeof e === 'object' && NOT_FOUND_NAMES.has((e as { name?: string }).name ?? '');
}

/** Every S3 error enters here: missing object → NOT_FOUND; anything else → STORAGE_UNAVAILABLE. */
function mapS3Error(e: unknown, key: string): AppError {
  if (e instanceof AppError) return e;
  if (isNotFound(e)) return errors.notFound('Object', key);
  return errors.storageUnavailable(e);
}

/** The SSE-C request parameters for a customer key (AES256 + the key's MD5). */
function sseParams(key: Buffer | undefined) {
  if (!key) return {};
  return {
    SSECustomerAlgorithm: 'AES256',
    SSECustomerKey: key.toString('base64'),
    SSECustomerKeyMD5: createHash('md5').update(key).digest('base64'),
  };
}

/** Counts bytes passing through. */
class Counter extends Transform {
  bytes = 0;
  override _transform(chunk: Buffer, _e: BufferEncoding, done: (err: Error | null, data?: Buffer) => void): void {
    this.bytes += chunk.length;
    done(null, chunk);
  }
}

/** Objects in an S3 bucket (AWS or any S3-compatible store). Only this file imports the AWS SDK. */
export class S3Storage implements Storage {
  readonly driver = 's3' as const;
  readonly client: S3Client;
  readonly bucket: string;
  private readonly queueSize: number;
  private readonly signPayload: boolean;
  private readonly parts: PartBuffers;
  /** Request checksums on (WHEN_SUPPORTED): bodies must be buffers, never aws-chunked streams. */
  private readonly checksums: boolean;
  private readonly responseTimeoutMs: number;

  constructor(o: S3StorageOptions) {
    this.bucket = o.bucket;
    // Up to queueSize parts in flight plus the one being filled: 8 MiB × (4 + 1) keeps
    // a 1 GiB upload under 96 MB of RSS growth.
    this.queueSize = o.queueSize ?? 4;
    this.parts = new PartBuffers(Math.max(o.partSize ?? 8 * 1024 * 1024, 5 * 1024 * 1024), this.queueSize + 1);
    this.signPayload = o.signPayload ?? (o.endpoint !== undefined && o.endpoint.startsWith('http:'));
    const checksums = o.checksums ?? 'WHEN_REQUIRED';
    this.checksums = checksums === 'WHEN_SUPPORTED';
    this.responseTimeoutMs = o.responseTimeoutMs ?? 10_000;
    this.client = new S3Client({
      region: o.region ?? 'us-east-1',
      ...(o.endpoint ? { endpoint: o.endpoint } : {}),
      forcePathStyle: o.forcePathStyle ?? false,
      requestChecksumCalculation: checksums,
      responseChecksumValidation: checksums,
      ...(o.credentials ? { credentials: o.credentials } : {}),
    });
  }

  /**
   * Runs one SDK call with an abort signal that fires when the store has not
   * answered within responseTimeoutMs. The timer stops once the call resolves, so
   * a body that streams afterwards is never cut.
   */
  private async answered<T>(call: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(new Error(`the S3 store did not answer within ${this.responseTimeoutMs} ms`)), this.responseTimeoutMs);
    try {
      return await call(abort.signal);
    } finally {
      clearTimeout(timer);
    }
  }

  async put(key: string, body: Readable, options: PutOptions = {}): Promise<ObjectInfo> {
    // A body that already failed (or was destroyed) emits nothing more: piping it would wait forever.
    if (body.errored || body.destroyed) throw body.errored ?? new Error(`the body of ${key} was destroyed before it could be stored`);
    // The body is read through a pass-through of our own: reading a duplex such as
    // sharp's output to its end would otherwise destroy it before its writable side
    // finished (an AbortError), and our own early exit must not destroy the caller's stream.
    const counter = new Counter();
    // A request whose body failed or ended short would otherwise wait for bytes that never come.
    const abort = new AbortController();
    // Reported through put()'s own rejection; the SDK may not be listening yet.
    counter.on('error', () => undefined);
    body.on('error', (e) => {
      counter.destroy(e);
      abort.abort(e);
    });
    body.pipe(counter);
    // A stream PutObject with the SDK's default checksums goes out aws-chunked with a
    // trailing checksum, a body that Ceph RGW (and other S3 stores) refuse with 411:
    // with request checksums on, every body goes out as buffers whose checksum is a
    // header (one PutObject when it fits in a part, a multipart upload otherwise).
    if (options.size !== undefined && !this.checksums) {
      const size = options.size;
      const short = () => new Error(`the body of ${key} ended after ${counter.bytes} of its ${size} bytes`);
      counter.once('end', () => {
        if (counter.bytes !== size) abort.abort(short());
      });
      // Known length: one PutObject streams it, with no part buffering.
      try {
        await this.client.send(
          new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: counter, ContentLength: size, ContentType: options.contentType, ...sseParams(options.sseKey) }),
          { abortSignal: abort.signal },
        );
      } catch (e) {
        const sourceError = body.errored ?? (counter.readableEnded && counter.bytes !== size ? short() : undefined);
        if (!sourceError) throw mapS3Error(e, key);
        // S3 stores nothing of a PutObject cut short, but some stores (s3rver) write in
        // place: never leave what the failed source sent.
        await this.delete(key).catch(() => undefined);
        throw sourceError;
      }
      return { size: counter.bytes };
    }
    const params = { Bucket: this.bucket, Key: key, ...(options.contentType ? { ContentType: options.contentType } : {}), ...sseParams(options.sseKey) };
    let size: number;
    try {
      size = await uploadStream(this.client, params, counter, this.parts, {
        queueSize: this.queueSize,
        signPayload: this.signPayload,
        ...(options.size !== undefined ? { expectedSize: options.size } : {}),
      });
    } catch (e) {
      // The source's own error (limit, type, client gone) is the one that matters.
      const sourceError = body.errored ?? (e instanceof BodyLengthError ? e : undefined);
      if (sourceError) {
        await this.delete(key).catch(() => undefined);
        throw sourceError;
      }
      throw mapS3Error(e, key);
    }
    if (body.errored) {
      // Never keep an object whose source failed, however late.
      await this.delete(key).catch(() => undefined);
      throw body.errored;
    }
    return { size };
  }

  async get(key: string, range?: ByteRange, options: GetOptions = {}): Promise<Readable> {
    try {
      const out = await this.answered((abortSignal) =>
        this.client.send(
          new GetObjectCommand({ Bucket: this.bucket, Key: key, ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}), ...sseParams(options.sseKey) }),
          { abortSignal },
        ),
      );
      const body = out.Body;
      if (!body) throw errors.notFound('Object', key);
      if (body instanceof Readable) return body;
      return Readable.fromWeb((body as { transformToWebStream(): ReadableStream }).transformToWebStream() as import('node:stream/web').ReadableStream);
    } catch (e) {
      throw mapS3Error(e, key);
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    try {
      const out = await this.answered((abortSignal) => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal }));
      return { size: Number(out.ContentLength ?? 0) };
    } catch (e) {
      if (isNotFound(e)) return null;
      throw mapS3Error(e, key);
    }
  }

  /**
   * One CopyObject (metadata copied with it; a standard operation on AWS S3 and Ceph
   * RGW). Its 5 GiB limit is the limit of the single PUT that writes a direct upload.
   */
  async copy(from: string, to: string): Promise<void> {
    try {
      // No response timeout: the store answers a copy of up to 5 GiB only when it is done.
      await this.client.send(
        new CopyObjectCommand({ Bucket: this.bucket, Key: to, CopySource: `${this.bucket}/${from.split('/').map(encodeURIComponent).join('/')}` }),
      );
    } catch (e) {
      throw mapS3Error(e, from);
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await this.answered((abortSignal) => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal }));
    } catch (e) {
      if (isNotFound(e)) return;
      throw mapS3Error(e, key);
    }
  }

  async deletePrefix(prefix: string): Promise<void> {
    for (;;) {
      const batch = await this.list(prefix, 1000);
      if (batch.length === 0) return;
      try {
        await this.answered((abortSignal) =>
          this.client.send(
            new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((o) => ({ Key: o.key })), Quiet: true } }),
            { abortSignal },
          ),
        );
      } catch (e) {
        throw mapS3Error(e, prefix);
      }
      if (batch.length < 1000) return;
    }
  }

  async list(prefix: string, max = Infinity): Promise<ListedObject[]> {
    const out: ListedObject[] = [];
    let token: string | undefined;
    try {
      do {
        const page = await this.answered((abortSignal) =>
          this.client.send(
            new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token, MaxKeys: Math.min(1000, max - out.length) }),
            { abortSignal },
          ),
        );
        for (const o of page.Contents ?? []) {
          if (o.Key) out.push({ key: o.Key, size: Number(o.Size ?? 0), lastModified: o.LastModified ?? new Date(0) });
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token && out.length < max);
    } catch (e) {
      throw mapS3Error(e, prefix);
    }
    return out;
  }

  async check(): Promise<void> {
    try {
      await this.answered((abortSignal) => this.client.send(new HeadBucketCommand({ Bucket: this.bucket }), { abortSignal }));
    } catch (e) {
      throw mapS3Error(e, this.bucket);
    }
  }

  async probeSseC(key: Buffer): Promise<boolean> {
    const probe = `_probe/sse-c-${randomUUID()}`;
    await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: probe, Body: 'probe', ContentLength: 5, ...sseParams(key) }));
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: probe }));
      await out.Body?.transformToByteArray();
      return false; // readable without the key: not enforced
    } catch (e) {
      if (e instanceof S3ServiceException && (e.$metadata?.httpStatusCode ?? 0) >= 400 && (e.$metadata?.httpStatusCode ?? 0) < 500) return true;
      throw mapS3Error(e, probe);
    } finally {
      await this.delete(probe).catch(() => undefined);
    }
  }

  presignGet(key: string, o: PresignGetOptions): Promise<string> {
    return getSignedUrl(
      this.client,
      new GetObjectCommand({
        Bucket: this.bucket,
        Key: key,
        ...(o.contentType ? { ResponseContentType: o.contentType } : {}),
        ...(o.contentDisposition ? { ResponseContentDisposition: o.contentDisposition } : {}),
      }),
      { expiresIn: o.expiresIn },
    );
  }

  presignPut(key: string, o: PresignPutOptions): Promise<string> {
    return getSignedUrl(
      this.client,
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: key,
        ContentType: o.contentType,
        ContentLength: o.size,
        ...(o.contentMd5 ? { ContentMD5: o.contentMd5 } : {}),
        ...(o.contentDisposition ? { ContentDisposition: o.contentDisposition } : {}),
      }),
      { expiresIn: o.expiresIn, signableHeaders: new Set(['content-type', ...(o.contentMd5 ? ['content-md5'] : [])]) },
    );
  }
}

