import cors from 'cors';
import type { RequestHandler, Response } from 'express';

/**
 * CORS for browser front ends on other origins (CORS_ORIGINS).
 *
 * - Only listed origins, compared exactly (src/config.ts validates them). With
 *   none listed, nothing here sets a header: CORS is off.
 * - No credentials (no Access-Control-Allow-Credentials): the API authenticates
 *   with an `Authorization: Bearer` header, which a script sets itself, and reads
 *   no cookies. Signed `url`s carry their credential in the query string.
 * - Every response of a CORS route says `Vary: Origin`, listed origin or not, so
 *   that a cache never hands one origin's answer to another.
 * - Preflights are cached by the browser for PREFLIGHT_MAX_AGE_SECONDS (Chromium
 *   caps this at 2 hours, Firefox at 24).
 * - PUBLIC assets served by /tenants/{tenant}/assets/{key} answer any origin
 *   (allowAnyOrigin): they are meant for anyone, and a PRIVATE one never gets "*".
 */

/** The route families a browser front end calls: GraphQL, media content, assets, local direct uploads, resumable uploads. */
export const CORS_PATHS = ['/graphql', '/media', '/assets', '/tenants', '/direct-uploads', '/uploads'];

export const PREFLIGHT_MAX_AGE_SECONDS = 600;

const METHODS = [
  'GET',
  'HEAD',
  'POST',
  'PUT',
  // Resumable uploads (tus): PATCH appends bytes, DELETE terminates.
  'PATCH',
  'DELETE',
];

/** Request headers a browser client may send (beyond the CORS-safelisted ones). */
export const CORS_ALLOWED_HEADERS = [
  'Authorization',
  'Content-Type',
  // Apollo Server's CSRF prevention: multipart (and GET) operations need one of these.
  'Apollo-Require-Preflight',
  'X-Apollo-Operation-Name',
  // The local direct-upload PUT checks a Content-MD5 when given.
  'Content-MD5',
  // Content routes: byte ranges and revalidation.
  'Range',
  'If-None-Match',
  // Resumable uploads (tus 1.0; deferred lengths and concatenation are refused, but
  // a browser must be allowed to send them to hear why).
  'Tus-Resumable',
  'Upload-Length',
  'Upload-Offset',
  'Upload-Metadata',
  'Upload-Defer-Length',
  'Upload-Concat',
  'X-HTTP-Method-Override',
  'X-Requested-With',
];

/** Response headers scripts on a listed origin may read (beyond the CORS-safelisted ones). */
export const CORS_EXPOSED_HEADERS = [
  'ETag',
  'Content-Disposition',
  'Content-Length',
  'Content-Range',
  'Accept-Ranges',
  // TOO_MANY_REQUESTS and SERVICE_BUSY say when to come back.
  'Retry-After',
  // What a support request should quote.
  'X-Request-Id',
  // Resumable uploads (tus 1.0): the upload URL, its progress and expiry, the
  // protocol's discovery headers, and the media a finished upload became.
  'Location',
  'Upload-Offset',
  'Upload-Length',
  'Upload-Metadata',
  'Upload-Expires',
  'Tus-Resumable',
  'Tus-Version',
  'Tus-Extension',
  'Tus-Max-Size',
  'Media-Id',
];

/** The CORS middleware for CORS_PATHS. Listed origins get CORS headers (and preflights an answer); others get none. */
export function corsMiddleware(origins: ReadonlySet<string>): RequestHandler {
  if (origins.size === 0) return (_req, _res, next) => next();
  // `origin: true` reflects the request's Origin (and adds Vary: Origin); it is
  // only reached for an origin on the list.
  const listed = cors({
    origin: true,
    credentials: false,
    methods: METHODS,
    allowedHeaders: CORS_ALLOWED_HEADERS,
    exposedHeaders: CORS_EXPOSED_HEADERS,
    maxAge: PREFLIGHT_MAX_AGE_SECONDS,
    preflightContinue: false,
    optionsSuccessStatus: 204,
  });
  return (req, res, next) => {
    const origin = req.headers.origin;
    if (origin !== undefined && origins.has(origin)) return listed(req, res, next);
    // Not listed (or no Origin): no CORS header, so the browser refuses to hand the
    // answer to the page and a preflight fails; the request goes on as any other.
    res.vary('Origin');
    next();
  };
}

/**
 * Lets any origin read this response (a PUBLIC asset), when CORS is on. Replaces a
 * reflected origin: the answer is the same for every origin.
 */
export function allowAnyOrigin(origins: ReadonlySet<string>, res: Response): void {
  if (origins.size === 0) return;
  res.setHeader('Access-Control-Allow-Origin', '*');
  res.setHeader('Access-Control-Expose-Headers', CORS_EXPOSED_HEADERS.join(','));
}
