/** Every code a client can see in extensions.code (SPEC section 12). */
export const ErrorCode = {
  BAD_USER_INPUT: 'BAD_USER_INPUT',
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  FORBIDDEN: 'FORBIDDEN',
  NOT_FOUND: 'NOT_FOUND',
  CONFLICT: 'CONFLICT',
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  UNSUPPORTED_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  INTEGRITY_ERROR: 'INTEGRITY_ERROR',
  STORAGE_UNAVAILABLE: 'STORAGE_UNAVAILABLE',
  /** The malware scanner recognised the file (extensions.signature names what it found); nothing is kept. */
  MALWARE_DETECTED: 'MALWARE_DETECTED',
  /** The file could not be scanned for malware (scanner down, too slow, or the file beyond its limits; extensions.reason). */
  SCANNER_UNAVAILABLE: 'SCANNER_UNAVAILABLE',
  /** The caller's tenant is at one of its own limits (expensive queries at once): retry later, or send fewer at a time. */
  TOO_MANY_REQUESTS: 'TOO_MANY_REQUESTS',
  /** A capacity shared by every tenant is full (image processing): retry later. */
  SERVICE_BUSY: 'SERVICE_BUSY',
  INTERNAL_SERVER_ERROR: 'INTERNAL_SERVER_ERROR',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** HTTP status used by the REST-style endpoints (and the GraphQL response where Apollo lets us). */
export const httpStatusOf: Record<ErrorCode, number> = {
  BAD_USER_INPUT: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  INTEGRITY_ERROR: 502,
  STORAGE_UNAVAILABLE: 503,
  MALWARE_DETECTED: 422,
  SCANNER_UNAVAILABLE: 503,
  TOO_MANY_REQUESTS: 429,
  SERVICE_BUSY: 503,
  INTERNAL_SERVER_ERROR: 500,
};
