// busboy finds multipart boundaries with streamsearch. patches/streamsearch+1.1.0.patch
// replaces its JavaScript Boyer-Moore-Horspool loop with Buffer#indexOf (the upload
// path spent about a second of CPU per GiB in that loop). These tests check that
// the patched search still finds every boundary, split across chunks or not, and
// passes every other byte through exactly once.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
// The copy busboy loads.
const busboyDir = require.resolve('busboy');
const StreamSearch = createRequire(busboyDir)('streamsearch') as new (
  needle: Buffer,
  cb: (isMatch: boolean, data: Buffer | undefined, start: number, end: number, isSafeData: boolean) => void,
) => { push(chunk: Buffer): number; destroy(): void };

/** Splits `haystack` into the parts between needles, as fed in `cuts`-sized chunks. */
function search(needle: Buffer, haystack: Buffer, cuts: number[]): { parts: Buffer[]; matches: number } {
  const parts: Buffer[] = [];
  let current: Buffer[] = [];
  let matches = 0;
  const ss = new StreamSearch(needle, (isMatch, data, start, end) => {
    if (data && end > start) current.push(Buffer.from(data.subarray(start, end)));
    if (isMatch) {
      matches++;
      parts.push(Buffer.concat(current));
      current = [];
    }
  });
  let at = 0;
  let i = 0;
  while (at < haystack.length) {
    const n = Math.max(1, cuts[i++ % cuts.length]!);
    ss.push(haystack.subarray(at, at + n));
    at += n;
  }
  ss.destroy();
  parts.push(Buffer.concat(current));
  return { parts, matches };
}

/** The same split done with indexOf over the whole haystack at once. */
function reference(needle: Buffer, haystack: Buffer): Buffer[] {
  const parts: Buffer[] = [];
  let from = 0;
  for (;;) {
    const at = haystack.indexOf(needle, from);
    if (at === -1) break;
    parts.push(haystack.subarray(from, at));
    from = at + needle.length;
  }
  parts.push(haystack.subarray(from));
  return parts;
}

describe('streamsearch as patched for busboy', () => {
  it('is the patched copy (Buffer#indexOf in the fast path)', () => {
    const source = readFileSync(createRequire(busboyDir).resolve('streamsearch'), 'utf8');
    expect(source).toContain('data.indexOf(needle, pos)');
  });

  it('finds every boundary and keeps every other byte, whatever the chunking', () => {
    const needle = Buffer.from('\r\n------WebKitFormBoundary7MA4YWxkTrZu0gW');
    for (let round = 0; round < 40; round++) {
      const pieces: Buffer[] = [];
      const count = round % 5;
      for (let i = 0; i <= count; i++) {
        const body = randomBytes(1 + Math.floor(Math.random() * 200_000));
        // Near misses: a prefix of the needle inside the data, so partial matches straddle chunk edges.
        const prefix = needle.subarray(0, 1 + Math.floor(Math.random() * (needle.length - 1)));
        const at = Math.floor(Math.random() * body.length);
        pieces.push(Buffer.concat([body.subarray(0, at), prefix, body.subarray(at)]));
        if (i < count) pieces.push(needle);
      }
      const haystack = Buffer.concat(pieces);
      const expected = reference(needle, haystack);
      for (const cuts of [[haystack.length], [65536], [1, 2, 3, 41, 42, 43], [7, 65536, 13, 100_003], [needle.length - 1]]) {
        const got = search(needle, haystack, cuts);
        expect(got.matches).toBe(expected.length - 1);
        expect(got.parts.length).toBe(expected.length);
        got.parts.forEach((p, i) => expect(p.equals(expected[i]!)).toBe(true));
      }
    }
  });

  it('finds a needle at the very start, at the very end, and back to back', () => {
    const needle = Buffer.from('\r\n--b');
    const haystack = Buffer.concat([needle, Buffer.from('ab'), needle, needle, Buffer.from('\r\n-'), needle]);
    for (const cuts of [[haystack.length], [1], [2], [3], [4], [5], [6]]) {
      const got = search(needle, haystack, cuts);
      expect(got.parts.map((p) => p.toString())).toEqual(['', 'ab', '', '\r\n-', '']);
    }
  });
});
