import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { LimiterStats } from '../util/concurrency-limiter.js';

/** Where a stored file came in: the GraphQL mutations, a direct upload's completion, a worker, an asset. */
export type UploadSource = 'upload' | 'upload_many' | 'direct' | 'resumable' | 'worker' | 'asset';

/** GraphQL operation names are chosen by clients: only these become label values, and only so many distinct ones. */
const OPERATION_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
export const MAX_OPERATION_NAMES = 200;
const ERROR_CODE_RE = /^[A-Z][A-Z0-9_]{0,63}$/;

/** A client-chosen operation name as logs may show it: the name when well-formed, else undefined (anonymous) or 'invalid'. */
export function operationNameOf(name: string | null | undefined): string | undefined {
  if (name === null || name === undefined || name === '') return undefined;
  return OPERATION_NAME_RE.test(name) ? name : 'invalid';
}

/**
 * Prometheus metrics of one service instance. Served at GET /metrics on
 * METRICS_PORT, or on the public port with METRICS_TOKEN (src/app.ts). Every
 * label has a bounded set of values: route templates, kinds, drivers, error
 * codes, and at most MAX_OPERATION_NAMES operation names.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly registers = [this.registry];
  readonly requests = new Counter({ name: 'http_requests_total', help: 'HTTP requests', labelNames: ['method', 'route', 'status'] as const, registers: this.registers });
  readonly duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration',
    labelNames: ['method', 'route'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
    registers: this.registers,
  });
  readonly uploadBytes = new Counter({
    name: 'media_upload_bytes_total',
    help: 'Bytes of files stored (committed), by kind, storage driver and where they came in',
    labelNames: ['kind', 'driver', 'source'] as const,
    registers: this.registers,
  });
  readonly uploads = new Counter({
    name: 'media_uploads_total',
    help: 'Files stored (committed), by kind, storage driver and where they came in',
    labelNames: ['kind', 'driver', 'source'] as const,
    registers: this.registers,
  });
  readonly uploadDuration = new Histogram({
    name: 'media_upload_duration_seconds',
    help: 'Time to receive, check and store one file (direct uploads: the completion), by kind, storage driver and where it came in',
    labelNames: ['kind', 'driver', 'source'] as const,
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: this.registers,
  });
  readonly downloads = new Counter({
    name: 'media_downloads_total',
    help: 'Content responses (200, 206) of the download routes, by route and outcome (complete, aborted by the client, failed)',
    labelNames: ['route', 'outcome'] as const,
    registers: this.registers,
  });
  readonly downloadBytes = new Counter({ name: 'media_download_bytes_total', help: 'Body bytes sent by the download routes', labelNames: ['route'] as const, registers: this.registers });
  readonly graphqlErrors = new Counter({ name: 'graphql_errors_total', help: 'GraphQL errors by code', labelNames: ['code'] as const, registers: this.registers });
  readonly graphqlOperations = new Counter({
    name: 'graphql_operations_total',
    help: `GraphQL operations by name (anonymous; "other" beyond ${MAX_OPERATION_NAMES} names or for malformed ones) and outcome (ok, or the code of the first error)`,
    labelNames: ['operation', 'outcome'] as const,
    registers: this.registers,
  });
  readonly storageDuration = new Histogram({
    name: 'storage_operation_duration_seconds',
    help: 'Storage driver calls by driver, operation and outcome (get: until the stream is open; listPages: per page)',
    labelNames: ['driver', 'operation', 'outcome'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
    registers: this.registers,
  });
  readonly sweepRuns = new Counter({ name: 'sweep_runs_total', help: 'Orphan sweeps by outcome (done; skipped: another instance held the lock; failed)', labelNames: ['outcome'] as const, registers: this.registers });
  readonly sweepItems = new Counter({ name: 'sweep_items_total', help: 'What the sweeps removed, by SweepReport field', labelNames: ['item'] as const, registers: this.registers });
  readonly integrityFailures = new Counter({
    name: 'media_integrity_failures_total',
    help: 'Stored content or checksums that did not verify (INTEGRITY_ERROR), or were written under another key of the same name (KEY_MISMATCH)',
    labelNames: ['event'] as const,
    registers: this.registers,
  });
  readonly renders = new Counter({
    name: 'media_renders_total',
    help: 'Render and variant requests by source (media, asset) and outcome (hit: served from the store; rendered; coalesced: waited for an identical render)',
    labelNames: ['source', 'outcome'] as const,
    registers: this.registers,
  });
  readonly renderSeconds = new Histogram({
    name: 'media_render_duration_seconds',
    help: 'Time to render and store one image render (decode, resize, encode, write)',
    labelNames: ['source'] as const,
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: this.registers,
  });
  readonly scans = new Counter({
    name: 'media_scans_total',
    help: 'Malware scans of uploaded files by outcome (clean; infected: refused; unavailable: refused, the scanner failed; unscanned: accepted, CLAMD_FAIL_OPEN) and entry point',
    labelNames: ['outcome', 'source'] as const,
    registers: this.registers,
  });
  private readonly operationNames = new Set<string>();

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    // Series an alert watches exist from the start, at 0.
    for (const event of ['INTEGRITY_ERROR', 'KEY_MISMATCH'] as const) this.integrityFailures.inc({ event }, 0);
    for (const outcome of ['done', 'skipped', 'failed']) this.sweepRuns.inc({ outcome }, 0);
  }

  /** Gauges of a bounded queue, read when scraped: `<name>_running`, `<name>_waiting`, `<name>_refused_total` by reason. */
  observeQueue(name: string, what: string, stats: () => LimiterStats): void {
    const registers = this.registers;
    new Gauge({ name: `${name}_running`, help: `Running ${what}`, registers, collect() { this.set(stats().running); } });
    new Gauge({ name: `${name}_waiting`, help: `Waiting ${what}`, registers, collect() { this.set(stats().waiting); } });
    new Gauge({
      name: `${name}_refused_total`,
      help: `Refused ${what}, by reason`,
      labelNames: ['reason'] as const,
      registers,
      collect() {
        for (const [reason, n] of Object.entries(stats().refused)) this.set({ reason }, n);
      },
    });
  }

  /** Gauges of the PostgreSQL pool, read when scraped. */
  observePool(pool: { totalCount: number; idleCount: number; waitingCount: number }): void {
    const registers = this.registers;
    new Gauge({ name: 'pg_pool_connections', help: 'Connections the pool holds (idle and in use)', registers, collect() { this.set(pool.totalCount); } });
    new Gauge({ name: 'pg_pool_idle_connections', help: 'Idle connections of the pool', registers, collect() { this.set(pool.idleCount); } });
    new Gauge({ name: 'pg_pool_waiting_clients', help: 'Queries waiting for a connection of the pool', registers, collect() { this.set(pool.waitingCount); } });
  }

  /** One file stored and committed. */
  upload(o: { source: UploadSource; kind: string; driver: string; bytes: number; seconds: number }): void {
    const labels = { kind: o.kind, driver: o.driver, source: o.source };
    this.uploads.inc(labels);
    this.uploadBytes.inc(labels, o.bytes);
    this.uploadDuration.observe(labels, o.seconds);
  }

  /** One GraphQL operation answered: its name (bounded) and outcome (ok or the first error's code). */
  graphqlOperation(name: string | null | undefined, errorCodes: readonly string[]): void {
    const first = errorCodes[0];
    const outcome = first === undefined ? 'ok' : ERROR_CODE_RE.test(first) ? first : 'other';
    this.graphqlOperations.inc({ operation: this.operationLabel(name), outcome });
  }

  private operationLabel(name: string | null | undefined): string {
    const n = operationNameOf(name);
    if (n === undefined) return 'anonymous';
    if (n === 'invalid') return 'other';
    if (this.operationNames.has(n)) return n;
    if (this.operationNames.size >= MAX_OPERATION_NAMES) return 'other';
    this.operationNames.add(n);
    return n;
  }

  /** A sweep's report (null: another instance held the lock). */
  sweep(report: Record<string, number> | null): void {
    this.sweepRuns.inc({ outcome: report ? 'done' : 'skipped' });
    for (const [item, n] of Object.entries(report ?? {})) this.sweepItems.inc({ item }, n);
  }

  scan(outcome: 'clean' | 'infected' | 'unavailable' | 'unscanned', source: string): void {
    this.scans.inc({ outcome, source });
  }

  render(source: 'media' | 'asset', outcome: 'hit' | 'rendered' | 'coalesced'): void {
    this.renders.inc({ source, outcome });
  }

  renderDuration(source: 'media' | 'asset', seconds: number): void {
    this.renderSeconds.observe({ source }, seconds);
  }

  integrityFailure(event: 'INTEGRITY_ERROR' | 'KEY_MISMATCH'): void {
    this.integrityFailures.inc({ event });
  }
}
