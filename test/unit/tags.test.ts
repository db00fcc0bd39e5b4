import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors/index.js';
import { MAX_TAGS, normaliseTags } from '../../src/modules/media/tags.js';

function failure(fn: () => unknown): AppError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    return e as AppError;
  }
  throw new Error('expected a failure');
}

describe('normaliseTags', () => {
  it('returns [] for null, undefined and an empty list', () => {
    expect(normaliseTags(null)).toEqual([]);
    expect(normaliseTags(undefined)).toEqual([]);
    expect(normaliseTags([])).toEqual([]);
  });

  it('trims, lowercases and splits on commas', () => {
    expect(normaliseTags(['  Front ', 'Garden,POOL', ' a , b '])).toEqual(['front', 'garden', 'pool', 'a', 'b']);
  });

  it('deduplicates, the first occurrence keeping its place', () => {
    expect(normaliseTags(['b', 'a', 'B', 'c,a', ' A '])).toEqual(['b', 'a', 'c']);
  });

  it('drops empty pieces: double, leading and trailing commas, blank elements', () => {
    expect(normaliseTags([',a,,b,', '', '   ', ' , '])).toEqual(['a', 'b']);
  });

  it('accepts digits, underscore and hyphen', () => {
    expect(normaliseTags(['under_score', 'hy-phen', '2024', '-_-'])).toEqual(['under_score', 'hy-phen', '2024', '-_-']);
  });

  it('accepts 32 tags and refuses 33, naming the field', () => {
    const tags32 = Array.from({ length: MAX_TAGS }, (_, i) => `t${i}`);
    expect(MAX_TAGS).toBe(32);
    expect(normaliseTags(tags32)).toHaveLength(32);
    // 33 pieces, one a duplicate: still 32 distinct, accepted.
    expect(normaliseTags([...tags32, 'T0'])).toHaveLength(32);
    const e = failure(() => normaliseTags([...tags32, 't32'], 'input.tags'));
    expect(e.extensions['code']).toBe('BAD_USER_INPUT');
    expect(e.extensions['field']).toBe('input.tags');
    expect(e.message).toMatch(/33/);
  });

  it('counts tags after splitting: one element holding 33 comma-separated tags is refused', () => {
    const joined = Array.from({ length: 33 }, (_, i) => `x${i}`).join(',');
    expect(failure(() => normaliseTags([joined])).extensions['code']).toBe('BAD_USER_INPUT');
  });

  it('accepts 64 characters and refuses 65', () => {
    const t64 = 'a'.repeat(64);
    expect(normaliseTags([t64])).toEqual([t64]);
    const e = failure(() => normaliseTags(['a'.repeat(65)]));
    expect(e.extensions['code']).toBe('BAD_USER_INPUT');
    expect(e.extensions['field']).toBe('tags');
  });

  it('length is checked after trimming', () => {
    expect(normaliseTags([`  ${'b'.repeat(64)}  `])).toEqual(['b'.repeat(64)]);
  });

  it.each([['with space'], ['dot.ted'], ['slash/tag'], ['ünïcode'], ['emoji😀'], ['semi;colon'], ['quote"'], ['tab\tinside']])(
    'refuses %j, naming the tag',
    (bad) => {
      const e = failure(() => normaliseTags(['ok', bad], 'inputs.2.tags'));
      expect(e.extensions['code']).toBe('BAD_USER_INPUT');
      expect(e.extensions['field']).toBe('inputs.2.tags');
      expect(e.message).toContain(bad.trim().toLowerCase());
    },
  );

  it('does not change its input', () => {
    const input = [' A ', 'b,c'];
    normaliseTags(input);
    expect(input).toEqual([' A ', 'b,c']);
  });
});
