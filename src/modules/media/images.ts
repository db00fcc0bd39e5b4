import sharp from 'sharp';
import type { Readable } from 'node:stream';
import type { Metadata, OutputInfo, Sharp } from 'sharp';
import { AppError, ErrorCode, errors, isAppError } from '../../errors/index.js';
import type { Reserve } from './image-queue.js';
import type { VariantRecord } from './media.record.js';
import type { ImageHeader } from './image-header.js';
import { presetVariants, type RenderPlan } from '../renders/render-plan.js';

// Decompression-bomb guard: refuse images above this many input pixels. 80 MP
// takes every camera up to 61 MP (9504 x 6336), 8K squares (8192 x 8192 = 67 MP)
// and most panoramas; what such an image costs in memory is bounded by the image
// queue's budget, which runs the large ones one after the other.
export const MAX_INPUT_PIXELS = 80_000_000;

const BYTES_PER_SAMPLE: Record<string, number> = { uchar: 1, char: 1, ushort: 2, short: 2, uint: 4, int: 4, float: 4, complex: 8, double: 8, dpcomplex: 16 };

/**
 * About the most memory decoding and resizing the image can take: the whole
 * frame at its sample size (an interlaced PNG, a progressive JPEG, a rotated
 * image or a GIF cannot be streamed), plus 30 % for the pipeline; a GIF keeps a
 * second frame buffer. Measured on 8900 x 8900 images, peak RSS over the frame:
 * interlaced PNG 1.08, progressive JPEG 1.27, 16-bit RGBA interlaced PNG 1.14,
 * GIF 1.49. Streamable images use much less; this is an upper bound, not a guess.
 */
/** The facts decodeBytes reads (sharp's Metadata, or an ImageHeader). */
export interface DecodeFacts {
  width?: number | undefined;
  height?: number | undefined;
  channels?: number | undefined;
  depth?: string | undefined;
  format?: string | undefined;
}

export function decodeBytes(meta: DecodeFacts): number {
  const frame = (meta.width ?? 0) * (meta.height ?? 0) * (meta.channels ?? 4) * (BYTES_PER_SAMPLE[meta.depth ?? 'uchar'] ?? 4);
  return Math.ceil(frame * (meta.format === 'gif' ? 1.6 : 1.3));
}

export interface ImageFacts {
  /** Displayed size (EXIF orientation applied). */
  width: number;
  height: number;
  /** The named variants it has, each rendered on its first request. */
  variants: VariantRecord[];
}

/**
 * What an upload learns of an image from its header alone (read while it
 * streams, see ImageHeaderProbe): its displayed size and its variants, after the
 * checks that cost nothing: the input pixel limit, and the memory decoding it
 * would need against what one image job may have (PAYLOAD_TOO_LARGE). Pixels are
 * decoded only when a render is first asked for.
 */
export function imageFacts(header: ImageHeader | undefined, mime: string, decodeBudget: number): ImageFacts {
  if (!header) throw errors.unsupportedType('Image could not be read: no image header was found');
  if (header.width * header.height > MAX_INPUT_PIXELS) {
    throw new AppError(
      ErrorCode.PAYLOAD_TOO_LARGE,
      `Image of ${header.width} x ${header.height} pixels is over the limit of ${MAX_INPUT_PIXELS / 1_000_000} megapixels`,
      { field: 'file', extensions: { limit: MAX_INPUT_PIXELS } },
    );
  }
  const need = decodeBytes(header);
  if (need > decodeBudget) throw tooLargeToDecode(header, need, decodeBudget);
  const source = { width: header.displayWidth, height: header.displayHeight, mediaType: mime };
  return { width: source.width, height: source.height, variants: presetVariants(source) };
}

/** Where a render reads its original and writes its result (plain or encrypted storage). */
export interface RenderIO {
  readOriginal(): Promise<Readable>;
  write(body: Readable, contentType: string): Promise<{ size: number }>;
}

const ENCODE: Record<RenderPlan['format'], (s: Sharp, quality: number | undefined) => Sharp> = {
  jpeg: (s, q) => s.jpeg({ quality: q ?? 80 }),
  webp: (s, q) => s.webp({ quality: q ?? 80 }),
  // libvips' default effort (4) takes about 10 times as long for a few per cent smaller files.
  avif: (s, q) => s.avif({ quality: q ?? 50, effort: 2 }),
  png: (s) => s.png(),
  gif: (s) => s.gif(),
};

