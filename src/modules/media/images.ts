import sharp from 'sharp';
import type { Readable } from 'node:stream';
import type { Metadata, OutputInfo, Sharp } from 'sharp';
import type { Storage } from '../../storage/index.js';
import { objectKeys } from '../../storage/index.js';
import { AppError, ErrorCode, errors, isAppError } from '../../errors/index.js';
import type { ImageQueue } from './image-queue.js';
import type { VariantRecord } from './media.record.js';

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
export function decodeBytes(meta: Pick<Metadata, 'width' | 'height' | 'channels' | 'depth' | 'format'>): number {
  const frame = (meta.width ?? 0) * (meta.height ?? 0) * (meta.channels ?? 4) * (BYTES_PER_SAMPLE[meta.depth ?? 'uchar'] ?? 4);
  return Math.ceil(frame * (meta.format === 'gif' ? 1.6 : 1.3));
}

export const VARIANT_SIZES: ReadonlyArray<{ name: VariantRecord['name']; size: number }> = [
  { name: 'THUMB', size: 160 },
  { name: 'MEDIUM', size: 640 },
  { name: 'LARGE', size: 1280 },
  { name: 'LARGE_2X', size: 2560 },
];

const OUTPUT: Record<string, 'jpeg' | 'png' | 'webp' | 'gif'> = {
  'image/jpeg': 'jpeg',
  'image/png': 'png',
  'image/webp': 'webp',
  'image/gif': 'gif',
};

export interface ImageFacts {
  width: number;
  height: number;
  variants: VariantRecord[];
}

/** Where an image pipeline reads the original and writes variants (plain or encrypted storage). */
export interface ImageIO {
  readOriginal(): Promise<Readable>;
  writeVariant(name: VariantRecord['name'], body: Readable, contentType: string): Promise<{ size: number }>;
}

/** Reads the stored original of a media and writes its variants in plaintext. */
export function processImage(storage: Storage, tenant: string, mediaId: string, mime: string, queue: ImageQueue): Promise<ImageFacts> {
  return processImageWith(
    {
      readOriginal: () => storage.get(objectKeys.original(tenant, mediaId)),
      writeVariant: (name, body, contentType) => storage.put(objectKeys.variant(tenant, mediaId, name), body, { contentType }),
    },
    mime,
    queue,
  );
}

/**
 * Reads the original once, reports its displayed size (EXIF orientation
 * applied) and writes the variants beside it. THUMB always exists; larger variants
 * only where the original is larger than their size (never upscaled). EXIF and GPS
 * data are not copied into variants. Content that does not decode is refused.
 * The work runs in a turn of the image queue (SERVICE_BUSY when it gets none),
 * after reserving the memory the image needs decoded; an image that needs more
 * than the queue's whole budget is PAYLOAD_TOO_LARGE.
 */
export async function processImageWith(io: ImageIO, mime: string, queue: ImageQueue): Promise<ImageFacts> {
  const format = OUTPUT[mime];
  if (!format) throw errors.unsupportedType(`No image pipeline for ${mime}`);
  return queue.run(async (reserve) => {
    const input = sharp({ limitInputPixels: MAX_INPUT_PIXELS, failOn: 'error' });
    // sharp neither listens for its input's errors nor settles metadata() or its
    // clones' outputs when the input fails: every wait below races this instead.
    let sourceError: unknown;
    const failed = new Promise<never>((_, reject) => input.on('error', reject));
    failed.catch(() => undefined);
    const source = await io.readOriginal();
    source.on('error', (e) => {
      sourceError ??= e;
      input.destroy(e);
    });
    source.pipe(input);
    // A read that failed is the storage's fault (or the integrity check's), never the content's.
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
      if (need > queue.memoryBytes) throw tooLargeToDecode(meta, need, queue.memoryBytes);
      await reserve(need);
      try {
        return await variantsOf(input, meta, { io, mime, format, failed });
      } catch (e) {
        throw sourceError ? readFailure() : e;
      }
    } finally {
      // Ended on success; after a refusal or a decode error nothing more is read from storage.
      source.destroy();
    }
  });
}

function tooLargeToDecode(meta: Metadata, need: number, budget: number): AppError {
  const mib = (n: number) => Math.ceil(n / 1024 / 1024);
  return new AppError(
    ErrorCode.PAYLOAD_TOO_LARGE,
    `Image of ${meta.width} x ${meta.height} pixels (${meta.channels} bands of ${meta.depth}) needs about ${mib(need)} MiB to decode, more than the ${mib(budget)} MiB allowed for one image`,
    { field: 'file', extensions: { limit: budget } },
  );
}

/** Writes the variants of a decoded image (THUMB always, larger ones only below its size). */
async function variantsOf(
  input: Sharp,
  meta: Metadata,
  o: { io: ImageIO; mime: string; format: (typeof OUTPUT)[string]; failed: Promise<never> },
): Promise<ImageFacts> {
  const { io, mime, format, failed } = o;
  const width = meta.autoOrient?.width ?? meta.width;
  const height = meta.autoOrient?.height ?? meta.height;
  if (!width || !height) throw errors.unsupportedType('Image has no dimensions');
  const longEdge = Math.max(width, height);
  const variants: VariantRecord[] = [];
  for (const { name, size } of VARIANT_SIZES) {
    if (name !== 'THUMB' && longEdge <= size) continue;
    const out = input
      .clone()
      .rotate()
      .resize({ width: size, height: size, fit: 'inside', withoutEnlargement: true })
      .toFormat(format);
    let info: OutputInfo | undefined;
    let decodeFailed = false;
    out.on('info', (i: OutputInfo) => (info = i));
    out.on('error', () => (decodeFailed = true));
    try {
      // When the input fails, this output would never end: end it with the same error.
      const inputFailed = failed.catch((e: unknown) => {
        out.destroy(e as Error);
        throw e;
      });
      inputFailed.catch(() => undefined);
      const stored = await Promise.race([io.writeVariant(name, out, mime), inputFailed]);
      variants.push({ name, width: info?.width ?? 0, height: info?.height ?? 0, size: stored.size, mediaType: mime });
    } catch (e) {
      // Only a failure of the image pipeline is the content's fault; storage errors pass through.
      if (!decodeFailed) throw e;
      throw errors.unsupportedType(`Image could not be resized: ${e instanceof Error ? e.message.slice(0, 120) : 'invalid'}`);
    }
  }
  return { width, height, variants };
}
