import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors/index.js';
import {
  ASSET_FIELDS,
  compileAssetQuery,
  compileAssetSort,
  MAX_REGEX_LENGTH,
  MAX_TERMS,
  parseQuery,
  parseSort,
  tokenize,
} from '../../src/modules/assets/query-language.js';

/** The SQL text ($n placeholders) and bind values of a query. */
function sql(q: string): { text: string; values: unknown[] } {
  const { where } = compileAssetQuery(q);
  return { text: where.text, values: where.values };
}

/** The error a query is refused with. */
function refusal(q: string, compile: (q: string) => unknown = compileAssetQuery): AppError {
  try {
    compile(q);
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    return e as AppError;
  }
  throw new Error(`"${q}" was accepted`);
}

describe('tokenizer', () => {
  it('splits terms, groups, operators, strings and regular expressions', () => {
    const kinds = (s: string) => tokenize(s).map((t) => `${t.kind}:${t.value}`);
    expect(kinds('details.bytes:(>=100 AND <=200)')).toEqual([
      'word:details.bytes', 'colon::', 'lparen:(', 'op:>=', 'word:100', 'ws: ', 'word:AND', 'ws: ', 'op:<=', 'word:200', 'rparen:)', 'eof:',
    ]);
    expect(kinds('a:"x \\" y" b:~^a(b|c)$')).toEqual(['word:a', 'colon::', 'string:x " y', 'ws: ', 'word:b', 'colon::', 'regex:^a(b|c)$', 'eof:']);
  });

  it('reads a regular expression after "(" up to the matching ")", spaces, nested groups and brackets included', () => {
    expect(tokenize('name:(~AB CD)').map((t) => t.value)).toEqual(['name', ':', '(', 'AB CD', ')', '']);
    expect(tokenize('name:( ~(x|y) [)] z )').find((t) => t.kind === 'regex')?.value).toBe('(x|y) [)] z');
    expect(tokenize('name:(~a\\)b)').find((t) => t.kind === 'regex')?.value).toBe('a\\)b');
  });

  it('records where each token is', () => {
    const t = tokenize('key:abc  access:PUBLIC');
    expect(t.map((x) => [x.start, x.end])).toEqual([[0, 3], [3, 4], [4, 7], [7, 9], [9, 15], [15, 16], [16, 22], [22, 22]]);
  });
});