/**
 * Renders one plan from the stored original, in a turn of the image queue
 * (`turn`: ImageQueue.run's reserve and the queue's budget), after reserving the memory the image
 * needs decoded; an image that needs more than the whole budget is
 * PAYLOAD_TOO_LARGE. EXIF orientation is applied and no metadata (EXIF, GPS, XMP)
 * is copied into the render. An animated GIF or WebP renders its first frame.
 * Content that does not decode is UNSUPPORTED_MEDIA_TYPE; a read that fails is
 * the storage's error (or the integrity check's), never the content's.
 */
export async function renderImage(io: RenderIO, plan: RenderPlan, turn: { reserve: Reserve; budget: number }): Promise<{ size: number; width: number; height: number }> {
  const { reserve, budget } = turn;
  {
    // A truncated image is refused (libjpeg: "premature end of JPEG image"); warnings such as corrupt entropy data are tolerated, as browsers do.
    const input = sharp({ limitInputPixels: MAX_INPUT_PIXELS, failOn: 'error' });
    // sharp neither listens for its input's errors nor settles metadata() or its
    // output when the input fails: every wait below races this instead.
    let sourceError: unknown;
    const failed = new Promise<never>((_, reject) => input.on('error', reject));
    failed.catch(() => undefined);
    const source = await io.readOriginal();
    source.on('error', (e) => {
      sourceError ??= e;
      input.destroy(e);
    });
    source.pipe(input);
    const readFailure = () => (isAppError(sourceError) ? sourceError : errors.storageUnavailable(sourceError));
    try {
      let meta: Metadata;
      try {
        meta = await Promise.race([input.metadata(), failed]);
      } catch (e) {
        if (sourceError) throw readFailure();
        throw errors.unsupportedType(`Image could not be decoded: ${e instanceof Error ? e.message.slice(0, 120) : 'invalid'}`);
      }
      const need = decodeBytes(meta);
      if (need > budget) throw tooLargeToDecode(meta, need, budget);
      await reserve(need);
      const resized = input.rotate().resize({
        width: plan.width,
        height: plan.height,
        fit: plan.fit === 'inside' ? 'fill' : plan.fit,
        position: 'centre',
        ...(plan.fit === 'contain' ? { background: plan.format === 'jpeg' ? { r: 255, g: 255, b: 255, alpha: 1 } : { r: 0, g: 0, b: 0, alpha: 0 } } : {}),
      });
      const out = ENCODE[plan.format](resized, plan.quality);
      let info: OutputInfo | undefined;
      let decodeFailed = false;
      out.on('info', (i: OutputInfo) => (info = i));
      out.on('error', () => (decodeFailed = true));
      try {
        // When the input fails, the output would never end: end it with the same error.
        const inputFailed = failed.catch((e: unknown) => {
          out.destroy(e as Error);
          throw e;
        });
        inputFailed.catch(() => undefined);
        const stored = await Promise.race([io.write(out, plan.mediaType), inputFailed]);
        return { size: stored.size, width: info?.width ?? plan.width, height: info?.height ?? plan.height };
      } catch (e) {
        if (sourceError) throw readFailure();
        // Only a failure of the image pipeline is the content's fault; storage errors pass through.
        if (!decodeFailed) throw e;
        throw errors.unsupportedType(`Image could not be rendered: ${e instanceof Error ? e.message.slice(0, 120) : 'invalid'}`);
      }
    } finally {
      // Ended on success; after a refusal or a decode error nothing more is read from storage.
      source.destroy();
    }
  }
}

function tooLargeToDecode(meta: DecodeFacts, need: number, budget: number): AppError {
  const mib = (n: number) => Math.ceil(n / 1024 / 1024);
  return new AppError(
    ErrorCode.PAYLOAD_TOO_LARGE,
    `Image of ${meta.width} x ${meta.height} pixels (${meta.channels} bands of ${meta.depth}) needs about ${mib(need)} MiB to decode, more than the ${mib(budget)} MiB allowed for one image`,
    { field: 'file', extensions: { limit: budget } },
  );
}

