import { createHash } from 'node:crypto';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import type { Logger } from '../logger.js';
import type { PrismaClient } from '../generated/prisma/client.js';
import { CopyNotSupported, ObjectChanged, type ByteRange, type ObjectPin, type Storage } from '../storage/storage.js';
import type { KeyRing } from './key-ring.js';
import { errors, isAppError } from '../errors/index.js';
import { DEFAULT_SEGMENT_SIZE, DecryptStream, EncryptStream, IntegrityFailure, MAX_HEADER_LENGTH, decodeHeader, encodeHeader, headerLength, sealedLayout, type Header } from './segmented-gcm.js';

/** Bytes that say how long a header is (headerLength reads the length byte in them). */
const MIN_HEADER_PROBE = 18;

/**
 * How encrypted content is kept: 'sse-c' where the S3 store enforces customer
 * keys (it encrypts, and refuses to return the object without the key), 'app'
 * (AES-256-GCM segments written by this process) everywhere else.
 */
export type EncryptionMode = 'app' | 'sse-c';

/**
 * The mode chosen at start and why. `mode` is what new objects are written with;
 * `legacyMode` is what media encrypted before modes were recorded per object
 * (encryption_mode NULL) were written with: what the start-up probe of that time
 * concluded against this store (local disk: 'app'; S3: 'sse-c' when a keyless GET
 * failed with any 4xx).
 */
export interface ModeDecision {
  mode: EncryptionMode;
  reason: string;
  legacyMode: EncryptionMode;
}

export interface SealedObject {
  kid: string;
  /** How the object is stored (the process's mode when it was written). */
  mode: EncryptionMode;
  /** Plaintext bytes written. */
  plainSize: number;
  /** Bytes the storage holds. */
  storedSize: number;
}

/** Plaintext of an object whose SHA-256 is known: verified while streaming. */
export interface OpenOptions {
  key: string;
  kid: string;
  plainSize: number;
  range?: ByteRange;
  /** Hex SHA-256 of the whole plaintext; checked on full reads before the last bytes leave. */
  checksum?: string;
  /** The mode the object was written with (its row's encryption_mode); absent: a legacy row. */
  mode?: EncryptionMode | null;
}

/**
 * Reads an object's header off the start of its body and leaves the rest in the
 * stream (unshifted). `failed` reports an error the body emitted meanwhile (its
 * caller listens from the start).
 */
async function takeHeader(body: Readable, failed: () => unknown): Promise<Header> {
  let buf: Buffer = Buffer.alloc(0);
  for (;;) {
    const f = failed();
    if (f) throw f;
    const chunk = body.read() as Buffer | null;
    if (chunk !== null) {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (buf.length >= MIN_HEADER_PROBE) {
        const len = headerLength(buf);
        if (buf.length >= len) {
          const head = decodeHeader(buf.subarray(0, len));
          if (buf.length > len) body.unshift(buf.subarray(len));
          return head;
        }
      }
      continue;
    }
    if (body.readableEnded || body.destroyed) throw new IntegrityFailure('truncated header');
    await new Promise<void>((resolve) => {
      const done = () => {
        body.removeListener('readable', done);
        body.removeListener('end', done);
        body.removeListener('error', done);
        body.removeListener('close', done);
        resolve();
      };
      body.once('readable', done);
      body.once('end', done);
      body.once('error', done);
      body.once('close', done);
    });
  }
}

/** Resolves once a stream has data buffered (or has ended); rejects with its error. Consumes nothing. */
export function firstChunk(s: Readable): Promise<void> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      s.removeListener('readable', ok);
      s.removeListener('end', ok);
      s.removeListener('error', bad);
    };
    const ok = () => {
      cleanup();
      resolve();
    };
    const bad = (e: unknown) => {
      cleanup();
      reject(e);
    };
    if (s.readableLength > 0 || s.readableEnded) return resolve();
    s.once('readable', ok);
    s.once('end', ok);
    s.once('error', bad);
  });
}

async function readAll(s: Readable, max: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of s) {
    parts.push(c as Buffer);
    n += (c as Buffer).length;
    if (n >= max) break;
  }
  s.destroy();
  return Buffer.concat(parts);
}

