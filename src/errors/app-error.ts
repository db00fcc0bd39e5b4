import { GraphQLError } from 'graphql';
import { ErrorCode, httpStatusOf } from './codes.js';

export interface AppErrorOptions {
  /** The argument or input field at fault (BAD_USER_INPUT). */
  field?: string;
  /** Position of the failing input in a batch (uploadMany). */
  index?: number;
  /** The foreign error behind this one; logged, never sent to clients. */
  cause?: unknown;
  /** Extra extensions that are safe to show to clients. */
  extensions?: Record<string, unknown>;
}

/**
 * The one error type the service throws on purpose. It is a GraphQLError so that
 * resolvers can throw it as is; `code` is also what the HTTP routes answer with.
 */
export class AppError extends GraphQLError {
  readonly code: ErrorCode;
  readonly status: number;

  constructor(code: ErrorCode, message: string, options: AppErrorOptions = {}) {
    super(message, {
      extensions: {
        code,
        ...(options.field !== undefined ? { field: options.field } : {}),
        ...(options.index !== undefined ? { index: options.index } : {}),
        ...options.extensions,
      },
      ...(options.cause instanceof Error ? { originalError: options.cause } : {}),
    });
    this.name = 'AppError';
    this.code = code;
    this.status = httpStatusOf[code];
    if (options.cause !== undefined) Object.defineProperty(this, 'cause', { value: options.cause, enumerable: false });
  }

  /** The same error placed at a position of a batch. */
  atIndex(index: number): AppError {
    const ext = this.extensions as Record<string, unknown>;
    const { code: _c, ...rest } = ext;
    return new AppError(this.code, this.message, { extensions: { ...rest, index }, cause: (this as { cause?: unknown }).cause });
  }
}

export const isAppError = (e: unknown): e is AppError => e instanceof AppError;
