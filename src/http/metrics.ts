import type { NextFunction, Request, Response } from 'express';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from '../logger.js';
import type { LimiterStats } from '../util/concurrency-limiter.js';

/** Prometheus metrics of one service instance (GET /metrics). */
export class Metrics {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: 'http_requests_total', help: 'HTTP requests', labelNames: ['method', 'route', 'status'] as const, registers: [this.registry] });
  readonly duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration',
    labelNames: ['method', 'route'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
    registers: [this.registry],
  });
  readonly uploadBytes = new Counter({ name: 'media_upload_bytes_total', help: 'Bytes of media stored', registers: [this.registry] });
  readonly graphqlErrors = new Counter({ name: 'graphql_errors_total', help: 'GraphQL errors by code', labelNames: ['code'] as const, registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /** Gauges of a bounded queue, read when scraped: `<name>_running`, `<name>_waiting`, `<name>_refused_total` by reason. */
  observeQueue(name: string, what: string, stats: () => LimiterStats): void {
    const registers = [this.registry];
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

  /** Counts and times every request, and logs it as one JSON line with its request id. */
  middleware(logger: Logger) {
    return (req: Request, res: Response, next: NextFunction) => {
      const start = process.hrtime.bigint();
      res.on('finish', () => {
        const seconds = Number(process.hrtime.bigint() - start) / 1e9;
        // Route templates, not raw paths: ids would explode label cardinality.
        const route = req.route?.path ? String(req.baseUrl + req.route.path) : routeOf(req.originalUrl.split('?')[0] ?? '');
        this.requests.inc({ method: req.method, route, status: String(res.statusCode) });
        this.duration.observe({ method: req.method, route }, seconds);
        logger.info({ requestId: res.locals['requestId'], method: req.method, route, status: res.statusCode, ms: Math.round(seconds * 1000) }, 'request');
      });
      next();
    };
  }
}

function routeOf(p: string): string {
  if (p === '/graphql' || p === '/healthz' || p === '/readyz' || p === '/metrics') return p;
  if (p.startsWith('/media/')) return p.includes('/variants/') ? '/media/:id/variants/:name' : '/media/:id/content';
  if (p.startsWith('/graphiql/')) return '/graphiql/assets';
  return 'other';
}
