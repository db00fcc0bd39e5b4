import type { RequestHandler } from 'express';
import { errors } from '../errors/index.js';
import { unstorableText } from '../util/storable-text.js';

/**
 * The HTTP edge of the check in src/util/storable-text.ts: a request whose path
 * or query string is not valid percent-encoded UTF-8, or decodes to a NUL, is the
 * client's error (400 BAD_USER_INPUT) before any route reads a parameter. Express
 * decodes path parameters itself (and refuses bad encodings with a 400 of its
 * own), but its query parser keeps undecodable sequences as they are, and neither
 * stops a `%00` from reaching the database.
 */
export function edgeInput(): RequestHandler {
  return (req, _res, next) => {
    const problem = urlProblem(req.url);
    next(problem ? errors.badInput(problem.field, problem.message) : undefined);
  };
}

/** What is wrong with a request target (path and query), or undefined. */
export function urlProblem(url: string): { field: string; message: string } | undefined {
  // Node's parser refuses control characters in a request target: only an escape can smuggle one in.
  if (!url.includes('%')) return undefined;
  const q = url.indexOf('?');
  const path = decode(q === -1 ? url : url.slice(0, q));
  if (path === undefined) return { field: 'path', message: 'The request path is not valid percent-encoded UTF-8' };
  const inPath = unstorableText(path);
  if (inPath) return { field: 'path', message: `The request path ${inPath}` };
  if (q === -1) return undefined;
  for (const pair of url.slice(q + 1).split('&')) {
    const eq = pair.indexOf('=');
    const name = decode(formDecoded(eq === -1 ? pair : pair.slice(0, eq)));
    const value = eq === -1 ? '' : decode(formDecoded(pair.slice(eq + 1)));
    const field = name !== undefined && !unstorableText(name) ? name : 'query';
    if (name === undefined || value === undefined) return { field, message: 'The query string is not valid percent-encoded UTF-8' };
    const problem = unstorableText(name) ?? unstorableText(value);
    if (problem) return { field, message: `Query parameter ${JSON.stringify(field)} ${problem}` };
  }
  return undefined;
}

const formDecoded = (s: string) => s.replace(/\+/g, ' ');

function decode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}
