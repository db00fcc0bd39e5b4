import { errors } from '../../errors/index.js';
import type { Cursor } from './media.repository.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The earliest instant PostgreSQL's timestamptz holds: Julian day 0, 4714-11-24 BC
 * 00:00 UTC (year -4713 in JavaScript's astronomical numbering). Its latest,
 * 294276 AD, lies beyond the largest JavaScript Date, so only this end needs a check:
 * a cursor before it would fail in the database as an internal error.
 */
export const PG_MIN_TIME = Date.UTC(-4713, 10, 24);

/** Opaque cursor: base64url of [createdAt ISO, id]. Clients must not build them. */
export function encodeCursor(c: { createdAt: Date; id: string }): string {
  return Buffer.from(JSON.stringify([c.createdAt.toISOString(), c.id])).toString('base64url');
}

export function decodeCursor(raw: string | null | undefined, field = 'after'): Cursor | null {
  if (raw === null || raw === undefined || raw === '') return null;
  try {
    const [iso, id] = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as [unknown, unknown];
    const createdAt = new Date(String(iso));
    if (typeof iso === 'string' && createdAt.getTime() >= PG_MIN_TIME && typeof id === 'string' && UUID_RE.test(id)) {
      return { createdAt, id };
    }
  } catch {
    // fall through
  }
  throw errors.badInput(field, 'Invalid cursor');
}

export function isUuid(s: string): boolean {
  return UUID_RE.test(s);
}

/** `first` between 1 and 100. */
export function checkFirst(first: number | null | undefined, field = 'first'): number {
  const n = first ?? 50;
  if (!Number.isInteger(n) || n < 1 || n > 100) throw errors.badInput(field, `${field} must be between 1 and 100`);
  return n;
}
