import type { ApolloServerPlugin, GraphQLRequestContext } from '@apollo/server';
import { unwrapResolverError } from '@apollo/server/errors';
import type { GraphQLFormattedError } from 'graphql';
import { GraphQLError } from 'graphql';
import { AppError, ErrorCode } from '../errors/index.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../http/metrics.js';
import type { Context } from './context.js';

/** Codes Apollo itself produces for malformed requests; safe to pass on. */
const APOLLO_CODES = new Set([
  'GRAPHQL_PARSE_FAILED',
  'GRAPHQL_VALIDATION_FAILED',
  'BAD_USER_INPUT',
  'BAD_REQUEST',
  'OPERATION_RESOLUTION_FAILURE',
  'PERSISTED_QUERY_NOT_FOUND',
  'PERSISTED_QUERY_NOT_SUPPORTED',
]);

/**
 * One place that decides what a client sees of an error: our AppErrors as they
 * are (without their cause), Apollo's request errors as they are, and anything
 * else masked as INTERNAL_SERVER_ERROR. This function should not throw.
 */
export function formatError(formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError {
  const original = unwrapResolverError(error);
  if (original instanceof AppError && original.code !== ErrorCode.INTERNAL_SERVER_ERROR) {
    return { message: original.message, locations: formatted.locations, path: formatted.path, extensions: { ...original.extensions } };
  }
  if (!isMasked(original)) {
    const { stacktrace: _s, ...extensions } = formatted.extensions ?? {};
    return { ...formatted, extensions };
  }
  return { message: 'Internal server error', path: formatted.path, extensions: { code: ErrorCode.INTERNAL_SERVER_ERROR } };
}

/**
 * GraphQLError from any copy of graphql-js: Apollo may load the CommonJS build
 * while this module gets the ESM one (graphql has no "exports" map; vitest/vite
 * resolve its "module" field), so `instanceof` alone would mask Apollo's own
 * request errors (bad variables, validation) as internal errors.
 */
function isGraphQLError(e: unknown): e is GraphQLError {
  return e instanceof GraphQLError || Object.prototype.toString.call(e) === '[object GraphQLError]';
}

/** Whether an (unwrapped) error is hidden from clients. */
function isMasked(original: unknown): boolean {
  if (original instanceof AppError) return original.code === ErrorCode.INTERNAL_SERVER_ERROR;
  if (!isGraphQLError(original)) return true;
  const code = original.extensions?.['code'];
  return !(typeof code === 'string' && APOLLO_CODES.has(code));
}

/** Logs the cause of every masked error with the request id, and gives clients that id. */
export function ApolloServerPluginErrorLog(logger: Logger, metrics?: Metrics): ApolloServerPlugin<Context> {
  return {
    async requestDidStart() {
      return {
        async didEncounterErrors(rc: GraphQLRequestContext<Context>) {
          for (const e of rc.errors ?? []) {
            const original = unwrapResolverError(e);
            if (!isMasked(original)) continue;
            logger.error({ requestId: rc.contextValue?.requestId, err: (original as { cause?: unknown }).cause ?? original, path: e.path }, 'internal error');
          }
        },
        async willSendResponse(rc: GraphQLRequestContext<Context>) {
          const body = rc.response.body;
          if (!body || body.kind !== 'single' || !body.singleResult.errors) return;
          for (const e of body.singleResult.errors) {
            metrics?.graphqlErrors.inc({ code: String(e.extensions?.['code'] ?? 'UNKNOWN') });
            if (e.extensions?.['code'] === ErrorCode.INTERNAL_SERVER_ERROR) {
              (e.extensions as Record<string, unknown>)['requestId'] = rc.contextValue?.requestId;
            }
          }
        },
      };
    },
  };
}
