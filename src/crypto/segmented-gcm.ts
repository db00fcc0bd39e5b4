import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

/*
 * The at-rest format of application-side encryption (docs/encryption.md):
 *
 *   header  = "MAE1" | version u8 (=1) | segmentSize u32be | noncePrefix 8 bytes | kidLength u8 | kid
 *   segment = AES-256-GCM(plaintext[i*S … (i+1)*S)) | tag 16 bytes        (the last one may be shorter)
 *
 * Segment i uses nonce = noncePrefix | u32be(i) and additional data
 * header | u32be(i) | u8(last). The index in the nonce makes reordering fail, the
 * last flag makes truncation at a segment boundary fail, and the header in the
 * additional data binds the key id and segment size. Each segment is verified
 * before any of its plaintext is released, so a byte range decrypts only the
 * segments it touches.
 */

export const MAGIC = Buffer.from('MAE1', 'latin1');
export const VERSION = 1;
export const DEFAULT_SEGMENT_SIZE = 64 * 1024;
export const TAG_LENGTH = 16;
const FIXED_HEADER = 4 + 1 + 4 + 8 + 1;

export class IntegrityFailure extends Error {
  override name = 'IntegrityFailure';
}

export interface Header {
  kid: string;
  segmentSize: number;
  noncePrefix: Buffer;
  /** The header's bytes, bound into every segment's additional data. */
  raw: Buffer;
}

export function encodeHeader(kid: string, segmentSize: number, noncePrefix = randomBytes(8)): Header {
  const kidBytes = Buffer.from(kid, 'utf8');
  const raw = Buffer.alloc(FIXED_HEADER + kidBytes.length);
  MAGIC.copy(raw, 0);
  raw.writeUInt8(VERSION, 4);
  raw.writeUInt32BE(segmentSize, 5);
  noncePrefix.copy(raw, 9);
  raw.writeUInt8(kidBytes.length, 17);
  kidBytes.copy(raw, 18);
  return { kid, segmentSize, noncePrefix, raw };
}

/** Length of the header of an object, from its first 18 bytes. */
export function headerLength(first: Buffer): number {
  if (first.length < FIXED_HEADER || !first.subarray(0, 4).equals(MAGIC)) throw new IntegrityFailure('not an encrypted object (bad magic)');
  return FIXED_HEADER + first.readUInt8(17);
}

export function decodeHeader(buf: Buffer): Header {
  const len = headerLength(buf);
  if (buf.length < len) throw new IntegrityFailure('truncated header');
  if (buf.readUInt8(4) !== VERSION) throw new IntegrityFailure(`unknown format version ${buf.readUInt8(4)}`);
  const segmentSize = buf.readUInt32BE(5);
  if (segmentSize < 1024 || segmentSize > 16 * 1024 * 1024) throw new IntegrityFailure('bad segment size');
  return { kid: buf.subarray(18, len).toString('utf8'), segmentSize, noncePrefix: Buffer.from(buf.subarray(9, 17)), raw: Buffer.from(buf.subarray(0, len)) };
}

export const MAX_HEADER_LENGTH = FIXED_HEADER + 255;

function nonce(h: Header, index: number): Buffer {
  const n = Buffer.alloc(12);
  h.noncePrefix.copy(n, 0);
  n.writeUInt32BE(index, 8);
  return n;
}

function aad(h: Header, index: number, last: boolean): Buffer {
  const tail = Buffer.alloc(5);
  tail.writeUInt32BE(index, 0);
  tail.writeUInt8(last ? 1 : 0, 4);
  return Buffer.concat([h.raw, tail]);
}

export function sealSegment(key: Buffer, h: Header, index: number, last: boolean, plain: Buffer): Buffer {
  const c = createCipheriv('aes-256-gcm', key, nonce(h, index));
  c.setAAD(aad(h, index, last));
  const out = c.update(plain);
  const fin = c.final();
  return Buffer.concat([out, fin, c.getAuthTag()]);
}

export function openSegment(key: Buffer, h: Header, index: number, last: boolean, sealed: Buffer): Buffer {
  if (sealed.length < TAG_LENGTH) throw new IntegrityFailure(`segment ${index} is truncated`);
  const d = createDecipheriv('aes-256-gcm', key, nonce(h, index));
  d.setAAD(aad(h, index, last));
  d.setAuthTag(sealed.subarray(sealed.length - TAG_LENGTH));
  try {
    return Buffer.concat([d.update(sealed.subarray(0, sealed.length - TAG_LENGTH)), d.final()]);
  } catch {
    throw new IntegrityFailure(`segment ${index} failed authentication`);
  }
}

