import type { NextFunction, Request, Response } from 'express';
import { httpStatusOf, type ErrorCode } from '../errors/index.js';
import type { Logger } from '../logger.js';
import type { Metrics } from './metrics.js';
import { RequestFacts } from './request-facts.js';

/** Routes whose 200 and 206 answers are downloads (media_downloads_total, media_download_bytes_total). */
export const DOWNLOAD_ROUTES: ReadonlySet<string> = new Set(['/media/:id/content', '/media/:id/variants/:name', '/media/:id/render', '/assets/:id/download', '/tenants/:tenant/assets/*key']);

type Writer = (chunk: unknown, encoding?: unknown, callback?: unknown) => unknown;

/**
 * One JSON line per request, written when its response closes (finished, or cut
 * off by the client: `aborted: true`), and the request counters. The line names
 * the route template, never the raw path or query string (signed links carry
 * `?token=`, direct upload paths their signed id), and no header: no
 * credential, cookie or content is ever in it. 5xx answers, and GraphQL answers
 * carrying a 5xx-class error code or a logged server fault, are at error level;
 * everything else, 4xx and aborted downloads included, at info.
 */
export function accessLog(logger: Logger, metrics: Metrics) {
  return (req: Request, res: Response, next: NextFunction) => {
    const start = process.hrtime.bigint();
    const facts = new RequestFacts();
    res.locals['facts'] = facts;

    // Body bytes as they arrive from the parser, whether or not a handler reads them.
    let bytesIn = 0;
    const push = req.push;
    req.push = function (this: Request, chunk: unknown, encoding?: BufferEncoding) {
      if (chunk !== null && chunk !== undefined) bytesIn += byteLength(chunk, encoding);
      return push.call(this, chunk, encoding);
    };
    let bytesOut = 0;
    const out = res as unknown as { write: Writer; end: Writer };
    const write = out.write;
    const end = out.end;
    out.write = function (this: Response, chunk, encoding, callback) {
      if (chunk !== null && chunk !== undefined) bytesOut += byteLength(chunk, encoding);
      return write.call(this, chunk, encoding, callback);
    };
    out.end = function (this: Response, chunk, encoding, callback) {
      if (chunk !== null && chunk !== undefined && typeof chunk !== 'function') bytesOut += byteLength(chunk, encoding);
      return end.call(this, chunk, encoding, callback);
    };

    res.once('close', () => {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      // Route templates, not raw paths: ids would explode label cardinality, and paths can carry credentials.
      const route = req.route?.path ? String(req.baseUrl + req.route.path) : routeOf(req.originalUrl.split('?')[0] ?? '');
      const status = res.statusCode;
      const aborted = !res.writableFinished;
      metrics.requests.inc({ method: req.method, route, status: String(status) });
      metrics.duration.observe({ method: req.method, route }, seconds);
      if (DOWNLOAD_ROUTES.has(route) && req.method === 'GET' && (status === 200 || status === 206)) {
        metrics.downloads.inc({ route, outcome: facts.serverFault ? 'failed' : aborted ? 'aborted' : 'complete' });
        metrics.downloadBytes.inc({ route }, bytesOut);
      }
      const errorCodes = [...facts.errorCodes];
      const fault = status >= 500 || facts.serverFault || errorCodes.some((c) => (httpStatusOf[c as ErrorCode] ?? 0) >= 500);
      const line = {
        requestId: res.locals['requestId'],
        method: req.method,
        route,
        status,
        ms: Math.round(seconds * 1000),
        bytesIn,
        bytesOut,
        ...(facts.operation !== undefined ? { operation: facts.operation } : {}),
        ...(facts.tenant !== undefined ? { tenant: facts.tenant } : {}),
        ...(facts.subject !== undefined ? { subject: facts.subject } : {}),
        ...(errorCodes.length > 0 ? { errorCodes } : {}),
        ...(facts.mediaIds.size > 0 ? { mediaIds: [...facts.mediaIds] } : {}),
        ...(facts.mediaIdsTruncated ? { mediaIdsTruncated: true } : {}),
        ...(aborted ? { aborted: true } : {}),
      };
      if (fault) logger.error(line, 'request');
      else logger.info(line, 'request');
    });
    next();
  };
}

function byteLength(chunk: unknown, encoding: unknown): number {
  if (typeof chunk === 'string') return Buffer.byteLength(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
  if (chunk instanceof Uint8Array) return chunk.byteLength;
  return 0;
}

/** The route of a request no route handler took (refused before routing, or unknown). */
function routeOf(p: string): string {
  if (p === '/graphql' || p === '/healthz' || p === '/readyz' || p === '/metrics') return p;
  if (/^\/media\/[^/]+\/content$/.test(p)) return '/media/:id/content';
  if (/^\/media\/[^/]+\/variants\/[^/]+$/.test(p)) return '/media/:id/variants/:name';
  if (/^\/media\/[^/]+\/render$/.test(p)) return '/media/:id/render';
  if (/^\/assets\/[^/]+\/download$/.test(p)) return '/assets/:id/download';
  if (/^\/tenants\/[^/]+\/assets\/./.test(p)) return '/tenants/:tenant/assets/*key';
  if (/^\/direct-uploads\/[^/]+$/.test(p)) return '/direct-uploads/:signedId';
  if (p.startsWith('/graphiql/')) return '/graphiql/assets';
  return 'other';
}
