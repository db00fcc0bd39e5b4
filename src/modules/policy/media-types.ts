import type { MediaKind } from '../../generated/prisma/enums.js';

const MiB = 1024 * 1024;

export interface SupportedType {
  readonly mime: string;
  readonly kind: MediaKind;
  /** Per-kind size limit in bytes. */
  readonly maxSize: number;
  readonly ext: string;
}

/**
 * The only content the service accepts, keyed by MIME type as detected from the
 * bytes (SPEC 4). Sizes are binary megabytes.
 */
export const SUPPORTED_TYPES: ReadonlyMap<string, SupportedType> = new Map(
  (
    [
      ['image/jpeg', 'IMAGE', 10, 'jpg'],
      ['image/png', 'IMAGE', 10, 'png'],
      ['image/gif', 'IMAGE', 10, 'gif'],
      ['image/webp', 'IMAGE', 10, 'webp'],
      ['application/pdf', 'DOCUMENT', 20, 'pdf'],
      ['application/msword', 'DOCUMENT', 20, 'doc'],
      ['application/vnd.openxmlformats-officedocument.wordprocessingml.document', 'DOCUMENT', 20, 'docx'],
      ['application/vnd.ms-excel', 'DOCUMENT', 20, 'xls'],
      ['application/vnd.openxmlformats-officedocument.spreadsheetml.sheet', 'DOCUMENT', 20, 'xlsx'],
      ['video/mp4', 'VIDEO', 100, 'mp4'],
      ['audio/mpeg', 'AUDIO', 50, 'mp3'],
    ] as const
  ).map(([mime, kind, mb, ext]) => [mime, { mime, kind, maxSize: mb * MiB, ext }]),
);

/** Kinds a browser may show in place (Content-Disposition: inline); everything else downloads as an attachment. */
export const INLINE_KINDS: ReadonlySet<string> = new Set(['IMAGE', 'VIDEO', 'AUDIO']);

/** Names usable in a policy file for groups of types. */
export const TYPE_GROUPS: Readonly<Record<string, readonly string[]>> = {
  images: ['image/jpeg', 'image/png', 'image/gif', 'image/webp'],
  pdf: ['application/pdf'],
  video: ['video/mp4'],
  audio: ['audio/mpeg'],
  office: [
    'application/msword',
    'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
    'application/vnd.ms-excel',
    'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
  ],
};

/** Client spellings that mean the same type. */
const ALIASES: Record<string, string> = { 'image/jpg': 'image/jpeg', 'image/pjpeg': 'image/jpeg', 'audio/mp3': 'audio/mpeg' };

export function normaliseMime(mime: string | undefined | null): string | undefined {
  if (!mime) return undefined;
  const base = mime.split(';')[0]!.trim().toLowerCase();
  return ALIASES[base] ?? base;
}
