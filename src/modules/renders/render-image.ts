import sharp from 'sharp';
import type { Readable } from 'node:stream';
import type { Metadata, OutputInfo, Sharp } from 'sharp';
import { errors, isAppError } from '../../errors/index.js';
import type { Reserve } from './image-queue.js';
import { decodeBytes, MAX_INPUT_PIXELS, tooLargeToDecode } from '../../ingest/image-facts.js';
import type { RenderPlan } from './render-plan.js';

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

