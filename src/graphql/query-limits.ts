import type { ApolloServerPlugin } from '@apollo/server';
import { ApolloServerErrorCode } from '@apollo/server/errors';
import { maxAliasesRule } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import { maxDirectivesRule } from '@escape.tech/graphql-armor-max-directives';
import {
  getNullableType,
  GraphQLError,
  isEnumType,
  isInputObjectType,
  isInterfaceType,
  isListType,
  isObjectType,
  isUnionType,
  type DocumentNode,
  type GraphQLSchema,
  type ValidationContext,
  type ValidationRule,
} from 'graphql';
import { getComplexity, type ComplexityEstimator } from 'graphql-query-complexity';
import { MAX_PAGE_SIZE as MAX_ASSET_PAGE } from '../modules/assets/asset.service.js';
import { MAX_TAGS } from '../modules/media/tags.js';
import { MAX_BATCH } from '../modules/media/upload.service.js';
import { SUPPORTED_TYPES } from '../modules/policy/media-types.js';
import { MediaRole, VariantName } from './enums.js';
import { isVariableError } from './hide-schema-details.js';

/**
 * The abuse limits of SPEC 13, in the order they act on a request:
 *
 * 1. `maxTokens`: graphql-js's parser stops after this many tokens (Apollo's
 *    `parseOptions`), so no later step ever sees a large document.
 * 2. `maxSelections`: Apollo's `maxRecursiveSelections` counts the selections of
 *    each operation with every fragment spread expanded, computing each fragment's
 *    count once (linear in the document); it runs in the first validation pass.
 *    Apollo runs our `validationRules` only in a second pass, after the first one
 *    passed, so nothing below ever walks more than this many selections.
 * 3. `maxDepth`, `maxAliases`, `maxDirectives`: GraphQL Armor's rules (each
 *    fragment measured once), introspection and `__typename` included.
 * 4. `maxCost`: graphql-query-complexity on the operation about to run, with its
 *    variables: an upper bound of the number of values in the answer, where a
 *    list field counts once per item it can hold (see LIST_SIZES). That library
 *    expands every fragment spread; step 2 bounds the walk.
 *
 * What they let through: GraphiQL's introspection query (graphql 16's
 * getIntrospectionQuery, all options on) has 184 tokens, 240 selections, depth 15
 * and costs 38,484 on this schema; the costliest operation of test/operations as
 * the tests send it is EntitiesWithMediaAndRoles with 100 refs: 40,300 (it fits up
 * to 124 refs). The largest answer under the cost limit: about 3,600 signed URLs,
 * or 12,400 media with two plain fields (bench/query-limits.ts measures both).
 */
export interface QueryLimits {
  readonly maxTokens: number;
  readonly maxSelections: number;
  readonly maxDepth: number;
  readonly maxAliases: number;
  readonly maxDirectives: number;
  readonly maxCost: number;
}

export const QUERY_LIMITS: QueryLimits = Object.freeze({
  maxTokens: 2000,
  maxSelections: 1000,
  maxDepth: 15,
  maxAliases: 30,
  maxDirectives: 20,
  maxCost: 50_000,
});

/** One size for every list the cost model has no entry for (a unit test keeps the table complete). */
export const DEFAULT_LIST_SIZE = 100;

type Args = Record<string, unknown>;
type Size = number | ((args: Args) => number);

/** `first`/`pageSize`: the value the resolver will use, or its cap when it is not a number (null). */
const pageOf =
  (name: string, cap: number): Size =>
  (args) => {
    const v = args[name];
    return typeof v === 'number' && Number.isFinite(v) ? Math.min(Math.max(v, 0), cap) : cap;
  };
const lengthOf =
  (name: string): Size =>
  (args) => {
    const v = args[name];
    return Array.isArray(v) ? v.length : 1;
  };

/**
 * How many items each list or page field can answer, by `Type.field`. A page
 * (a connection or a page object) is sized where its arguments are, on the field
 * that returns it; its `nodes`/`items` then count 1 (this overcounts `pageInfo`
 * and `totalCount` by the page size: the cost is an upper bound).
 */
