import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import express, { type Request, type Response, type Router } from 'express';
import { Server } from '@tus/server';
import { ERRORS, TUS_RESUMABLE, type Upload } from '@tus/utils';
import { NodeRequest, sendNodeResponse } from 'srvx/node';
import { requireScope } from '../auth/http-auth.js';
import type { UserPrincipal } from '../auth/principal.js';
import { ErrorCode, errors, httpStatusOf, isAppError, type AppError } from '../errors/index.js';
import type { Services } from '../services.js';
import { factsOf } from './request-facts.js';
import { sendError } from './respond.js';
import { BLOCK_BYTES, takeBlock } from '../modules/resumable-uploads/body-blocks.js';

/** Where tus clients (tus-js-client, Uppy) create uploads: POST here, then HEAD/PATCH/DELETE the returned Location. */
export const RESUMABLE_PATH = '/uploads/resumable';
/** The response header of a finished upload (final PATCH, creation-with-upload, HEAD) naming its media. */
export const MEDIA_ID_HEADER = 'Media-Id';

const TUS_METHODS = new Set(['POST', 'HEAD', 'PATCH', 'DELETE', 'OPTIONS']);
/** How long an instance lets a request that another one wants to take over finish its body (tus's lockDrainTimeout). */
const LOCK_DRAIN_MS = 3_000;

/** The body of an error answer (retryAfterSeconds travels in it from the hooks to the Retry-After header). */
type ErrorJson = { error?: { code?: string; message?: string; requestId?: string; retryAfterSeconds?: number } };

interface RequestState {
  principal: UserPrincipal;
  requestId: string;
}

/**
 * The tus 1.0 endpoint (SPEC 17) on @tus/server: creation, creation-with-upload,
 * termination, expiration. In front of tus: authentication (Bearer, media:create;
 * the tenant is the token's), methods (no GET: an upload is read through its
 * media; X-HTTP-Method-Override for clients behind proxies that drop PATCH),
 * deferred lengths and concatenation refused, and PATCH bodies of any other type
 * than application/offset+octet-stream refused with 415 (tus's spec) before a byte
 * is read. Behind it: every error is `{ "error": { "code", "message" } }` with the
 * status, CORS headers are src/http/cors.ts's (tus's own are dropped), and a
 * finished upload names its media in Media-Id (a HEAD of a complete upload
 * finishes it first when a crash or a failure left it unfinished).
 */
