import busboy from 'busboy';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Readable } from 'node:stream';
import { AppError, errors, isAppError } from '../errors/index.js';

// The GraphQL multipart request spec (https://github.com/jaydenseric/graphql-multipart-request-spec)
// on busboy. It replaces graphql-upload-minimal's request processing, which listened
// for the parser's first error only (busboy emits a second one when destroyed, which
// ended the process) and left a request hanging when a file part nobody read sat
// in front of the one a resolver waited for.
//
// The rules that keep a request from hanging:
// - every parser, request and file stream has an error listener from the moment it exists;
// - files are read in the order the operation asks for them: when a resolver waits
//   for a file that has not arrived, every file that arrived before it and that
//   nobody took is drained (a later open() of it says why), because the parser
//   cannot reach the wanted part without reading past them;
// - a map can only fill the operation's null placeholders, each once, so every
//   mapped file is reachable from the operation;
// - once the response is sent, every file nobody took is drained.

/** What a resolver gets from `IncomingFile.open()`. */
export interface FileUpload {
  filename: string;
  mimetype: string;
  encoding: string;
  /** The file's bytes, once: they are read straight from the request. */
  createReadStream(): Readable;
}

export interface MultipartOptions {
  /** Files a request may carry. */
  maxFiles: number;
  /** Bytes after which busboy cuts a file (it then emits 'limit'); the service enforces its own limits below it. */
  maxFileSize: number;
  /** Bytes of the `operations` and `map` fields. */
  maxFieldSize: number;
}

const SPEC = 'see the GraphQL multipart request spec';
/** Object paths in `map`: bounded so that placing them stays cheap. */
const MAX_PATHS = 1000;
const MAX_PATH_DEPTH = 32;

type State = 'pending' | 'held' | 'taken' | 'dropped';

/**
 * One file of a multipart request, as the `Upload` scalar hands it to resolvers.
 * `open()` waits for its part; `discard()` says it will not be read.
 */
export class IncomingFile {
  private state: State = 'pending';
  private opened = false;
  private unwanted = false;
  private stream: Readable | undefined;
  private info: { filename: string; mimetype: string; encoding: string } | undefined;
  private failure: AppError | undefined;
  /** Place of its part among the request's file parts (0, 1, …), once it began. */
  order = -1;
  private waiter: { resolve: (f: FileUpload) => void; reject: (e: AppError) => void } | undefined;

  constructor(
    /** The file's field name in the multipart body (its key in `map`). */
    readonly name: string,
    private readonly request: MultipartRequest,
  ) {}

