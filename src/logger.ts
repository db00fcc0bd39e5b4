import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/** JSON-lines logger. Never log file content, tokens or key material. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: 'media-api' },
    redact: { paths: ['req.headers.authorization', 'headers.authorization', '*.token', '*.secret'], censor: '[redacted]' },
  };
  return destination ? pino(options, destination) : pino(options);
}
