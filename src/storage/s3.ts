import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCopyCommand,
  type CompletedPart,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { Readable, Transform } from 'node:stream';
import { AppError, errors } from '../errors/index.js';
import { ConfigError } from '../config.js';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { BodyLengthError, PartBuffers, uploadStream } from './s3-multipart.js';
import { IntegrityFailure } from '../crypto/segmented-gcm.js';
import { CopyNotSupported, ObjectChanged } from './storage.js';
import type { ByteRange, CopyOptions, SseCProbe, GetOptions, HeadOptions, ListedObject, ObjectInfo, PresignGetOptions, PresignPutOptions, PutOptions, Storage } from './storage.js';

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
   * Largest object copied with one CopyObject (S3's limit, and the default: 5 GiB);
   * larger ones are copied part by part with UploadPartCopy. Lowered by tests.
   */
  maxCopyObjectSize?: number;
  /** Part size of a multipart copy (default 512 MiB; at least 5 MiB). */
  copyPartSize?: number;
  /**
   * Milliseconds a request other than an upload or a copy may wait for the store's answer
   * (its status line; a body then streams for as long as it takes), retries
   * included; then it fails with STORAGE_UNAVAILABLE. Default 10 s. Without it a
   * store that accepts connections and never answers holds reads (and /readyz)
   * forever: the SDK sets no timeout of its own.
   */
  responseTimeoutMs?: number;
  /**
   * Milliseconds one request of a buffered upload (a part, the creation of a
   * multipart upload, a one-part PutObject) may take, body included; default 60 s,
   * completion five times that. A stream PutObject of known length (S3_CHECKSUMS
   * when_required) moves at the client's pace and has no such limit.
   */
  uploadRequestTimeoutMs?: number;
  /** Keys listed and deleted per DeleteObjects in deletePrefix (S3's limit and the default: 1000). Lowered by tests. */
  deletePageSize?: number;
}

/** S3's limit for one CopyObject (and one PutObject). */
export const MAX_COPY_OBJECT_SIZE = 5 * 1024 * 1024 * 1024;
/** Bounds of one stale multipart sweep: pages of ListMultipartUploads (1000 each), and of ListParts per upload. */
const MAX_UPLOAD_PAGES = 100;
const MAX_PART_PAGES = 10;

/** Bound of one deletePrefix: pages of 1000 keys (a media or asset folder holds a handful). */
const MAX_DELETE_ROUNDS = 100;

/**
 * Why a deletePrefix failed although the store answered: the keys it could not
 * delete, with its codes (at most the first 10 in the message; all in `failed`).
 * The cause of the STORAGE_UNAVAILABLE error, so logs of the caller show them.
 */
export class DeletePrefixError extends Error {
  override name = 'DeletePrefixError';
  constructor(
    readonly prefix: string,
    summary: string,
    readonly failed: { key: string; code?: string | undefined; message?: string | undefined }[],
  ) {
    super(
      failed.length === 0
        ? summary
        : `${summary}: ${failed
            .slice(0, 10)
            .map((f) => `${f.key}${f.code ? ` (${f.code}${f.message ? `: ${f.message}` : ''})` : ''}`)
            .join(', ')}${failed.length > 10 ? `, and ${failed.length - 10} more` : ''}`,
    );
  }
}

const NOT_FOUND_NAMES = new Set(['NoSuchKey', 'NotFound', 'NoSuchBucket']);

function isNotImplemented(e: unknown): boolean {
  return e instanceof S3ServiceException && (e.name === 'NotImplemented' || e.$metadata?.httpStatusCode === 501);
}

function isNotFound(e: unknown): boolean {
  if (e instanceof S3ServiceException) return NOT_FOUND_NAMES.has(e.name) || e.$metadata?.httpStatusCode === 404;
  return !!e && typeof e === 'object' && NOT_FOUND_NAMES.has((e as { name?: string }).name ?? '');
}

/** Where the SDK looks for credentials, for an operator who has none set. */
const CREDENTIALS_HINT =
  'set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (a profile in ~/.aws/credentials or ~/.aws/config), ' +
  "or run where the AWS SDK's default chain finds them (SSO, web identity, an ECS task or EC2 instance role)";

/** The SDK found no credentials (CredentialsProviderError): not the store's fault, nothing to retry. */
function isMissingCredentials(e: unknown): e is Error {
  return e instanceof Error && e.name === 'CredentialsProviderError';
}

