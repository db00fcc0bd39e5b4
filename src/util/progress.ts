// Progress of a long maintenance run (key rotation, sweep). The services report
// what they did through an optional callback and know nothing of terminals; the
// commands render it (src/cli/progress.ts).

/** Where a run stands. `total` is unknown for work found as it goes (a paged listing). */
export interface Progress {
  /** The step under way, for runs of several steps (the sweep's). */
  readonly step?: string;
  /** Units finished in this step (or the whole run), failed ones included. */
  readonly done: number;
  readonly total?: number;
  /** Units of `done` that failed. */
  readonly failed?: number;
}

/** Receives progress; it must not throw (a renderer's fault must not stop the work). */
export type ProgressCallback = (p: Progress) => void;

/** Units per second since the start; 0 before any time has passed. */
export function rateOf(done: number, elapsedMs: number): number {
  return elapsedMs > 0 ? (done * 1000) / elapsedMs : 0;
}

/** Milliseconds left at the current rate; undefined without a total or a rate. */
export function etaMs(done: number, total: number | undefined, elapsedMs: number): number | undefined {
  if (total === undefined) return undefined;
  if (done >= total) return 0;
  const rate = rateOf(done, elapsedMs);
  return rate > 0 ? ((total - done) / rate) * 1000 : undefined;
}

/** 42 s, 3 min 5 s, 2 h 7 min. */
export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ''}`;
  const m = Math.round(s / 60);
  return `${Math.floor(m / 60)} h${m % 60 ? ` ${m % 60} min` : ''}`;
}

function formatRate(rate: number): string {
  return rate >= 10 ? rate.toFixed(0) : rate.toFixed(1);
}

/** The fields of a progress log line, and the same as one human line: "deleted media 12/40 (30 %), 3 failed, 4.2/s, ETA 7 s". */
export function describeProgress(p: Progress, elapsedMs: number): { fields: Record<string, unknown>; text: string } {
  const total = p.total !== undefined ? Math.max(p.total, p.done) : undefined;
  const rate = rateOf(p.done, elapsedMs);
  const eta = etaMs(p.done, total, elapsedMs);
  const parts = [total !== undefined ? `${p.done}/${total}${total > 0 ? ` (${Math.floor((p.done / total) * 100)} %)` : ''}` : `${p.done}`];
  if (p.failed) parts.push(`${p.failed} failed`);
  parts.push(`${formatRate(rate)}/s`);
  if (eta !== undefined && total !== undefined && p.done < total) parts.push(`ETA ${formatDuration(eta)}`);
  else parts.push(`${formatDuration(elapsedMs)} elapsed`);
  const fields: Record<string, unknown> = {
    ...(p.step !== undefined ? { step: p.step } : {}),
    done: p.done,
    ...(total !== undefined ? { total } : {}),
    ...(p.failed !== undefined ? { failed: p.failed } : {}),
    ratePerSecond: Math.round(rate * 10) / 10,
    ...(eta !== undefined ? { etaSeconds: Math.round(eta / 1000) } : {}),
    elapsedSeconds: Math.round(elapsedMs / 100) / 10,
  };
  return { fields, text: `${p.step !== undefined ? `${p.step} ` : ''}${parts[0]}, ${parts.slice(1).join(', ')}` };
}
