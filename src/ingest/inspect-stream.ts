import { OffThreadSha256 } from '../crypto/off-thread-hash.js';
import { Transform, type TransformCallback } from 'node:stream';
import { fileTypeFromBuffer } from 'file-type';
import { errors } from '../errors/index.js';
import { normaliseMime } from '../modules/policy/media-types.js';
import { durationProbeFor, type DurationProbe } from './duration.js';
import { ImageHeaderProbe, type ImageHeader } from './image-header.js';
import type { ScanStep } from './scan-step.js';
import { SUPPORTED_TYPES } from '../modules/policy/media-types.js';

/** Bytes gathered before sniffing: enough for file-type to look inside ZIP containers (DOCX/XLSX). */
export const SNIFF_BYTES = 64 * 1024;

export interface Detected {
  mime: string;
}

export interface InspectResult {
  mime: string;
  size: number;
  /** Hex SHA-256. */
  checksum: string;
  /** Page count for PDFs, counted while streaming. */
  pageCount: number | undefined;
  /** Seconds, for audio and video whose headers say (MP4, MP3). */
  durationSeconds: number | undefined;
  /** For images: what the header says (size, orientation, bands); undefined when none was found. */
  image: ImageHeader | undefined;
}

export interface InspectOptions {
  /** Name the client gave the file; used only to tell DOC from XLS inside an OLE container. */
  fileName: string;
  /** Called once with the detected MIME type; returns the size limit or throws (unsupported). */
  accept(mime: string): number;
  /** Malware scanning (CLAMD_URL): every byte goes to clamd too, and the stream ends only on a clean verdict. */
  scan?: ScanStep | undefined;
}

// DOC and XLS are both OLE compound files, which file-type reports as application/x-cfb.
function resolveCfb(fileName: string): string | undefined {
  const ext = fileName.toLowerCase().split('.').pop();
  if (ext === 'doc') return 'application/msword';
  if (ext === 'xls') return 'application/vnd.ms-excel';
  return undefined;
}

const PDF_PAGE = /\/Type\s*\/Page(?![a-zA-Z])/g;

/**
 * A pass-through that holds back the first SNIFF_BYTES, detects the type from
 * them (magic numbers, never the name or declared type), asks `accept` for the
 * size limit, then streams on while counting bytes against the limit and hashing.
 * It fails the stream with PAYLOAD_TOO_LARGE as soon as the limit is passed,
 * without reading further, and with BAD_USER_INPUT on an empty file. With a
 * scan step every byte is scanned on the same pass, and the stream ends only
 * once the verdict is clean (MALWARE_DETECTED, SCANNER_UNAVAILABLE otherwise).
 */
export class InspectStream extends Transform {
  private head: Buffer[] = [];
  private headLength = 0;
  private limit = 0;
  private size = 0;
  private readonly hash = new OffThreadSha256();
  private checksum: string | undefined;
  private mime: string | undefined;
  private pages = 0;
  private pdfTail = '';
  private duration: DurationProbe | undefined;
  private durationSeconds: number | undefined;
  private imageProbe: ImageHeaderProbe | undefined;
  private image: ImageHeader | undefined;

  constructor(private readonly options: InspectOptions) {
    super();
  }

  result(): InspectResult {
    if (this.mime === undefined || this.checksum === undefined) throw new Error('InspectStream read before end');
    return {
      mime: this.mime,
      size: this.size,
      checksum: this.checksum!,
      pageCount: this.mime === 'application/pdf' ? this.pages || undefined : undefined,
      durationSeconds: this.durationSeconds,
      image: this.image,
    };
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.mime === undefined) {
      this.head.push(chunk);
      this.headLength += chunk.length;
      if (this.headLength < SNIFF_BYTES) return done();
      this.detect().then(() => done(), done);
      return;
    }
    const err = this.forward(chunk);
    if (err) return done(err);
    const hashing = this.hash.update(chunk);
    const scanning = this.options.scan?.write(chunk);
    if (hashing || scanning) Promise.all([hashing, scanning]).then(() => done(), done);
    else done();
  }

  override _flush(done: TransformCallback): void {
    if (this.mime === undefined && this.headLength === 0) return done(errors.badInput('file', 'File is empty'));
    (this.mime === undefined ? this.detect() : Promise.resolve())
      .then(async () => {
        this.countLastPage();
        this.durationSeconds = this.duration?.finish(this.size);
        this.image = await this.imageProbe?.finish();
        this.checksum = await this.hash.digest();
        // Last: the verdict. Until it is known the stream has not ended (a store has not completed it).
        await this.options.scan?.finish();
      })
      .then(() => done(), done);
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    if (this.checksum === undefined) this.hash.abort();
    this.options.scan?.abort();
    cb(err);
  }

  /** A page marker in the very last bytes was held back for its next byte; at the end there is none. */
  private countLastPage(): void {
    if (this.mime === 'application/pdf' && /\/Type\s*\/Page$/.test(this.pdfTail)) this.pages++;
  }

  private async detect(): Promise<void> {
    const head = Buffer.concat(this.head);
    this.head = [];
    const found = await fileTypeFromBuffer(head);
    let mime = normaliseMime(found?.mime);
    if (mime === 'application/x-cfb') mime = resolveCfb(this.options.fileName);
    if (!mime) throw errors.unsupportedType('Content type could not be recognised from the file content, or is not supported');
    this.limit = this.options.accept(mime);
    this.mime = mime;
    this.duration = durationProbeFor(mime);
    if (SUPPORTED_TYPES.get(mime)?.kind === 'IMAGE') this.imageProbe = new ImageHeaderProbe();
    const err = this.forward(head);
    if (err) throw err;
    await Promise.all([this.hash.update(head), this.options.scan?.write(head)]);
  }

  /** Counts, checks, hashes and pushes one chunk; returns the error that ends the stream, if any. */
  private forward(chunk: Buffer): Error | null {
    this.size += chunk.length;
    if (this.size > this.limit) return errors.tooLarge(this.limit);
    if (this.mime === 'application/pdf') this.countPages(chunk);
    this.duration?.feed(chunk);
    this.imageProbe?.feed(chunk);
    this.push(chunk);
    return null;
  }

  private countPages(chunk: Buffer): void {
    // latin1 keeps one char per byte. A marker that ends exactly at the end of the
    // text is left for the next chunk (its next byte decides /Page vs /Pages), and a
    // short tail after the last counted marker is carried over, so every marker is
    // counted once even when split across chunks.
    const text = this.pdfTail + chunk.toString('latin1');
    let lastEnd = 0;
    for (const m of text.matchAll(PDF_PAGE)) {
      const end = m.index! + m[0].length;
      if (end >= text.length) break;
      this.pages++;
      lastEnd = end;
    }
    this.pdfTail = text.slice(Math.max(text.length - 64, lastEnd));
  }
}
