import { AppError } from './app-error.js';
import { ErrorCode } from './codes.js';

// Factories for the errors clients see. Messages name the thing at fault and
// never carry the code itself (extensions.code does).
export const errors = {
  badInput: (field: string, message: string) => new AppError(ErrorCode.BAD_USER_INPUT, message, { field }),
  unauthenticated: (message = 'Authentication required: send Authorization: Bearer <token>') =>
    new AppError(ErrorCode.UNAUTHENTICATED, message),
  forbidden: (scope: string) =>
    new AppError(ErrorCode.FORBIDDEN, `Missing scope "${scope}"`, { extensions: { scope } }),
  /** None of several scopes that would each allow the operation. */
  forbiddenAny: (scopes: readonly string[]) =>
    new AppError(ErrorCode.FORBIDDEN, `Missing scope ${scopes.map((s) => `"${s}"`).join(' or ')}`, { extensions: { scope: scopes[0], scopes } }),
  forbiddenMessage: (message: string) => new AppError(ErrorCode.FORBIDDEN, message),
  notFound: (what: string, id: string) => new AppError(ErrorCode.NOT_FOUND, `${what} ${id} not found`),
  /** A stored object is missing; its storage key goes to the log (cause), never to clients. */
  objectNotFound: (key: string) => new AppError(ErrorCode.NOT_FOUND, 'Stored content not found', { cause: new Error(`object ${key} not found`) }),
  mediaNotFound: (id: string) => new AppError(ErrorCode.NOT_FOUND, `Media ${id} not found`),
  conflict: (message: string) => new AppError(ErrorCode.CONFLICT, message),
  tooLarge: (limit: number) =>
    new AppError(ErrorCode.PAYLOAD_TOO_LARGE, `File exceeds the limit of ${limit} bytes`, { field: 'file', extensions: { limit } }),
  unsupportedType: (message: string) => new AppError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, message, { field: 'file' }),
  integrity: (message: string) => new AppError(ErrorCode.INTEGRITY_ERROR, message),
  storageUnavailable: (cause: unknown) =>
    new AppError(ErrorCode.STORAGE_UNAVAILABLE, 'Storage is unavailable, try again later', { cause }),
  /** The malware scanner recognised the file; `signature` is sanitised (see src/scan/clamd.ts). */
  malwareDetected: (signature: string) =>
    new AppError(ErrorCode.MALWARE_DETECTED, `The file was refused: the malware scanner recognised it (${signature})`, { field: 'file', extensions: { signature } }),
  /**
   * The file could not be scanned for malware. `reason` is a ScannerUnavailable
   * reason (src/scan/clamd.ts); the scanner's own message (its address) goes to
   * the log through `cause`, never to clients.
   */
  scannerUnavailable: (reason: string, cause?: unknown) =>
    new AppError(
      ErrorCode.SCANNER_UNAVAILABLE,
      reason === 'too-large' || reason === 'limit-exceeded'
        ? 'The file could not be scanned for malware: it is beyond the size the scanner accepts'
        : 'The malware scanner is unavailable, try again later',
      { extensions: { reason }, cause: cause ?? new Error(`malware scanner unavailable: ${reason}`) },
    ),
  /** The tenant is at one of its own limits; `retryAfterSeconds` says when to try again. */
  tooManyRequests: (message: string, extensions: { reason: string; limit: number; retryAfterSeconds: number }) =>
    new AppError(ErrorCode.TOO_MANY_REQUESTS, message, { extensions }),
  /** A shared capacity is full; `retryAfterSeconds` says when to try again. */
  busy: (message: string, extensions: { reason: string; limit: number; retryAfterSeconds: number }) =>
    new AppError(ErrorCode.SERVICE_BUSY, message, { extensions }),
  internal: (cause: unknown) => new AppError(ErrorCode.INTERNAL_SERVER_ERROR, 'Internal server error', { cause }),
};