describe('parser: every form of SPEC 11', () => {
  it('field:value — equals', () => {
    expect(parseQuery('access:PUBLIC')).toEqual([{ field: 'access', text: 'access:PUBLIC', expression: { kind: 'equals', values: [{ text: 'PUBLIC', quoted: false }] } }]);
    expect(sql('access:PUBLIC')).toEqual({ text: 'a.access = $1::"AssetAccess"', values: ['PUBLIC'] });
    expect(sql('details.bytes:200')).toEqual({ text: 'a.bytes = $1::bigint', values: [200] });
    expect(sql('name:"Spring sale"')).toEqual({ text: 'a.name = $1::text', values: ['Spring sale'] });
    expect(sql('key:images/front.jpg')).toEqual({ text: 'a.key = $1::text', values: ['images/front.jpg'] });
    expect(sql('key:a:b')).toEqual({ text: 'a.key = $1::text', values: ['a:b'] });
  });

  it('field:(a,b) — any of the values', () => {
    const a = '5c3325ba-a981-4210-8009-8ff48f000001';
    const b = '5c3325d1-a981-4210-8009-8ff494000002';
    expect(parseQuery(`id:(${a},${b})`)[0]!.expression).toEqual({ kind: 'equals', values: [{ text: a, quoted: false }, { text: b, quoted: false }] });
    expect(sql(`id:(${a}, ${b})`)).toEqual({ text: 'a.id IN ($1::uuid,$2::uuid)', values: [a, b] });
    expect(sql('type:(BLOB,link)')).toEqual({ text: 'a.type IN ($1::"AssetType",$2::"AssetType")', values: ['BLOB', 'LINK'] });
    expect(sql('priority:(1, 2 ,3)')).toEqual({ text: 'a.priority IN ($1::int,$2::int,$3::int)', values: [1, 2, 3] });
    // Ids are UUIDs: a value that is not one names no asset (not an error).
    expect(sql('id:5c3325baa9812100098ff48f')).toEqual({ text: 'FALSE', values: [] });
    expect(sql(`id:(5c3325baa9812100098ff48f,${a})`)).toEqual({ text: 'a.id = $1::uuid', values: [a] });
  });

  it('field:>v, <v, >=v, <=v — comparisons on numbers', () => {
    expect(sql('details.bytes:>200')).toEqual({ text: 'a.bytes > $1::bigint', values: [200] });
    expect(sql('details.bytes:<200')).toEqual({ text: 'a.bytes < $1::bigint', values: [200] });
    expect(sql('details.bytes:>=200')).toEqual({ text: 'a.bytes >= $1::bigint', values: [200] });
    expect(sql('details.bytes:<=200')).toEqual({ text: 'a.bytes <= $1::bigint', values: [200] });
    expect(sql('priority:>-5')).toEqual({ text: 'a.priority > $1::int', values: [-5] });
    expect(sql('metadata.version:>=2')).toEqual({ text: 'a.version >= $1::int', values: [2] });
  });

  it('field:(>=100 AND <=200) — a range', () => {
    expect(parseQuery('details.bytes:(>=100 AND <=200)')[0]!.expression).toEqual({
      kind: 'compare',
      parts: [
        { op: '>=', value: { text: '100', quoted: false } },
        { op: '<=', value: { text: '200', quoted: false } },
      ],
    });
    expect(sql('details.bytes:(>=100 AND <=200)')).toEqual({ text: '(a.bytes >= $1::bigint AND a.bytes <= $2::bigint)', values: [100, 200] });
    expect(sql('details.bytes:( >100 and <200 )')).toEqual({ text: '(a.bytes > $1::bigint AND a.bytes < $2::bigint)', values: [100, 200] });
  });

  it('dates in double quotes, alone and in ranges', () => {
    expect(sql('metadata.createdAt:(>="2021-05-18T07:27:27.455Z" AND <"2021-05-20T07:27:27.455Z")')).toEqual({
      text: '(a.created_at >= $1::timestamptz AND a.created_at < $2::timestamptz)',
      values: ['2021-05-18T07:27:27.455Z', '2021-05-20T07:27:27.455Z'],
    });
    expect(sql('metadata.modifiedAt:>"2021-05-18T09:27:27+02:00"')).toEqual({ text: 'a.modified_at > $1::timestamptz', values: ['2021-05-18T07:27:27.000Z'] });
    // A date alone, and a time without a zone (UTC, whatever the server's zone).
    expect(sql('metadata.createdAt:<"2021-05-18"').values).toEqual(['2021-05-18T00:00:00.000Z']);
    expect(sql('metadata.createdAt:<"2021-05-18T10:00"').values).toEqual(['2021-05-18T10:00:00.000Z']);
    expect(sql('metadata.createdAt:"2021-05-18T07:27:27.455Z"')).toEqual({ text: 'a.created_at = $1::timestamptz', values: ['2021-05-18T07:27:27.455Z'] });
  });

  it('field:null — missing or empty; field:exists — present', () => {
    expect(parseQuery('details.filename:null')[0]!.expression).toEqual({ kind: 'null' });
    expect(sql('details.filename:null').text).toBe("(a.file_name IS NULL OR a.file_name = '')");
    expect(sql('details.filename:exists').text).toBe("(a.file_name IS NOT NULL AND a.file_name <> '')");
    expect(sql('details.bytes:null').text).toBe('a.bytes IS NULL');
    expect(sql('details.bytes:exists').text).toBe('a.bytes IS NOT NULL');
    expect(sql('details:exists').text).toBe('(a.file_name IS NOT NULL OR a.mime_type IS NOT NULL OR a.bytes IS NOT NULL OR a.checksum IS NOT NULL)');
    expect(sql('details:null').text).toBe('NOT (a.file_name IS NOT NULL OR a.mime_type IS NOT NULL OR a.bytes IS NOT NULL OR a.checksum IS NOT NULL)');
    expect(sql('refIds:exists').text).toBe("a.ref_ids <> '[]'::jsonb");
    expect(sql('refIds.id:null').text).toBe(`NOT EXISTS (SELECT 1 FROM jsonb_path_query(a.ref_ids, 'lax $[*].id') AS r(v) WHERE r.v #>> '{}' <> '')`);
    // Quoted, null is a plain value.
    expect(sql('name:"null"')).toEqual({ text: 'a.name = $1::text', values: ['null'] });
  });

  it('field:~regex and field:(~AB CD) — regular expressions, run by PostgreSQL', () => {
    expect(parseQuery('name:~ABC')[0]!.expression).toEqual({ kind: 'regex', pattern: 'ABC' });
    expect(sql('name:~ABC')).toEqual({ text: 'a.name ~ $1', values: ['ABC'] });
    expect(sql('name:(~AB CD)')).toEqual({ text: 'a.name ~ $1', values: ['AB CD'] });
    expect(sql('name:~"AB CD"')).toEqual({ text: 'a.name ~ $1', values: ['AB CD'] });
    expect(sql('id:~^5c33')).toEqual({ text: 'a.id::text ~ $1', values: ['^5c33'] });
    expect(sql('access:~^PUB')).toEqual({ text: 'a.access::text ~ $1', values: ['^PUB'] });
    expect(sql('refIds.type:~^PROD')).toEqual({
      text: `EXISTS (SELECT 1 FROM jsonb_path_query(a.ref_ids, 'lax $[*].type') AS r(v) WHERE r.v #>> '{}' ~ $1)`,
      values: ['^PROD'],
    });
    expect(sql(`name:~${'x'.repeat(MAX_REGEX_LENGTH)}`).values).toEqual(['x'.repeat(MAX_REGEX_LENGTH)]);
  });

  it('refIds.id / refIds.type equality is JSON containment (GIN-indexed)', () => {
    expect(sql('refIds.id:p-1')).toEqual({ text: 'a.ref_ids @> $1::jsonb', values: ['[{"id":"p-1"}]'] });
    expect(sql('refIds.type:(PRODUCT,CATEGORY)')).toEqual({
      text: '(a.ref_ids @> $1::jsonb OR a.ref_ids @> $2::jsonb)',
      values: ['[{"type":"PRODUCT"}]', '[{"type":"CATEGORY"}]'],
    });
  });

  it('several space-separated terms must all hold', () => {
    const id = '5c3325ba-a981-4210-8009-8ff48f000001';
    expect(parseQuery(`  id:${id}   access:PUBLIC `).map((t) => t.text)).toEqual([`id:${id}`, 'access:PUBLIC']);
    expect(sql(`id:${id} access:PUBLIC active:true`)).toEqual({
      text: 'a.id = $1::uuid AND a.access = $2::"AssetAccess" AND a.active = $3::boolean',
      values: [id, 'PUBLIC', true],
    });
    expect(sql('')).toEqual({ text: 'TRUE', values: [] });
    expect(sql('   ')).toEqual({ text: 'TRUE', values: [] });
  });

  it('knows exactly the fields of SPEC 11 (plus the details, refIds and metadata objects for null/exists)', () => {
    expect(Object.keys(ASSET_FIELDS)).toEqual([
      'id', 'type', 'access', 'name', 'key', 'priority', 'active', 'refIds.id', 'refIds.type',
      'details.filename', 'details.mimeType', 'details.bytes', 'metadata.version', 'metadata.createdAt', 'metadata.modifiedAt',
      'details', 'refIds', 'metadata',
    ]);
    for (const [field, value] of Object.entries({
      type: 'BLOB', name: 'x', key: 'x', priority: '1', active: 'false', 'refIds.id': 'x', 'refIds.type': 'x',
      'details.filename': 'x', 'details.mimeType': 'image/png', 'details.bytes': '1', 'metadata.version': '1', 'metadata.createdAt': '"2024-01-01T00:00:00Z"',
      'metadata.modifiedAt': '"2024-01-01T00:00:00Z"',
    })) {
      expect(() => compileAssetQuery(`${field}:${value}`), field).not.toThrow();
    }
  });

  it('keeps every value out of the SQL text (bind parameters only)', () => {
    const hostile = `name:"x' OR 1=1; DROP TABLE asset; --" key:"a');--" refIds.id:"\\"}]'::jsonb OR TRUE --" name:~'.*`;
    const { text, values } = sql(hostile);
    expect(text).toBe('a.name = $1::text AND a.key = $2::text AND a.ref_ids @> $3::jsonb AND a.name ~ $4');
    expect(values).toEqual(["x' OR 1=1; DROP TABLE asset; --", "a');--", JSON.stringify([{ id: `"}]'::jsonb OR TRUE --` }]), "'.*"]);
  });
});

