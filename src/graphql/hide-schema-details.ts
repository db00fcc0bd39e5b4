import type { ApolloServerPlugin } from '@apollo/server';
import { Kind, type GraphQLError } from 'graphql';

/**
 * With introspection off, errors must not describe the schema either. Apollo's
 * `hideSchemaDetailsFromClientErrors` removes "Did you mean …?" from validation
 * errors; this plugin does the same for variable errors, which graphql-js builds
 * during execution as `Variable "$x" got invalid value …; <reason>` where the
 * reason names input fields ("Field "id" of required type "ID!" was not
 * provided"), enum values and suggestions. The reason is dropped; what stays is
 * the variable, the value the client sent and where in it the problem is.
 */
export function ApolloServerPluginHideVariableErrorDetails(): ApolloServerPlugin {
  return {
    async requestDidStart() {
      return {
        async didEncounterErrors({ errors }) {
          for (const e of errors) hideReason(e);
        },
      };
    },
  };
}

/** An error about a variable's value (graphql-js puts it on the variable's definition). */
export function isVariableError(e: unknown): boolean {
  const nodes = (e as GraphQLError | undefined)?.nodes;
  return nodes?.length === 1 && nodes[0]!.kind === Kind.VARIABLE_DEFINITION;
}

function hideReason(e: GraphQLError): void {
  if (!isVariableError(e)) return;
  const reason = e.originalError?.message;
  if (!reason || reason === e.message || !e.message.endsWith(`; ${reason}`)) return;
  e.message = `${e.message.slice(0, -(reason.length + 2))}.`;
}