export function resumableUploadRoutes(services: Services): Router {
  const { resumable, logger } = services;
  const states = new WeakMap<object, RequestState>();
  const stateOf = (req: { runtime?: { node?: { req?: object } } }): RequestState => {
    const s = req.runtime?.node?.req ? states.get(req.runtime.node.req) : undefined;
    if (!s) throw errors.internal(new Error('a tus request reached its hooks without authentication'));
    return s;
  };

  const tus = new Server({
    path: RESUMABLE_PATH,
    datastore: resumable.store,
    locker: resumable.locker,
    maxSize: () => resumable.maxSize(),
    namingFunction: () => randomUUID(),
    generateUrl: (_req, { id }) => `${services.urls.base()}${RESUMABLE_PATH}/${id}`,
    // CORS is src/http/cors.ts's: tus would answer `*` to anyone.
    allowedOrigins: () => false,
    disableTerminationForFinishedUploads: true,
    lockDrainTimeout: LOCK_DRAIN_MS,
    onIncomingRequest: async (req, id) => {
      // A creation names an id no row has yet; every other request must name one of the caller's tenant.
      if (req.method === 'POST') return;
      if (!(await resumable.belongsTo(stateOf(req).principal.tenant, id))) throw ERRORS.FILE_NOT_FOUND;
    },
    onUploadCreate: async (req, upload: Upload) => {
      const { principal } = stateOf(req);
      await resumable.admit(principal.tenant, principal.subject, upload);
      return {};
    },
    onUploadFinish: async (_req, upload: Upload) => ({ headers: { [MEDIA_ID_HEADER]: await resumable.finish(upload.id) } }),
    onResponseError: (req, err) => {
      const state = (() => {
        try {
          return stateOf(req);
        } catch {
          return undefined;
        }
      })();
      return tusAnswer(err, state?.requestId, (e) => logger.error({ err: e, requestId: state?.requestId }, 'resumable upload: internal error'));
    },
  });

  const router = express.Router();
  router.use(RESUMABLE_PATH, (req, res, next) => {
    handle(req, res).catch(next);
  });

  async function handle(req: Request, res: Response): Promise<void> {
    res.setHeader('Tus-Resumable', TUS_RESUMABLE);
    const override = req.get('x-http-method-override')?.toUpperCase();
    if (req.method === 'POST' && (override === 'PATCH' || override === 'DELETE')) req.method = override;
    if (!TUS_METHODS.has(req.method)) {
      return refuse(req, res, errors.notFound('Route', `${req.method} ${RESUMABLE_PATH}${req.path === '/' ? '' : req.path}`));
    }
    if (req.method !== 'OPTIONS') {
      let principal: UserPrincipal;
      try {
        principal = await requireScope(services, req, 'media:create');
      } catch (e) {
        return refuse(req, res, e);
      }
      states.set(req, { principal, requestId: String(res.locals['requestId'] ?? '') });
      const problem = precheck(req);
      if (problem) return refuse(req, res, problem);
    }
    const request = new NodeRequest({ req, res });
    // The body in 1 MiB chunks of reused blocks: tus turns the web stream into a Node
    // stream again, and each chunk costs promises both ways; with the socket's 64 KiB
    // reads a 1 GiB upload in 64 MiB PATCHes fell from 0.8 to under 0.6 of upload's
    // throughput (bench/resumable.ts; 256 KiB and 4 MiB chunks measured worse than 1 MiB,
    // and fresh blocks instead of reused ones about 10 % slower).
    if (req.method === 'PATCH' || req.method === 'POST') Object.defineProperty(request, 'body', { value: coalescedBody(req), configurable: true });
    const response = await tus.handleWeb(request as unknown as globalThis.Request);
    await sendNodeResponse(res, await finishResponse(req, res, response));
  }

  /** tus's answer, in this service's terms: our CORS, Media-Id on finished uploads, JSON errors. */
  async function finishResponse(req: Request, res: Response, response: globalThis.Response): Promise<globalThis.Response> {
    for (const name of [...response.headers.keys()]) if (name.startsWith('access-control-')) response.headers.delete(name);
    if (req.method === 'HEAD' && response.status === 200) {
      const offset = response.headers.get('upload-offset');
      // The upload tus answered for: the last segment of the path, as tus reads it.
      const id = req.path.split('/').filter(Boolean).pop() ?? '';
      try {
        const progress = await resumable.progressOf(id);
        if (offset !== null && offset === response.headers.get('upload-length')) {
          // Complete: the media, made now if the request that sent the last byte could not.
          response.headers.set(MEDIA_ID_HEADER, progress?.mediaId ?? (await resumable.finish(id)));
        } else if (progress) {
          response.headers.set('Upload-Expires', progress.expiresAt.toUTCString());
        }
      } catch (e) {
        const answer = tusAnswer(e, String(res.locals['requestId'] ?? ''), (err) => logger.error({ err }, 'resumable upload: internal error'));
        return errorResponse(req, res, answer.status_code, answer.body, response.headers);
      }
    }
    if (response.status < 400) return response;
    return errorResponse(req, res, response.status, await response.text(), response.headers);
  }

  /** An error answer: `{ "error": { "code", "message" } }` (tus's plain-text ones converted), counted as the request's error. */
  function errorResponse(req: Request, res: Response, status: number, body: string, headers: Headers): globalThis.Response {
    let json: ErrorJson | undefined;
    try {
      json = JSON.parse(body) as ErrorJson;
    } catch {
      json = undefined;
    }
    const code = (json?.error?.code as ErrorCode | undefined) ?? codeOfStatus(status);
    const message = json?.error?.message ?? (body.trim() || `HTTP ${status}`);
    const { requestId, retryAfterSeconds } = json?.error ?? {};
    factsOf(res).error(code);
    const out = new Headers(headers);
    out.set('Content-Type', 'application/json');
    out.set('Cache-Control', 'no-store');
    out.delete('Content-Length');
    if (typeof retryAfterSeconds === 'number') out.set('Retry-After', String(Math.max(1, Math.ceil(retryAfterSeconds))));
    if (bodyUnread(req)) out.set('Connection', 'close');
    const text = JSON.stringify({ error: { code, message, ...(requestId ? { requestId } : {}) } });
    return new globalThis.Response(req.method === 'HEAD' ? null : text, { status, headers: out });
  }

  function refuse(req: Request, res: Response, e: unknown): void {
    const error: AppError = isAppError(e) ? e : errors.internal(e);
    if (!isAppError(e)) logger.error({ err: e, requestId: res.locals['requestId'] }, 'resumable upload: internal error');
    // A refused body is not read: the connection cannot carry another request after it.
    if (bodyUnread(req)) res.setHeader('Connection', 'close');
    sendError(res, error, String(res.locals['requestId'] ?? ''));
  }

  return router;
}

/**
 * The request body as a web stream of BLOCK_BYTES chunks (the last one smaller),
 * gathered into reused blocks (src/modules/resumable-uploads/body-blocks.ts), with
 * back-pressure: the request is paused while a chunk waits (every block held between the body and the file is one a PATCH's answer waits for). An error or a cut
 * connection errors the stream (tus then stores what it had).
 */
