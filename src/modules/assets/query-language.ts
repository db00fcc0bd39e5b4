import { Prisma } from '../../generated/prisma/client.js';
import { AppError, ErrorCode } from '../../errors/index.js';

// The asset query language of SPEC 11, compiled to parameterised SQL.
//
//   query       := WS* term (WS+ term)* WS*
//   term        := FIELD ':' expression              (no space around ':')
//   expression  := 'null' | 'exists' | REGEX | comparison | value | group
//   group       := '(' WS* groupBody WS* ')'
//   groupBody   := REGEX                             (~AB CD): the regex runs to the matching ')'
//                | comparison (WS+ 'AND' WS+ comparison)*
//                | value (WS* ',' WS* value)*
//   comparison  := ('>' | '<' | '>=' | '<=') value
//   value       := STRING | bare                     bare: adjacent WORD and ':' tokens ("a:b")
//
// Every term must hold (AND). Each becomes one condition over the table alias `a`
// whose values travel as bind parameters; the SQL text comes only from this file.

export const MAX_QUERY_LENGTH = 4000;
export const MAX_TERMS = 32;
export const MAX_LIST_VALUES = 100;
export const MAX_REGEX_LENGTH = 200;
export const MAX_SORT_FIELDS = 8;

// ---------------------------------------------------------------------------
// Errors

/** BAD_USER_INPUT on argument `field` naming the term at fault (extensions.term). */
export function queryError(field: 'q' | 'sort', term: string, problem: string): AppError {
  return new AppError(ErrorCode.BAD_USER_INPUT, `Invalid ${field} term "${term}": ${problem}`, { field, extensions: { term } });
}

