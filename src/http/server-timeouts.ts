import http from 'node:http';
import type { Socket } from 'node:net';
import type { Config } from '../config.js';

/**
 * The HTTP server with deliberate timeouts (Node's defaults are a 300 s cap on
 * receiving a whole request, which cuts a 1 GB upload on a slow link, and no idle
 * limit at all):
 * - headers must arrive within `headersTimeoutMs` (slow-header clients are cut);
 * - a whole request has no time limit by default, because an upload that keeps
 *   moving may take an hour on a phone;
 * - instead, a connection on which nothing moves for `idleTimeoutMs` while the
 *   client has a part to play is closed: a stalled upload body, or a download
 *   nobody reads, is cut; one that progresses never is. While the service itself
 *   works on a request it has wholly received and not begun to answer (an image
 *   waiting in its queue, a large copy on S3), silence is ours and is not cut: the
 *   work would commit anyway, and the client would retry it;
 * - idle keep-alive connections wait `keepAliveTimeoutMs` for their next request
 *   (set it above a load balancer's idle timeout, e.g. 65 s behind an AWS ALB).
 * Node checks the header and request limits on an interval; 1 s keeps them precise.
 */
export function createHttpServer(config: Config, handler: http.RequestListener): http.Server {
  const t = config.http;
  const server = http.createServer({ connectionsCheckingInterval: 1000, headersTimeout: t.headersTimeoutMs, requestTimeout: t.requestTimeoutMs }, handler);
  server.keepAliveTimeout = t.keepAliveTimeoutMs;
  server.timeout = t.idleTimeoutMs;
  const current = new WeakMap<Socket, { req: http.IncomingMessage; res: http.ServerResponse }>();
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => current.set(req.socket, { req, res }));
  // With a 'timeout' listener Node leaves the socket to us (keep-alive timeouts come here too).
  server.on('timeout', (socket: Socket) => {
    const c = current.get(socket);
    if (c && c.req.complete && !c.res.headersSent && !c.res.writableEnded) {
      // Working on it: look again after another idle period.
      socket.setTimeout(t.idleTimeoutMs);
      return;
    }
    socket.destroy();
  });
  return server;
}
