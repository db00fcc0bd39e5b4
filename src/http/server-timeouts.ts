import http from 'node:http';
import type { Config } from '../config.js';

/**
 * The HTTP server with deliberate timeouts (Node's defaults are a 300 s cap on
 * receiving a whole request, which cuts a 1 GB upload on a slow link, and no idle
 * limit at all):
 * - headers must arrive within `headersTimeoutMs` (slow-header clients are cut);
 * - a whole request has no time limit by default, because an upload that keeps
 *   moving may take an hour on a phone;
 * - instead, a connection on which nothing moves for `idleTimeoutMs` is closed: a
 *   stalled upload body (or a download nobody reads) is cut, one that progresses
 *   never is. It counts bytes in both directions, so a response being computed
 *   for that long without a byte sent would be cut too; nothing here takes that long;
 * - idle keep-alive connections wait `keepAliveTimeoutMs` for their next request
 *   (set it above a load balancer's idle timeout, e.g. 65 s behind an AWS ALB).
 * Node checks the header and request limits on an interval; 1 s keeps them precise.
 */
export function createHttpServer(config: Config, handler: http.RequestListener): http.Server {
  const t = config.http;
  const server = http.createServer({ connectionsCheckingInterval: 1000, headersTimeout: t.headersTimeoutMs, requestTimeout: t.requestTimeoutMs }, handler);
  server.keepAliveTimeout = t.keepAliveTimeoutMs;
  // With no 'timeout' listener, Node destroys a socket that timed out.
  server.timeout = t.idleTimeoutMs;
  return server;
}
