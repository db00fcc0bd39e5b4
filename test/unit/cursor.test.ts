import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors/index.js';
import { checkFirst, decodeCursor, encodeCursor, isUuid } from '../../src/modules/media/cursor.js';

const ID = '0b5e7f8c-3d2a-4c1b-9e8f-7a6b5c4d3e2f';

function badInput(fn: () => unknown): AppError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    expect((e as AppError).extensions['code']).toBe('BAD_USER_INPUT');
    return e as AppError;
  }
  throw new Error('expected BAD_USER_INPUT');
}

describe('cursor', () => {
  it('round-trips createdAt (to the millisecond) and id', () => {
    const createdAt = new Date('2026-11-23T10:11:12.345Z');
    const c = encodeCursor({ createdAt, id: ID });
    expect(decodeCursor(c)).toEqual({ createdAt, id: ID });
  });

  it('is opaque: base64url, no padding, no JSON or id visible', () => {
    const c = encodeCursor({ createdAt: new Date(0), id: ID });
    expect(c).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(c).not.toContain(ID);
  });

  it('orders nothing by itself but differs for different positions', () => {
    const a = encodeCursor({ createdAt: new Date(1000), id: ID });
    const b = encodeCursor({ createdAt: new Date(1001), id: ID });
    expect(a).not.toBe(b);
  });

  it('treats null, undefined and "" as no cursor', () => {
    expect(decodeCursor(null)).toBeNull();
    expect(decodeCursor(undefined)).toBeNull();
    expect(decodeCursor('')).toBeNull();
  });

  const enc = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  it.each([
    ['garbage', 'not a cursor!'],
    ['base64 of non-JSON', Buffer.from('hello').toString('base64url')],
    ['a JSON object', enc({ createdAt: '2026-01-01T00:00:00Z', id: ID })],
    ['a bad date', enc(['not a date', ID])],
    ['a number for the date', enc([12345, ID])],
    ['a non-uuid id', enc(['2026-01-01T00:00:00.000Z', 'abc'])],
    ['an SQL-ish id', enc(['2026-01-01T00:00:00.000Z', "x' OR 1=1 --"])],
    ['a missing id', enc(['2026-01-01T00:00:00.000Z'])],
    ['JSON null', enc(null)],
    ['a truncated cursor', encodeCursor({ createdAt: new Date(0), id: ID }).slice(0, 20)],
  ])('refuses %s with BAD_USER_INPUT naming the argument', (_name, raw) => {
    const e = badInput(() => decodeCursor(raw, 'after'));
    expect(e.extensions['field']).toBe('after');
    expect(e.message).toBe('Invalid cursor');
  });

  it('refuses a date before the earliest PostgreSQL timestamptz (4714-11-24 BC); accepts that instant and the latest JavaScript date', () => {
    const at = (iso: string) => enc([iso, ID]);
    for (const iso of ['-004713-11-23T23:59:59.999Z', '-010000-01-01T00:00:00.000Z', '-271821-04-20T00:00:00.000Z']) {
      expect(badInput(() => decodeCursor(at(iso), 'after')).message).toBe('Invalid cursor');
    }
    expect(decodeCursor(at('-004713-11-24T00:00:00.000Z'))?.createdAt.getTime()).toBe(Date.UTC(-4713, 10, 24));
    expect(decodeCursor(at('+275760-09-13T00:00:00.000Z'))?.createdAt.getTime()).toBe(8.64e15);
  });

  it('names the field it was given', () => {
    expect(badInput(() => decodeCursor('%%%', 'media.after')).extensions['field']).toBe('media.after');
  });
});

describe('isUuid / checkFirst', () => {
  it('recognises UUIDs in either case only', () => {
    expect(isUuid(ID)).toBe(true);
    expect(isUuid(ID.toUpperCase())).toBe(true);
    expect(isUuid(ID.slice(1))).toBe(false);
    expect(isUuid(`${ID}\n`)).toBe(false);
    expect(isUuid('')).toBe(false);
  });

  it('defaults first to 50 and keeps it within 1..100', () => {
    expect(checkFirst(undefined)).toBe(50);
    expect(checkFirst(null)).toBe(50);
    expect(checkFirst(1)).toBe(1);
    expect(checkFirst(100)).toBe(100);
    for (const bad of [0, -1, 101, 1.5, Number.NaN]) expect(badInput(() => checkFirst(bad)).extensions['field']).toBe('first');
  });
});
