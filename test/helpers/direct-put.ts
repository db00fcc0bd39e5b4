import http from 'node:http';
import { within } from './security.js';

/** HTML (a script) padded with spaces to `size` bytes: what an attacker swaps in for an image. */
export function htmlOfSize(size: number): Buffer {
  const head = Buffer.from('<!doctype html><html><body><script>alert(document.domain)</script></body></html>');
  return Buffer.concat([head, Buffer.alloc(size - head.length, 0x20)]);
}

/** The service's own direct-upload PUT endpoint, which exists on both drivers (on S3 a ticket's url is presigned instead). */
export const serviceUploadUrl = (baseUrl: string, signedId: string) => `${baseUrl}/direct-uploads/${encodeURIComponent(signedId)}`;

/**
 * A PUT whose body the test writes piece by piece (node:http: no Content-Length
 * means chunked transfer encoding); `response` settles with the status and the
 * JSON body, or with the transport error when the test cuts the connection.
 */
export function openPut(url: string, headers: Record<string, string>) {
  const u = new URL(url);
  const req = http.request({ host: u.hostname, port: u.port, path: `${u.pathname}${u.search}`, method: 'PUT', headers });
  const response = new Promise<{ status: number; json: { error?: { code?: string; message?: string } } | undefined }>((resolve, reject) => {
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('error', reject);
      res.on('end', () => {
        let json;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode!, json });
      });
    });
    req.on('error', reject);
  });
  req.flushHeaders();
  const bounded = within(response, 10_000, 'PUT');
  // A test that fails before awaiting it must not add an unhandled rejection to its report.
  bounded.catch(() => undefined);
  return { req, response: bounded };
}

