import { describe, expect, it } from 'vitest';
import { KeptBuffers } from '../../src/util/kept-buffers.js';

describe('KeptBuffers', () => {
  it('hands back what was given before making new ones, and keeps at most max', () => {
    let made = 0;
    const pool = new KeptBuffers(() => ({ n: ++made }), 2);
    const a = pool.take();
    const b = pool.take();
    const c = pool.take();
    expect(made).toBe(3);
    pool.give(a);
    pool.give(b);
    pool.give(c);
    expect(pool.kept).toBe(2);
    expect([pool.take(), pool.take()]).toEqual(expect.arrayContaining([a, b]));
    expect(made).toBe(3);
    pool.take();
    expect(made).toBe(4);
  });

  it('lets everything go once idle, and keeps it while in use', async () => {
    const pool = new KeptBuffers(() => Buffer.alloc(8), 4, 50);
    pool.give(pool.take());
    pool.give(pool.take());
    expect(pool.kept).toBe(1);
    // In use: taken again within each idle period.
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 30));
      pool.give(pool.take());
    }
    expect(pool.kept).toBe(1);
    await new Promise((r) => setTimeout(r, 160));
    expect(pool.kept).toBe(0);
    // And it works again afterwards.
    pool.give(pool.take());
    expect(pool.kept).toBe(1);
  });
});