/** A syntax error at a position of the source, turned into a queryError by the parser (which knows the term). */
class Fault extends Error {
  constructor(
    message: string,
    readonly pos: number,
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------
// Tokenizer

export type TokenKind = 'ws' | 'word' | 'string' | 'regex' | 'op' | 'colon' | 'comma' | 'lparen' | 'rparen' | 'eof';

export interface Token {
  kind: TokenKind;
  /** Decoded text: the string without quotes and escapes, the regex without '~', the operator. */
  value: string;
  start: number;
  end: number;
}

const WORD_STOP = new Set([' ', '\t', '\n', '\r', '(', ')', ',', ':', '"']);
const isSpace = (c: string | undefined) => c === ' ' || c === '\t' || c === '\n' || c === '\r';

/**
 * Turns the source into tokens on demand. Context matters in one place only: a
 * regular expression that follows '(' runs to the matching ')' (so `(~AB CD)` may
 * hold spaces); elsewhere it runs to the next space.
 */
export class Lexer {
  private pos = 0;
  private lastSignificant: TokenKind | undefined;
  private peeked: Token | undefined;

  constructor(readonly src: string) {}

  peek(): Token {
    this.peeked ??= this.read();
    return this.peeked;
  }

  next(): Token {
    const t = this.peek();
    this.peeked = undefined;
    if (t.kind !== 'ws') this.lastSignificant = t.kind;
    return t;
  }

  private read(): Token {
    const { src } = this;
    const start = this.pos;
    const c = src[start];
    if (c === undefined) return { kind: 'eof', value: '', start, end: start };
    if (isSpace(c)) {
      let i = start;
      while (isSpace(src[i])) i++;
      return this.token('ws', src.slice(start, i), start, i);
    }
    if (c === '(') return this.token('lparen', c, start, start + 1);
    if (c === ')') return this.token('rparen', c, start, start + 1);
    if (c === ',') return this.token('comma', c, start, start + 1);
    if (c === ':') return this.token('colon', c, start, start + 1);
    if (c === '<' || c === '>') {
      const op = src[start + 1] === '=' ? `${c}=` : c;
      return this.token('op', op, start, start + op.length);
    }
    if (c === '"') {
      const { value, end } = this.quoted(start);
      return this.token('string', value, start, end);
    }
    if (c === '~') return this.regex(start);
    let i = start;
    while (i < src.length && !WORD_STOP.has(src[i]!)) i++;
    return this.token('word', src.slice(start, i), start, i);
  }

  private token(kind: TokenKind, value: string, start: number, end: number): Token {
    this.pos = end;
    return { kind, value, start, end };
  }

  /** A double-quoted string from `start` (the quote); `\"` and `\\` escape. */
  private quoted(start: number): { value: string; end: number } {
    let out = '';
    for (let i = start + 1; i < this.src.length; i++) {
      const c = this.src[i]!;
      if (c === '\\' && (this.src[i + 1] === '"' || this.src[i + 1] === '\\')) {
        out += this.src[++i];
      } else if (c === '"') {
        return { value: out, end: i + 1 };
      } else out += c;
    }
    throw new Fault('unterminated double quote', start);
  }

  private regex(start: number): Token {
    const { src } = this;
    if (src[start + 1] === '"') {
      const { value, end } = this.quoted(start + 1);
      return this.token('regex', value, start, end);
    }
    let i = start + 1;
    if (this.lastSignificant === 'lparen') {
      // To the ')' that closes the group: skip escaped characters and bracket expressions, balance parentheses.
      let depth = 0;
      let inClass = false;
      for (; i < src.length; i++) {
        const c = src[i]!;
        if (c === '\\') i++;
        else if (inClass) inClass = c !== ']';
        else if (c === '[') {
          inClass = true;
          if (src[i + 1] === '^') i++;
          if (src[i + 1] === ']') i++; // a leading ']' is literal inside a bracket expression
        } else if (c === '(') depth++;
        else if (c === ')') {
          if (depth === 0) break;
          depth--;
        }
      }
      if (i >= src.length) throw new Fault('the regular expression group is not closed with ")"', start);
      // Trailing spaces before the ')' separate, they are not part of the pattern.
      let end = i;
      while (end > start + 1 && isSpace(src[end - 1])) end--;
      this.pos = end;
      return { kind: 'regex', value: src.slice(start + 1, end), start, end };
    }
    while (i < src.length && !isSpace(src[i])) i++;
    return this.token('regex', src.slice(start + 1, i), start, i);
  }
}

/** Every token of a source (tests and tools; the parser pulls tokens one by one). */
export function tokenize(src: string): Token[] {
  const lexer = new Lexer(src);
  const out: Token[] = [];
  for (;;) {
    const t = lexer.next();
    out.push(t);
    if (t.kind === 'eof') return out;
  }
}

// ---------------------------------------------------------------------------
// Syntax tree

export type CompareOp = '>' | '<' | '>=' | '<=';

export interface Literal {
  text: string;
  quoted: boolean;
}

export type Expression =
  | { kind: 'equals'; values: Literal[] }
  | { kind: 'compare'; parts: { op: CompareOp; value: Literal }[] }
  | { kind: 'null' }
  | { kind: 'exists' }
  | { kind: 'regex'; pattern: string };

export interface Term {
  field: string;
  expression: Expression;
  /** The term as written (for error messages). */
  text: string;
}

// ---------------------------------------------------------------------------
// Parser

/** Parses `q` into terms. Syntax only: fields and values are checked by compileAssetQuery. */
export function parseQuery(src: string): Term[] {
  if (src.length > MAX_QUERY_LENGTH) throw queryError('q', `${src.slice(0, 40)}…`, `the query is longer than ${MAX_QUERY_LENGTH} characters`);
  try {
    return new Parser(src).query();
  } catch (e) {
    // A fault the lexer meets while looking ahead (an unterminated quote after a term) is still the client's.
    if (e instanceof Fault) throw queryError('q', termTextAt(src, e.pos), e.message);
    throw e;
  }
}

class Parser {
  private readonly lx: Lexer;
  private termStart = 0;

  constructor(private readonly src: string) {
    this.lx = new Lexer(src);
  }

  query(): Term[] {
    const terms: Term[] = [];
    this.skipWs();
    while (this.lx.peek().kind !== 'eof') {
      if (terms.length === MAX_TERMS) throw queryError('q', termTextAt(this.src, this.lx.peek().start), `at most ${MAX_TERMS} terms`);
      terms.push(this.term());
      const sep = this.lx.peek();
      if (sep.kind !== 'ws' && sep.kind !== 'eof') {
        throw queryError('q', termTextAt(this.src, this.termStart), `unexpected "${this.src.slice(sep.start, sep.end)}" after the term; separate terms with spaces`);
      }
      this.skipWs();
    }
    return terms;
  }

  private term(): Term {
    this.termStart = this.lx.peek().start;
    try {
      const field = this.lx.next();
      if (field.kind !== 'word') throw new Fault('a term starts with a field name', field.start);
      if (!/^[A-Za-z][A-Za-z0-9_.]*$/.test(field.value)) throw new Fault(`"${field.value}" is not a field name`, field.start);
      const colon = this.lx.next();
      if (colon.kind !== 'colon' || colon.start !== field.end) throw new Fault('expected "field:expression"', colon.start);
      const expression = this.expression();
      return { field: field.value, expression, text: this.src.slice(this.termStart, this.lastEnd) };
    } catch (e) {
      if (e instanceof Fault) throw queryError('q', termTextAt(this.src, this.termStart), e.message);
      throw e;
    }
  }

  private lastEnd = 0;

  private take(): Token {
    const t = this.lx.next();
    this.lastEnd = t.end;
    return t;
  }

  private expression(): Expression {
    const t = this.lx.peek();
    switch (t.kind) {
      case 'lparen':
        return this.group();
      case 'regex':
        return this.regexExpression();
      case 'op':
        return { kind: 'compare', parts: [this.comparison()] };
      case 'string':
      case 'word':
      case 'colon': {
        const value = this.value();
        if (!value.quoted && value.text === 'null') return { kind: 'null' };
        if (!value.quoted && value.text === 'exists') return { kind: 'exists' };
        return { kind: 'equals', values: [value] };
      }
      default:
        throw new Fault('expected a value after ":"', t.start);
    }
  }

  private regexExpression(): Expression {
    const t = this.take();
    if (t.value.length === 0) throw new Fault('empty regular expression', t.start);
    if (t.value.length > MAX_REGEX_LENGTH) throw new Fault(`regular expression longer than ${MAX_REGEX_LENGTH} characters`, t.start);
    return { kind: 'regex', pattern: t.value };
  }

  private group(): Expression {
    this.take(); // (
    this.skipWs();
    const first = this.lx.peek();
    let expression: Expression;
    if (first.kind === 'regex') {
      expression = this.regexExpression();
    } else if (first.kind === 'op') {
      const parts = [this.comparison()];
      while (this.lx.peek().kind === 'ws') {
        this.skipWs();
        const and = this.lx.peek();
        if (and.kind === 'rparen') break;
        if (and.kind !== 'word' || and.value.toUpperCase() !== 'AND') throw new Fault('comparisons in a group are joined with AND', and.start);
        this.take();
        if (this.lx.peek().kind !== 'ws') throw new Fault('expected a space after AND', this.lx.peek().start);
        this.skipWs();
        if (this.lx.peek().kind !== 'op') throw new Fault('expected a comparison (>, <, >=, <=) after AND', this.lx.peek().start);
        parts.push(this.comparison());
      }
      expression = { kind: 'compare', parts };
    } else if (first.kind === 'rparen') {
      throw new Fault('empty group "()"', first.start);
    } else {
      const values = [this.value()];
      for (;;) {
        this.skipWs();
        if (this.lx.peek().kind !== 'comma') break;
        this.take();
        this.skipWs();
        if (values.length === MAX_LIST_VALUES) throw new Fault(`at most ${MAX_LIST_VALUES} values in a list`, this.lx.peek().start);
        values.push(this.value());
      }
      expression = { kind: 'equals', values };
    }
    this.skipWs();
    const close = this.take();
    if (close.kind !== 'rparen') throw new Fault(close.kind === 'eof' ? 'missing ")"' : `unexpected "${this.src.slice(close.start, close.end)}" in a group`, close.start);
    return expression;
  }

  private comparison(): { op: CompareOp; value: Literal } {
    const op = this.take();
    const next = this.lx.peek();
    if (next.start !== op.end || (next.kind !== 'word' && next.kind !== 'string' && next.kind !== 'colon')) {
      throw new Fault(`expected a value right after "${op.value}"`, next.start);
    }
    return { op: op.value as CompareOp, value: this.value() };
  }

  /** A quoted string, or adjacent words and colons (a bare value may contain ':'). */
  private value(): Literal {
    const t = this.lx.peek();
    if (t.kind === 'string') {
      this.take();
      return { text: t.value, quoted: true };
    }
    if (t.kind !== 'word' && t.kind !== 'colon') throw new Fault('expected a value', t.start);
    let text = '';
    let end = t.start;
    for (let n = this.lx.peek(); (n.kind === 'word' || n.kind === 'colon') && n.start === end; n = this.lx.peek()) {
      text += this.take().value;
      end = n.end;
    }
    return { text, quoted: false };
  }

  private skipWs(): void {
    while (this.lx.peek().kind === 'ws') this.lx.next();
  }
}

/**
 * The term that starts at `start`, as written: up to the first space outside quotes
 * and parentheses (for error messages; it does not need to parse).
 */
function termTextAt(src: string, start: number): string {
  let depth = 0;
  let quoted = false;
  let i = start;
  for (; i < src.length; i++) {
    const c = src[i]!;
    if (quoted) {
      if (c === '\\') i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === '\\') i++;
    else if (c === '(') depth++;
    else if (c === ')') depth = Math.max(0, depth - 1);
    else if (isSpace(c) && depth === 0) break;
  }
  const text = src.slice(start, i);
  return text.length > 120 ? `${text.slice(0, 120)}…` : text;
}

// ---------------------------------------------------------------------------
// Fields

type FieldKind = 'uuid' | 'text' | 'enum' | 'int' | 'bigint' | 'bool' | 'date' | 'ref' | 'object';

interface FieldDef {
  kind: FieldKind;
  /** Column expression over the alias `a` (a constant of this file, never user input). */
  column: Prisma.Sql;
  /** Enum type name and values. */
  enumType?: Prisma.Sql;
  enumValues?: readonly string[];
  /** refIds.id / refIds.type: the member of each reference. */
  member?: 'id' | 'type';
  /** Object fields (details, refIds, metadata): the condition for "has a non-empty value". */
  present?: Prisma.Sql;
  /** Where `sort` may name the field. */
  sortable: boolean;
}

const col = (name: string) => Prisma.raw(`a.${name}`);

/** The fields of SPEC 11, by their names in `q` and `sort`. */
export const ASSET_FIELDS: Readonly<Record<string, FieldDef>> = {
  id: { kind: 'uuid', column: col('id'), sortable: true },
  type: { kind: 'enum', column: col('type'), enumType: Prisma.raw('"AssetType"'), enumValues: ['BLOB', 'LINK'], sortable: true },
  access: { kind: 'enum', column: col('access'), enumType: Prisma.raw('"AssetAccess"'), enumValues: ['PUBLIC', 'PRIVATE'], sortable: true },
  name: { kind: 'text', column: col('name'), sortable: true },
  key: { kind: 'text', column: col('key'), sortable: true },
  priority: { kind: 'int', column: col('priority'), sortable: true },
  active: { kind: 'bool', column: col('active'), sortable: true },
  'refIds.id': { kind: 'ref', column: col('ref_ids'), member: 'id', sortable: false },
  'refIds.type': { kind: 'ref', column: col('ref_ids'), member: 'type', sortable: false },
  'details.filename': { kind: 'text', column: col('file_name'), sortable: true },
  'details.mimeType': { kind: 'text', column: col('mime_type'), sortable: true },
  'details.bytes': { kind: 'bigint', column: col('bytes'), sortable: true },
  'metadata.version': { kind: 'int', column: col('version'), sortable: true },
  'metadata.createdAt': { kind: 'date', column: col('created_at'), sortable: true },
  'metadata.modifiedAt': { kind: 'date', column: col('modified_at'), sortable: true },
  // The objects themselves, for `null` and `exists` only (SPEC: `details:exists`).
  details: {
    kind: 'object',
    column: Prisma.empty,
    present: Prisma.sql`(a.file_name IS NOT NULL OR a.mime_type IS NOT NULL OR a.bytes IS NOT NULL OR a.checksum IS NOT NULL)`,
    sortable: false,
  },
  refIds: { kind: 'object', column: Prisma.empty, present: Prisma.sql`a.ref_ids <> '[]'::jsonb`, sortable: false },
  metadata: { kind: 'object', column: Prisma.empty, present: Prisma.sql`TRUE`, sortable: false },
};

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const INT_RE = /^[+-]?\d{1,19}$/;
// ISO 8601: a date, optionally with a time (minutes, seconds, fraction) and a zone.
const DATE_RE = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?$/;
const INT4_MAX = 2_147_483_647;

/** Paths of a reference member for jsonb_path_query (constants, not user input). */
const REF_PATH = { id: Prisma.raw(`'lax $[*].id'`), type: Prisma.raw(`'lax $[*].type'`) };

/** A value of a field, as the bind parameter with its SQL cast; BAD_USER_INPUT when it does not fit the field. */
function bindValue(term: Term, name: string, f: FieldDef, v: Literal): Prisma.Sql {
  const bad = (problem: string) => queryError('q', term.text, problem);
  switch (f.kind) {
    case 'text':
      return Prisma.sql`${v.text}::text`;
    case 'uuid':
      return Prisma.sql`${v.text.toLowerCase()}::uuid`;
    case 'enum': {
      const upper = v.text.toUpperCase();
      if (!f.enumValues!.includes(upper)) throw bad(`${name} is one of ${f.enumValues!.join(', ')}`);
      return Prisma.sql`${upper}::${f.enumType!}`;
    }
    case 'int':
    case 'bigint': {
      if (!INT_RE.test(v.text)) throw bad(`${name} takes whole numbers, not "${v.text}"`);
      const n = Number(v.text);
      const max = f.kind === 'int' ? INT4_MAX : Number.MAX_SAFE_INTEGER;
      if (Math.abs(n) > max) throw bad(`${v.text} is out of range for ${name}`);
      return f.kind === 'int' ? Prisma.sql`${n}::int` : Prisma.sql`${n}::bigint`;
    }
    case 'bool': {
      const b = v.text.toLowerCase();
      if (b !== 'true' && b !== 'false') throw bad(`${name} is true or false`);
      return Prisma.sql`${b === 'true'}::boolean`;
    }
    case 'date': {
      // A time without a zone is UTC (Date.parse would take the server's local time).
      const iso = v.text.replace(' ', 'T');
      const t = DATE_RE.test(v.text) ? Date.parse(/T[\d:.]+$/.test(iso) ? `${iso}Z` : iso) : NaN;
      if (Number.isNaN(t)) throw bad(`${name} takes an ISO 8601 date in double quotes, e.g. "2021-05-18T07:27:27.455Z"`);
      return Prisma.sql`${new Date(t).toISOString()}::timestamptz`;
    }
    default:
      throw bad(`${name} does not take values`);
  }
}

/** The SQL condition of one term. */
export function compileTerm(term: Term): Prisma.Sql {
  const name = term.field;
  const f = Object.hasOwn(ASSET_FIELDS, name) ? ASSET_FIELDS[name]! : undefined;
  const bad = (problem: string) => queryError('q', term.text, problem);
  if (!f) throw bad(`unknown field "${name}"; fields: ${Object.keys(ASSET_FIELDS).join(', ')}`);
  const e = term.expression;
  const c = f.column;

  if (f.kind === 'object') {
    if (e.kind === 'exists') return f.present!;
    if (e.kind === 'null') return Prisma.sql`NOT ${f.present!}`;
    throw bad(`${name} only takes null or exists; name one of its fields (${name}.…) to compare values`);
  }

  if (f.kind === 'ref') {
    const path = REF_PATH[f.member!];
    const elements = Prisma.sql`jsonb_path_query(a.ref_ids, ${path}) AS r(v)`;
    switch (e.kind) {
      case 'equals': {
        // Containment (`@>`) uses the GIN index on ref_ids.
        const each = e.values.map((v) => Prisma.sql`a.ref_ids @> ${JSON.stringify([{ [f.member!]: v.text }])}::jsonb`);
        return each.length === 1 ? each[0]! : Prisma.sql`(${Prisma.join(each, ' OR ')})`;
      }
      case 'regex':
        return Prisma.sql`EXISTS (SELECT 1 FROM ${elements} WHERE r.v #>> '{}' ~ ${e.pattern})`;
      case 'exists':
        return Prisma.sql`EXISTS (SELECT 1 FROM ${elements} WHERE r.v #>> '{}' <> '')`;
      case 'null':
        return Prisma.sql`NOT EXISTS (SELECT 1 FROM ${elements} WHERE r.v #>> '{}' <> '')`;
      case 'compare':
        throw bad(`${name} is text: use a value, a list, null, exists or ~regex`);
    }
  }

  switch (e.kind) {
    case 'null':
      if (f.kind === 'text') return Prisma.sql`(${c} IS NULL OR ${c} = '')`;
      return Prisma.sql`${c} IS NULL`;
    case 'exists':
      if (f.kind === 'text') return Prisma.sql`(${c} IS NOT NULL AND ${c} <> '')`;
      return Prisma.sql`${c} IS NOT NULL`;
    case 'regex':
      if (f.kind === 'text') return Prisma.sql`${c} ~ ${e.pattern}`;
      if (f.kind === 'uuid' || f.kind === 'enum') return Prisma.sql`${c}::text ~ ${e.pattern}`;
      throw bad(`${name} is not text: regular expressions apply to text fields`);
    case 'equals': {
      let values = e.values;
      if (f.kind === 'uuid') {
        // A value that is not a UUID names no asset; it is not an error (ids are opaque to clients).
        values = values.filter((v) => UUID_RE.test(v.text));
        if (values.length === 0) return Prisma.sql`FALSE`;
      }
      const bound = values.map((v) => bindValue(term, name, f, v));
      return bound.length === 1 ? Prisma.sql`${c} = ${bound[0]!}` : Prisma.sql`${c} IN (${Prisma.join(bound)})`;
    }
    case 'compare': {
      if (f.kind !== 'int' && f.kind !== 'bigint' && f.kind !== 'date') {
        throw bad(`${name} cannot be compared with >, <, >=, <=: only numbers and dates can`);
      }
      const parts = e.parts.map((p) => Prisma.sql`${c} ${Prisma.raw(p.op)} ${bindValue(term, name, f, p.value)}`);
      return parts.length === 1 ? parts[0]! : Prisma.sql`(${Prisma.join(parts, ' AND ')})`;
    }
  }
}

export interface CompiledQuery {
  /** Every term ANDed (TRUE for an empty query). */
  where: Prisma.Sql;
  terms: Term[];
}

/** Parses and compiles `q`; BAD_USER_INPUT naming the first term at fault. */
export function compileAssetQuery(q: string | null | undefined): CompiledQuery {
  const terms = q ? parseQuery(q) : [];
  const conditions = terms.map(compileTerm);
  return { where: conditions.length ? Prisma.join(conditions, ' AND ') : Prisma.sql`TRUE`, terms };
}

// ---------------------------------------------------------------------------
// Sort

export interface SortKey {
  field: string;
  descending: boolean;
}

/**
 * `field[:direction]`, comma-separated. Descending only for `desc` or `DESC`,
 * ascending otherwise (as the asset APIs this unifies define it).
 */
export function parseSort(sort: string | null | undefined): SortKey[] {
  if (!sort || sort.trim() === '') return [];
  const parts = sort.split(',');
  if (parts.length > MAX_SORT_FIELDS) throw queryError('sort', sort.slice(0, 120), `at most ${MAX_SORT_FIELDS} sort fields`);
  const keys: SortKey[] = [];
  for (const raw of parts) {
    const part = raw.trim();
    const colon = part.indexOf(':');
    const field = (colon < 0 ? part : part.slice(0, colon)).trim();
    const direction = colon < 0 ? '' : part.slice(colon + 1).trim();
    if (!field) throw queryError('sort', part, 'empty sort field');
    const def = Object.hasOwn(ASSET_FIELDS, field) ? ASSET_FIELDS[field] : undefined;
    if (!def || !def.sortable) {
      const fields = Object.entries(ASSET_FIELDS).filter(([, d]) => d.sortable).map(([n]) => n);
      throw queryError('sort', part, `cannot sort by "${field}"; sortable fields: ${fields.join(', ')}`);
    }
    if (keys.some((k) => k.field === field)) throw queryError('sort', part, `"${field}" is sorted by twice`);
    keys.push({ field, descending: direction === 'desc' || direction === 'DESC' });
  }
  return keys;
}

/** Newest first, when `sort` names nothing. */
const DEFAULT_ORDER = Prisma.sql`ORDER BY a.created_at DESC, a.id DESC`;

/**
 * The ORDER BY of `sort`. The id always ends it, so that pages never overlap or
 * skip rows; it follows the direction of the last key, which lets the indexes
 * ending in (…, name, id) and (created_at DESC, id DESC) serve the order.
 */
export function compileAssetSort(sort: string | null | undefined): Prisma.Sql {
  const keys = parseSort(sort);
  if (keys.length === 0) return DEFAULT_ORDER;
  const parts = keys.map((k) => Prisma.sql`${ASSET_FIELDS[k.field]!.column} ${Prisma.raw(k.descending ? 'DESC' : 'ASC')}`);
  if (!keys.some((k) => k.field === 'id')) parts.push(Prisma.sql`a.id ${Prisma.raw(keys[keys.length - 1]!.descending ? 'DESC' : 'ASC')}`);
  return Prisma.sql`ORDER BY ${Prisma.join(parts)}`;
}
