import net from 'node:net';
import { Transform, type TransformCallback } from 'node:stream';
import { errors } from '../errors/index.js';

// A client of clamd (ClamAV's daemon) speaking its INSTREAM command: the bytes
// of one file go to clamd over one connection, framed as 4-byte big-endian
// lengths, and clamd answers once the zero-length frame that ends the stream has
// arrived: `stream: OK`, `stream: <signature> FOUND`, or `<message> ERROR`.
// Commands carry the `z` prefix, so that every command and reply ends with a NUL.
//
// Whatever happens to clamd (not running, killed mid-stream, closing the
// connection over its StreamMaxLength, answering nothing), a scan ends with a
// verdict or a ScannerUnavailable naming the reason: every socket has its error
// listener from birth, and every wait has a timer.

export type ClamdAddress =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string };

const URL_FORMS = 'expected tcp://host:port, host:port, unix:///path/to/clamd.sock or an absolute socket path';
/** sun_path holds 108 bytes on Linux, the terminating NUL included. */
const UNIX_PATH_MAX = 107;
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/**
 * Where clamd listens: `tcp://host:port`, `host:port` (IPv6 in brackets:
 * `[::1]:3310`), `unix:///path/to/socket` or an absolute socket path. Throws an
 * Error with a one-line message naming what is wrong.
 */
export function parseClamdUrl(raw: string): ClamdAddress {
  const s = raw.trim();
  const shown = JSON.stringify(s.length > 100 ? `${s.slice(0, 100)}…` : s);
  const fail = (why: string): never => {
    throw new Error(`${shown} ${why}; ${URL_FORMS}`);
  };
  if (s === '') fail('is empty');
  const unixPath = (p: string): ClamdAddress => {
    if (!p.startsWith('/')) return fail('is not an absolute socket path');
    if (p.includes('\0')) return fail('contains a NUL');
    if (p.endsWith('/')) return fail('names a directory, not a socket');
    if (Buffer.byteLength(p) > UNIX_PATH_MAX) return fail(`is a socket path longer than ${UNIX_PATH_MAX} bytes (the system's limit)`);
    return { kind: 'unix', path: p };
  };
  if (/^unix:/i.test(s)) {
    if (!/^unix:\/\//i.test(s)) fail('is not a unix: URL (three slashes before an absolute path: unix:///run/clamav/clamd.ctl)');
    return unixPath(s.slice('unix://'.length));
  }
  if (s.startsWith('/')) return unixPath(s);
  let rest = s;
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(s);
  if (scheme) {
    if (scheme[1]!.toLowerCase() !== 'tcp') fail(`has the scheme ${scheme[1]}: (clamd speaks tcp: or unix:)`);
    rest = s.slice(scheme[0].length);
  }
  if (rest.endsWith('/')) rest = rest.slice(0, -1);
  if (rest.includes('/') || rest.includes('?') || rest.includes('#')) fail('has a path, query or fragment');
  if (rest.includes('@')) fail('has a user name');
  const m = /^(\[[^\]]*\]|[^:[\]]*)(?::(\d*))?$/.exec(rest);
  if (!m) return fail('is not host:port');
  const [, rawHost = '', rawPort] = m;
  let host = rawHost;
  if (host.startsWith('[')) {
    host = host.slice(1, -1);
    if (!net.isIPv6(host)) fail('has an invalid IPv6 address');
  } else if (host === '' || !(net.isIPv4(host) || HOST_NAME.test(host))) {
    fail('has no valid host name');
  }
  if (rawPort === undefined || rawPort === '') fail('has no port (clamd usually listens on 3310)');
  const port = Number(rawPort);
  if (!/^\d{1,5}$/.test(rawPort!) || port < 1 || port > 65535) fail('has a port outside 1-65535');
  return { kind: 'tcp', host, port };
}

