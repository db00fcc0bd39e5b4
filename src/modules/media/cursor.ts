import { errors } from '../../errors/index.js';
import type { Cursor } from './media.repository.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Opaque cursor: base64url of [createdAt ISO, id]. Clients must not build them. */
export function encodeCursor(c: { createdAt: Date; id: string }): string {
  return Buffer.from(JSON.stringify([c.createdAt.toISOString(), c.id])).toString('base64url');
}

export function decodeCursor(raw: string | null | undefined, field = 'after'): Cursor | null {
  if (raw === null || raw === undefined || raw === '') return null;
  try {
    const [iso, id] = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as [unknown, unknown];
    const createdAt = new Date(String(iso));
    if (typeof iso === 'string' && !Number.isNaN(createdAt.getTime()) && typeof id === 'string' && UUID_RE.test(id)) {
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
