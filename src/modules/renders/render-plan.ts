import { createHash } from 'node:crypto';
import { errors, isAppError } from '../../errors/index.js';
import type { VariantRecord } from '../media/media.record.js';

/** No render is larger than this on either side. */
export const MAX_RENDER_SIDE = 4096;

export type Fit = 'cover' | 'contain' | 'inside';
export type RequestedFormat = 'auto' | 'webp' | 'avif' | 'jpeg' | 'png';
export type OutputFormat = 'webp' | 'avif' | 'jpeg' | 'png' | 'gif';

export const FITS: readonly Fit[] = ['cover', 'contain', 'inside'];
export const REQUESTED_FORMATS: readonly RequestedFormat[] = ['auto', 'webp', 'avif', 'jpeg', 'png'];

/** What a client asked for (`?w=&h=&fit=&format=&q=`), checked but not yet fitted to an image. */
export interface RenderRequest {
  width?: number | undefined;
  height?: number | undefined;
  fit: Fit;
  format: RequestedFormat;
  quality?: number | undefined;
}

/** The image a render is made from: its displayed size (orientation applied) and type. */
export interface RenderSourceImage {
  width: number;
  height: number;
  mediaType: string;
}

/**
 * One render, fully decided: the exact output size, format and quality. Two
 * requests that would produce the same bytes have the same plan, so they share
 * one cached render (`params` is its canonical form, `hash` names its object).
 */
export interface RenderPlan {
  /** Output width and height in pixels. */
  width: number;
  height: number;
  /** inside: the image scaled to exactly width x height (its own aspect ratio); cover: cropped to fill; contain: letterboxed. */
  fit: Fit;
  format: OutputFormat;
  /** Encoder quality (1-100); undefined for lossless formats. */
  quality: number | undefined;
  mediaType: string;
  /** Canonical text of the plan, e.g. `v1 160x120 inside jpeg q80`. */
  params: string;
  /** 32 hex characters of the SHA-256 of `params`: the render's name in storage and in its ETag. */
  hash: string;
  /** The format was chosen from the request's Accept header (responses say Vary: Accept). */
  varyAccept: boolean;
}

const SOURCE_FORMAT: Record<string, OutputFormat> = {
  'image/jpeg': 'jpeg',
  'image/png': 'png',
  'image/webp': 'webp',
  'image/gif': 'gif',
};

const MEDIA_TYPE: Record<OutputFormat, string> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  avif: 'image/avif',
  gif: 'image/gif',
};

/** sharp's own defaults; a request without q gets these, and one that names them shares their render. */
const DEFAULT_QUALITY: Record<OutputFormat, number | undefined> = { jpeg: 80, webp: 80, avif: 50, png: undefined, gif: undefined };

/** Whether renders can be made from images of this type. */
export function isRenderable(mediaType: string | null | undefined): boolean {
  return mediaType !== null && mediaType !== undefined && mediaType in SOURCE_FORMAT;
}

/** The named variants (SPEC 5): each a preset, `inside` a square of its size, in the original's format. */
export const VARIANT_PRESETS: ReadonlyArray<{ name: VariantRecord['name']; size: number }> = [
  { name: 'THUMB', size: 160 },
  { name: 'MEDIUM', size: 640 },
  { name: 'LARGE', size: 1280 },
  { name: 'LARGE_2X', size: 2560 },
];

const QUERY_KEYS = new Set(['w', 'h', 'fit', 'format', 'q']);

export interface ParseOptions {
  /** RENDER_SIZES: when set, every given w and h must be one of these. */
  allowedSizes?: readonly number[] | undefined;
  /** Query parameters that belong to the route, not the render (`token`, `v`). */
  ignore?: readonly string[];
}

/** Whether a query asks for a render at all (any of w, h, fit, format, q). */
export function asksForRender(query: Record<string, unknown>): boolean {
  return Object.keys(query).some((k) => QUERY_KEYS.has(k));
}

/**
 * Reads `?w=&h=&fit=&format=&q=`. Everything is checked before any work:
 * sizes are whole numbers from 1 to 4096 (and in the allow-list when there is
 * one), fit and format are one of theirs, q is 1-100; an unknown or repeated
 * parameter is refused too (a typo such as `width=` would otherwise render
 * something else than asked). Errors are BAD_USER_INPUT naming the parameter.
 */
