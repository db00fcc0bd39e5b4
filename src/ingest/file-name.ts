import { SUPPORTED_TYPES } from '../modules/policy/media-types.js';

// The one place that decides the name a file is stored and served under. Every
// door that names a file calls it: multipart upload and uploadMany and the
// worker's uploadSignedDocument (through receiveUpload), direct uploads (on
// completion), assets (upload, direct upload, a given filename); and the record
// mappers call it again on every row read, so that rows stored before a rule
// existed are served by today's rules (it is idempotent).

/**
 * Characters removed from a name because they are invisible or change how the
 * rest displays, so that what a user sees is what the name is:
 * - \p{Cc}: C0 controls, DEL and C1 controls (U+0085 is a line break);
 * - \p{Cf}, format characters: the bidi embeddings, overrides, isolates and marks
 *   (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C: "invoice\u202Egnp.exe"
 *   displays as "invoiceexe.png"), zero-width space U+200B, word joiner and
 *   invisible operators U+2060-U+2064, U+FEFF, soft hyphen, tag characters, ...
 *   except ZWNJ and ZWJ (U+200C, U+200D): Persian and Indic spelling and emoji
 *   sequences need them, and they cannot reorder or hide the extension;
 * - \p{Zl}, \p{Zp}: U+2028, U+2029 break lines like CR/LF;
 * - \p{Cs}: an unpaired surrogate is not a character at all;
 * - Hangul fillers (U+115F, U+1160, U+3164, U+FFA0), letters that render blank.
 */
const INVISIBLE = /[\p{Cc}\p{Zl}\p{Zp}\p{Cs}\u115f\u1160\u3164\uffa0]|(?![\u200c\u200d])\p{Cf}/gu;

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/** Other extensions that mean the detected type (the canonical one is SUPPORTED_TYPES' ext). */
const OTHER_EXTENSIONS: Readonly<Record<string, readonly string[]>> = {
  'image/jpeg': ['jpeg', 'jpe', 'jfif'],
  'video/mp4': ['m4v'],
};

/** What reads as a type extension (and is replaced when it disagrees): 1-8 letters or digits, at least one letter. */
const EXTENSION_LIKE = /^(?=[0-9]*[A-Za-z])[A-Za-z0-9]{1,8}$/;

const MAX_LENGTH = 255;

/**
 * The client's name kept for display and Content-Disposition: no path parts, NFC,
 * none of the INVISIBLE characters, no trailing dots or spaces (Windows drops
 * them, turning "x.exe." into "x.exe"), at most 255 UTF-16 units. With the type
 * detected from the content, the extension is made to agree with it: a PDF named
 * "invoice.html" becomes "invoice.pdf", "scan" becomes "scan.pdf"; a name whose
 * extension already names the type ("photo.JPEG") is kept. DOC and XLS are told
 * apart by the extension before this runs (inspect-stream.ts), so it never
 * changes theirs.
 */
export function sanitiseFileName(name: string | null | undefined, mime?: string | null): string {
  const raw = name ?? '';
  const base = raw.slice(Math.max(raw.lastIndexOf('/'), raw.lastIndexOf('\\')) + 1);
  // Printable ASCII (most names) has nothing to compose or strip: the record mappers call this on every row.
  let clean = (PRINTABLE_ASCII.test(base) ? base : base.normalize('NFC').replace(INVISIBLE, '')).trim();
  let end = clean.length;
  while (end > 0 && (clean[end - 1] === '.' || clean[end - 1]!.trim() === '')) end--;
  clean = clean.slice(0, end);
  const type = mime ? SUPPORTED_TYPES.get(mime) : undefined;
  if (!type) return truncate(clean || 'file', '');
  const dot = clean.lastIndexOf('.');
  const ext = dot >= 0 ? clean.slice(dot + 1) : '';
  const known = [type.ext, ...(OTHER_EXTENSIONS[type.mime] ?? [])];
  if (dot >= 0 && known.includes(ext.toLowerCase())) return truncate(clean.slice(0, dot), clean.slice(dot));
  if (dot > 0 && EXTENSION_LIKE.test(ext)) clean = clean.slice(0, dot);
  return truncate(clean || 'file', `.${type.ext}`);
}

/** `stem + ext` within MAX_LENGTH, shortening the stem (never splitting a surrogate pair) so the extension survives. */
function truncate(stem: string, ext: string): string {
  const room = MAX_LENGTH - ext.length;
  if (stem.length <= room) return stem + ext;
  let cut = stem.slice(0, room);
  if (/[\ud800-\udbff]$/.test(cut)) cut = cut.slice(0, -1);
  return cut + ext;
}