/** Number of segments and stored size of a plaintext of `size` bytes. */
export function sealedLayout(plainSize: number, segmentSize: number, headerLen: number): { segments: number; size: number } {
  const segments = Math.max(1, Math.ceil(plainSize / segmentSize));
  return { segments, size: headerLen + plainSize + segments * TAG_LENGTH };
}

/** Encrypts a stream into the format above. */
export class EncryptStream extends Transform {
  private pending: Buffer[] = [];
  private pendingLength = 0;
  private index = 0;
  private headerSent = false;

  constructor(
    private readonly key: Buffer,
    private readonly header: Header,
  ) {
    super({ highWaterMark: 4 * header.segmentSize });
  }

  override _transform(chunk: Buffer, _e: BufferEncoding, done: TransformCallback): void {
    if (!this.headerSent) {
      this.push(this.header.raw);
      this.headerSent = true;
    }
    this.pending.push(chunk);
    this.pendingLength += chunk.length;
    const S = this.header.segmentSize;
    // Keep at least one byte back: the last segment is only known at the end.
    if (this.pendingLength > S) {
      let all = Buffer.concat(this.pending);
      while (all.length > S) {
        this.push(sealSegment(this.key, this.header, this.index++, false, all.subarray(0, S)));
        all = all.subarray(S);
      }
      this.pending = [all];
      this.pendingLength = all.length;
    }
    done();
  }

  override _flush(done: TransformCallback): void {
    if (!this.headerSent) this.push(this.header.raw);
    this.push(sealSegment(this.key, this.header, this.index++, true, Buffer.concat(this.pending)));
    done();
  }
}

/**
 * Decrypts segments `first…end` of an object whose header is known, from a
 * stream of sealed bytes that starts at segment `first` and holds exactly those
 * segments. `lastIndex` is the object's final segment (from its plaintext size):
 * only it may be short, and only it is opened as "last". A stream that ends early
 * or runs on fails. `skip` and `take` cut the plaintext to a byte range.
 */
export class DecryptStream extends Transform {
  private buf: Buffer = Buffer.alloc(0);
  private index: number;
  private skip: number;
  private remaining: number;
  private readonly endIndex: number;
  private readonly lastIndex: number;
  private readonly sealedSegment: number;

  constructor(
    private readonly key: Buffer,
    private readonly header: Header,
    options: { first: number; end: number; lastIndex: number; skip?: number; take?: number },
  ) {
    super({ highWaterMark: 4 * header.segmentSize });
    this.index = options.first;
    this.endIndex = options.end;
    this.lastIndex = options.lastIndex;
    this.skip = options.skip ?? 0;
    this.remaining = options.take ?? Number.MAX_SAFE_INTEGER;
    this.sealedSegment = header.segmentSize + TAG_LENGTH;
  }

  private open(sealed: Buffer): void {
    let plain = openSegment(this.key, this.header, this.index, this.index === this.lastIndex, sealed);
    this.index++;
    if (this.skip > 0) {
      const s = Math.min(this.skip, plain.length);
      plain = plain.subarray(s);
      this.skip -= s;
    }
    if (plain.length > this.remaining) plain = plain.subarray(0, this.remaining);
    this.remaining -= plain.length;
    if (plain.length) this.push(plain);
  }

  override _transform(chunk: Buffer, _e: BufferEncoding, done: TransformCallback): void {
    try {
      this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
      // Every segment before `end` is full-sized; `end` itself is opened at the end of the stream.
      while (this.index < this.endIndex && this.buf.length >= this.sealedSegment) {
        this.open(this.buf.subarray(0, this.sealedSegment));
        this.buf = this.buf.subarray(this.sealedSegment);
      }
      if (this.index > this.endIndex || this.buf.length > this.sealedSegment) throw new IntegrityFailure('data after the last segment');
      done();
    } catch (e) {
      done(e as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    try {
      if (this.index !== this.endIndex) throw new IntegrityFailure(`content ends early (segment ${this.index} of ${this.endIndex})`);
      if (this.endIndex !== this.lastIndex && this.buf.length !== this.sealedSegment) throw new IntegrityFailure(`segment ${this.index} is truncated`);
      this.open(this.buf);
      done();
    } catch (e) {
      done(e as Error);
    }
  }
}
