import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors/index.js';
import { ASSET_FIELDS, compileAssetQuery, compileAssetSort, MAX_QUERY_LENGTH } from '../../src/modules/assets/query-language.js';
import { fuzzParameters } from '../helpers/fuzz.js';

// Property-based fuzzing of the asset query language and sort (issue 10): any input
// either compiles or is refused with BAD_USER_INPUT on `q`/`sort` naming a term;
// nothing else is ever thrown, parsing stays linear, and no byte of the input ever
// reaches the SQL text (it travels as bind parameters only).

/** A marker that a field name, keyword or operator never contains: if it is in the SQL text, user input leaked into it. */
const MARK = 'zq9';

const fieldNames = Object.keys(ASSET_FIELDS);
const token = fc.oneof(
  fc.constantFrom(...fieldNames, 'unknown.field', 'AND', 'and', 'null', 'exists', 'desc', 'DESC'),
  fc.constantFrom(':', '(', ')', ',', ' ', '  ', '\t', '~', '"', '\\', '>', '<', '>=', '<=', '=', '*', '.', '[', ']', '^', '$', '|', '+', '?', '{', '}'),
  fc.constantFrom('PUBLIC', 'private', 'BLOB', '42', '-1', '99999999999999999999', '2021-05-18T07:27:27.455Z', '"2021-05-18"', '(?i)', '\\1', '(a+)+', '\u0000', '\u202e'),
  fc.string({ maxLength: 8 }).map((s) => `${MARK}${s}`),
  fc.string({ maxLength: 6 }),
);
/** Inputs shaped like the language (terms, groups, regexes), plus arbitrary text. */
const queryText = fc.oneof(
  fc.array(token, { maxLength: 40 }).map((t) => t.join('')),
  fc.array(fc.tuple(fc.constantFrom(...fieldNames), token, fc.array(token, { maxLength: 6 })), { maxLength: 10 }).map((terms) => terms.map(([f, a, rest]) => `${f}:${a}${rest.join('')}`).join(' ')),
  fc.string({ maxLength: 300 }),
);

function expectRefusalOrSql(run: () => { text: string }, field: 'q' | 'sort'): void {
  let text: string;
  try {
    text = run().text;
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    const err = e as AppError;
    expect(err.code).toBe('BAD_USER_INPUT');
    expect(err.extensions['field']).toBe(field);
    expect(typeof err.extensions['term']).toBe('string');
    return;
  }
  expect(text).not.toContain(MARK);
  expect(text).not.toContain('\u0000');
}

describe('fuzz: the asset query language', () => {
  it('q compiles to parameterised SQL or is refused with BAD_USER_INPUT naming a term', () => {
    fc.assert(
      fc.property(queryText, (q) => expectRefusalOrSql(() => compileAssetQuery(q).where, 'q')),
      fuzzParameters(3000),
    );
  });

  it('sort compiles to an ORDER BY of known columns or is refused the same way', () => {
    const sortText = fc.oneof(
      fc.array(fc.tuple(fc.constantFrom(...fieldNames, 'refIds.id', 'nope', ''), fc.constantFrom('', ':desc', ':DESC', ':asc', ':', `:${MARK}`, '::')), { maxLength: 12 }).map((k) => k.map(([f, d]) => `${f}${d}`).join(',')),
      fc.string({ maxLength: 200 }),
    );
    fc.assert(
      fc.property(sortText, (s) => expectRefusalOrSql(() => compileAssetSort(s), 'sort')),
      fuzzParameters(3000),
    );
  });

  it('parsing stays linear: the longest accepted query and pathological nestings parse in well under a second', () => {
    const worst = [
      `name:(~${'('.repeat(1990)}${')'.repeat(1990)})`,
      `name:(${'a,'.repeat(99)}a) `.repeat(30),
      `name:~"${'\\"'.repeat(1900)}"`,
      `details.bytes:(${'>=1 AND '.repeat(400)}<=2)`,
      '('.repeat(MAX_QUERY_LENGTH),
      ' '.repeat(MAX_QUERY_LENGTH),
      `${'a:b '.repeat(1000)}`,
    ].map((q) => q.slice(0, MAX_QUERY_LENGTH));
    for (const q of worst) {
      const started = performance.now();
      try {
        compileAssetQuery(q);
      } catch (e) {
        expect(e).toBeInstanceOf(AppError);
      }
      expect(performance.now() - started, q.slice(0, 60)).toBeLessThan(1000);
    }
  });
});