  /** Waits for the file's part. Rejects (BAD_USER_INPUT) when it is missing, was skipped or is opened twice. */
  open(): Promise<FileUpload> {
    if (this.opened) return Promise.reject(errors.badInput('map', `File "${this.name}" is used more than once in the operation`));
    this.opened = true;
    this.request.opening(this);
    if (this.state === 'held') return Promise.resolve(this.take());
    if (this.state === 'dropped' || this.failure) return Promise.reject(this.failure ?? errors.badInput('map', `File "${this.name}" was not read`));
    return new Promise<FileUpload>((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** The file will not be read: drain it now or when it arrives. Never throws. */
  discard(): void {
    if (this.state === 'held') this.drop(errors.badInput('map', `File "${this.name}" was discarded`));
    else if (this.state === 'pending' && !this.waiter) this.unwanted = true;
  }

  get waiting(): boolean {
    return this.waiter !== undefined;
  }

  get held(): boolean {
    return this.state === 'held';
  }

  /** Whether its part began (a second part with the same name is read past). */
  get arrived(): boolean {
    return this.stream !== undefined;
  }

  /** Its part began; the stream has an error listener already. */
  arrive(stream: Readable, info: { filename: string; mimetype: string; encoding: string }): void {
    this.stream = stream;
    this.info = info;
    if (this.unwanted || this.failure) return this.drop(this.failure ?? errors.badInput('map', `File "${this.name}" was discarded`));
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve(this.take());
      return;
    }
    this.state = 'held';
  }

  /** Its part will never be taken: read it to its end and throw the bytes away; later open() calls fail with `why`. */
  drop(why: AppError): void {
    this.failure ??= why;
    if (this.state !== 'taken') {
      this.state = 'dropped';
      this.stream?.resume();
    }
    this.fail(why);
  }

  /** The part will not come (the body ended without it). */
  fail(why: AppError): void {
    this.failure ??= why;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(this.failure);
  }

  private take(): FileUpload {
    this.state = 'taken';
    const stream = this.stream!;
    const info = this.info!;
    let given = false;
    return {
      ...info,
      createReadStream: () => {
        if (given) throw errors.badInput('map', `File "${this.name}" can be read once`);
        given = true;
        return stream;
      },
    };
  }
}

/** The files of one request and the rule that keeps the parser moving. */
class MultipartRequest {
  readonly files = new Map<string, IncomingFile>();

  private arrivals = 0;

  /**
   * A resolver asks for `file`: every file that came before it on the wire and that
   * nobody took will never be read (the parser has to get past them, and the
   * operation reads in order). Deterministic: it does not depend on how fast the
   * body arrives.
   */
  opening(file: IncomingFile): void {
    for (const f of this.files.values()) {
      if (f !== file && f.held && (file.order === -1 || f.order < file.order)) f.drop(outOfOrder(f.name, file.name));
    }
  }

  /** A part for `file` began. */
  arrive(file: IncomingFile, stream: Readable, info: { filename: string; mimetype: string; encoding: string }): void {
    file.order = this.arrivals++;
    const waiting = [...this.files.values()].find((f) => f !== file && f.waiting);
    file.arrive(stream, info);
    // Nobody took it and another file is awaited: the parser must read past this one.
    if (waiting && file.held) file.drop(outOfOrder(file.name, waiting.name));
  }

  /** The body ended: files that never began are missing (the ones that arrived stay usable). */
  failPending(why: AppError): void {
    for (const f of this.files.values()) if (!f.arrived) f.fail(why);
  }

  /** The body broke or the answer is out: nothing not taken yet will be read. */
  dropAll(why: AppError): void {
    for (const f of this.files.values()) f.drop(why);
  }
}

const outOfOrder = (skipped: string, wanted: string) =>
  errors.badInput('map', `File "${skipped}" was skipped: it came before file "${wanted}", which the operation read first; send the files in the order the operation uses them`);

/**
 * Puts `value` where `path` ("variables.input.file") points in `root`. The spec has
 * the client put null there; anything else (a missing parent, a prototype key, a
 * non-null value) is refused, so a map can only fill the placeholders.
 */
function placeAt(root: unknown, path: string, value: unknown): boolean {
  const parts = path.split('.');
  if (parts.length > MAX_PATH_DEPTH) return false;
  let node: unknown = root;
  for (const [i, part] of parts.entries()) {
    if (part === '' || part === '__proto__' || part === 'constructor' || part === 'prototype') return false;
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, part)) return false;
    if (i === parts.length - 1) {
      if ((node as Record<string, unknown>)[part] !== null) return false;
      (node as Record<string, unknown>)[part] = value;
      return true;
    }
    node = (node as Record<string, unknown>)[part];
  }
  return false;
}

/**
 * Express middleware for multipart/form-data requests to /graphql: parses
 * `operations` and `map`, puts an IncomingFile wherever the map says, and hands the
 * operations to the next handler (Apollo) as soon as the map is read; the files
 * stream in while the operation runs. Anything wrong before that point goes to the
 * app's error handler: 400 (413 for an oversized field) with a GraphQL-shaped error.
 */
