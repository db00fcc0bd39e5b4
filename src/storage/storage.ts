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
  /**
   * Ties several GETs of one key to one version of its object (a header, then
   * the segments of a range). A get with an empty pin records the version it
   * read in it; a get whose pin holds a version reads that version only, and
   * rejects with ObjectChanged when the key now holds another object.
   */
  pin?: ObjectPin;
}

/**
 * The version of an object that a get read: its ETag on S3; on local disk the
 * file's identity (device, inode, size, change and modification times), which a
 * put changes because it renames a new file over the key.
 */
export interface ObjectPin {
  version?: string;
}

/** The key holds another object than the one a pinned get was tied to (it was replaced between two GETs). */
export class ObjectChanged extends Error {
  override readonly name = 'ObjectChanged';
}

export interface CopyOptions {
  /** SSE-C customer key the source was written with (S3 only). */
  sourceSseKey?: Buffer;
  /** SSE-C customer key to encrypt the copy with (S3 only): the store re-encrypts server side. */
  sseKey?: Buffer;
  /** Content type of the copy (default: the source's). */
  contentType?: string;
  /** Stored size of the source when the caller knows it (saves S3 a HEAD to choose between one copy and a multipart copy). */
  size?: number;
}

/**
 * The store cannot copy this object server side (Ceph RGW 16.2, as in Debian 12, answers 501
 * NotImplemented to any copy of an SSE-C encrypted source): the caller must read
 * and write the bytes itself.
 */
export class CopyNotSupported extends Error {
  override readonly name = 'CopyNotSupported';
}

export interface HeadOptions {
  /** SSE-C customer key the object was written with (S3 only; an SSE-C object answers HEAD only with it). */
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

/** What S3Storage.probeSseC found. */
export interface SseCProbe {
  /** All three proofs held: keyless GET refused as SSE-C, right key returned the body (AES256), another key refused. */
  enforced: boolean;
  /** The keyless GET failed with any 4xx: what the probe before per-object modes took for "enforced". */
  legacyEnforced: boolean;
  /** One line for the start-up log. */
  reason: string;
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
  /**
   * Size of the object, or null when it does not exist. An object written with an
   * SSE-C key needs the same key here (S3 stores refuse a HEAD without it).
   */
  head(key: string, options?: HeadOptions): Promise<ObjectInfo | null>;
  /**
   * Copies an object to another key (replacing what is there): `to` is then an
   * object of its own, which later writes to `from` never change. A missing
   * `from` is NOT_FOUND. Direct uploads use it to take verified bytes out of reach
   * of a late PUT (SPEC 10). On S3 with SSE-C keys in `options` the store decrypts
   * the source with `sourceSseKey` and encrypts the copy with `sseKey` itself (key
   * rotation): no bytes pass through this process. Local disk ignores the options.
   */
  copy(from: string, to: string, options?: CopyOptions): Promise<void>;
  /** Idempotent: deleting a missing object is not an error. */
  delete(key: string): Promise<void>;
  /** Deletes every object whose key starts with prefix (a media's original and variants). */
  deletePrefix(prefix: string): Promise<void>;
  /** Objects whose key starts with prefix (the sweep and tests use it). */
  list(prefix: string): Promise<ListedObject[]>;
  /**
   * The same objects page by page (at most about 1000 each), in key order, so that
   * the objects of one group ({tenant}/{id}/) come one after the other: the sweep
   * reads a bucket of any size this way without holding it.
   */
  listPages?(prefix: string): AsyncIterable<ListedObject[]>;
  /** The store's own clock, which its object times (lastModified) are on. */
  now?(): Promise<Date>;
  /** Removes leftovers of interrupted writes older than the date; returns how many (local disk). */
  sweepTemporary?(olderThan: Date): Promise<number>;
  /**
   * Aborts multipart uploads (of keys starting with `prefix`, when given) that were
   * started before the date and received no part since: what a crashed process or a
   * failed abort left behind (the store keeps their parts, and bills them, until
   * then). Keys starting with `options.skip` are left alone. Returns how many were
   * aborted (S3 only; 0 where the store cannot list them).
   */
  abortStaleMultipartUploads?(olderThan: Date, prefix?: string, options?: { skip?: string }): Promise<number>;
  /** Throws when the backend cannot be reached (readiness). */
  check(): Promise<void>;
  /**
   * Before anything starts: throws a ConfigError naming what to set when the
   * driver cannot work at all as configured (S3: no credentials anywhere the SDK looks).
   */
  checkConfiguration?(): Promise<void>;
  /** Releases what keeps the process alive (S3: the clients' keep-alive sockets); the storage is not used afterwards. */
  close?(): void;
  /** A URL that GETs the object without credentials until it expires (S3 only). */
  presignGet?(key: string, options: PresignGetOptions): Promise<string>;
  /** Whether the store enforces SSE-C, proven on a probe object with a random key (S3 only). */
  probeSseC?(): Promise<SseCProbe>;
  /** How requests reach the store (S3 only): SSE-C needs https, or loopback when allowed. */
  transport?(): { https: boolean; loopback: boolean; endpoint: string };
  /** A URL the client PUTs the object to (S3 only; local disk uses the service's own endpoint). */
  presignPut?(key: string, options: PresignPutOptions): Promise<string>;
}

/**
 * Storage keys of one media. Uploads write `original` and `{VARIANT}`; key
 * rotation writes each object again under `original-{kid}` / `{VARIANT}-{kid}`
 * (same `{tenant}/{id}/` prefix, so grouping and purging by prefix still work; a
 * hyphen, because local disk refuses dots in keys and no object name has one).
 * Which key a media's objects are under is what its row records: `storage_key`,
 * and each variant's `key` (absent on rows older than rotation: the derived key).
 */
export const objectKeys = {
  prefix: (tenant: string, mediaId: string) => `${tenant}/${mediaId}/`,
  original: (tenant: string, mediaId: string) => `${tenant}/${mediaId}/original`,
  variant: (tenant: string, mediaId: string, name: string) => `${tenant}/${mediaId}/${name}`,
  /** The key an object of a media takes when rotation re-encrypts it under ring key `kid`. */
  rotated: (tenant: string, mediaId: string, name: string, kid: string) => `${tenant}/${mediaId}/${name}-${kid}`,
};

/** Storage key of a media's variant: the one its row records, else (older rows) the derived one. */
export function variantKey(media: { tenantId: string; id: string }, v: { name: string; key?: string | undefined }): string {
  return v.key ?? objectKeys.variant(media.tenantId, media.id, v.name);
}