/**
 * Hashes a stream and compares with the expected SHA-256 at its end. The last
 * chunk is held back until the hash matches, so a reader never receives all the
 * bytes of wrong content: a mismatch ends the stream with an IntegrityFailure
 * before its final chunk.
 */
export class VerifyChecksum extends Transform {
  private readonly hash = createHash('sha256');
  private held: Buffer | null = null;

  constructor(private readonly expected: string) {
    super();
  }

  override _transform(chunk: Buffer, _e: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    if (this.held) this.push(this.held);
    this.held = chunk;
    done();
  }

  override _flush(done: TransformCallback): void {
    const actual = this.hash.digest('hex');
    if (actual !== this.expected) return done(new IntegrityFailure('content does not match its checksum'));
    if (this.held) this.push(this.held);
    done();
  }
}

export class ContentCrypto {
  /** Set once the store refused a server-side copy of an SSE-C object (see reseal). */
  private copyRefused = false;
  /** The mode new objects are written with. */
  readonly mode: EncryptionMode;
  /** The mode of objects whose row records none (written before modes were recorded). */
  readonly legacyMode: EncryptionMode;

  constructor(
    readonly ring: KeyRing,
    decision: EncryptionMode | ModeDecision,
    private readonly segmentSize = DEFAULT_SEGMENT_SIZE,
  ) {
    this.mode = typeof decision === 'string' ? decision : decision.mode;
    this.legacyMode = typeof decision === 'string' ? decision : decision.legacyMode;
  }

  /** The mode an object was written with: its recorded one, else the legacy mode. */
  modeOf(recorded: EncryptionMode | null | undefined): EncryptionMode {
    return recorded ?? this.legacyMode;
  }

  /**
   * Chooses how new objects are encrypted. SSE-C only when it is proven and the
   * key travels protected: the store is S3, its endpoint is https: (or AWS, no
   * endpoint), or http: on a loopback host with S3_SSE_C_OVER_HTTP=loopback, and
   * the probe (S3Storage.probeSseC) shows that the store refuses a keyless read
   * with an SSE-C refusal, returns the object with the right key (AES256) and
   * refuses another key. Anything else gets application-side encryption. One log
   * line says which mode and why.
   */
  static async detectMode(storage: Storage, ring: KeyRing, logger: Logger, o: { sseCOverHttp?: 'loopback' | undefined } = {}): Promise<ModeDecision> {
    const facts = { keys: ring.kids(), active: ring.active.kid };
    if (storage.driver !== 's3' || !storage.probeSseC) {
      const reason = `storage driver ${storage.driver} (SSE-C is an S3 feature)`;
      logger.info({ ...facts, mode: 'app', reason }, 'encryption at rest: AES-256-GCM segments (application side)');
      return { mode: 'app', reason, legacyMode: 'app' };
    }
    // The probe uses a random throwaway key, never a ring key: it is safe over http.
    const probe = await storage.probeSseC();
    const legacyMode: EncryptionMode = probe.legacyEnforced ? 'sse-c' : 'app';
    const t = storage.transport?.() ?? { https: false, loopback: false, endpoint: 'unknown endpoint' };
    let reason: string;
    if (!probe.enforced) reason = probe.reason;
    else if (t.https) reason = 'store enforces SSE-C over https';
    else if (!o.sseCOverHttp) reason = 'endpoint is http: and S3_SSE_C_OVER_HTTP is not set';
    else if (!t.loopback) reason = `endpoint is http: on a host that is not loopback (${t.endpoint}); S3_SSE_C_OVER_HTTP=loopback allows 127.0.0.1, ::1 and localhost only`;
    else reason = 'store enforces SSE-C over http: on loopback (S3_SSE_C_OVER_HTTP=loopback)';
    const mode: EncryptionMode = probe.enforced && (t.https || (o.sseCOverHttp === 'loopback' && t.loopback)) ? 'sse-c' : 'app';
    const details = { ...facts, mode, reason, endpoint: t.endpoint, probe: probe.reason };
    if (mode === 'sse-c') logger.info(details, 'encryption at rest: SSE-C (the store enforces customer keys)');
    else logger.warn(details, 'encryption at rest: AES-256-GCM segments (application side), not SSE-C');
    return { mode, reason, legacyMode };
  }