function coalescedBody(req: IncomingMessage): ReadableStream<Uint8Array> {
  let block: Buffer | undefined;
  let filled = 0;
  const take = () => {
    const chunk = filled === BLOCK_BYTES ? block! : block!.subarray(0, filled);
    block = undefined;
    filled = 0;
    return chunk;
  };
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        req.on('data', (c: Buffer) => {
          for (let at = 0; at < c.length; ) {
            block ??= takeBlock();
            const n = c.copy(block, filled, at);
            filled += n;
            at += n;
            if (filled === BLOCK_BYTES) controller.enqueue(take());
          }
          if ((controller.desiredSize ?? 0) <= 0) req.pause();
        });
        req.on('end', () => {
          if (filled > 0) controller.enqueue(take());
          controller.close();
        });
        const fail = (e: unknown) => {
          block = undefined;
          try {
            controller.error(e);
          } catch {
            // already closed or errored
          }
        };
        req.on('error', fail);
        req.on('close', () => {
          if (!req.complete) fail(new Error('the client went away before the end of the body'));
        });
      },
      pull() {
        req.resume();
      },
      cancel() {
        req.resume();
      },
    },
    { highWaterMark: 1 },
  );
}

/** What tus itself would accept but this service does not; undefined when the request may go on. */
function precheck(req: Request): AppError | undefined {
  if (req.get('upload-defer-length') !== undefined) {
    return errors.badInput('Upload-Defer-Length', 'Deferred lengths are not supported: send Upload-Length at creation (the size limit is checked before any byte)');
  }
  if (req.get('upload-concat') !== undefined) return errors.badInput('Upload-Concat', 'Concatenation is not supported: upload the file as one upload (no parallel uploads)');
  if (req.method === 'PATCH') {
    if (req.get('upload-length') !== undefined) return errors.badInput('Upload-Length', 'Upload-Length is fixed at creation');
    const type = req.get('content-type');
    if (type?.split(';')[0]!.trim().toLowerCase() !== 'application/offset+octet-stream') {
      return errors.unsupportedType('PATCH requests must have Content-Type: application/offset+octet-stream');
    }
  }
  return undefined;
}

/** Whether the request has a body that nobody has read (yet). */
function bodyUnread(req: IncomingMessage): boolean {
  const hasBody = (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') || req.headers['transfer-encoding'] !== undefined;
  return hasBody && !req.complete;
}

/** tus's status and body for an error of the hooks or the store: our AppErrors with their status, JSON bodies; unknown errors masked. */
function tusAnswer(err: unknown, requestId: string | undefined, logInternal: (e: unknown) => void): { status_code: number; body: string } {
  if (isAppError(err) && err.code !== 'INTERNAL_SERVER_ERROR') {
    const retryAfterSeconds = err.extensions['retryAfterSeconds'];
    return { status_code: err.status, body: JSON.stringify({ error: { code: err.code, message: err.message, ...(typeof retryAfterSeconds === 'number' ? { retryAfterSeconds } : {}) } }) };
  }
  const tusError = err as { status_code?: unknown; body?: unknown };
  if (!isAppError(err) && typeof tusError?.status_code === 'number' && typeof tusError.body === 'string' && tusError.status_code < 500) {
    return { status_code: tusError.status_code, body: tusError.body };
  }
  if (!isAppError(err) && typeof tusError?.status_code === 'number' && tusError.status_code === 503) {
    return { status_code: 503, body: JSON.stringify({ error: { code: 'STORAGE_UNAVAILABLE', message: String(tusError.body).trim() } }) };
  }
  logInternal(isAppError(err) ? (err.cause ?? err) : err);
  return { status_code: 500, body: JSON.stringify({ error: { code: 'INTERNAL_SERVER_ERROR', message: 'Internal server error', ...(requestId ? { requestId } : {}) } }) };
}

/** The error code of a status tus answered by itself. */
function codeOfStatus(status: number): ErrorCode {
  if (status === 404 || status === 410) return 'NOT_FOUND';
  if (status === 409 || status === 423) return 'CONFLICT';
  if (status === 413) return 'PAYLOAD_TOO_LARGE';
  if (status === 415) return 'UNSUPPORTED_MEDIA_TYPE';
  if (status === 401) return 'UNAUTHENTICATED';
  if (status === 403) return 'FORBIDDEN';
  if (status === 429) return 'TOO_MANY_REQUESTS';
  if (status === 503) return 'STORAGE_UNAVAILABLE';
  if (status >= 400 && status < 500) return 'BAD_USER_INPUT';
  return (Object.keys(httpStatusOf) as ErrorCode[]).find((c) => httpStatusOf[c] === status) ?? 'INTERNAL_SERVER_ERROR';
}
