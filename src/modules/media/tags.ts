import { errors } from '../../errors/index.js';

export const TAG_RE = /^[a-z0-9_-]{1,64}$/;
export const MAX_TAGS = 32;

/**
 * Trims, lowercases, splits on commas and deduplicates (first occurrence keeps its
 * place). Empty pieces ("a,,b", trailing commas) are dropped. Any other tag that
 * does not match [a-z0-9_-]{1,64}, or more than 32 tags, is BAD_USER_INPUT naming it.
 */
export function normaliseTags(input: readonly string[] | null | undefined, field = 'tags'): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const element of input ?? []) {
    for (const piece of element.split(',')) {
      const tag = piece.trim().toLowerCase();
      if (tag === '') continue;
      if (!TAG_RE.test(tag)) throw errors.badInput(field, `Invalid tag "${tag.slice(0, 80)}": tags are 1-64 characters of a-z, 0-9, _ and -`);
      if (seen.has(tag)) continue;
      seen.add(tag);
      out.push(tag);
    }
  }
  if (out.length > MAX_TAGS) throw errors.badInput(field, `Too many tags: ${out.length} (at most ${MAX_TAGS})`);
  return out;
}
