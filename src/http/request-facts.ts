import type { Response } from 'express';
import type { Principal } from '../auth/principal.js';

/** Media ids one access line lists at most; more set `mediaIdsTruncated`. */
export const MAX_LOGGED_MEDIA_IDS = 20;

/**
 * What the handlers of one request learnt that its access line reports
 * (src/http/access-log.ts): who called, the GraphQL operation, error codes,
 * media touched. Lives in `res.locals.facts`; the GraphQL context carries it as
 * `facts`. Holds identifiers only: never a token, a key or content.
 */
export class RequestFacts {
  tenant: string | undefined;
  subject: string | undefined;
  /** The GraphQL operation name (well-formed names only, else 'invalid'). */
  operation: string | undefined;
  readonly errorCodes = new Set<string>();
  readonly mediaIds = new Set<string>();
  mediaIdsTruncated = false;
  /** A server-side failure was logged for this request (after its headers went out, the status cannot say so). */
  serverFault = false;

  /** Who the request acts as: the tenant, and the token's subject (workers: `worker:<type>`, never the key). */
  principal(p: Principal | null | undefined): void {
    if (!p) return;
    this.tenant = p.tenant;
    this.subject = p.kind === 'user' ? p.subject : `worker:${p.workerType}`;
  }

  touchMedia(id: string): void {
    if (this.mediaIds.has(id)) return;
    if (this.mediaIds.size >= MAX_LOGGED_MEDIA_IDS) {
      this.mediaIdsTruncated = true;
      return;
    }
    this.mediaIds.add(id);
  }

  error(code: string): void {
    this.errorCodes.add(code);
  }
}

/** The facts of the request `res` answers (a detached object when there are none, e.g. outside a request). */
export function factsOf(res: Response | undefined): RequestFacts {
  const facts: unknown = res?.locals['facts'];
  return facts instanceof RequestFacts ? facts : new RequestFacts();
}

/**
 * Whether the client went away before the response was complete: the socket
 * closed with no error of ours (a response the server destroyed because its
 * body failed carries that error in `errored`).
 */
export function clientAborted(res: Response): boolean {
  return res.destroyed && !res.writableFinished && !res.errored;
}
