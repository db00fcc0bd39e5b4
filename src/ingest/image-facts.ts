import { AppError, ErrorCode, errors } from '../errors/index.js';
import type { VariantRecord } from '../modules/media/media.record.js';
import type { ImageHeader } from './image-header.js';
import { presetVariants } from '../modules/renders/render-plan.js';

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

export function tooLargeToDecode(meta: DecodeFacts, need: number, budget: number): AppError {
  const mib = (n: number) => Math.ceil(n / 1024 / 1024);
  return new AppError(
    ErrorCode.PAYLOAD_TOO_LARGE,
    `Image of ${meta.width} x ${meta.height} pixels (${meta.channels} bands of ${meta.depth}) needs about ${mib(need)} MiB to decode, more than the ${mib(budget)} MiB allowed for one image`,
    { field: 'file', extensions: { limit: budget } },
  );
}

