import type { Request, Response, NextFunction, RequestHandler } from 'express';
import { AppError, ErrorCode, httpStatusOf, isAppError } from '../errors/index.js';
import type { Logger } from '../logger.js';
import { clientAborted, factsOf } from './request-facts.js';

/** Sends `{ "error": { "code", "message" } }` with the status of the code (SPEC 12). */
export function sendError(res: Response, e: AppError | { code: ErrorCode; message: string }, requestId?: string): void {
  const status = isAppError(e) ? e.status : httpStatusOf[e.code];
  factsOf(res).error(e.code);
  // nosniff: the message may echo the request (a path, a key), and must never be sniffed into HTML.
  res.status(status).type('application/json').setHeader('Cache-Control', 'no-store').setHeader('X-Content-Type-Options', 'nosniff');
  // TOO_MANY_REQUESTS and SERVICE_BUSY say when to come back.
  const retryAfter = isAppError(e) ? e.extensions['retryAfterSeconds'] : undefined;
  if (typeof retryAfter === 'number') res.setHeader('Retry-After', String(Math.max(1, Math.ceil(retryAfter))));
  res.send(JSON.stringify({ error: { code: e.code, message: e.message, ...(requestId && e.code === 'INTERNAL_SERVER_ERROR' ? { requestId } : {}) } }));
}

/** Wraps an async route: AppErrors become their status and JSON body; anything else is logged and masked. */
export function route(logger: Logger, handler: (req: Request, res: Response) => Promise<void>): RequestHandler {
  return (req: Request, res: Response, _next: NextFunction) => {
    handler(req, res).catch((e: unknown) => {
      const requestId = String(res.locals['requestId'] ?? '');
      if (res.headersSent) {
        // A client that goes away mid-download (ERR_STREAM_PREMATURE_CLOSE) is no
        // fault of ours: its access line says `aborted: true`, at info level.
        if (!clientAborted(res)) {
          factsOf(res).serverFault = true;
          logger.error({ err: e, requestId }, 'response failed after headers were sent');
        }
        res.destroy();
        return;
      }
      // Nobody to answer: the client went away while the request was handled (an upload cut off).
      if (clientAborted(res)) return void res.destroy();
      if (isAppError(e) && e.code !== 'INTERNAL_SERVER_ERROR') return sendError(res, e);
      logger.error({ err: (e as { cause?: unknown })?.cause ?? e, requestId }, 'internal error');
      sendError(res, { code: 'INTERNAL_SERVER_ERROR', message: 'Internal server error' }, requestId);
    });
  };
}
