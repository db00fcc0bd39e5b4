import sharp from 'sharp';

/** What an image's header says: enough for its variants and for the decode limits, nothing decoded. */
export interface ImageHeader {
  /** Stored size, as the pixels are encoded. */
  width: number;
  height: number;
  /** Displayed size: EXIF orientation applied (a portrait photo stored sideways). */
  displayWidth: number;
  displayHeight: number;
  channels: number;
  depth: string;
  format: string;
  /** Frames of an animated GIF or WebP (1 otherwise). */
  pages: number;
}

/** First try: most headers (PNG, GIF, WebP, a JPEG with ordinary EXIF) are within the first bytes sniffed anyway. */
const FIRST_TRY_BYTES = 64 * 1024;
/**
 * The most bytes kept per upload to find the header: a JPEG's size comes after
 * its APP segments (EXIF, XMP, ICC profile, Photoshop data), which are
 * 64 KiB each at most but can be many.
 */
export const IMAGE_HEADER_BYTES = 1024 * 1024;

/**
 * Keeps the first bytes of an image while it streams and reads its header from
 * them with libvips (off the main thread): once at 64 KiB, and if the header is
 * not complete there, once more at 1 MiB (or at the end of a smaller file).
 * Nothing is decoded and nothing beyond those bytes is held.
 */
export class ImageHeaderProbe {
  private chunks: Buffer[] = [];
  private length = 0;
  private header: ImageHeader | undefined;
  private attempt: Promise<void> | undefined;
  private triedAt = 0;

  feed(chunk: Buffer): void {
    if (this.header || this.length >= IMAGE_HEADER_BYTES) return;
    const take = chunk.subarray(0, IMAGE_HEADER_BYTES - this.length);
    this.chunks.push(take);
    this.length += take.length;
    if (!this.attempt && this.length >= (this.triedAt === 0 ? FIRST_TRY_BYTES : IMAGE_HEADER_BYTES)) this.tryNow();
  }

  /** The header, or undefined when the bytes kept hold none that libvips can read. */
  async finish(): Promise<ImageHeader | undefined> {
    while (this.attempt) await this.attempt;
    if (!this.header && this.triedAt < this.length) {
      this.tryNow();
      await this.attempt;
    }
    this.chunks = [];
    return this.header;
  }

  private tryNow(): void {
    const bytes = Buffer.concat(this.chunks);
    this.chunks = [bytes];
    this.triedAt = bytes.length;
    this.attempt = readHeader(bytes).then((h) => {
      this.attempt = undefined;
      if (h) {
        this.header = h;
        this.chunks = [];
      } else if (this.triedAt < IMAGE_HEADER_BYTES && this.length >= IMAGE_HEADER_BYTES) {
        this.tryNow();
      }
    });
  }
}

/** The header of an image from its first bytes; undefined when they hold none. Never throws. */
export async function readHeader(bytes: Buffer): Promise<ImageHeader | undefined> {
  try {
    const m = await sharp(bytes, { failOn: 'none' }).metadata();
    if (!m.width || !m.height || !m.format) return undefined;
    const pageHeight = m.pages && m.pages > 1 && m.pageHeight ? m.pageHeight : m.height;
    const turned = (m.orientation ?? 1) >= 5;
    return {
      width: m.width,
      height: pageHeight,
      displayWidth: turned ? pageHeight : m.width,
      displayHeight: turned ? m.width : pageHeight,
      channels: m.channels ?? 4,
      depth: m.depth ?? 'uchar',
      format: m.format,
      pages: m.pages ?? 1,
    };
  } catch {
    return undefined;
  }
}
