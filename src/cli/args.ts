import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError } from '../config.js';
import { EmbeddedDatabaseError } from '../db/embedded.js';

/** A bad argument of a command: printed as one line with the usage, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** parseArgs, with a bad or unknown option ending the command with one line (and the usage) instead of a stack trace. */
export function parseCliArgs<const O extends NonNullable<ParseArgsConfig['options']>>(options: O, usage: string) {
  try {
    return parseArgs({ options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    console.error(`${(e instanceof Error ? e.message : String(e)).replace(/\s*\n\s*/g, ' ')} (usage: ${usage})`);
    process.exit(2);
  }
}

/**
 * Ends a command that failed: the faults an operator fixes (configuration, arguments,
 * a database in use) as their message alone, anything else with its stack.
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
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exit(1);
}
