// The clamd client (src/scan/clamd.ts) against a real clamd started for this file
// (test/helpers/clamd.ts), plus fake servers for the faults a real clamd does not
// show on demand (accepts and never answers, never reads, answers nonsense).
// It needs no database or storage: it runs in the local pass only.
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/db/embedded.js';
import { isAppError } from '../../src/errors/index.js';
import { ClamdScanner, ScannerUnavailable, ScanStream, type ScanSession, type ScanVerdict } from '../../src/scan/clamd.js';
import { EICAR, EICAR_SIGNATURE, startClamd, type RunningClamd } from '../helpers/clamd.js';

const MiB = 1024 * 1024;

/** Sends `data` in pieces of the given sizes (cycled; 0 sends an empty chunk), awaiting back-pressure as a caller must. */
async function writeAll(session: ScanSession, data: Buffer, sizes: number[] = [64 * 1024]): Promise<void> {
  let at = 0;
  for (let i = 0; at < data.length; i++) {
    const n = sizes[i % sizes.length]!;
    const wait = session.write(data.subarray(at, at + n));
    if (wait) await wait;
    at += n;
  }
}

async function scanInPieces(session: ScanSession, data: Buffer, sizes?: number[]): Promise<ScanVerdict> {
  await writeAll(session, data, sizes);
  return session.finish();
}

/** EICAR inside `size` random bytes, starting at `at`. */
function withEicar(size: number, at: number): Buffer {
  const b = randomBytes(size);
  EICAR.copy(b, at);
  return b;
}

async function failure(p: Promise<unknown>): Promise<ScannerUnavailable> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ScannerUnavailable);
    return e as ScannerUnavailable;
  }
  throw new Error('expected the scan to fail');
}

/** A TCP server on loopback that does `onConnection` with each connection; like clamd, it does not close when the client ends its side. */
async function fakeClamd(onConnection: (socket: net.Socket) => void): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
    onConnection(s);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `tcp://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A sink that hashes what it receives and records whether the stream ended. */
function hashingSink(): { sink: Writable; digest(): string; ended(): boolean; bytes(): number } {
  const h = createHash('sha256');
  let ended = false;
  let bytes = 0;
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      h.update(chunk);
      bytes += chunk.length;
      cb();
    },
    final(cb) {
      ended = true;
      cb();
    },
  });
  return { sink, digest: () => h.copy().digest('hex'), ended: () => ended, bytes: () => bytes };
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function* piecesOf(data: Buffer, size: number): Generator<Buffer> {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

let clamd: RunningClamd;
let scanner: ClamdScanner;

beforeAll(async () => {
  clamd = await startClamd();
  scanner = new ClamdScanner({ url: clamd.url, timeoutMs: 10_000 });
});

afterAll(async () => {
  await clamd?.stop();
});

describe('clamd: verdicts', () => {
  it('starts in seconds and answers PING and VERSION', async () => {
    expect(clamd.startupMs).toBeLessThan(10_000);
    await scanner.ping();
    expect(await scanner.version()).toMatch(/^ClamAV \d/);
  });

  it('EICAR: FOUND, with the signature name', async () => {
    const v = await scanInPieces(scanner.scan(), EICAR);
    expect(v).toEqual({ clean: false, signature: `${EICAR_SIGNATURE}.UNOFFICIAL` });
  });

  it('5 MiB of random bytes: clean; an empty file: clean', async () => {
    expect(await scanInPieces(scanner.scan(), randomBytes(5 * MiB))).toEqual({ clean: true });
    expect(await scanner.scan().finish()).toEqual({ clean: true });
  });

  it('EICAR in the middle of 3 MiB of random bytes: FOUND', async () => {
    const v = await scanInPieces(scanner.scan(), withEicar(3 * MiB, 1_500_001));
    expect(v).toMatchObject({ clean: false, signature: expect.stringMatching(/^Eicar-Test-Signature/) });
  });

  it('chunks split at awkward places (1 byte, odd sizes, inside the signature, empty chunks): the same verdicts', async () => {
    const at = 200_000 - 30; // EICAR straddles several chunk boundaries below
    const data = withEicar(400_000, at);
    const splits = [[1], [3, 7, 0, 1], [65_537], [at + 5, 1, 2, 60, 0, 100_000], [200_000 - 31, 68, 0], [4096, 0, 13]];
    // (an empty chunk sends nothing: the zero-length frame that ends a stream is finish()'s alone)
    for (const sizes of splits) expect(await scanInPieces(scanner.scan(), data, sizes), JSON.stringify(sizes)).toMatchObject({ clean: false });
    const clean = randomBytes(300_000);
    for (const sizes of splits) expect(await scanInPieces(scanner.scan(), clean, sizes), JSON.stringify(sizes)).toEqual({ clean: true });
  });

  it('a single write of 20 MiB (one frame per 64 MiB at most) and writes without waiting', async () => {
    expect(await scanInPieces(scanner.scan(), withEicar(20 * MiB, 19 * MiB))).toMatchObject({ clean: false });
    // A caller that never waits still gets a verdict (the socket queues what it was given).
    const s = scanner.scan();
    for (const piece of piecesOf(randomBytes(8 * MiB), 256 * 1024)) void s.write(piece);
    expect(await s.finish()).toEqual({ clean: true });
  });

  it('scans run side by side on one scanner', async () => {
    const files = [withEicar(2 * MiB, 1000), randomBytes(2 * MiB), withEicar(2 * MiB, 2 * MiB - 68), randomBytes(2 * MiB)];
    const verdicts = await Promise.all(files.map((f) => scanInPieces(scanner.scan(), f)));
    expect(verdicts.map((v) => v.clean)).toEqual([false, true, false, true]);
  });

  it('over the unix socket: unix:///path and a plain absolute path', async () => {
    for (const url of [`unix://${clamd.socketPath}`, clamd.socketPath!]) {
      const s = new ClamdScanner({ url, timeoutMs: 10_000 });
      await s.ping();
      expect(await scanInPieces(s.scan(), withEicar(MiB, 4321))).toMatchObject({ clean: false });
      expect(await scanInPieces(s.scan(), randomBytes(MiB))).toEqual({ clean: true });
    }
  });
});