/** Every S3 error enters here: missing object → NOT_FOUND; anything else → STORAGE_UNAVAILABLE. */
function mapS3Error(e: unknown, key: string): AppError {
  if (e instanceof AppError) return e;
  if (isNotFound(e)) return errors.objectNotFound(key);
  // Logged as the cause: say what to set rather than the SDK's "Could not load credentials from any providers".
  if (isMissingCredentials(e)) return errors.storageUnavailable(new Error(`no S3 credentials: ${CREDENTIALS_HINT} (${e.message})`, { cause: e }));
  return errors.storageUnavailable(e);
}

/** Answers that say "not with this key" rather than "not now" or "not these credentials". */
const CREDENTIAL_ERRORS = new Set(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'RequestTimeTooSkewed', 'ExpiredToken', 'InvalidToken', 'AuthorizationHeaderMalformed']);

function refusesCustomerKey(e: unknown): boolean {
  if (!(e instanceof S3ServiceException) || isNotFound(e)) return false;
  const status = e.$metadata?.httpStatusCode ?? 0;
  return (status === 400 || status === 403) && !CREDENTIAL_ERRORS.has(e.name);
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

/** The SSE-C parameters naming the key a copy's source was written with. */
function copySourceSseParams(key: Buffer | undefined) {
  if (!key) return {};
  return {
    CopySourceSSECustomerAlgorithm: 'AES256',
    CopySourceSSECustomerKey: key.toString('base64'),
    CopySourceSSECustomerKeyMD5: createHash('md5').update(key).digest('base64'),
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
  /**
   * Signs presigned URLs. Always 'WHEN_REQUIRED': a client with the SDK's default
   * checksums puts `x-amz-checksum-crc32=AAAAAA==` (the CRC32 of an empty body) in
   * a presigned PUT, which AWS S3 refuses for any non-empty body.
   */
  private readonly presigner: S3Client;
  readonly bucket: string;
  /** S3_ENDPOINT; undefined is AWS (https). */
  readonly endpoint: string | undefined;
  private readonly queueSize: number;
  private readonly signPayload: boolean;
  private readonly parts: PartBuffers;
  /** Request checksums on (WHEN_SUPPORTED): bodies must be buffers, never aws-chunked streams. */
  private readonly checksums: boolean;
  private readonly maxCopyObjectSize: number;
  private readonly copyPartSize: number;
  private readonly responseTimeoutMs: number;
  private readonly uploadRequestTimeoutMs: number;
  private readonly deletePageSize: number;
  /** Endpoint, region, path style and credentials of the clients (clientConfig()). */
  private readonly common: S3ClientConfig;

  constructor(o: S3StorageOptions) {
    this.bucket = o.bucket;
    this.endpoint = o.endpoint;
    this.maxCopyObjectSize = Math.min(o.maxCopyObjectSize ?? MAX_COPY_OBJECT_SIZE, MAX_COPY_OBJECT_SIZE);
    this.copyPartSize = Math.min(Math.max(o.copyPartSize ?? 512 * 1024 * 1024, 5 * 1024 * 1024), MAX_COPY_OBJECT_SIZE);
    // Up to queueSize parts in flight plus the one being filled: 8 MiB × (4 + 1) keeps
    // a 1 GiB upload under 96 MB of RSS growth.
    this.queueSize = o.queueSize ?? 4;
    this.parts = new PartBuffers(Math.max(o.partSize ?? 8 * 1024 * 1024, 5 * 1024 * 1024), this.queueSize + 1);
    this.signPayload = o.signPayload ?? (o.endpoint !== undefined && o.endpoint.startsWith('http:'));
    const checksums = o.checksums ?? 'WHEN_REQUIRED';
    this.checksums = checksums === 'WHEN_SUPPORTED';
    this.responseTimeoutMs = o.responseTimeoutMs ?? 10_000;
    this.uploadRequestTimeoutMs = o.uploadRequestTimeoutMs ?? 60_000;
    this.deletePageSize = Math.min(Math.max(o.deletePageSize ?? 1000, 1), 1000);
    const common = {
      region: o.region ?? 'us-east-1',
      ...(o.endpoint ? { endpoint: o.endpoint } : {}),
      forcePathStyle: o.forcePathStyle ?? false,
      ...(o.credentials ? { credentials: o.credentials } : {}),
    };
    this.common = common;
    this.client = new S3Client({ ...common, requestChecksumCalculation: checksums, responseChecksumValidation: checksums });
    this.presigner = checksums === 'WHEN_REQUIRED' ? this.client : new S3Client({ ...common, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
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
        await this.deleteLeftover(key);
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
        requestTimeoutMs: this.uploadRequestTimeoutMs,
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

  /**
   * With a pin that holds a version (an ETag) the GET is conditional (IfMatch): a
   * replaced object answers 412, and a store that ignores the condition (s3rver)
   * is caught by comparing the ETag it answers with; either is ObjectChanged.
   */
  async get(key: string, range?: ByteRange, options: GetOptions = {}): Promise<Readable> {
    const pinned = options.pin?.version;
    try {
      const out = await this.answered((abortSignal) =>
        this.client.send(
          new GetObjectCommand({
            Bucket: this.bucket,
            Key: key,
            ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}),
            ...(pinned !== undefined ? { IfMatch: pinned } : {}),
            ...sseParams(options.sseKey),
          }),
          { abortSignal },
        ),
      );
      const body = out.Body;
      if (!body) throw errors.objectNotFound(key);
      if (options.pin) {
        if (pinned === undefined && out.ETag) options.pin.version = out.ETag;
        else if (pinned !== undefined && out.ETag !== pinned) {
          (body as { destroy?: () => void }).destroy?.();
          throw new ObjectChanged(`${key} was replaced since it was first read (ETag ${pinned}, now ${out.ETag ?? 'none'})`);
        }
      }
      // Ceph RGW ignores SSE-C headers on an object stored without a customer key and
      // returns its bytes (AWS refuses with 400): content that should be encrypted and
      // is not (written in plaintext by mistake, or replaced) must not pass as ours.
      if (options.sseKey && out.SSECustomerAlgorithm !== 'AES256') {
        (body as { destroy?: () => void }).destroy?.();
        throw new IntegrityFailure(`${key} is not stored with its SSE-C customer key`);
      }
      if (body instanceof Readable) return body;
      return Readable.fromWeb((body as { transformToWebStream(): ReadableStream }).transformToWebStream() as import('node:stream/web').ReadableStream);
    } catch (e) {
      if (e instanceof IntegrityFailure || e instanceof ObjectChanged) throw e;
      if (pinned !== undefined && e instanceof S3ServiceException && (e.name === 'PreconditionFailed' || e.$metadata?.httpStatusCode === 412)) {
        throw new ObjectChanged(`${key} was replaced since it was first read (ETag ${pinned}: ${e.name})`);
      }
      if (options.sseKey && refusesCustomerKey(e)) {
        // The key is derived from the row's key id: a store that will not decrypt with it
        // holds other content than ours (RGW: 400 InvalidArgument; AWS: 403). Retrying
        // cannot help, so this is an integrity error, not an unavailable store.
        throw new IntegrityFailure(`${key} cannot be read with its SSE-C customer key (${(e as S3ServiceException).name} ${(e as S3ServiceException).$metadata?.httpStatusCode})`);
      }
      throw mapS3Error(e, key);
    }
  }

  /** An SSE-C object needs its key (`options.sseKey`): RGW and AWS answer 400 to a HEAD without it. */
  async head(key: string, options: HeadOptions = {}): Promise<ObjectInfo | null> {
    try {
      const out = await this.answered((abortSignal) => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key, ...sseParams(options.sseKey) }), { abortSignal }));
      return { size: Number(out.ContentLength ?? 0) };
    } catch (e) {
      if (isNotFound(e)) return null;
      throw mapS3Error(e, key);
    }
  }

  /**
   * One CopyObject (metadata copied with it, unless a content type is given; a
   * standard operation on AWS S3 and Ceph RGW). With SSE-C keys the store decrypts
   * the source with `sourceSseKey` and encrypts the copy with `sseKey`: key
   * rotation re-encrypts without the bytes leaving the store. Objects larger than
   * one CopyObject may be (5 GiB) are copied with a multipart upload whose parts
   * are UploadPartCopy ranges of the source, with the same key headers.
   */
  async copy(from: string, to: string, options: CopyOptions = {}): Promise<void> {
    const source = `${this.bucket}/${from.split('/').map(encodeURIComponent).join('/')}`;
    const keys = { ...copySourceSseParams(options.sourceSseKey), ...sseParams(options.sseKey) };
    const metadata = options.contentType ? { MetadataDirective: 'REPLACE' as const, ContentType: options.contentType } : {};
    let multipart = false;
    try {
      // No response timeout: the store answers a copy of up to 5 GiB only when it is done.
      // Only a copy that could be too large for one request needs the size; the
      // callers without SSE-C (direct uploads) copy what one PUT wrote (<= 5 GiB).
      let size = options.size;
      if (size === undefined && (options.sourceSseKey || options.sseKey || this.maxCopyObjectSize < MAX_COPY_OBJECT_SIZE)) {
        const head = await this.head(from, options.sourceSseKey ? { sseKey: options.sourceSseKey } : {});
        if (!head) throw errors.objectNotFound(from);
        size = head.size;
      }
      if (size === undefined || size <= this.maxCopyObjectSize) {
        await this.client.send(new CopyObjectCommand({ Bucket: this.bucket, Key: to, CopySource: source, ...metadata, ...keys }));
        return;
      }
      multipart = true;
      await this.multipartCopy(source, to, size, options, keys);
    } catch (e) {
      const status = e instanceof S3ServiceException ? e.$metadata?.httpStatusCode : undefined;
      if (status !== undefined && (options.sourceSseKey || options.sseKey)) {
        // Ceph RGW 16.2 (Debian 12) refuses any copy of an SSE-C source: CopyObject with 501,
        // UploadPartCopy with 400 InvalidArgument. A 400 means that only when the source
        // key is right (it opens the object), which one HEAD tells.
        const refused =
          status === 501 ||
          (status === 400 && multipart && (await this.head(from, options.sourceSseKey ? { sseKey: options.sourceSseKey } : {}).then((h) => h !== null, () => false)));
        if (refused) throw new CopyNotSupported(`the store does not copy SSE-C objects server side (${(e as Error).name}, ${status}): ${from}`);
      }
      throw mapS3Error(e, from);
    }
  }

  /** A copy of more than one CopyObject may hold: UploadPartCopy of consecutive ranges, then Complete. */
  private async multipartCopy(source: string, to: string, size: number, options: CopyOptions, keys: object): Promise<void> {
    const partSize = Math.max(this.copyPartSize, Math.ceil(size / 10_000));
    const created = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: to, ...(options.contentType ? { ContentType: options.contentType } : {}), ...sseParams(options.sseKey) }),
    );
    const uploadId = created.UploadId;
    if (!uploadId) throw new Error(`CreateMultipartUpload for ${to} answered no UploadId`);
    try {
      const parts: CompletedPart[] = [];
      for (let start = 0, n = 1; start < size; start += partSize, n++) {
        const end = Math.min(size, start + partSize) - 1;
        const out = await this.client.send(
          new UploadPartCopyCommand({ Bucket: this.bucket, Key: to, UploadId: uploadId, PartNumber: n, CopySource: source, CopySourceRange: `bytes=${start}-${end}`, ...keys }),
        );
        parts.push({ PartNumber: n, ETag: out.CopyPartResult?.ETag });
      }
      await this.client.send(
        new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: to, UploadId: uploadId, MultipartUpload: { Parts: parts }, ...sseParams(options.sseKey) }),
      );
    } catch (e) {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: to, UploadId: uploadId })).catch(() => undefined);
      throw e;
    }
  }

  /**
   * Deletes what a failed PutObject may have left. A store that writes in place
   * (s3rver) can still be finishing the aborted request when the first delete
   * arrives, and the object then reappears after it: delete until a HEAD finds
   * nothing, for up to about a second. Best effort; the sweep removes the rest.
   */
  private async deleteLeftover(key: string): Promise<void> {
    for (let attempt = 0; attempt < 10; attempt++) {
      await this.delete(key).catch(() => undefined);
      const left = await this.head(key).catch(() => null);
      if (!left) return;
      await new Promise((r) => setTimeout(r, 100));
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

  /**
   * Deletes every object under `prefix`, a listing page (1000 keys; deletePageSize) per
   * DeleteObjects. The answer lists the keys the store could not delete (Quiet
   * only leaves out the ones it did): any such key fails the call with
   * STORAGE_UNAVAILABLE (the keys and the store's codes in its cause), so the
   * caller keeps its row and the sweep tries again. Bounded: at most
   * MAX_DELETE_ROUNDS pages, and a round that lists only keys the previous round
   * already deleted (a store whose deletes do not take) fails instead of looping.
   */
  async deletePrefix(prefix: string): Promise<void> {
    let previous = new Set<string>();
    for (let round = 0; round < MAX_DELETE_ROUNDS; round++) {
      const batch = await this.list(prefix, this.deletePageSize);
      if (batch.length === 0) return;
      if (round > 0 && batch.every((o) => previous.has(o.key))) {
        throw errors.storageUnavailable(
          new DeletePrefixError(prefix, `the store answered that it deleted ${batch.length} object(s) under ${prefix} but still lists them`, batch.slice(0, 10).map((o) => ({ key: o.key }))),
        );
      }
      let answer;
      try {
        answer = await this.answered((abortSignal) =>
          this.client.send(
            new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((o) => ({ Key: o.key })), Quiet: true } }),
            { abortSignal },
          ),
        );
      } catch (e) {
        throw mapS3Error(e, prefix);
      }
      const failed = (answer.Errors ?? []).map((e) => ({ key: e.Key ?? '?', code: e.Code, message: e.Message }));
      if (failed.length > 0) {
        throw errors.storageUnavailable(new DeletePrefixError(prefix, `the store could not delete ${failed.length} of ${batch.length} object(s) under ${prefix}`, failed));
      }
      if (batch.length < this.deletePageSize) return;
      previous = new Set(batch.map((o) => o.key));
    }
    throw errors.storageUnavailable(new DeletePrefixError(prefix, `objects remain under ${prefix} after ${MAX_DELETE_ROUNDS} rounds of DeleteObjects`, []));
  }

  async *listPages(prefix: string): AsyncIterable<ListedObject[]> {
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.answered((abortSignal) =>
          this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token, MaxKeys: 1000 }), { abortSignal }),
        );
      } catch (e) {
        throw mapS3Error(e, prefix);
      }
      const objects: ListedObject[] = [];
      for (const o of page.Contents ?? []) {
        if (o.Key) objects.push({ key: o.Key, size: Number(o.Size ?? 0), lastModified: o.LastModified ?? new Date(0) });
      }
      yield objects;
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  /** From the `Date` of a HeadBucket answer: the store's clock, which LastModified of its objects is on (this machine's when absent). */
  async now(): Promise<Date> {
    const command = new HeadBucketCommand({ Bucket: this.bucket });
    let date: string | undefined;
    command.middlewareStack.add(
      (next) => async (args) => {
        const out = await next(args);
        const headers = (out.response as { headers?: Record<string, string | undefined> } | undefined)?.headers ?? {};
        for (const [name, value] of Object.entries(headers)) if (name.toLowerCase() === 'date') date = value;
        return out;
      },
      { step: 'deserialize', name: 'readStoreDate' },
    );
    try {
      await this.answered((abortSignal) => this.client.send(command, { abortSignal }));
    } catch (e) {
      throw mapS3Error(e, this.bucket);
    }
    // The header has whole seconds, and the store's time is within that second: its end bounds it.
    const t = date ? Date.parse(date) : NaN;
    return Number.isFinite(t) ? new Date(t + 999) : new Date();
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

  /**
   * The configuration of another client of this bucket (the resumable uploads' tus
   * S3 store, which makes its own): the same endpoint, region, path style and
   * credentials, with request checksums only where required, whatever S3_CHECKSUMS
   * says: that store streams its parts from files, and the service verifies size and
   * SHA-256 of the assembled object itself before anything uses it.
   */
  clientConfig(): S3ClientConfig & { bucket: string } {
    return { ...this.common, bucket: this.bucket, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' };
  }

  /**
   * ListMultipartUploads, page by page (KeyMarker + UploadIdMarker, at most
   * MAX_UPLOAD_PAGES pages), and aborts every upload initiated before `olderThan`
   * whose newest part is older too: an upload that still receives parts is in
   * progress, however long ago it started. Keys under `o.skip` are left alone
   * (resumable uploads, whose parts may rest for as long as the upload lives). A
   * store that does not implement the listing answers NotImplemented: 0.
   */
  async abortStaleMultipartUploads(olderThan: Date, prefix?: string, o: { pageSize?: number; skip?: string } = {}): Promise<number> {
    let aborted = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (let page = 0; page < MAX_UPLOAD_PAGES; page++) {
      let out;
      try {
        out = await this.client.send(
          new ListMultipartUploadsCommand({ Bucket: this.bucket, ...(prefix ? { Prefix: prefix } : {}), KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker, MaxUploads: o.pageSize ?? 1000 }),
        );
      } catch (e) {
        if (page === 0 && isNotImplemented(e)) return 0;
        throw mapS3Error(e, prefix ?? this.bucket);
      }
      for (const u of out.Uploads ?? []) {
        if (!u.Key || !u.UploadId || !u.Initiated || u.Initiated.getTime() >= olderThan.getTime()) continue;
        if (o.skip !== undefined && u.Key.startsWith(o.skip)) continue;
        if ((await this.newestPartTime(u.Key, u.UploadId)) >= olderThan.getTime()) continue;
        try {
          await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId }));
          aborted++;
        } catch (e) {
          // Completed or aborted meanwhile: nothing left to do.
          if (!(e instanceof S3ServiceException && (e.name === 'NoSuchUpload' || e.$metadata?.httpStatusCode === 404))) throw mapS3Error(e, u.Key);
        }
      }
      if (!out.IsTruncated) break;
      // A store that answers a truncated page without markers would loop forever: stop.
      if (!out.NextKeyMarker && !out.NextUploadIdMarker) break;
      keyMarker = out.NextKeyMarker;
      uploadIdMarker = out.NextUploadIdMarker;
    }
    return aborted;
  }

  /** When the upload last received a part (ms since the epoch; 0 when it has none, or it is gone). */
  private async newestPartTime(key: string, uploadId: string): Promise<number> {
    let newest = 0;
    let marker: string | undefined;
    for (let page = 0; page < MAX_PART_PAGES; page++) {
      let out;
      try {
        out = await this.client.send(new ListPartsCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, MaxParts: 1000, PartNumberMarker: marker }));
      } catch (e) {
        if (e instanceof S3ServiceException && (e.name === 'NoSuchUpload' || e.$metadata?.httpStatusCode === 404)) return 0;
        throw mapS3Error(e, key);
      }
      for (const p of out.Parts ?? []) newest = Math.max(newest, p.LastModified?.getTime() ?? 0);
      if (!out.IsTruncated || !out.NextPartNumberMarker) break;
      marker = out.NextPartNumberMarker;
    }
    return newest;
  }

  /** Destroys both clients (their keep-alive sockets would keep a command alive). */
  close(): void {
    this.client.destroy();
    if (this.presigner !== this.client) this.presigner.destroy();
  }

  /**
   * Resolves the credentials as the first request would (the SDK's chain: the
   * environment, AWS_PROFILE and ~/.aws, SSO, web identity, container and
   * instance roles), so that a start without any ends with one line naming the
   * variables instead of a CredentialsProviderError at the first request.
   */
  async checkConfiguration(): Promise<void> {
    try {
      await this.client.config.credentials();
    } catch (e) {
      if (!isMissingCredentials(e)) throw e;
      throw new ConfigError(`S3 storage (S3_BUCKET=${this.bucket}) has no credentials: ${CREDENTIALS_HINT}. The AWS SDK said: ${e.message.split('\n')[0]}`);
    }
  }

  async check(): Promise<void> {
    try {
      await this.answered((abortSignal) => this.client.send(new HeadBucketCommand({ Bucket: this.bucket }), { abortSignal }));
    } catch (e) {
      throw mapS3Error(e, this.bucket);
    }
  }

  /**
   * Whether the store enforces SSE-C, proven three ways on a throwaway object
   * written with a random customer key (never a ring key: the probe may run over
   * plain http): a GET without the key must fail with an SSE-C refusal (a 4xx other
   * than 403/404: RGW answers 400 InvalidArgument, AWS 400 InvalidRequest; a 403 or
   * 404 proves nothing, a store that ignores SSE-C may answer that for other
   * reasons), a GET with the key must return exactly the probe body and say
   * SSECustomerAlgorithm AES256, and a GET with another random key must fail 4xx.
   */
  async probeSseC(): Promise<SseCProbe> {
    const probe = `_probe/sse-c-${randomUUID()}`;
    const key = randomBytes(32);
    const body = `sse-c-probe-${randomUUID()}`;
    const status = (e: unknown): number | undefined => (e instanceof S3ServiceException ? e.$metadata?.httpStatusCode : undefined);
    const read = async (k: Buffer | undefined): Promise<{ status: number; body?: string; algorithm?: string; error?: string }> => {
      try {
        const out = await this.answered((abortSignal) => this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: probe, ...sseParams(k) }), { abortSignal }));
        const text = Buffer.from((await out.Body?.transformToByteArray()) ?? []).toString('utf8');
        return { status: out.$metadata.httpStatusCode ?? 200, body: text, ...(out.SSECustomerAlgorithm ? { algorithm: out.SSECustomerAlgorithm } : {}) };
      } catch (e) {
        const s = status(e);
        if (s === undefined || s < 400 || s >= 500) throw mapS3Error(e, probe);
        return { status: s, error: (e as Error).name };
      }
    };
    try {
      await this.answered((abortSignal) =>
        this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: probe, Body: body, ContentLength: Buffer.byteLength(body), ...sseParams(key) }), { abortSignal }),
      );
    } catch (e) {
      throw mapS3Error(e, probe);
    }
    try {
      const keyless = await read(undefined);
      // What the probe before this one concluded (any 4xx): how media written before
      // the per-object mode was recorded were stored (see ContentCrypto.detectMode).
      const legacyEnforced = keyless.status >= 400;
      const no = (reason: string): SseCProbe => ({ enforced: false, legacyEnforced, reason });
      if (keyless.status < 400) return no(`store does not enforce SSE-C (keyless GET answered ${keyless.status})`);
      if (keyless.status === 403 || keyless.status === 404)
        return no(`store did not prove SSE-C (keyless GET answered ${keyless.status} ${keyless.error ?? ''}: not an SSE-C refusal)`.replace(' :', ':'));
      const right = await read(key);
      if (right.status >= 400) return no(`store did not prove SSE-C (GET with the right key answered ${right.status} ${right.error ?? ''})`.replace(' )', ')'));
      if (right.body !== body) return no('store did not prove SSE-C (GET with the right key returned other bytes than written)');
      if (right.algorithm !== 'AES256') return no(`store did not prove SSE-C (GET with the right key answered SSECustomerAlgorithm ${right.algorithm ?? 'absent'}, not AES256)`);
      const wrong = await read(randomBytes(32));
      if (wrong.status < 400) return no(`store does not enforce SSE-C (GET with another key answered ${wrong.status})`);
      return { enforced: true, legacyEnforced, reason: `keyless GET refused (${keyless.status} ${keyless.error ?? ''}), right key returned the body with AES256, another key refused (${wrong.status})`.replace(' )', ')') };
    } finally {
      await this.delete(probe).catch(() => undefined);
    }
  }

  /** The endpoint's scheme and whether its host is loopback; no endpoint is AWS over https. */
  transport(): { https: boolean; loopback: boolean; endpoint: string } {
    if (!this.endpoint) return { https: true, loopback: false, endpoint: 'AWS S3 (https)' };
    const u = new URL(this.endpoint);
    const host = u.hostname.replace(/^\[|\]$/g, '').toLowerCase();
    return { https: u.protocol === 'https:', loopback: host === '127.0.0.1' || host === '::1' || host === 'localhost', endpoint: `${u.protocol}//${u.host}` };
  }

  presignGet(key: string, o: PresignGetOptions): Promise<string> {
    return getSignedUrl(
      this.presigner,
      new GetObjectCommand({
        Bucket: this.bucket,
        Key: key,
        ...(o.contentType ? { ResponseContentType: o.contentType } : {}),
        ...(o.contentDisposition ? { ResponseContentDisposition: o.contentDisposition } : {}),
      }),
      { expiresIn: o.expiresIn },
    );
  }

  /**
   * Signed with the WHEN_REQUIRED client (no x-amz-checksum-* parameter). With
   * `contentMd5` the Content-MD5 header is a signed header (never hoisted into the
   * query): the PUT must carry exactly that value, and the store refuses a body
   * whose MD5 differs (400 BadDigest).
   */
  presignPut(key: string, o: PresignPutOptions): Promise<string> {
    return getSignedUrl(
      this.presigner,
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

