import { describeProgress, formatDuration, type Progress, type ProgressCallback } from '../util/progress.js';

/** Where progress goes: a terminal gets one line redrawn in place, anything else log lines. */
export interface ProgressStream {
  readonly isTTY?: boolean;
  readonly columns?: number;
  write(text: string): unknown;
}

export interface ProgressRendererOptions {
  /** Names the run in every line: "key rotation". */
  label: string;
  /** A log line (pino's logger.info, or console for the benches). */
  log: (fields: Record<string, unknown>, message: string) => void;
  /** Default process.stderr; on a TTY the line is redrawn with \r, else `log` is called. */
  stream?: ProgressStream;
  /** Log mode: at most one line this often (default 10 s). */
  intervalMs?: number;
  /** TTY mode: redrawn at most this often (default 200 ms: five times a second). */
  ttyIntervalMs?: number;
  /** Redraws (TTY) or logs (otherwise) between updates too, so that a slow unit still shows time passing (default on). */
  heartbeat?: boolean;
  now?: () => number;
}

export interface ProgressRenderer {
  /** The services' onProgress callback. */
  readonly update: ProgressCallback;
  /** Ends the display with a summary line (TTY) or a log line (otherwise). */
  finish(summary?: { text?: string; fields?: Record<string, unknown> }): void;
}

/**
 * Renders a service's progress reports for an operator: on a terminal a single
 * line redrawn in place at most five times a second, and a log line every
 * intervalMs otherwise (a pipe, a file, a CI log), each with done/total, the rate
 * and the time left; a summary at the end either way. When the step changes, a
 * terminal keeps the finished step's line and starts a new one.
 */
export function progressRenderer(o: ProgressRendererOptions): ProgressRenderer {
  const stream = o.stream ?? process.stderr;
  const tty = stream.isTTY === true;
  const now = o.now ?? Date.now;
  const interval = tty ? (o.ttyIntervalMs ?? 200) : (o.intervalMs ?? 10_000);
  const started = now();
  let stepStarted = started;
  let current: Progress | undefined;
  // A log's first line comes one interval after the start (short runs log only their summary).
  let last = tty ? -Infinity : started;
  let drawn = false;
  let finished = false;

  const line = (text: string) => {
    const full = `${o.label}: ${text}`;
    const width = stream.columns ?? 0;
    return width > 1 && full.length >= width ? `${full.slice(0, width - 2)}…` : full;
  };
  // The timer fires every interval, a little late or early: it must not skip every other turn.
  const render = (force: boolean, slack = 0) => {
    if (!current || finished) return;
    const t = now();
    if (!force && t - last < interval - slack) return;
    last = t;
    const { fields, text } = describeProgress(current, t - stepStarted);
    if (tty) {
      stream.write(`\r${line(text)}\x1b[K`);
      drawn = true;
    } else {
      o.log({ progress: fields }, line(text));
    }
  };
  const timer = o.heartbeat === false ? undefined : setInterval(() => render(false, interval / 10), interval);
  timer?.unref();

  return {
    update(p) {
      if (finished) return;
      if (current && p.step !== current.step) {
        // A terminal keeps the finished step's last state on a line of its own.
        if (tty && drawn) {
          render(true);
          stream.write('\n');
          drawn = false;
        }
        stepStarted = now();
        if (tty) last = -Infinity;
      }
      current = p;
      // A terminal shows a step's first report at once (last was reset); a log keeps its interval.
      render(false);
    },
    finish(summary = {}) {
      if (finished) return;
      if (timer) clearInterval(timer);
      if (tty && drawn) {
        render(true);
        stream.write('\n');
      }
      finished = true;
      const elapsed = now() - started;
      const text = `finished in ${formatDuration(elapsed)}${summary.text ? `: ${summary.text}` : ''}`;
      if (tty) stream.write(`${line(text)}\n`);
      else o.log({ ...summary.fields, elapsedSeconds: Math.round(elapsed / 100) / 10 }, line(text));
    },
  };
}
