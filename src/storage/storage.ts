import type { Readable } from 'node:stream';

/** Inclusive byte range, as in an HTTP Range header. */
export interface ByteRange {
  start: number;
  end: number;
}

export interface PutOptions {
  contentType?: string;
  /** Exact length when known in advance (lets S3 use one PutObject instead of multipart). */
  size?: number;
  /** SSE-C customer key (S3 only): the store encrypts with it and needs it to read back. */
  sseKey?: Buffer;
}

export interface GetOptions {
  /** SSE-C customer key the object was written with (S3 only). */
  sseKey?: Buffer;
}

export interface ListedObject {
  key: string;
  size: number;
  lastModified: Date;
}

export interface PresignGetOptions {
  expiresIn: number;
  contentType?: string;
  contentDisposition?: string;
}

export interface PresignPutOptions {
  expiresIn: number;
  contentType: string;
  size: number;
  contentMd5?: string;
  contentDisposition?: string;
}

export interface ObjectInfo {
  size: number;
}

/**
 * The blob backend. Keys are built by the service ({tenant}/{media id}/{name}),
 * never from user input. Drivers convert their own errors where they enter:
 * a missing object is NOT_FOUND, an unreachable backend STORAGE_UNAVAILABLE.
 */
export interface Storage {
  readonly driver: 'local' | 's3';
  /**
   * Writes the stream; the object appears only when the stream ended without error.
   * A body that fails at any time, even before put reads it (or that has already
   * failed), makes put reject with the body's error and store nothing: drivers
   * listen for the body's errors from the moment put is called.
   */
  put(key: string, body: Readable, options?: PutOptions): Promise<ObjectInfo>;
  get(key: string, range?: ByteRange, options?: GetOptions): Promise<Readable>;
  /** Size of the object, or null when it does not exist. */
  head(key: string): Promise<ObjectInfo | null>;
  /**
   * Copies an object to another key (replacing what is there): `to` is then an
   * object of its own, which later writes to `from` never change. A missing
   * `from` is NOT_FOUND. Direct uploads use it to take verified bytes out of reach
   * of a late PUT (SPEC 10).
   */
  copy(from: string, to: string): Promise<void>;
  /** Idempotent: deleting a missing object is not an error. */
  delete(key: string): Promise<void>;
  /** Deletes every object whose key starts with prefix (a media's original and variants). */
  deletePrefix(prefix: string): Promise<void>;
  /** Objects whose key starts with prefix (the sweep and tests use it). */
  list(prefix: string): Promise<ListedObject[]>;
  /** Removes leftovers of interrupted writes older than the date; returns how many (local disk). */
  sweepTemporary?(olderThan: Date): Promise<number>;
  /**
   * Aborts multipart uploads (of keys starting with `prefix`, when given) that were
   * started before the date and received no part since: what a crashed process or a
   * failed abort left behind (the store keeps their parts, and bills them, until
   * then). Returns how many were aborted (S3 only; 0 where the store cannot list them).
   */
  abortStaleMultipartUploads?(olderThan: Date, prefix?: string): Promise<number>;
  /** Throws when the backend cannot be reached (readiness). */
  check(): Promise<void>;
  /** A URL that GETs the object without credentials until it expires (S3 only). */
  presignGet?(key: string, options: PresignGetOptions): Promise<string>;
  /** Whether the store enforces SSE-C: writes a probe with `key`, reads it without (S3 only). */
  probeSseC?(key: Buffer): Promise<boolean>;
  /** A URL the client PUTs the object to (S3 only; local disk uses the service's own endpoint). */
  presignPut?(key: string, options: PresignPutOptions): Promise<string>;
}

/** Storage keys of one media. */
export const objectKeys = {
  prefix: (tenant: string, mediaId: string) => `${tenant}/${mediaId}/`,
  original: (tenant: string, mediaId: string) => `${tenant}/${mediaId}/original`,
  variant: (tenant: string, mediaId: string, name: string) => `${tenant}/${mediaId}/${name}`,
};