export function graphqlMultipart(options: MultipartOptions): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    const type = req.headers['content-type'] ?? '';
    if (!/^multipart\/form-data/i.test(type)) return next();

    const files = new MultipartRequest();
    let handedOn = false;
    let failed: AppError | undefined;
    let parser: busboy.Busboy;
    req.on('error', () => undefined);

    try {
      parser = busboy({
        headers: req.headers,
        defParamCharset: 'utf8',
        limits: { fieldSize: options.maxFieldSize, fields: 2, files: options.maxFiles, fileSize: options.maxFileSize, parts: options.maxFiles + 2 },
      });
    } catch (e) {
      req.resume();
      return next(errors.badInput('body', `Malformed multipart request: ${(e as Error).message}`));
    }

    /** Ends the parse with an error: before the hand-over it is the answer; after it, the files' error. */
    const fail = (e: AppError) => {
      if (failed) return;
      failed = e;
      req.unpipe(parser);
      // The file being read (if any) fails with this error; busboy's own 'error' that follows is ignored.
      parser.destroy(e);
      files.dropAll(e);
      // Read what is left of the body so the answer can be sent on a keep-alive connection.
      req.resume();
      // Before the hand-over the error is the answer, GraphQL-shaped by the app's error handler.
      if (!handedOn) next(e);
    };

    // busboy emits 'error' more than once (once more when destroyed): listen for all of them.
    parser.on('error', (e: unknown) => fail(isAppError(e) ? e : errors.badInput('body', `Malformed multipart request: ${(e as Error)?.message ?? 'unreadable body'}`)));

    let operations: unknown;
    parser.on('field', (name: string, value: string, info: { valueTruncated: boolean }) => {
      if (failed || handedOn) return;
      if (info.valueTruncated) {
        return fail(new AppError('PAYLOAD_TOO_LARGE', `The '${name}' field exceeds ${options.maxFieldSize} bytes`, { field: name }));
      }
      if (name === 'operations') {
        try {
          operations = JSON.parse(value);
        } catch {
          return fail(errors.badInput('operations', `Invalid JSON in the 'operations' field (${SPEC})`));
        }
        if (operations === null || typeof operations !== 'object') return fail(errors.badInput('operations', `The 'operations' field must be a JSON object (${SPEC})`));
        return;
      }
      if (name !== 'map') return;
      if (operations === undefined) return fail(errors.badInput('map', `Misordered fields: 'map' must follow 'operations' (${SPEC})`));
      let map: unknown;
      try {
        map = JSON.parse(value);
      } catch {
        return fail(errors.badInput('map', `Invalid JSON in the 'map' field (${SPEC})`));
      }
      if (map === null || typeof map !== 'object' || Array.isArray(map)) return fail(errors.badInput('map', `The 'map' field must be a JSON object (${SPEC})`));
      const entries = Object.entries(map);
      if (entries.length > options.maxFiles) return fail(errors.badInput('map', `At most ${options.maxFiles} files in one request`));
      let paths = 0;
      for (const [fileName, at] of entries) {
        if (!Array.isArray(at) || at.length === 0) return fail(errors.badInput('map', `Map entry "${fileName.slice(0, 100)}" must be a non-empty array of object paths`));
        const file = new IncomingFile(fileName, files);
        files.files.set(fileName, file);
        for (const p of at) {
          if (++paths > MAX_PATHS) return fail(errors.badInput('map', `At most ${MAX_PATHS} object paths in the map`));
          if (typeof p !== 'string' || !placeAt(operations, p, file)) {
            return fail(errors.badInput('map', `Map entry "${fileName.slice(0, 100)}": "${String(p).slice(0, 200)}" is not a null placeholder in the operations`));
          }
        }
      }
      handedOn = true;
      req.body = operations;
      // Once the answer is out, nothing will read the files any more.
      res.once('close', () => files.dropAll(errors.badInput('map', 'The response was already sent')));
      queueMicrotask(next);
    });

    parser.on('file', (name: string, stream: Readable, info: { filename: string; encoding: string; mimeType: string }) => {
      stream.on('error', () => undefined);
      const file = handedOn && !failed ? files.files.get(name) : undefined;
      if (!handedOn && !failed) {
        stream.resume();
        return fail(errors.badInput('map', `Misordered fields: files must follow 'operations' and 'map' (${SPEC})`));
      }
      // Not in the map, a second part with the same name, or the request already failed: read past it.
      if (!file || file.arrived) {
        stream.resume();
        return;
      }
      files.arrive(file, stream, { filename: info.filename ?? '', mimetype: info.mimeType, encoding: info.encoding });
    });

    parser.on('finish', () => {
      if (!handedOn) {
        if (operations === undefined) return fail(errors.badInput('operations', `Missing 'operations' field (${SPEC})`));
        return fail(errors.badInput('map', `Missing 'map' field (${SPEC})`));
      }
      files.failPending(errors.badInput('map', 'The file is missing from the request'));
    });

    req.on('close', () => {
      if (!req.complete) fail(errors.badInput('body', 'The request was cut off before its end'));
    });
    req.pipe(parser);
  };
}
