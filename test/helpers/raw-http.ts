import http from 'node:http';

export interface RawExchange {
  /** null when the server closed the connection without an answer. */
  status: number | null;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: unknown;
  /** Milliseconds from the first byte sent to the end of the answer (or the close). */
  ms: number;
  /** How the exchange ended: an answer, or the server closing the connection. */
  ended: 'response' | 'closed';
}

export interface RawRequest {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  /** Sent one after the other; a number waits that many milliseconds. */
  chunks: (Buffer | string | number)[];
  /** End the body after the chunks (default true); false leaves it open (a stalled client). */
  end?: boolean;
  /** Give up (and fail) after this many milliseconds. */
  timeoutMs?: number;
}

/**
 * One request over a fresh connection, written exactly as given: chunked unless a
 * Content-Length header is set, with pauses, optionally never ended. Resolves with
 * the answer, or with `ended: 'closed'` when the server drops the connection;
 * rejects only when nothing happens within `timeoutMs` (a hang).
 */
export function rawRequest(baseUrl: string, r: RawRequest): Promise<RawExchange> {
  const url = new URL(r.path ?? '/graphql', baseUrl);
  const started = Date.now();
  return new Promise((resolve, reject) => {
    let settled = false;
    const done = (v: RawExchange | Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (v instanceof Error) reject(v);
      else resolve(v);
    };
    const req = http.request(url, { method: r.method ?? 'POST', headers: r.headers ?? {}, agent: false });
    const timer = setTimeout(() => {
      done(new Error(`no answer and no close within ${r.timeoutMs ?? 10_000} ms`));
      req.destroy();
    }, r.timeoutMs ?? 10_000);
    req.on('response', (res) => {
      const body: Buffer[] = [];
      res.on('data', (c: Buffer) => body.push(c));
      res.on('error', () => undefined);
      res.on('end', () => {
        const text = Buffer.concat(body).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        done({ status: res.statusCode ?? null, headers: res.headers, text, json, ms: Date.now() - started, ended: 'response' });
        req.destroy();
      });
    });
    req.on('error', () => done({ status: null, headers: {}, text: '', json: undefined, ms: Date.now() - started, ended: 'closed' }));
    req.on('close', () => done({ status: null, headers: {}, text: '', json: undefined, ms: Date.now() - started, ended: 'closed' }));
    void (async () => {
      for (const c of r.chunks) {
        if (settled) return;
        if (typeof c === 'number') await new Promise((ok) => setTimeout(ok, c));
        else req.write(c);
      }
      if (r.end !== false && !settled) req.end();
    })();
  });
}

/** The extensions.code of the first GraphQL error, or of an HTTP route's `{ error }` body. */
export function errorCode(x: RawExchange): string | undefined {
  const j = x.json as { errors?: { extensions?: { code?: string } }[]; error?: { code?: string } } | undefined;
  return j?.errors?.[0]?.extensions?.code ?? j?.error?.code;
}

export function errorMessage(x: RawExchange): string | undefined {
  const j = x.json as { errors?: { message?: string }[]; error?: { message?: string } } | undefined;
  return j?.errors?.[0]?.message ?? j?.error?.message;
}