export const LIST_SIZES: Readonly<Record<string, Size>> = Object.freeze({
  // The resolver refuses more than 200 refs; duplicates cost like distinct refs, as the answer repeats them.
  'Query.entities': lengthOf('refs'),
  'Query.mediaForEntity': pageOf('first', 100),
  'Query.searchByTags': pageOf('first', 100),
  'Query.mediaLibrary': pageOf('pageSize', 100),
  'Query.assets': pageOf('pageSize', MAX_ASSET_PAGE),
  // One per entity type of the policy (the built-in one has 5; a policy file rarely has dozens).
  'Query.mediaPolicies': 50,
  'Mutation.uploadMany': (args) => Math.min(Array.isArray(args['inputs']) ? args['inputs'].length : 1, MAX_BATCH),
  'Entity.media': pageOf('first', 100),
  'Entity.roles': Object.keys(MediaRole).length,
  'MediaConnection.nodes': 1,
  'MediaPage.items': 1,
  'AssetPage.items': 1,
  // Attachments and roles per media are not capped by the service; 20 is an assumption.
  'Media.entities': 20,
  'Media.roles': 20,
  'Media.tags': MAX_TAGS,
  'Media.variants': Object.keys(VariantName).length,
  'Asset.variants': Object.keys(VariantName).length,
  // asset.service.ts refuses more than 100 references.
  'Asset.refIds': 100,
  'EntityPolicy.allowedMediaTypes': SUPPORTED_TYPES.size,
});

/**
 * Fields that cost far more than one value. A signed URL (an HMAC, or an S3
 * presigned GET) took about 10 times a plain field in bench/query-limits.ts; the
 * variants of a media are signed by its `variants` resolver whatever is selected.
 * `workerMedia` reads, decrypts and base64-encodes a whole document (up to 20 MiB)
 * whatever is selected: two fit in one request, a third exceeds the limit.
 */
export const FIELD_COSTS: Readonly<Record<string, number>> = Object.freeze({
  'Media.url': 10,
  'Media.variants': 10,
  'Media.renderUrl': 10,
  'Query.workerMedia': 20_000,
});

/**
 * Introspection lists, sized from the schema itself: the number of types and
 * directives, and for lists under a type (fields, arguments, enum values…) the
 * average per owner, so that `types { fields { … } }` costs about as many values
 * as the answer holds. (A single `__type(name:) { fields { args } }` of the
 * largest type answers a few times its cost: bounded by the schema, and nothing
 * multiplies it but aliases and lists, which the limits count.)
 */
export function introspectionSizes(schema: GraphQLSchema): Record<string, number> {
  const types = Object.values(schema.getTypeMap());
  const avg = (xs: number[]) => Math.max(1, Math.ceil(xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)));
  const objects = types.filter((t) => isObjectType(t) || isInterfaceType(t));
  const fields = objects.flatMap((t) => Object.values(t.getFields()));
  const directives = schema.getDirectives();
  return {
    '__Schema.types': types.length,
    '__Schema.directives': directives.length,
    '__Type.fields': avg(objects.map((t) => Object.keys(t.getFields()).length)),
    '__Type.interfaces': avg(types.filter(isObjectType).map((t) => t.getInterfaces().length)),
    '__Type.possibleTypes': avg(types.filter((t) => isUnionType(t) || isInterfaceType(t)).map((t) => schema.getPossibleTypes(t as never).length)),
    '__Type.enumValues': avg(types.filter(isEnumType).map((t) => t.getValues().length)),
    '__Type.inputFields': avg(types.filter(isInputObjectType).map((t) => Object.keys(t.getFields()).length)),
    '__Field.args': avg(fields.map((f) => f.args.length)),
    '__Directive.args': avg(directives.map((d) => d.args.length)),
    '__Directive.locations': avg(directives.map((d) => d.locations.length)),
  };
}

const sizesBySchema = new WeakMap<GraphQLSchema, Record<string, number>>();

/**
 * The estimator: a field costs 1 (or its FIELD_COSTS) plus what it selects, times
 * the number of items it can answer. Introspection fields and `__typename` are fields like any other.
 */
export function costEstimator(schema: GraphQLSchema): ComplexityEstimator {
  let introspection = sizesBySchema.get(schema);
  if (!introspection) sizesBySchema.set(schema, (introspection = introspectionSizes(schema)));
  const sizes = introspection;
  return ({ type, field, args, childComplexity }) => {
    const key = `${type.name}.${field.name}`;
    const size = LIST_SIZES[key] ?? sizes[key] ?? (isListType(getNullableType(field.type)) ? DEFAULT_LIST_SIZE : 1);
    return (typeof size === 'number' ? size : size(args)) * ((FIELD_COSTS[key] ?? 1) + childComplexity);
  };
}

