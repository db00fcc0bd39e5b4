import { AppError } from './app-error.js';
import { errors } from './errors.js';

// Prisma and pg errors enter through the services; this maps the ones that mean
// something to a client. Anything else is rethrown and masked by formatError.
interface CodedError {
  code?: unknown;
  meta?: { driverAdapterError?: { cause?: { originalCode?: string; kind?: string } } };
}

export function dbErrorCode(e: unknown): string | undefined {
  const err = e as CodedError | undefined;
  if (!err || typeof err !== 'object') return undefined;
  if (typeof err.code === 'string') return err.code;
  return undefined;
}

/** The PostgreSQL SQLSTATE behind a database error (raw queries through the pg adapter), if any. */
export function dbSqlState(e: unknown): string | undefined {
  const cause = (e as CodedError | undefined)?.meta?.driverAdapterError?.cause;
  if (cause?.originalCode) return cause.originalCode;
  const code = dbErrorCode(e);
  return code && /^[0-9A-Z]{5}$/.test(code) && !code.startsWith('P') ? code : undefined;
}

/** Unique violation: Prisma P2002 or PostgreSQL 23505 (raw queries). */
export function isUniqueViolation(e: unknown): boolean {
  const code = dbErrorCode(e);
  if (code === 'P2002' || code === '23505') return true;
  const cause = (e as CodedError)?.meta?.driverAdapterError?.cause;
  return cause?.originalCode === '23505' || cause?.kind === 'UniqueConstraintViolation';
}

/** Serialization failure or deadlock: safe to retry the transaction. */
export function isRetryableTxError(e: unknown): boolean {
  const code = dbErrorCode(e);
  if (code === 'P2034' || code === '40001' || code === '40P01') return true;
  const cause = (e as CodedError)?.meta?.driverAdapterError?.cause;
  return cause?.originalCode === '40001' || cause?.originalCode === '40P01';
}

export function mapDbError(e: unknown, onUnique?: () => AppError): never {
  if (e instanceof AppError) throw e;
  if (onUnique && isUniqueViolation(e)) throw onUnique();
  if (dbErrorCode(e) === 'P2025') throw errors.notFound('Record', 'requested');
  throw e;
}
