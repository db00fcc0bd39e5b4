import type { ApolloServerPlugin } from '@apollo/server';
import { BREAK, Kind, visit, type ASTNode, type DocumentNode, type OperationDefinitionNode, type ValueNode } from 'graphql';
import { errors } from '../errors/index.js';
import { findUnstorableText, unstorableText } from '../util/storable-text.js';
import type { Context } from './context.js';

interface Found {
  path: string;
  problem: string;
}

/**
 * Refuses, before any resolver runs, an operation whose input holds a string
 * PostgreSQL cannot store (a NUL, an unpaired surrogate: src/util/storable-text.ts):
 * every string literal of the document and every variable value, deeply. One
 * check at the edge instead of one per argument; the error is the client's
 * (BAD_USER_INPUT, HTTP 400, like Apollo's own variable errors) with
 * extensions.field naming the argument path (`input.refIds.0.id`, `after`).
 */
export function ApolloServerPluginStorableText(): ApolloServerPlugin<Context> {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation(rc) {
          if (!rc.operation) return;
          const found = unstorableInput(rc.document, rc.operation, rc.request.variables ?? {});
          if (!found) return;
          rc.response.http.status = 400;
          throw errors.badInput(found.path, `${found.path} ${found.problem}, which cannot be stored as text`);
        },
      };
    },
  };
}

/**
 * The first unstorable string in the arguments of the operation (and of the
 * fragments of the document), a variable standing for the value it has (or its
 * default); then in any variable sent, used or not.
 */
export function unstorableInput(document: DocumentNode, operation: OperationDefinitionNode, variables: Record<string, unknown>): Found | undefined {
  // The usual case costs one pass over the variables: a document's literals never
  // change (Apollo reuses parsed documents), and only a refusal needs the path walk below.
  if (!documentHasUnstorableLiteral(document) && !findUnstorableText(variables, '$')) return undefined;
  const defaults = new Map<string, ValueNode>();
  for (const d of operation.variableDefinitions ?? []) if (d.defaultValue) defaults.set(d.variable.name.value, d.defaultValue);
  let found: Found | undefined;
  const visitor = {
    Argument(node: { name: { value: string }; value: ValueNode }) {
      found = inValue(node.value, node.name.value, variables, defaults);
      return found ? BREAK : undefined;
    },
  };
  const roots: ASTNode[] = [operation, ...document.definitions.filter((d) => d.kind === Kind.FRAGMENT_DEFINITION)];
  for (const root of roots) {
    visit(root, visitor);
    if (found) return found;
  }
  for (const [name, value] of Object.entries(variables)) {
    const problem = unstorableText(name);
    if (problem) return { path: '$variables', problem: `has a name that ${problem}` };
    found = findUnstorableText(value, `$${name}`);
    if (found) return found;
  }
  return undefined;
}

const literalsChecked = new WeakMap<DocumentNode, boolean>();

/** Whether any string literal of the document (arguments, defaults, directives) cannot be stored; remembered per document. */
function documentHasUnstorableLiteral(document: DocumentNode): boolean {
  let bad = literalsChecked.get(document);
  if (bad === undefined) {
    bad = false;
    visit(document, {
      StringValue(node) {
        if (!unstorableText(node.value)) return undefined;
        bad = true;
        return BREAK;
      },
    });
    literalsChecked.set(document, bad);
  }
  return bad;
}

function inValue(root: ValueNode, rootPath: string, variables: Record<string, unknown>, defaults: Map<string, ValueNode>): Found | undefined {
  const stack: [ValueNode, string][] = [[root, rootPath]];
  while (stack.length) {
    const [node, path] = stack.pop()!;
    switch (node.kind) {
      case Kind.STRING: {
        const problem = unstorableText(node.value);
        if (problem) return { path, problem };
        break;
      }
      case Kind.LIST:
        for (let i = node.values.length - 1; i >= 0; i--) stack.push([node.values[i]!, `${path}.${i}`]);
        break;
      case Kind.OBJECT:
        for (let i = node.fields.length - 1; i >= 0; i--) stack.push([node.fields[i]!.value, `${path}.${node.fields[i]!.name.value}`]);
        break;
      case Kind.VARIABLE: {
        const name = node.name.value;
        if (Object.hasOwn(variables, name)) {
          const found = findUnstorableText(variables[name], path);
          if (found) return found;
        } else {
          const d = defaults.get(name);
          if (d) stack.push([d, path]);
        }
        break;
      }
      default:
        break;
    }
  }
  return undefined;
}