  /** Writes `plain` encrypted under the active key at `key`. */
  async seal(storage: Storage, key: string, plain: Readable, contentType?: string): Promise<SealedObject> {
    const kid = this.ring.active.kid;
    const objectKey = this.ring.objectKey(kid, key);
    let plainSize = 0;
    plain.on('data', (c: Buffer) => (plainSize += c.length));
    if (this.mode === 'sse-c') {
      const out = await storage.put(key, plain, { contentType: contentType ?? 'application/octet-stream', sseKey: objectKey });
      return { kid, mode: 'sse-c', plainSize, storedSize: out.size };
    }
    const enc = new EncryptStream(objectKey, encodeHeader(kid, this.segmentSize));
    // The storage attaches its handlers after its own setup; until then an error
    // here must not be an uncaught exception. put() still fails with it.
    enc.on('error', () => undefined);
    plain.on('error', (e) => enc.destroy(e));
    const out = await storage.put(key, plain.pipe(enc), { contentType: 'application/octet-stream' });
    return { kid, mode: 'app', plainSize, storedSize: out.size };
  }

  /**
   * The plaintext of an encrypted object (a range of it), authenticated as it
   * streams. A full read is one GET: the header is read from the start of the
   * same stream the segments follow in, so nothing can change between the two (a
   * read racing a rotation or a rewrite never pairs one object's header with
   * another's segments). A range needs the header first and then the segments it
   * covers, two GETs: when the second finds the object gone or different (its
   * first segment does not authenticate under the header just read, or NOT_FOUND),
   * the whole read is done once more from a fresh header; a second failure is the
   * object's (INTEGRITY_ERROR, NOT_FOUND). The two GETs are pinned to one version
   * of the object (ObjectPin: S3 If-Match on the first one's ETag; on local disk
   * the file's identity), so a replacement between them is ObjectChanged, never
   * taken for corruption: an object replaced under both attempts is
   * STORAGE_UNAVAILABLE (retryable).
   */
  async open(storage: Storage, o: OpenOptions): Promise<Readable> {
    if (this.modeOf(o.mode) === 'sse-c') {
      const body = await storage.get(o.key, o.range, { sseKey: this.ring.objectKey(o.kid, o.key) });
      return o.checksum && !o.range ? body.pipe(new VerifyChecksum(o.checksum)) : body;
    }
    if (!o.range) return this.openWhole(storage, o);
    try {
      return await this.openRange(storage, o, o.range);
    } catch (e) {
      if (!(e instanceof IntegrityFailure) && !(e instanceof ObjectChanged) && !(isAppError(e) && e.code === 'NOT_FOUND')) throw e;
      try {
        return await this.openRange(storage, o, o.range);
      } catch (again) {
        // Replaced under both attempts: a busy object, not a corrupt one.
        if (again instanceof ObjectChanged) throw errors.storageUnavailable(again);
        throw again;
      }
    }
  }

  /** One GET of the whole object: header, then segments, decrypted (and verified against the checksum) as they come. */
  private async openWhole(storage: Storage, o: OpenOptions): Promise<Readable> {
    const body = await storage.get(o.key);
    let failure: unknown;
    const early = (e: unknown) => (failure ??= e);
    body.on('error', early);
    let head: Header;
    try {
      head = await takeHeader(body, () => failure);
    } catch (e) {
      body.destroy();
      throw e;
    }
    const { segments } = sealedLayout(o.plainSize, head.segmentSize, head.raw.length);
    const dec = new DecryptStream(this.ring.objectKey(head.kid, o.key), head, { first: 0, end: segments - 1, lastIndex: segments - 1, take: o.plainSize });
    body.on('error', (e) => dec.destroy(e));
    body.removeListener('error', early);
    const plain = body.pipe(dec);
    if (!o.checksum) return plain;
    const verify = new VerifyChecksum(o.checksum);
    plain.on('error', (e) => verify.destroy(e));
    return plain.pipe(verify);
  }

