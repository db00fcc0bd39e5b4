import { parseArgs, type ParseArgsConfig } from 'node:util';
import { TENANT_RE } from '../auth/principal.js';
import { ConfigError } from '../config.js';
import { EmbeddedDatabaseError } from '../db/embedded.js';
import { AppError } from '../errors/app-error.js';
import { ErrorCode } from '../errors/codes.js';

/** A bad argument of a command: printed as one line with the usage, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** What `--help` prints for a command. */
export interface CommandHelp {
  /** One line: `npm run sweep [-- --grace-seconds N] [--tenant T]`. */
  usage: string;
  /** What the command does, in a sentence or two. */
  summary: string;
  /** Option (as typed) → what it does. */
  options?: Record<string, string>;
  /** Environment variable → what it does. */
  env?: Record<string, string>;
}

/** The variables every command that opens the database and the storage reads (src/config.ts). */
export const STORE_ENV: Record<string, string> = {
  DATA_DIR: 'the service\'s data directory (default .data): embedded PostgreSQL, local blobs, generated secrets',
  DATABASE_URL: 'a PostgreSQL of your own instead of the embedded one (then MEDIA_KEYS and JWT_SECRET are required)',
  EMBEDDED_PG_PORT: 'port of the embedded PostgreSQL on 127.0.0.1 (default 54329)',
  S3_BUCKET: 'store objects in this S3 bucket instead of DATA_DIR/blobs (with S3_ENDPOINT, S3_REGION, S3_FORCE_PATH_STYLE)',
  'AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY': 'S3 credentials (or AWS_PROFILE, or the AWS SDK\'s default chain)',
  MEDIA_KEYS: 'the key ring, kid:base64key,… (the first one is the active key)',
  DEV_ALLOW_GENERATED_SECRETS: 'true: a single development instance may use secrets generated under DATA_DIR with DATABASE_URL or S3_BUCKET',
  LOG_LEVEL: 'fatal, error, warn, info (default), debug, trace, silent',
};

/** Progress output of the long-running commands. */
export const PROGRESS_ENV: Record<string, string> = {
  PROGRESS_INTERVAL_MS: 'how often progress is logged when stderr is not a terminal (default 10000); a terminal gets one line redrawn in place',
};

export function formatHelp(h: CommandHelp): string {
  const table = (rows: Record<string, string>) => {
    const width = Math.min(Math.max(...Object.keys(rows).map((k) => k.length)), 40);
    return Object.entries(rows).map(([k, v]) => (k.length > width ? `  ${k}\n  ${' '.repeat(width)}  ${v}` : `  ${k.padEnd(width)}  ${v}`));
  };
  const out = [`Usage: ${h.usage}`, '', h.summary];
  out.push('', 'Options:', ...table({ ...h.options, '-h, --help': 'print this help and exit' }));
  if (h.env && Object.keys(h.env).length > 0) out.push('', 'Environment:', ...table(h.env));
  return `${out.join('\n')}\n`;
}

/** Ends the command for a bad argument: one line on stderr with the usage, exit code 2. */
export function usageExit(message: string, usage: string): never {
  console.error(`${message.replace(/\s*\n\s*/g, ' ')} (usage: ${usage}; --help for more)`);
  process.exit(2);
}

/**
 * parseArgs for a command: `--help` (or -h) prints the help and exits 0 before
 * anything else happens (no configuration is read, nothing starts); a bad or
 * unknown option, or a stray positional argument, ends the command with one line
 * (and the usage) instead of a stack trace.
 */
export function parseCliArgs<const O extends NonNullable<ParseArgsConfig['options']>>(options: O, help: CommandHelp, args: string[] = process.argv.slice(2)) {
  const end = args.indexOf('--');
  const own = end === -1 ? args : args.slice(0, end);
  if (own.includes('--help') || own.includes('-h')) {
    process.stdout.write(formatHelp(help));
    process.exit(0);
  }
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    return usageExit(e instanceof Error ? e.message : String(e), help.usage);
  }
}

/** A --tenant value: a tenant id as tokens and keys carry it (src/auth/principal.ts), or the command ends with one line. */
export function tenantArg(value: string | undefined, usage: string): string | undefined {
  if (value === undefined) return undefined;
  if (!TENANT_RE.test(value)) {
    usageExit(`--tenant ${JSON.stringify(value)} is not a tenant id: 3 to 16 lower-case letters and digits, starting with a letter (${TENANT_RE})`, usage);
  }
  return value;
}

/**
 * Ends a command (or the service's start) that failed: the faults an operator fixes
 * (configuration, arguments, a database in use, a store that does not answer) as
 * one line, anything else with its stack.
 */
export function exitOnError(e: unknown): never {
  if (e instanceof ConfigError || e instanceof UsageError) {
    console.error(e.message);
    process.exit(2);
  }
  if (e instanceof EmbeddedDatabaseError) {
    console.error(e.message);
    process.exit(1);
  }
  if (e instanceof AppError && e.code === ErrorCode.STORAGE_UNAVAILABLE) {
    const cause = (e as { cause?: unknown }).cause;
    console.error(`storage is unavailable: ${cause instanceof Error ? `${cause.name}: ${cause.message}` : e.message}`.replace(/\s*\n\s*/g, ' '));
    process.exit(1);
  }
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exit(1);
}
