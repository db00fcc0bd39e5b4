import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/** JSON-lines logger. Never log file content, tokens or key material. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: 'media-api' },
    // A second guard: no line is meant to hold a header, a token or a key (src/http/access-log.ts logs route templates only).
    redact: {
      paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization', 'headers.cookie', 'authorization', 'cookie', '*.token', '*.secret'],
      censor: '[redacted]',
    },
  };
  return destination ? pino(options, destination) : pino(options);
}