describe('parser: errors are BAD_USER_INPUT on q naming the term', () => {
  it.each([
    // unknown fields
    ['foo:bar', 'foo:bar', /unknown field "foo"/],
    ['access:PUBLIC details.size:>1', 'details.size:>1', /unknown field "details.size"/],
    ['constructor:x', 'constructor:x', /unknown field/],
    // malformed terms
    ['access', 'access', /field:expression/],
    ['access :PUBLIC', 'access', /field:expression/],
    ['access: PUBLIC', 'access:', /expected a value/],
    [':PUBLIC', ':PUBLIC', /starts with a field name/],
    ['9x:1', '9x:1', /not a field name/],
    ['name:"abc', 'name:"abc', /unterminated double quote/],
    // Found by the fuzz test: a quote the lexer meets while looking for the next term.
    ['"7', '"7', /unterminated double quote/],
    ['access:PUBLIC "x', '"x', /unterminated double quote/],
    ['name:(a,b', 'name:(a,b', /missing "\)"/],
    ['name:(a b)', 'name:(a b)', /unexpected "b" in a group/],
    ['name:()', 'name:()', /empty group/],
    ['name:(a,)', 'name:(a,)', /expected a value/],
    ['name:(~AB CD', 'name:(~AB CD', /not closed/],
    ['details.bytes:(>=1 OR <=3)', 'details.bytes:(>=1 OR <=3)', /joined with AND/],
    ['details.bytes:(>=1 AND)', 'details.bytes:(>=1 AND)', /after AND/],
    ['details.bytes:(>=1 AND 3)', 'details.bytes:(>=1 AND 3)', /after AND/],
    ['details.bytes:>= 100', 'details.bytes:>=', /right after ">="/],
    ['details.bytes:>', 'details.bytes:>', /right after ">"/],
    ['name:a(b)', 'name:a(b)', /separate terms with spaces/],
    ['name:"a"b', 'name:"a"b', /separate terms with spaces/],
    // values that do not fit the field
    ['details.bytes:abc', 'details.bytes:abc', /whole numbers/],
    ['details.bytes:>1.5', 'details.bytes:>1.5', /whole numbers/],
    ['priority:99999999999', 'priority:99999999999', /out of range/],
    ['active:yes', 'active:yes', /true or false/],
    ['access:SECRET', 'access:SECRET', /PUBLIC, PRIVATE/],
    ['type:(BLOB,FILE)', 'type:(BLOB,FILE)', /BLOB, LINK/],
    ['metadata.createdAt:>"yesterday"', 'metadata.createdAt:>"yesterday"', /ISO 8601/],
    ['metadata.createdAt:>"2021-13-45T99:00:00Z"', 'metadata.createdAt:>"2021-13-45T99:00:00Z"', /ISO 8601/],
    // operators that do not fit the field
    ['name:>abc', 'name:>abc', /only numbers and dates/],
    ['refIds.id:>1', 'refIds.id:>1', /refIds.id is text/],
    ['active:>true', 'active:>true', /only numbers and dates/],
    ['details.bytes:~12', 'details.bytes:~12', /apply to text fields/],
    ['metadata.createdAt:~2021', 'metadata.createdAt:~2021', /apply to text fields/],
    ['details:PUBLIC', 'details:PUBLIC', /only takes null or exists/],
    ['metadata:~x', 'metadata:~x', /only takes null or exists/],
    // regular expressions
    ['name:~', 'name:~', /empty regular expression/],
    ['name:(~ )', 'name:(~ )', /empty regular expression/],
  ])('%s', (q, term, message) => {
    const e = refusal(q);
    expect(e.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'q', term });
    expect(e.message).toContain(`"${term}"`);
    expect(e.message).toMatch(message);
  });

  it('refuses a regular expression longer than the limit, in both forms', () => {
    for (const q of [`name:~${'a'.repeat(MAX_REGEX_LENGTH + 1)}`, `name:(~${'a '.repeat(MAX_REGEX_LENGTH)})`, `name:~"${'a'.repeat(MAX_REGEX_LENGTH + 1)}"`]) {
      const e = refusal(q);
      expect(e.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'q' });
      expect(e.message).toMatch(`longer than ${MAX_REGEX_LENGTH} characters`);
      expect(String(e.extensions['term'])).toMatch(/^name:/);
    }
  });

  it('refuses too many terms and an overlong query', () => {
    const many = Array.from({ length: MAX_TERMS + 1 }, (_, i) => `priority:${i}`).join(' ');
    expect(refusal(many).message).toMatch(`at most ${MAX_TERMS} terms`);
    expect(refusal(`name:${'x'.repeat(5000)}`).message).toMatch('longer than 4000 characters');
  });

  it('names the failing term, not the first one', () => {
    const e = refusal('access:PUBLIC active:true details.bytes:>x name:a');
    expect(e.extensions['term']).toBe('details.bytes:>x');
  });
});