  /**
   * A range: the header (one GET of its bytes), then the segments that cover the
   * range (a second GET), whose first segment is authenticated before this
   * resolves, so a mismatch between the two GETs is seen here (and retried by open).
   */
  private async openRange(storage: Storage, o: OpenOptions, range: ByteRange): Promise<Readable> {
    // The header names the key that sealed the object (it may predate a rotation).
    // Both GETs read one version of the object (its ETag, or the file's identity): a replaced one is ObjectChanged, not corrupt.
    const pin: ObjectPin = {};
    const head = decodeHeader(await readAll(await storage.get(o.key, { start: 0, end: MAX_HEADER_LENGTH - 1 }, { pin }), MAX_HEADER_LENGTH));
    const objectKey = this.ring.objectKey(head.kid, o.key);
    const S = head.segmentSize;
    const H = head.raw.length;
    const { segments, size } = sealedLayout(o.plainSize, S, H);
    const lastIndex = segments - 1;
    const { start, end } = range;
    const first = Math.floor(start / S);
    const last = Math.min(lastIndex, Math.floor(end / S));
    const sealed = S + 16;
    const from = H + first * sealed;
    const to = last === lastIndex ? size - 1 : H + (last + 1) * sealed - 1;
    const body = await storage.get(o.key, { start: from, end: to }, { pin });
    const dec = new DecryptStream(objectKey, head, { first, end: last, lastIndex, skip: start - first * S, take: end - start + 1 });
    body.on('error', (e) => dec.destroy(e));
    const plain = body.pipe(dec);
    await firstChunk(plain);
    return plain;
  }

  /**
   * Which ring key an object is sealed with, and its stored size. App mode reads
   * the key id from the object's header. Under SSE-C the store alone knows: a HEAD
   * with the recorded key's customer key answers only when that key is right, so
   * the other ring keys are tried after it (an object that an older, in-place
   * rotation re-sealed before it could update the row is found this way).
   */
  async sealedWith(storage: Storage, key: string, recordedKid: string, recordedMode?: EncryptionMode | null): Promise<{ kid: string; storedSize: number }> {
    if (this.modeOf(recordedMode) === 'app') {
      const info = await storage.head(key);
      if (!info) throw errors.objectNotFound(key);
      const first = await readAll(await storage.get(key, { start: 0, end: MAX_HEADER_LENGTH - 1 }), MAX_HEADER_LENGTH);
      headerLength(first);
      return { kid: decodeHeader(first).kid, storedSize: info.size };
    }
    const candidates = [recordedKid, ...this.ring.kids().filter((k) => k !== recordedKid)].filter((k) => this.ring.has(k));
    let firstError: unknown;
    for (const kid of candidates) {
      let info;
      try {
        info = await storage.head(key, { sseKey: this.ring.objectKey(kid, key) });
      } catch (e) {
        firstError ??= e;
        continue;
      }
      if (!info) throw errors.objectNotFound(key);
      return { kid, storedSize: info.size };
    }
    throw firstError ?? new Error(`no ring key opens ${key}`);
  }