/** The address as a URL, for logs and messages. */
export function formatClamdAddress(a: ClamdAddress): string {
  return a.kind === 'unix' ? `unix://${a.path}` : `tcp://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}

/**
 * Why a scan gave no verdict:
 * - `unreachable`: no connection (refused, no such socket, no answer to connect in time);
 * - `timeout`: connected, but clamd read nothing or answered nothing in time;
 * - `closed`: clamd closed the connection (or was killed) before its verdict;
 * - `too-large`: the file is longer than clamd accepts (its StreamMaxLength, or the scanner's `maxBytes`);
 * - `limit-exceeded`: clamd did not scan the whole file (MaxFileSize, MaxScanSize,
 *   MaxRecursion...: reported as `Heuristics.Limits.Exceeded.*` with AlertExceedsMax);
 * - `error`: clamd answered an error;
 * - `protocol`: clamd answered something that is not a reply to the command.
 */
export type ScannerUnavailableReason = 'unreachable' | 'timeout' | 'closed' | 'too-large' | 'limit-exceeded' | 'error' | 'protocol';

/** A scan or ping that gave no verdict. The message names clamd's address and may quote clamd (sanitised): for logs, not for clients. */
export class ScannerUnavailable extends Error {
  override name = 'ScannerUnavailable';
  constructor(
    readonly reason: ScannerUnavailableReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export type ScanVerdict = { readonly clean: true } | { readonly clean: false; readonly signature: string };

export interface ScanSession {
  /**
   * Sends a chunk. Returns a promise when the caller should wait before sending
   * more (clamd reads slower than chunks come), undefined otherwise. The promise
   * rejects with ScannerUnavailable when the scan failed (also returned at once
   * when it already had). The chunk is sent as is: do not modify it afterwards.
   */
  write(chunk: Buffer): Promise<void> | undefined;
  /** Ends the stream and waits for clamd's verdict (or rejects with ScannerUnavailable). Call once; later calls return the same promise. */
  finish(): Promise<ScanVerdict>;
  /** Closes the connection without a verdict; pending waits resolve, a pending finish() rejects. Safe to call at any time. */
  abort(): void;
  /** Why the scan has failed, once it has (without waiting for write() or finish()). */
  readonly error: ScannerUnavailable | undefined;
}

export interface ClamdScannerOptions {
  /** A URL as parseClamdUrl accepts, or an address it returned. */
  url: string | ClamdAddress;
  /** How long clamd may take to read what was sent, and to give its verdict once the stream has ended (ms). */
  timeoutMs: number;
  /** How long a connection may take to open (ms); default: timeoutMs, at most 5 s. */
  connectTimeoutMs?: number;
  /**
   * Longest stream sent to clamd (bytes): set it to clamd's StreamMaxLength, so
   * that a longer file fails with `too-large` at once, from here, rather than by
   * clamd closing the connection. Default: no limit of the client's own.
   */
  maxBytes?: number;
}

/** Bytes queued on the socket before write() asks the caller to wait. */
const IN_FLIGHT = 1024 * 1024;
/** Frames longer than this are split (the length field is 32 bits). */
const MAX_FRAME = 64 * 1024 * 1024;
/** A reply longer than this is not clamd's. */
const MAX_REPLY = 4096;
const MAX_SIGNATURE = 100;

/**
 * A signature name as it may be logged and shown: printable ASCII of the
 * characters ClamAV names use, at most MAX_SIGNATURE characters.
 */
export function sanitiseSignature(name: string): string {
  const s = name.replace(/[^A-Za-z0-9._:+\-/@#()[\]{}=~,!]/g, '_');
  if (s === '') return 'unknown';
  return s.length > MAX_SIGNATURE ? `${s.slice(0, MAX_SIGNATURE - 3)}...` : s;
}

/** clamd's own words, as they may go into a log line. */
function quote(text: string): string {
  const s = text.replace(/[^\x20-\x7e]/g, '?');
  return JSON.stringify(s.length > 200 ? `${s.slice(0, 200)}...` : s);
}

/** The verdict in an INSTREAM reply, or why there is none. */
function parseReply(text: string, where: string): ScanVerdict | ScannerUnavailable {
  const reply = text.replace(/[\0\n]+$/, '').trim();
  if (reply === 'stream: OK') return { clean: true };
  const found = /^stream: (.*) FOUND$/s.exec(reply);
  if (found) {
    // ExtendedDetectionInfo adds the file's hash and size: "Name(md5:size)".
    const name = found[1]!.replace(/\([0-9a-f]{32,64}:\d+\)$/, '').trim();
    // With AlertExceedsMax, a file clamd did not scan whole is "found" under this name: it is not a verdict on the file.
    if (/^Heuristics\.Limits\.Exceeded/.test(name)) {
      return new ScannerUnavailable('limit-exceeded', `clamd at ${where} did not scan the whole file: ${sanitiseSignature(name)}`);
    }
    return { clean: false, signature: sanitiseSignature(name) };
  }
  if (/size limit exceeded/i.test(reply)) return new ScannerUnavailable('too-large', `clamd at ${where} refused the file as too large (its StreamMaxLength): ${quote(reply)}`);
  if (/ ERROR$/.test(reply) || reply === 'UNKNOWN COMMAND' || reply === 'COMMAND READ TIMED OUT') return new ScannerUnavailable('error', `clamd at ${where} answered an error: ${quote(reply)}`);
  return new ScannerUnavailable('protocol', `clamd at ${where} answered something unexpected: ${quote(reply)}`);
}

function connectError(e: NodeJS.ErrnoException, where: string): ScannerUnavailable {
  return new ScannerUnavailable('unreachable', `clamd at ${where} is unreachable (${e.code ?? e.message})`, { cause: e });
}

function socketFor(address: ClamdAddress): net.Socket {
  return address.kind === 'unix' ? net.connect({ path: address.path }) : net.connect({ host: address.host, port: address.port });
}

/** A promise that never counts as unhandled; awaiting it still sees the rejection. */
function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

class InstreamSession implements ScanSession {
  private readonly socket: net.Socket;
  private connected = false;
  private sent = 0;
  private reply = '';
  private failure: ScannerUnavailable | undefined;
  /** Verdict given, scan failed, or aborted: nothing more happens. */
  private over = false;
  private drainWaiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  private verdict: Promise<ScanVerdict> | undefined;
  private settleVerdict: { resolve: (v: ScanVerdict) => void; reject: (e: Error) => void } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private queuedAtArm = 0;

  constructor(
    address: ClamdAddress,
    private readonly where: string,
    private readonly timeoutMs: number,
    connectTimeoutMs: number,
    private readonly maxBytes: number | undefined,
  ) {
    const socket = socketFor(address);
    this.socket = socket;
    socket.on('error', (e: NodeJS.ErrnoException) => this.onError(e));
    socket.on('close', () => this.onClose());
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.onDrain());
    socket.once('connect', () => {
      this.connected = true;
      this.clearTimer();
      if (this.drainWaiters.length > 0) this.armTimer(() => this.stalled());
      else if (this.verdict) this.armTimer(() => this.noVerdict());
    });
    this.armTimer(() => this.fail(new ScannerUnavailable('unreachable', `clamd at ${this.where} accepted no connection within ${connectTimeoutMs} ms`)), connectTimeoutMs);
    socket.write('zINSTREAM\0');
  }

  get error(): ScannerUnavailable | undefined {
    return this.failure;
  }

  write(chunk: Buffer): Promise<void> | undefined {
    if (this.failure) return handled(Promise.reject(this.failure));
    if (this.over || this.verdict) throw new Error('ScanSession.write after finish() or abort()');
    if (chunk.length === 0) return undefined; // a zero-length frame would end the stream
    if (this.maxBytes !== undefined && this.sent + chunk.length > this.maxBytes) {
      this.fail(new ScannerUnavailable('too-large', `the file is longer than the ${this.maxBytes} bytes clamd at ${this.where} accepts`));
      return handled(Promise.reject(this.failure!));
    }
    this.sent += chunk.length;
    // One writev per chunk: length and data together.
    this.socket.cork();
    for (let at = 0; at < chunk.length; at += MAX_FRAME) {
      const frame = chunk.length <= MAX_FRAME ? chunk : chunk.subarray(at, at + MAX_FRAME);
      const header = Buffer.allocUnsafe(4);
      header.writeUInt32BE(frame.length);
      this.socket.write(header);
      this.socket.write(frame);
    }
    this.socket.uncork();
    // Above the socket's high-water mark a 'drain' is due once the queue empties.
    if (this.socket.writableLength <= IN_FLIGHT) return undefined;
    if (this.drainWaiters.length === 0 && this.connected) this.armTimer(() => this.stalled());
    return handled(new Promise<void>((resolve, reject) => this.drainWaiters.push({ resolve, reject })));
  }

  finish(): Promise<ScanVerdict> {
    if (this.verdict) return this.verdict;
    if (this.failure) return (this.verdict = handled(Promise.reject(this.failure)));
    if (this.over) return (this.verdict = handled(Promise.reject(new Error('the scan was aborted'))));
    this.verdict = handled(new Promise<ScanVerdict>((resolve, reject) => (this.settleVerdict = { resolve, reject })));
    this.socket.end(Buffer.alloc(4));
    // While writes are still queued, the stall timer runs; the verdict timer follows the last drain.
    if (this.connected && this.drainWaiters.length === 0) this.armTimer(() => this.noVerdict());
    return this.verdict;
  }

  abort(): void {
    if (this.over) return;
    this.over = true;
    this.clearTimer();
    this.socket.destroy();
    for (const w of this.drainWaiters.splice(0)) w.resolve();
    this.settleVerdict?.reject(new Error('the scan was aborted'));
    this.settleVerdict = undefined;
  }

  private armTimer(onTimeout: () => void, ms = this.timeoutMs): void {
    this.clearTimer();
    this.queuedAtArm = this.socket.writableLength;
    this.timer = setTimeout(onTimeout, ms);
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The stall timer: fails only when nothing queued has been sent since it was armed. */
  private stalled(): void {
    const queued = this.socket.writableLength;
    if (queued < this.queuedAtArm) {
      this.queuedAtArm = queued;
      return this.armTimer(() => this.stalled());
    }
    this.fail(new ScannerUnavailable('timeout', `clamd at ${this.where} read nothing for ${this.timeoutMs} ms`));
  }

  private noVerdict(): void {
    this.fail(new ScannerUnavailable('timeout', `clamd at ${this.where} gave no verdict within ${this.timeoutMs} ms of the end of the file`));
  }

  private onDrain(): void {
    if (this.over) return;
    for (const w of this.drainWaiters.splice(0)) w.resolve();
    if (this.verdict) this.armTimer(() => this.noVerdict());
    else this.clearTimer();
  }

  private onData(chunk: Buffer): void {
    if (this.over) return;
    this.reply += chunk.toString('latin1');
    const end = this.reply.indexOf('\0');
    if (end < 0) {
      if (this.reply.length > MAX_REPLY) this.fail(new ScannerUnavailable('protocol', `clamd at ${this.where} sent over ${MAX_REPLY} bytes without ending its reply`));
      return;
    }
    const outcome = parseReply(this.reply.slice(0, end), this.where);
    if (outcome instanceof ScannerUnavailable) return this.fail(outcome);
    if (!this.settleVerdict) {
      // A verdict before the end of the stream is not one.
      return this.fail(new ScannerUnavailable('protocol', `clamd at ${this.where} answered before the end of the file: ${quote(this.reply.slice(0, end))}`));
    }
    this.over = true;
    this.clearTimer();
    this.settleVerdict.resolve(outcome);
    this.settleVerdict = undefined;
    this.socket.destroy();
  }

  private onError(e: NodeJS.ErrnoException): void {
    if (this.over) return;
    if (!this.connected) return this.fail(connectError(e, this.where));
    // clamd closing over its StreamMaxLength says so first, but a write that meets the
    // closed connection (EPIPE) destroys the socket before that reply is read: about
    // 1 time in 15 here. maxBytes avoids the guess.
    const hint = e.code === 'EPIPE' || e.code === 'ECONNRESET' ? '; clamd also closes this way when a file exceeds its StreamMaxLength' : '';
    this.fail(new ScannerUnavailable('closed', `clamd at ${this.where} closed the connection after ${this.sent} bytes, before its verdict (${e.code ?? e.message})${hint}`, { cause: e }));
  }

  private onClose(): void {
    if (this.over) return;
    if (this.reply.length > 0) return this.fail(new ScannerUnavailable('protocol', `clamd at ${this.where} closed the connection in the middle of its reply: ${quote(this.reply)}`));
    this.fail(new ScannerUnavailable('closed', `clamd at ${this.where} closed the connection after ${this.sent} bytes, before its verdict`));
  }

  private fail(e: ScannerUnavailable): void {
    if (this.over) return;
    this.over = true;
    this.failure = e;
    this.clearTimer();
    this.socket.destroy();
    for (const w of this.drainWaiters.splice(0)) w.reject(e);
    this.settleVerdict?.reject(e);
    this.settleVerdict = undefined;
  }
}

/**
 * Scans streams with one clamd. Each scan() is one connection; clamd scans
 * several at once (its MaxThreads), queueing the rest (MaxQueue).
 */
export class ClamdScanner {
  readonly address: ClamdAddress;
  private readonly where: string;
  private readonly timeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly maxBytes: number | undefined;

  constructor(options: ClamdScannerOptions) {
    this.address = typeof options.url === 'string' ? parseClamdUrl(options.url) : options.url;
    this.where = formatClamdAddress(this.address);
    if (!(options.timeoutMs > 0)) throw new Error('ClamdScanner: timeoutMs must be positive');
    this.timeoutMs = options.timeoutMs;
    this.connectTimeoutMs = options.connectTimeoutMs ?? Math.min(options.timeoutMs, 5000);
    this.maxBytes = options.maxBytes;
  }

  /** Opens one INSTREAM scan. */
  scan(): ScanSession {
    return new InstreamSession(this.address, this.where, this.timeoutMs, this.connectTimeoutMs, this.maxBytes);
  }

  /** Resolves when clamd answers PING with PONG; rejects with ScannerUnavailable otherwise (readiness). */
  async ping(): Promise<void> {
    const reply = await this.command('zPING\0');
    if (reply !== 'PONG') throw new ScannerUnavailable('protocol', `clamd at ${this.where} answered PING with ${quote(reply)}`);
  }

  /** clamd's version line, e.g. `ClamAV 1.4.6/27000/…` (engine/signature version/date): for start-up logs. */
  version(): Promise<string> {
    return this.command('zVERSION\0').then((v) => v.replace(/[^\x20-\x7e]/g, '?').slice(0, 200));
  }

  /** One short command: its reply, NUL removed. */
  private command(command: string): Promise<string> {
    const name = command.slice(1, -1);
    return new Promise((resolve, reject) => {
      const socket = socketFor(this.address);
      let connected = false;
      let reply = '';
      let done = false;
      const finish = (e: ScannerUnavailable | null, text = '') => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        socket.destroy();
        if (e) reject(e);
        else resolve(text);
      };
      let timer = setTimeout(() => finish(new ScannerUnavailable('unreachable', `clamd at ${this.where} accepted no connection within ${this.connectTimeoutMs} ms`)), this.connectTimeoutMs);
      socket.on('error', (e: NodeJS.ErrnoException) =>
        finish(connected ? new ScannerUnavailable('closed', `clamd at ${this.where} closed the connection (${e.code ?? e.message})`, { cause: e }) : connectError(e, this.where)),
      );
      socket.on('connect', () => {
        connected = true;
        clearTimeout(timer);
        timer = setTimeout(() => finish(new ScannerUnavailable('timeout', `clamd at ${this.where} did not answer ${name} within ${this.timeoutMs} ms`)), this.timeoutMs);
      });
      socket.on('data', (chunk: Buffer) => {
        reply += chunk.toString('latin1');
        const end = reply.indexOf('\0');
        if (end >= 0) finish(null, reply.slice(0, end).trim());
        else if (reply.length > MAX_REPLY) finish(new ScannerUnavailable('protocol', `clamd at ${this.where} sent over ${MAX_REPLY} bytes without ending its reply`));
      });
      socket.on('close', () => finish(new ScannerUnavailable('closed', `clamd at ${this.where} closed the connection before answering ${name}`)));
      socket.end(command);
    });
  }
}

export interface ScanStreamOptions {
  /**
   * What a scanner failure (ScannerUnavailable) does to the stream. false
   * (default, fail closed): the stream fails at once with SCANNER_UNAVAILABLE.
   * true (fail open): the rest passes through unscanned, the stream ends, and
   * `verdict` rejects with the ScannerUnavailable.
   */
  failOpen?: boolean;
}

/**
 * A pass-through that scans what flows through it, so that an upload is stored
 * and scanned at once. It ends only once clamd's verdict is known: on a clean
 * verdict it ends; on a FOUND it fails with MALWARE_DETECTED instead of ending,
 * so a store reading from it never sees the end of an infected file. It goes
 * at the pace of the slower of clamd and the reader.
 *
 * `verdict` settles when the stream ends or fails: the verdict, or the
 * ScannerUnavailable (fail open), or the error the stream failed with.
 */
export class ScanStream extends Transform {
  readonly verdict: Promise<ScanVerdict>;
  private session: ScanSession | undefined;
  private settle!: { resolve: (v: ScanVerdict) => void; reject: (e: unknown) => void };
  private settled = false;
  /** Fail open: the scanner failed and the rest passes unscanned. */
  private unscanned: ScannerUnavailable | undefined;

  constructor(
    private readonly scanner: ClamdScanner,
    private readonly options: ScanStreamOptions = {},
  ) {
    super();
    this.verdict = handled(new Promise((resolve, reject) => (this.settle = { resolve, reject })));
  }

  override _transform(chunk: Buffer | string, encoding: BufferEncoding, done: TransformCallback): void {
    const data = typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk;
    if (!this.unscanned) {
      // Opened with the first byte: a stream that never flows holds no connection.
      this.session ??= this.scanner.scan();
      // A failure noticed since the last wait (clamd gone while there was nothing to send).
      const failed = this.session.error;
      if (failed && !this.options.failOpen) return done(errors.scannerUnavailable(failed.reason, failed));
      if (failed) this.unscanned = failed;
    }
    this.push(data);
    if (this.unscanned) return done();
    const wait = this.session!.write(data);
    if (wait) wait.then(() => done(), (e: unknown) => this.scannerFailed(e, done));
    else done();
  }

  override _flush(done: TransformCallback): void {
    if (this.unscanned) {
      this.conclude(this.unscanned);
      return done();
    }
    this.session ??= this.scanner.scan();
    this.session.finish().then(
      (v) => {
        this.conclude(null, v);
        done(v.clean ? null : errors.malwareDetected(v.signature));
      },
      (e: unknown) => {
        if (this.options.failOpen && e instanceof ScannerUnavailable) {
          this.conclude(e);
          return done();
        }
        this.conclude(e);
        done(e instanceof ScannerUnavailable ? errors.scannerUnavailable(e.reason, e) : e as Error);
      },
    );
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.session?.abort();
    this.conclude(err ?? new Error('the stream was destroyed before its scan ended'));
    cb(err);
  }

  private scannerFailed(e: unknown, done: TransformCallback): void {
    if (!(e instanceof ScannerUnavailable)) return done(e as Error);
    if (this.options.failOpen) {
      this.unscanned = e;
      this.session?.abort();
      return done();
    }
    done(errors.scannerUnavailable(e.reason, e));
  }

  private conclude(e: unknown, v?: ScanVerdict): void {
    if (this.settled) return;
    this.settled = true;
    if (e) this.settle.reject(e);
    else this.settle.resolve(v!);
  }
}