/** A refused request: a client error, HTTP 400, the same code for every limit. */
function limitError(message: string, extensions: Record<string, unknown> = {}): GraphQLError {
  return new GraphQLError(message, { extensions: { code: ApolloServerErrorCode.GRAPHQL_VALIDATION_FAILED, ...extensions, http: { status: 400 } } });
}

/**
 * GraphQL Armor's depth, alias and directive rules as validation rules that
 * report (instead of throwing, Armor's default) and count introspection and
 * `__typename` like any field. Armor prefixes its messages with "Syntax Error",
 * which they are not.
 */
export function queryShapeRules(limits: QueryLimits = QUERY_LIMITS): ValidationRule[] {
  const report = [(ctx: ValidationContext | null, err: GraphQLError) => ctx?.reportError(new GraphQLError(err.message.replace(/^Syntax Error: /, '')))];
  const common = { propagateOnRejection: false, onReject: report, exposeLimits: true };
  return [
    maxDepthRule({ ...common, n: limits.maxDepth, ignoreIntrospection: false, flattenFragments: true }),
    maxAliasesRule({ ...common, n: limits.maxAliases, allowList: [] }),
    maxDirectivesRule({ ...common, n: limits.maxDirectives }),
  ] as unknown as ValidationRule[];
}

/**
 * The options of `new ApolloServer` that enforce the limits before anything
 * executes (the cost limit is the plugin below). `maxRecursiveSelections` makes
 * Apollo run `validationRules` in a second pass, only when the first one passed.
 */
export function queryLimitOptions(limits: QueryLimits = QUERY_LIMITS) {
  return {
    parseOptions: { maxTokens: limits.maxTokens },
    maxRecursiveSelections: limits.maxSelections,
    validationRules: queryShapeRules(limits),
  };
}

/** Costs already computed, per parsed document (Apollo reuses them) and per costKey. */
const knownCosts = new WeakMap<DocumentNode, Map<string, number>>();
const KNOWN_COSTS_PER_DOCUMENT = 64;

/**
 * What an operation's cost can depend on: its name and the shape of its variables
 * (numbers such as `first`, booleans of @include, list lengths such as `refs`),
 * never the text of a string (an id, a tag). Undefined for large variables (not remembered).
 */
function costKey(operationName: string | undefined, variables: Record<string, unknown>): string | undefined {
  const shape = JSON.stringify(variables, (_k, v: unknown) => (typeof v === 'string' ? 0 : v));
  return shape.length <= 2048 ? `${operationName ?? ''}\u0000${shape}` : undefined;
}

/**
 * Refuses an operation whose cost exceeds `maxCost`, before anything executes.
 * It runs once the operation is known (with its variables), after validation.
 * A cost is computed once per document and variable shape: a client sending the
 * same query with other ids pays for the walk once.
 */
export function ApolloServerPluginQueryCost(limits: QueryLimits = QUERY_LIMITS): ApolloServerPlugin {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation({ request, document, operation, schema }) {
          if (!operation) return;
          const variables = request.variables ?? {};
          const key = costKey(operation.name?.value, variables);
          let cost = key === undefined ? undefined : knownCosts.get(document)?.get(key);
          if (cost === undefined) {
            try {
              cost = getComplexity({
                schema,
                query: document,
                operationName: operation.name?.value,
                variables,
                estimators: [costEstimator(schema)],
                // The library counts the same selections as maxRecursiveSelections; this never trips.
                maxQueryNodes: limits.maxSelections + 1,
              });
            } catch (e) {
              // Invalid variables: execution refuses them with Apollo's BAD_USER_INPUT before running anything.
              if (isVariableError(e)) return;
              // Anything else the library reports about the request refuses it; a bug stays an internal error.
              if (e instanceof Error && e.name === 'GraphQLError') throw limitError(`The query's cost cannot be computed: ${e.message}`);
              throw e;
            }
            if (key !== undefined) {
              let forDocument = knownCosts.get(document);
              if (!forDocument) knownCosts.set(document, (forDocument = new Map()));
              if (forDocument.size >= KNOWN_COSTS_PER_DOCUMENT) forDocument.delete(forDocument.keys().next().value!);
              forDocument.set(key, cost);
            }
          }
          if (cost > limits.maxCost) {
            throw limitError(`Query cost ${cost} exceeds the limit of ${limits.maxCost} (each list field counts once per item it can return)`, { cost, maxCost: limits.maxCost });
          }
        },
      };
    },
  };
}