describe('clamd: ScanStream (scan while passing through)', () => {
  it('a clean file passes through unchanged and the stream ends; the verdict is clean', async () => {
    const data = randomBytes(6 * MiB + 123);
    const scan = new ScanStream(scanner);
    const out = hashingSink();
    await pipeline(Readable.from(piecesOf(data, 64 * 1024)), scan, out.sink);
    expect(out.digest()).toBe(sha256(data));
    expect(out.ended()).toBe(true);
    expect(await scan.verdict).toEqual({ clean: true });
  });

  it('an infected file: the stream fails with MALWARE_DETECTED instead of ending; the verdict names the signature', async () => {
    const scan = new ScanStream(scanner);
    const out = hashingSink();
    const err = await pipeline(Readable.from(piecesOf(withEicar(3 * MiB, MiB), 64 * 1024)), scan, out.sink).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isAppError(err) && err.code).toBe('MALWARE_DETECTED');
    expect((err as Error).message).toBe(`The file was refused: the malware scanner recognised it (${EICAR_SIGNATURE}.UNOFFICIAL)`);
    expect(out.ended()).toBe(false);
    expect(await scan.verdict).toEqual({ clean: false, signature: `${EICAR_SIGNATURE}.UNOFFICIAL` });
  });

  it('an empty stream is scanned too (clean)', async () => {
    const scan = new ScanStream(scanner);
    const out = hashingSink();
    await pipeline(Readable.from([]), scan, out.sink);
    expect(await scan.verdict).toEqual({ clean: true });
  });

  it('scanner unreachable: fail closed fails the stream with SCANNER_UNAVAILABLE; fail open passes the file and the verdict says why it was not scanned', async () => {
    const down = new ClamdScanner({ url: `127.0.0.1:${await freePort()}`, timeoutMs: 2000 });
    const data = randomBytes(2 * MiB);
    const closed = hashingSink();
    const err = await pipeline(Readable.from(piecesOf(data, 64 * 1024)), new ScanStream(down), closed.sink).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isAppError(err) && err.code).toBe('SCANNER_UNAVAILABLE');
    expect(isAppError(err) && err.extensions['reason']).toBe('unreachable');
    expect(closed.ended()).toBe(false);

    const scan = new ScanStream(down, { failOpen: true });
    const open = hashingSink();
    await pipeline(Readable.from(piecesOf(data, 64 * 1024)), scan, open.sink);
    expect(open.digest()).toBe(sha256(data));
    expect((await failure(scan.verdict)).reason).toBe('unreachable');
  });

  it('clamd killed while a file flows through: fail closed, the stream fails with SCANNER_UNAVAILABLE and the store never sees its end', async () => {
    const own = await startClamd();
    try {
      const data = randomBytes(16 * MiB);
      async function* source() {
        let at = 0;
        for (const piece of piecesOf(data, 64 * 1024)) {
          if (at === 2 * MiB) await own.kill('SIGKILL');
          at += piece.length;
          yield piece;
        }
      }
      const out = hashingSink();
      const scan = new ScanStream(new ClamdScanner({ url: own.url, timeoutMs: 5000 }));
      const err = await pipeline(Readable.from(source()), scan, out.sink).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isAppError(err) && err.code).toBe('SCANNER_UNAVAILABLE');
      expect(isAppError(err) && err.extensions['reason']).toBe('closed');
      expect(out.ended()).toBe(false);
      expect(out.bytes()).toBeLessThan(data.length);
    } finally {
      await own.stop();
    }
  });

  it('a stream destroyed mid-way closes its scan; the verdict rejects', async () => {
    const scan = new ScanStream(scanner);
    scan.on('error', () => undefined);
    scan.write(randomBytes(MiB));
    scan.destroy(new Error('client went away'));
    await expect(scan.verdict).rejects.toThrow('client went away');
  });
});