export function parseRenderQuery(query: Record<string, unknown>, options: ParseOptions = {}): RenderRequest {
  const ignore = new Set(options.ignore ?? []);
  for (const k of Object.keys(query)) {
    if (!QUERY_KEYS.has(k) && !ignore.has(k)) {
      throw errors.badInput(k.slice(0, 32), `Unknown render parameter "${k.slice(0, 32)}"; renders take w, h, fit, format and q`);
    }
  }
  const one = (k: string): string | undefined => {
    const v = query[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw errors.badInput(k, `Parameter ${k} must be given once`);
    return v;
  };
  const int = (k: string, min: number, max: number): number | undefined => {
    const v = one(k);
    if (v === undefined) return undefined;
    if (!/^[0-9]{1,5}$/.test(v) || Number(v) < min || Number(v) > max) throw errors.badInput(k, `${k} must be a whole number from ${min} to ${max}`);
    return Number(v);
  };
  const width = int('w', 1, MAX_RENDER_SIDE);
  const height = int('h', 1, MAX_RENDER_SIDE);
  const quality = int('q', 1, 100);
  const fit = one('fit') ?? 'inside';
  if (!(FITS as readonly string[]).includes(fit)) throw errors.badInput('fit', `fit must be one of ${FITS.join(', ')}`);
  const format = one('format') ?? 'auto';
  if (!(REQUESTED_FORMATS as readonly string[]).includes(format)) throw errors.badInput('format', `format must be one of ${REQUESTED_FORMATS.join(', ')}`);
  const allowed = options.allowedSizes;
  if (allowed && allowed.length > 0) {
    for (const [k, v] of [['w', width], ['h', height]] as const) {
      if (v !== undefined && !allowed.includes(v)) throw errors.badInput(k, `${k}=${v} is not an allowed render size; allowed: ${allowed.join(', ')}`);
    }
  }
  return { width, height, fit: fit as Fit, format: format as RequestedFormat, quality };
}

/** A render asked for through GraphQL (renderUrl's arguments): the same checks as the query string, errors naming the argument. */
export function renderRequestOf(
  a: { width?: number | null; height?: number | null; fit?: string | null; format?: string | null; quality?: number | null },
  allowedSizes?: readonly number[],
): RenderRequest {
  const query: Record<string, string> = {};
  const names: Record<string, string> = { w: 'width', h: 'height', q: 'quality', fit: 'fit', format: 'format' };
  if (a.width != null) query['w'] = String(a.width);
  if (a.height != null) query['h'] = String(a.height);
  if (a.quality != null) query['q'] = String(a.quality);
  if (a.fit != null) query['fit'] = a.fit;
  if (a.format != null) query['format'] = a.format;
  try {
    return parseRenderQuery(query, { allowedSizes });
  } catch (e) {
    const field = (e as { extensions?: { field?: string } }).extensions?.field;
    if (isAppError(e) && field && names[field]) {
      throw errors.badInput(names[field]!, e.message.replace(new RegExp(`^${field}\\b`), names[field]!).replace(`${field}=`, `${names[field]}=`));
    }
    throw e;
  }
}

/** The request again as a canonical query string (fixed order, defaults left out): what a signed render link covers. */
export function canonicalQuery(r: RenderRequest): string {
  const parts: string[] = [];
  if (r.width !== undefined) parts.push(`w=${r.width}`);
  if (r.height !== undefined) parts.push(`h=${r.height}`);
  if (r.fit !== 'inside') parts.push(`fit=${r.fit}`);
  if (r.format !== 'auto') parts.push(`format=${r.format}`);
  if (r.quality !== undefined) parts.push(`q=${r.quality}`);
  return parts.join('&');
}

/**
 * `format=auto`: AVIF when the client accepts it, else WebP, else the original's
 * format. Only explicit types count (a wildcard says nothing about new formats),
 * and `q=0` refuses a type.
 */
export function formatFor(accept: string | undefined, source: OutputFormat): OutputFormat {
  const accepted = new Set<string>();
  for (const part of (accept ?? '').slice(0, 2048).split(',')) {
    const [type, ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    const q = params.find((p) => p.startsWith('q='));
    if (type && !(q !== undefined && Number(q.slice(2)) === 0)) accepted.add(type);
  }
  if (accepted.has('image/avif')) return 'avif';
  if (accepted.has('image/webp')) return 'webp';
  return source;
}

/**
 * Fits a request to an image. Never upscales: `inside` shrinks to fit the box
 * (a missing side is unbounded; no side at all keeps the image's size, at most
 * 4096 a side); `cover` and `contain` produce the box exactly, or, when the image
 * is smaller than that, the largest box of the same shape the image fills
 * without enlarging. With only one side given they are the same as `inside`.
 */
export function planRender(r: RenderRequest, source: RenderSourceImage, accept?: string): RenderPlan {
  const original = SOURCE_FORMAT[source.mediaType];
  if (!original) throw errors.unsupportedType(`Renders are made from JPEG, PNG, WebP and GIF images, not ${source.mediaType}`);
  if (!(source.width > 0 && source.height > 0)) throw errors.unsupportedType('The image has no recorded size');
  const format = r.format === 'auto' ? formatFor(accept, original) : r.format;
  let fit: Fit = r.width !== undefined && r.height !== undefined ? r.fit : 'inside';
  let width: number;
  let height: number;
  if (fit === 'inside') {
    const scale = Math.min(1, (r.width ?? MAX_RENDER_SIDE) / source.width, (r.height ?? MAX_RENDER_SIDE) / source.height);
    width = Math.max(1, Math.round(source.width * scale));
    height = Math.max(1, Math.round(source.height * scale));
  } else {
    const boxW = r.width!;
    const boxH = r.height!;
    const scale = fit === 'cover' ? Math.max(boxW / source.width, boxH / source.height) : Math.min(boxW / source.width, boxH / source.height);
    const shrink = Math.max(1, scale);
    width = Math.max(1, Math.round(boxW / shrink));
    height = Math.max(1, Math.round(boxH / shrink));
    // A box of the image's own shape is the image itself, scaled: one render for both.
    const inside = Math.min(1, boxW / source.width, boxH / source.height);
    if (width === Math.max(1, Math.round(source.width * inside)) && height === Math.max(1, Math.round(source.height * inside))) fit = 'inside';
  }
  return plan(width, height, fit, format, r.quality, r.format === 'auto');
}

/** The plan of a named variant of an image (in its own format, default quality). */
export function planPreset(name: VariantRecord['name'], source: RenderSourceImage): RenderPlan {
  const preset = VARIANT_PRESETS.find((p) => p.name === name);
  if (!preset) throw errors.badInput('name', `No variant ${String(name).slice(0, 32)}`);
  const format = SOURCE_FORMAT[source.mediaType];
  if (!format) throw errors.unsupportedType(`Variants are made from JPEG, PNG, WebP and GIF images, not ${source.mediaType}`);
  const sized = planRender({ width: preset.size, height: preset.size, fit: 'inside', format: 'png' }, source);
  return plan(sized.width, sized.height, 'inside', format, undefined, false);
}

/**
 * The variants an image has (SPEC 5): THUMB always, each larger one only where the
 * image is larger than its size (never upscaled), with the size each will render at.
 * Nothing is rendered here: each is made on its first request.
 */
export function presetVariants(source: RenderSourceImage): VariantRecord[] {
  if (!isRenderable(source.mediaType)) return [];
  const longEdge = Math.max(source.width, source.height);
  return VARIANT_PRESETS.filter((p) => p.name === 'THUMB' || longEdge > p.size).map((p) => {
    const plan = planPreset(p.name, source);
    return { name: p.name, width: plan.width, height: plan.height, mediaType: plan.mediaType };
  });
}

function plan(width: number, height: number, fit: Fit, format: OutputFormat, quality: number | undefined, varyAccept: boolean): RenderPlan {
  const q = DEFAULT_QUALITY[format] === undefined ? undefined : (quality ?? DEFAULT_QUALITY[format]);
  const params = `v1 ${width}x${height} ${fit} ${format}${q === undefined ? '' : ` q${q}`}`;
  return {
    width,
    height,
    fit,
    format,
    quality: q,
    mediaType: MEDIA_TYPE[format],
    params,
    hash: createHash('sha256').update(params).digest('hex').slice(0, 32),
    varyAccept,
  };
}
