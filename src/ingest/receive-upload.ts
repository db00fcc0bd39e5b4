import type { Readable } from 'node:stream';
import type { IncomingFile } from '../graphql/multipart.js';
import { AppError, errors, isAppError } from '../errors/index.js';
import { normaliseMime } from '../modules/policy/media-types.js';
import { InspectStream, type InspectResult } from './inspect-stream.js';
import type { ScanStep } from './scan-step.js';
import { sanitiseFileName } from './file-name.js';

export interface ReceivedUpload<T> extends InspectResult {
  /** The client's file name, sanitised, its extension agreeing with the detected type. */
  fileName: string;
  /** What `write` returned. */
  written: T;
}

export interface ReceiveOptions<T> {
  /** The size limit reported when the multipart parser cut the file off. */
  limit: number;
  /** Called with the type detected from the content; returns the size limit or throws (unsupported). */
  accept(mime: string): number;
  /** Writes the checked bytes (storage.put, or an encrypting writer); the object must exist only if it resolves. */
  write(body: Readable, declaredType: string): Promise<T>;
  /** Removes whatever `write` may have left when the upload is refused; should not throw. */
  remove(): Promise<void>;
  /** Malware scanning of this file (Ingest.receive sets it when CLAMD_URL is). */
  scan?: ScanStep | undefined;
}

/**
 * Streams one multipart file through the upload pipeline's checks into `write`:
 * the type is detected from the bytes (never the name or declared type; a declared
 * type that differs is refused), the size is counted against the limit while
 * streaming, the SHA-256 computed on the way. On any failure `remove` runs, the
 * rest of the file is drained, and the error is the client's (PAYLOAD_TOO_LARGE,
 * UNSUPPORTED_MEDIA_TYPE, BAD_USER_INPUT) or STORAGE_UNAVAILABLE.
 */
export async function receiveUpload<T>(incoming: IncomingFile, options: ReceiveOptions<T>): Promise<ReceivedUpload<T>> {
  // Missing, skipped or broken parts reject with BAD_USER_INPUT naming the file.
  const file = await incoming.open();
  const fileName = sanitiseFileName(file.filename);
  const declared = normaliseMime(file.mimetype);
  const source = file.createReadStream();
  const inspector = new InspectStream({
    fileName,
    scan: options.scan,
    accept: (mime) => {
      const limit = options.accept(mime);
      if (declared && declared !== 'application/octet-stream' && declared !== mime) {
        throw errors.unsupportedType(`Declared type ${declared} does not match the content, which is ${mime}`);
      }
      return limit;
    },
  });
  // The inspector can fail before the writer listens (a writer may await its own
  // setup first); the error still reaches us through write() and inspectorError().
  inspector.on('error', () => undefined);
  let cut = false;
  // busboy ends a stream that passed its byte cut-off as if it were complete, after a 'limit' event.
  source.on('limit', () => {
    cut = true;
    inspector.destroy(errors.tooLarge(options.limit));
  });
  // The source is the client's request body: its errors (cut off, malformed, gone) are the client's.
  source.on('error', (e) => inspector.destroy(isAppError(e) ? e : errors.badInput('file', `The file part is cut off or malformed (${(e as Error)?.message ?? 'unreadable'})`)));
  source.pipe(inspector);
  try {
    const written = await options.write(inspector, declared ?? 'application/octet-stream');
    if (cut || (source as Readable & { truncated?: boolean }).truncated) throw errors.tooLarge(options.limit);
    const facts = inspector.result();
    return { fileName: sanitiseFileName(fileName, facts.mime), written, ...facts };
  } catch (e) {
    source.unpipe(inspector);
    source.on('error', () => undefined);
    source.resume();
    await options.remove().catch(() => undefined);
    throw isAppError(e) ? e : (inspectorError(inspector) ?? errors.storageUnavailable(e));
  }
}

function inspectorError(s: InspectStream): AppError | undefined {
  const e = (s as unknown as { errored?: unknown }).errored;
  return isAppError(e) ? e : undefined;
}
