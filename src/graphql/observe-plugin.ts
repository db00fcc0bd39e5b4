import type { ApolloServerPlugin, GraphQLRequestContext } from '@apollo/server';
import { operationNameOf, type Metrics } from '../http/metrics.js';
import { isUuid } from '../modules/media/cursor.js';
import type { Context } from './context.js';

/** Root fields that name a media by an argument (the media they act on, even when they return none). */
const MEDIA_ARGUMENTS: Readonly<Record<string, string>> = {
  media: 'id',
  deleteMedia: 'id',
  replaceMediaTags: 'id',
  attachMedia: 'id',
  detachMedia: 'id',
  workerMedia: 'id',
  uploadSignedDocument: 'mediaId',
};

/**
 * What the access line and the metrics learn of a GraphQL request: the operation
 * name, the error codes of the response (graphql_operations_total by name and
 * outcome), and the media it touched (every Media object resolved, and the
 * media named by the arguments of MEDIA_ARGUMENTS), into the request's facts.
 */
export function ApolloServerPluginObserve(metrics: Metrics): ApolloServerPlugin<Context> {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation(rc: GraphQLRequestContext<Context>) {
          rc.contextValue.facts.operation = operationNameOf(rc.operationName ?? rc.request.operationName);
        },
        async executionDidStart(rc: GraphQLRequestContext<Context>) {
          const facts = rc.contextValue.facts;
          return {
            willResolveField({ source, args, info }) {
              if (info.parentType.name === 'Media') {
                const id = (source as { id?: unknown } | null)?.id;
                if (typeof id === 'string') facts.touchMedia(id);
                return;
              }
              if (info.path.prev !== undefined) return;
              const name = MEDIA_ARGUMENTS[info.fieldName];
              const id = name === undefined ? undefined : (args as Record<string, unknown>)[name];
              if (typeof id === 'string' && isUuid(id)) facts.touchMedia(id.toLowerCase());
            },
          };
        },
        async willSendResponse(rc: GraphQLRequestContext<Context>) {
          const body = rc.response.body;
          const errors: readonly { extensions?: Record<string, unknown> }[] =
            body?.kind === 'single' ? (body.singleResult.errors ?? []) : body?.kind === 'incremental' ? (body.initialResult.errors ?? []) : [];
          const codes = errors.map((e) => String(e.extensions?.['code'] ?? 'UNKNOWN'));
          const facts = rc.contextValue.facts;
          for (const c of codes) facts.error(c);
          const name = rc.operationName ?? rc.request.operationName;
          facts.operation ??= operationNameOf(name);
          metrics.graphqlOperation(name, codes);
        },
      };
    },
  };
}