describe('clamd: faults end in ScannerUnavailable, never a hang', () => {
  it('clamd killed mid-stream: closed', async () => {
    const own = await startClamd();
    try {
      const s = new ClamdScanner({ url: own.url, timeoutMs: 5000 }).scan();
      await writeAll(s, randomBytes(2 * MiB));
      await own.kill('SIGKILL');
      const t0 = Date.now();
      const e = await failure(scanInPieces(s, randomBytes(16 * MiB)));
      expect(e.reason).toBe('closed');
      expect(e.message).toMatch(/closed the connection after \d+ bytes, before its verdict/);
      expect(Date.now() - t0).toBeLessThan(4000);
      expect(s.error).toBe(e);
    } finally {
      await own.stop();
    }
  });

  it('nothing listening on the port, no such socket: unreachable, at once', async () => {
    const port = await freePort();
    for (const url of [`tcp://127.0.0.1:${port}`, `unix://${clamd.dir}/no-such.sock`]) {
      const s = new ClamdScanner({ url, timeoutMs: 30_000 });
      const t0 = Date.now();
      const e = await failure(scanInPieces(s.scan(), randomBytes(3 * MiB)));
      expect(e.reason).toBe('unreachable');
      expect(e.message).toMatch(/is unreachable \((ECONNREFUSED|ENOENT)\)/);
      expect((await failure(s.ping())).reason).toBe('unreachable');
      expect(Date.now() - t0).toBeLessThan(1000);
    }
  });

  it('a server that accepts and never answers: timeout after timeoutMs, for scans and for PING', async () => {
    const fake = await fakeClamd((s) => s.resume());
    try {
      const s = new ClamdScanner({ url: fake.url, timeoutMs: 300 });
      const t0 = Date.now();
      const e = await failure(scanInPieces(s.scan(), randomBytes(MiB)));
      expect(e.reason).toBe('timeout');
      expect(e.message).toMatch(/gave no verdict within 300 ms/);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
      expect(Date.now() - t0).toBeLessThan(2000);
      expect((await failure(s.ping())).reason).toBe('timeout');
    } finally {
      await fake.close();
    }
  });

  it('a server that accepts and never reads: the writer is not kept waiting past timeoutMs', async () => {
    const fake = await fakeClamd((s) => s.pause());
    try {
      const s = new ClamdScanner({ url: fake.url, timeoutMs: 300 });
      const e = await failure(scanInPieces(s.scan(), randomBytes(64 * MiB)));
      expect(e.reason).toBe('timeout');
      expect(e.message).toMatch(/read nothing for 300 ms/);
    } finally {
      await fake.close();
    }
  });

  it('a server that reads slowly but steadily is waited for, however long the whole takes', async () => {
    // 50 ms of pause per MiB read: 40 MiB take over 2 s, each pause is far below the 1 s timeout.
    const fake = await fakeClamd((s) => {
      let got = 0;
      let tail = Buffer.alloc(0);
      s.on('data', (c: Buffer) => {
        if (Math.floor((got + c.length) / MiB) > Math.floor(got / MiB)) {
          s.pause();
          setTimeout(() => s.resume(), 50);
        }
        got += c.length;
        tail = Buffer.concat([tail, c]).subarray(-4);
        if (got > 40 * MiB && tail.equals(Buffer.alloc(4))) s.end('stream: OK\0');
      });
    });
    try {
      const s = new ClamdScanner({ url: fake.url, timeoutMs: 1000 });
      const t0 = Date.now();
      expect(await scanInPieces(s.scan(), randomBytes(40 * MiB))).toEqual({ clean: true });
      expect(Date.now() - t0).toBeGreaterThan(1000);
    } finally {
      await fake.close();
    }
  });

  it('replies that are not verdicts: protocol, error; signature names are sanitised and bounded', async () => {
    const replies = new Map<string, string>([
      ['garbage', 'HTTP/1.1 400 Bad Request\r\n\r\n\0'],
      ['error', 'UNKNOWN COMMAND\0'],
      ['half', 'stream: Eicar'],
      ['long', `${'x'.repeat(10_000)}`],
      ['evil', `stream: Bad\nName\x1b[2J${'A'.repeat(500)}(44d88612fea8a8f36de82e1278abb02f:68) FOUND\0`],
    ]);
    let next = '';
    const fake = await fakeClamd((s) => {
      const reply = replies.get(next)!;
      s.once('data', () => (next === 'half' ? s.end(reply) : s.write(reply)));
      s.resume();
    });
    try {
      const s = new ClamdScanner({ url: fake.url, timeoutMs: 2000 });
      const outcome = async (name: string) => {
        next = name;
        const session = s.scan();
        session.write(Buffer.from('x'))?.catch(() => undefined);
        return session.finish();
      };
      expect((await failure(outcome('garbage'))).message).toMatch(/answered before the end of the file|something unexpected/);
      const err = await failure(outcome('error'));
      expect(err.reason).toBe('error');
      expect(err.message).toContain('"UNKNOWN COMMAND"');
      expect((await failure(outcome('half'))).reason).toBe('protocol');
      expect((await failure(outcome('long'))).message).toMatch(/over 4096 bytes without ending its reply/);
    } finally {
      await fake.close();
    }
    // A FOUND reply at the end of a stream: the name as it may be logged.
    const found = await fakeClamd((s) => {
      let tail = Buffer.alloc(0);
      s.on('data', (c: Buffer) => {
        tail = Buffer.concat([tail, c]).subarray(-4);
        if (tail.equals(Buffer.alloc(4))) s.end(replies.get('evil')!);
      });
    });
    try {
      const v = await scanInPieces(new ClamdScanner({ url: found.url, timeoutMs: 2000 }).scan(), Buffer.from('hello'));
      expect(v.clean).toBe(false);
      const signature = (v as { signature: string }).signature;
      expect(signature.startsWith('Bad_Name_[2JAAA')).toBe(true);
      expect(signature.length).toBe(100);
      expect(signature).toMatch(/^[\x21-\x7e]+$/);
    } finally {
      await found.close();
    }
  });

  it('a file over clamd\'s StreamMaxLength: too-large (clamd says so and closes), or from the client at once with maxBytes', async () => {
    const small = await startClamd({ streamMaxLength: '1M' });
    try {
      const s = new ClamdScanner({ url: small.url, timeoutMs: 5000 });
      expect(await scanInPieces(s.scan(), randomBytes(MiB - 4096))).toEqual({ clean: true });
      const e = await failure(scanInPieces(s.scan(), randomBytes(8 * MiB)));
      // clamd answers "INSTREAM size limit exceeded. ERROR" and closes; rarely, the reset that follows loses the answer.
      expect(['too-large', 'closed'], e.message).toContain(e.reason);
      const limited = new ClamdScanner({ url: small.url, timeoutMs: 5000, maxBytes: MiB });
      const t0 = Date.now();
      const l = await failure(scanInPieces(limited.scan(), randomBytes(8 * MiB)));
      expect(l.reason).toBe('too-large');
      expect(l.message).toMatch(/longer than the 1048576 bytes/);
      expect(Date.now() - t0).toBeLessThan(1000);
      expect(await scanInPieces(limited.scan(), randomBytes(MiB))).toEqual({ clean: true });
    } finally {
      await small.stop();
    }
  });

  it('a file over clamd\'s MaxFileSize is not scanned: limit-exceeded (with AlertExceedsMax), never a clean verdict', async () => {
    const small = await startClamd({ maxFileSize: '1M' });
    try {
      const s = new ClamdScanner({ url: small.url, timeoutMs: 5000 });
      const e = await failure(scanInPieces(s.scan(), withEicar(2 * MiB, 100)));
      expect(e.reason).toBe('limit-exceeded');
      expect(e.message).toMatch(/did not scan the whole file: Heuristics\.Limits\.Exceeded\.MaxFileSize/);
    } finally {
      await small.stop();
    }
  });

  it('abort(): the connection closes; a pending finish() rejects, pending writes resolve', async () => {
    const fake = await fakeClamd((s) => s.pause());
    try {
      const s = new ClamdScanner({ url: fake.url, timeoutMs: 60_000 }).scan();
      let wait: Promise<void> | undefined;
      for (const piece of piecesOf(randomBytes(32 * MiB), MiB)) if ((wait = s.write(piece))) break;
      expect(wait).toBeDefined();
      s.abort();
      await wait;
      const s2 = new ClamdScanner({ url: fake.url, timeoutMs: 60_000 }).scan();
      const verdict = s2.finish();
      s2.abort();
      await expect(verdict).rejects.toThrow('the scan was aborted');
    } finally {
      await fake.close();
    }
  });
});