  /**
   * Writes the object at `from` (sealed with ring key `kid`) again at `to`, sealed
   * with the active key; `from` is left as it is. Under SSE-C the store does it
   * (CopyObject, or UploadPartCopy parts above 5 GiB, with the old customer key for
   * the source and the new one for the copy): no bytes pass through this process.
   * In app mode the authenticated plaintext of `from` streams straight into the
   * encrypting writer of `to` (different keys, so nothing is spooled to disk); with
   * `checksum`, content that does not match it fails the write and nothing is kept.
   * Either way the copy's size is checked against `plainSize`. `mode` is how `from`
   * is stored (its row's encryption_mode); the copy is written in this process's
   * mode, so a media moves from 'app' to 'sse-c' (streamed, never copied by the
   * store) when the process uses SSE-C.
   *
   * A store that refuses to copy SSE-C objects (Ceph RGW 16.2: 501) gets
   * the same streaming as app mode instead: GET with the old customer key piped
   * into a PUT with the new one, verified against `checksum`, never on disk. That
   * is logged once per process.
   */
  async reseal(
    storage: Storage,
    o: { from: string; to: string; kid: string; plainSize: number; storedSize?: number; checksum?: string; mode?: EncryptionMode | null },
    logger?: Logger,
  ): Promise<SealedObject> {
    if (o.from === o.to) throw new Error(`cannot re-seal ${o.from} onto itself`);
    const kid = this.ring.active.kid;
    const source = this.modeOf(o.mode);
    if (this.mode === 'sse-c') {
      const sseKey = this.ring.objectKey(kid, o.to);
      let copied = false;
      if (source === 'sse-c' && !this.copyRefused) {
        try {
          await storage.copy(o.from, o.to, { sourceSseKey: this.ring.objectKey(o.kid, o.from), sseKey, ...(o.storedSize !== undefined ? { size: o.storedSize } : {}) });
          copied = true;
        } catch (e) {
          if (!(e instanceof CopyNotSupported)) throw e;
          this.copyRefused = true;
          logger?.warn({ reason: e.message }, 'the store cannot re-encrypt SSE-C objects server side: streaming each one through this process instead (old key in, new key out; nothing on disk)');
        }
      }
      if (!copied) {
        const plain = await this.open(storage, { key: o.from, kid: o.kid, plainSize: o.plainSize, mode: source, ...(o.checksum ? { checksum: o.checksum } : {}) });
        await storage.put(o.to, plain, { contentType: 'application/octet-stream', sseKey, size: o.plainSize });
      }
      const info = await storage.head(o.to, { sseKey });
      if (!info || info.size !== o.plainSize) {
        await storage.delete(o.to).catch(() => undefined);
        throw new Error(`the re-encrypted copy of ${o.from} has ${info?.size ?? 'no'} bytes, expected ${o.plainSize}`);
      }
      return { kid, mode: 'sse-c', plainSize: info.size, storedSize: info.size };
    }
    const plain = await this.open(storage, { key: o.from, kid: o.kid, plainSize: o.plainSize, mode: source, ...(o.checksum ? { checksum: o.checksum } : {}) });
    const sealed = await this.seal(storage, o.to, plain);
    if (sealed.plainSize !== o.plainSize) {
      await storage.delete(o.to).catch(() => undefined);
      throw new Error(`the re-encrypted copy of ${o.from} has ${sealed.plainSize} bytes, expected ${o.plainSize}`);
    }
    return sealed;
  }
}

/** The service cannot serve media it holds with the encryption mode it can use here. */
export class EncryptionModeMismatch extends Error {
  override readonly name = 'EncryptionModeMismatch';
}

/**
 * At start, after the mode is chosen: records the mode of legacy rows (encrypted
 * before modes were recorded: `decision.legacyMode`, what the probe of that time
 * concluded against this store), then refuses to start when media need a mode the
 * process cannot use: rows stored with SSE-C while SSE-C is not used here (the
 * store does not prove it, or the key would travel over plain http) cannot be read
 * without sending their keys where they must not go, or are plaintext at rest.
 * Media stored application side are readable anywhere.
 */
export async function reconcileStoredModes(
  prisma: { $executeRaw: PrismaClient['$executeRaw']; $queryRaw: PrismaClient['$queryRaw'] },
  decision: ModeDecision,
  logger: Logger,
): Promise<void> {
  const filled = await prisma.$executeRaw`UPDATE media SET encryption_mode = ${decision.legacyMode} WHERE encrypted AND encryption_mode IS NULL`;
  if (filled > 0) {
    logger.warn(
      { rows: filled, mode: decision.legacyMode },
      'encrypted media written before modes were recorded per object: recorded with the mode the earlier start-up probe chose against this store',
    );
  }
  const counts = await prisma.$queryRaw<{ mode: string; n: bigint }[]>`
    SELECT encryption_mode AS mode, count(*) AS n FROM media WHERE encrypted AND deleted_at IS NULL GROUP BY encryption_mode`;
  const by = Object.fromEntries(counts.map((c) => [c.mode, Number(c.n)]));
  const sseC = by['sse-c'] ?? 0;
  if (decision.mode !== 'sse-c' && sseC > 0) {
    const summary = Object.entries(by)
      .map(([m, n]) => `${n} '${m}'`)
      .join(', ');
    throw new EncryptionModeMismatch(
      `refusing to start: ${sseC} media are stored with SSE-C (encryption_mode 'sse-c'; rows by mode: ${summary}), but this process cannot use SSE-C: ${decision.reason}. ` +
        'Serve them from a store that enforces SSE-C over https (or http: on loopback with S3_SSE_C_OVER_HTTP=loopback); on a store that does not enforce it their content is plaintext at rest and must be re-uploaded.',
    );
  }
}
