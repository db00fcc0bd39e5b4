import { describe, expect, it } from 'vitest';
import { progressRenderer } from '../../src/cli/progress.js';
import { describeProgress, etaMs, formatDuration, rateOf } from '../../src/util/progress.js';

function fakeStream(isTTY: boolean) {
  const writes: string[] = [];
  return { stream: { isTTY, columns: 200, write: (t: string) => writes.push(t) }, writes };
}

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('progress math', () => {
  it('rate is units per second since the start, ETA what is left at that rate', () => {
    expect(rateOf(50, 10_000)).toBe(5);
    expect(rateOf(5, 0)).toBe(0);
    expect(etaMs(50, 150, 10_000)).toBe(20_000);
    expect(etaMs(150, 150, 10_000)).toBe(0);
    expect(etaMs(0, 150, 10_000)).toBeUndefined();
    expect(etaMs(10, undefined, 10_000)).toBeUndefined();
  });

  it('describes done/total, percentage, failures, rate and ETA', () => {
    const d = describeProgress({ done: 40, total: 160, failed: 2 }, 8_000);
    expect(d.text).toBe('40/160 (25 %), 2 failed, 5.0/s, ETA 24 s');
    expect(d.fields).toEqual({ done: 40, total: 160, failed: 2, ratePerSecond: 5, etaSeconds: 24, elapsedSeconds: 8 });
    // A step without a total (a paged listing): the count and the time so far.
    expect(describeProgress({ step: 'stored objects', done: 3000 }, 2_000).text).toBe('stored objects 3000, 1500/s, 2 s elapsed');
    // A total passed by the count (rows added meanwhile) is raised to it.
    expect(describeProgress({ done: 12, total: 10 }, 1_000).text).toBe('12/12 (100 %), 12/s, 1 s elapsed');
  });

  it('formats durations', () => {
    expect(formatDuration(42_000)).toBe('42 s');
    expect(formatDuration(185_000)).toBe('3 min 5 s');
    expect(formatDuration(120_000)).toBe('2 min');
    expect(formatDuration(7_620_000)).toBe('2 h 7 min');
  });
});

describe('progressRenderer', () => {
  it('on a TTY: one line redrawn in place, at most every 200 ms, and a summary line', () => {
    const { stream, writes } = fakeStream(true);
    const c = clock();
    const logs: string[] = [];
    const r = progressRenderer({ label: 'key rotation', stream, log: (_f, m) => logs.push(m), now: c.now, heartbeat: false });
    r.update({ done: 0, total: 100 });
    expect(writes).toEqual(['\rkey rotation: 0/100 (0 %), 0.0/s, 0 s elapsed\x1b[K']);
    // Updates within 200 ms of the last drawing are not drawn.
    for (let i = 1; i <= 10; i++) {
      c.advance(10);
      r.update({ done: i, total: 100 });
    }
    expect(writes).toHaveLength(1);
    c.advance(100);
    r.update({ done: 11, total: 100 });
    expect(writes).toHaveLength(2);
    expect(writes[1]).toMatch(/^\rkey rotation: 11\/100 \(11 %\), 55\/s, ETA 2 s\x1b\[K$/);
    c.advance(1000);
    r.update({ done: 100, total: 100 });
    r.finish({ text: '100 rotated' });
    expect(writes.at(-2)).toBe('\n');
    expect(writes.at(-1)).toBe('key rotation: finished in 1 s: 100 rotated\n');
    expect(logs).toEqual([]);
    // Nothing after the end.
    r.update({ done: 101, total: 100 });
    expect(writes.at(-1)).toBe('key rotation: finished in 1 s: 100 rotated\n');
  });

  it('on a TTY, a new step keeps the last one on its own line', () => {
    const { stream, writes } = fakeStream(true);
    const c = clock();
    const r = progressRenderer({ label: 'sweep', stream, log: () => undefined, now: c.now, heartbeat: false });
    r.update({ step: 'deleted media', done: 0, total: 2 });
    c.advance(50);
    r.update({ step: 'deleted media', done: 2, total: 2 });
    c.advance(50);
    r.update({ step: 'deleted assets', done: 0, total: 0 });
    expect(writes).toEqual([
      '\rsweep: deleted media 0/2 (0 %), 0.0/s, 0 s elapsed\x1b[K',
      // Drawn when the step ended (the update at 50 ms was within 200 ms of the first drawing).
      '\rsweep: deleted media 2/2 (100 %), 20/s, 0 s elapsed\x1b[K',
      '\n',
      '\rsweep: deleted assets 0/0, 0.0/s, 0 s elapsed\x1b[K',
    ]);
  });

  it('otherwise: a log line per interval with the counts as fields, and a summary', () => {
    const { stream, writes } = fakeStream(false);
    const c = clock();
    const logs: { fields: Record<string, unknown>; message: string }[] = [];
    const r = progressRenderer({ label: 'key rotation', stream, log: (fields, message) => logs.push({ fields, message }), intervalMs: 10_000, now: c.now, heartbeat: false });
    for (let i = 0; i <= 300; i++) {
      r.update({ done: i, total: 300, failed: i >= 100 ? 1 : 0 });
      c.advance(100);
    }
    // 30 s of updates every 100 ms: a line at 10, 20 and 30 s, none at the start.
    expect(logs.map((l) => l.message)).toEqual([
      'key rotation: 100/300 (33 %), 1 failed, 10/s, ETA 20 s',
      'key rotation: 200/300 (66 %), 1 failed, 10/s, ETA 10 s',
      'key rotation: 300/300 (100 %), 1 failed, 10/s, 30 s elapsed',
    ]);
    expect(logs[0]!.fields).toEqual({ progress: { done: 100, total: 300, failed: 1, ratePerSecond: 10, etaSeconds: 20, elapsedSeconds: 10 } });
    r.finish({ text: '299 rotated, 1 failed', fields: { rotated: 299 } });
    expect(logs.at(-1)).toEqual({ fields: { rotated: 299, elapsedSeconds: 30.1 }, message: 'key rotation: finished in 30 s: 299 rotated, 1 failed' });
    expect(writes).toEqual([]);
  });

  it('logs between updates too (heartbeat), so that a slow unit still shows time passing', async () => {
    const { stream } = fakeStream(false);
    const logs: string[] = [];
    const r = progressRenderer({ label: 'x', stream, log: (_f, m) => logs.push(m), intervalMs: 100 });
    r.update({ done: 1, total: 2 });
    await new Promise((res) => setTimeout(res, 450));
    r.finish();
    expect(logs.length).toBeGreaterThanOrEqual(3);
    expect(logs.slice(0, -1).every((m) => m.startsWith('x: 1/2 (50 %)'))).toBe(true);
    expect(logs.at(-1)).toMatch(/^x: finished in 0 s$/);
  });
});
