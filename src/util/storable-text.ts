// What PostgreSQL refuses to hold as text, checked once where client input
// enters (the GraphQL plugin in src/graphql/input-text.ts, the HTTP middleware in
// src/http/edge-input.ts), so that no resolver or route has to think about it:
// - U+0000: `text` refuses the byte (22021) and `jsonb` the escape \u0000 (22P05);
// - an unpaired UTF-16 surrogate: Node writes it to the wire as U+FFFD, so `text`
//   silently stores something other than what was sent, and JSON.stringify keeps
//   it as an escape (\ud800) that `jsonb` refuses (22P02).
// Everything else that is valid Unicode is storable.

// eslint-disable-next-line no-control-regex
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
// eslint-disable-next-line no-control-regex
const UNSTORABLE_ALL = new RegExp(UNSTORABLE.source, 'g');

/** Why `s` cannot be stored as text, or undefined when it can. */
export function unstorableText(s: string): string | undefined {
  const m = UNSTORABLE.exec(s);
  if (!m) return undefined;
  return m[0] === '\u0000' ? 'contains a NUL character (U+0000)' : 'contains an unpaired UTF-16 surrogate (not valid Unicode)';
}

/**
 * The first string in a JSON-like value (strings, arrays, plain objects; object
 * keys included) that cannot be stored, with its dotted path below `root`.
 * Iterative, so a deeply nested value cannot overflow the stack; objects that are
 * not plain (uploads, dates) are not entered.
 */
export function findUnstorableText(value: unknown, root: string): { path: string; problem: string } | undefined {
  const stack: [unknown, string][] = [[value, root]];
  while (stack.length) {
    const [v, path] = stack.pop()!;
    if (typeof v === 'string') {
      const problem = unstorableText(v);
      if (problem) return { path, problem };
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${path}.${i}`]);
    } else if (v !== null && typeof v === 'object' && isPlain(v)) {
      const entries = Object.entries(v);
      for (const [k] of entries) {
        const problem = unstorableText(k);
        if (problem) return { path: `${path}.${k.replace(UNSTORABLE_ALL, '?')}`, problem: `has a key that ${problem}` };
      }
      for (let i = entries.length - 1; i >= 0; i--) stack.push([entries[i]![1], `${path}.${entries[i]![0]}`]);
    }
  }
  return undefined;
}

function isPlain(v: object): boolean {
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}
