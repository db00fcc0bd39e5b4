import { describe, expect, it } from 'vitest';
import { toConnection } from '../../src/modules/media/media.service.js';
import type { MediaRecord } from '../../src/modules/media/media.record.js';

const row = (i: number) => ({ id: `00000000-0000-4000-8000-00000000000${i}`, createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, i)) }) as MediaRecord;

describe('toConnection', () => {
  it('runs a deferred count only when totalCount is read, and once', async () => {
    let calls = 0;
    const c = toConnection({ rows: [row(3), row(2), row(1)], total: async () => ++calls * 0 + 42 }, 2);
    expect(c.nodes.map((n) => n.id)).toEqual([row(3).id, row(2).id]);
    expect(c.pageInfo.hasNextPage).toBe(true);
    expect(calls).toBe(0);
    expect(await c.totalCount).toBe(42);
    expect(await c.totalCount).toBe(42);
    expect(calls).toBe(1);
  });

  it('passes an exact number through', () => {
    const c = toConnection({ rows: [row(1)], total: 1 }, 5);
    expect(c.totalCount).toBe(1);
    expect(c.pageInfo.hasNextPage).toBe(false);
  });
});
