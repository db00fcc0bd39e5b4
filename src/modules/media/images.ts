import sharp from 'sharp';
import type { Readable } from 'node:stream';
import type { Metadata, OutputInfo } from 'sharp';
import type { Storage } from '../../storage/index.js';
import { objectKeys } from '../../storage/index.js';
import { errors } from '../../errors/index.js';
import type { VariantRecord } from './media.record.js';

// Decompression-bomb guard: refuse images above this many input pixels.
const MAX_INPUT_PIXELS = 80_000_000;

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
export function processImage(storage: Storage, tenant: string, mediaId: string, mime: string): Promise<ImageFacts> {
  return processImageWith(
    {
      readOriginal: () => storage.get(objectKeys.original(tenant, mediaId)),
      writeVariant: (name, body, contentType) => storage.put(objectKeys.variant(tenant, mediaId, name), body, { contentType }),
    },
    mime,
  );
}

/**
 * Reads the original once, reports its displayed size (EXIF orientation
 * applied) and writes the variants beside it. THUMB always exists; larger variants
 * only where the original is larger than their size (never upscaled). EXIF and GPS
 * data are not copied into variants. Content that does not decode is refused.
 */
export async function processImageWith(io: ImageIO, mime: string): Promise<ImageFacts> {
  const format = OUTPUT[mime];
  if (!format) throw errors.unsupportedType(`No image pipeline for ${mime}`);
  const input = sharp({ limitInputPixels: MAX_INPUT_PIXELS, failOn: 'error' });
  const source = await io.readOriginal();
  source.on('error', (e) => input.destroy(e));
  source.pipe(input);
  let meta: Metadata;
  try {
    meta = await input.metadata();
  } catch (e) {
    throw errors.unsupportedType(`Image could not be decoded: ${e instanceof Error ? e.message.slice(0, 120) : 'invalid'}`);
  }
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
      const stored = await io.writeVariant(name, out, mime);
      variants.push({ name, width: info?.width ?? 0, height: info?.height ?? 0, size: stored.size, mediaType: mime });
    } catch (e) {
      // Only a failure of the image pipeline is the content's fault; storage errors pass through.
      if (!decodeFailed) throw e;
      throw errors.unsupportedType(`Image could not be resized: ${e instanceof Error ? e.message.slice(0, 120) : 'invalid'}`);
    }
  }
  return { width, height, variants };
}