describe('sort', () => {
  it('field[:desc], comma-separated; descending only for desc/DESC', () => {
    expect(parseSort('name,metadata.createdAt:desc')).toEqual([
      { field: 'name', descending: false },
      { field: 'metadata.createdAt', descending: true },
    ]);
    expect(parseSort(' priority:DESC , key:asc, details.bytes:whatever ').map((k) => k.descending)).toEqual([true, false, false]);
    expect(parseSort('')).toEqual([]);
    expect(parseSort(null)).toEqual([]);
  });

  it('compiles to a whitelisted ORDER BY that ends with the id, in the direction of the last key', () => {
    expect(compileAssetSort('priority:desc,name').text).toBe('ORDER BY a.priority DESC,a.name ASC,a.id ASC');
    expect(compileAssetSort('metadata.createdAt:desc').text).toBe('ORDER BY a.created_at DESC,a.id DESC');
    expect(compileAssetSort('details.bytes,id:desc').text).toBe('ORDER BY a.bytes ASC,a.id DESC');
    expect(compileAssetSort(null).text).toBe('ORDER BY a.created_at DESC, a.id DESC');
    expect(compileAssetSort('name').values).toEqual([]);
  });

  it.each([
    ['size', 'size', /cannot sort by "size"/],
    ['name,refIds.id', 'refIds.id', /cannot sort by "refIds.id"/],
    ['name; DROP TABLE asset', 'name; DROP TABLE asset', /cannot sort by/],
    ['name,,key', '', /empty sort field/],
    [':desc', ':desc', /empty sort field/],
    ['name,name:desc', 'name:desc', /sorted by twice/],
  ])('refuses %s with BAD_USER_INPUT on sort', (sort, term, message) => {
    const e = refusal(sort, (s) => compileAssetSort(s));
    expect(e.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'sort', term });
    expect(e.message).toMatch(message);
  });
});
