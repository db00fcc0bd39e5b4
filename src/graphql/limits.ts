import { GraphQLError, Kind, type ASTVisitor, type FragmentDefinitionNode, type SelectionSetNode, type ValidationContext } from 'graphql';

export interface QueryLimits {
  maxDepth: number;
  maxAliases: number;
  /** Upper bound of selected fields, counting each fragment use. */
  maxFields: number;
}

export const DEFAULT_LIMITS: QueryLimits = { maxDepth: 12, maxAliases: 30, maxFields: 1500 };

/**
 * One validation rule for the abuse limits of SPEC 13: nesting depth, number of
 * aliases and a field budget. Fragments are expanded (cycles are already a
 * validation error elsewhere, but the walk guards against them anyway).
 */
export function queryLimitsRule(limits: QueryLimits = DEFAULT_LIMITS) {
  return (context: ValidationContext): ASTVisitor => {
    const fragments = new Map<string, FragmentDefinitionNode>();
    for (const d of context.getDocument().definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);

    const measure = (set: SelectionSetNode, depth: number, seen: Set<string>, acc: { depth: number; aliases: number; fields: number }) => {
      for (const sel of set.selections) {
        if (acc.fields > limits.maxFields) return;
        if (sel.kind === Kind.FIELD) {
          // Introspection (__schema, __type) is bounded by the schema itself; GraphiQL's query nests deeply.
          if (sel.name.value.startsWith('__')) continue;
          acc.fields++;
          if (sel.alias) acc.aliases++;
          acc.depth = Math.max(acc.depth, depth + 1);
          if (sel.selectionSet) measure(sel.selectionSet, depth + 1, seen, acc);
        } else if (sel.kind === Kind.INLINE_FRAGMENT) {
          measure(sel.selectionSet, depth, seen, acc);
        } else {
          const name = sel.name.value;
          const frag = fragments.get(name);
          if (!frag || seen.has(name)) continue;
          measure(frag.selectionSet, depth, new Set([...seen, name]), acc);
        }
      }
    };

    return {
      OperationDefinition(node) {
        const acc = { depth: 0, aliases: 0, fields: 0 };
        measure(node.selectionSet, 0, new Set(), acc);
        const problems: string[] = [];
        if (acc.depth > limits.maxDepth) problems.push(`depth ${acc.depth} exceeds ${limits.maxDepth}`);
        if (acc.aliases > limits.maxAliases) problems.push(`${acc.aliases} aliases exceed ${limits.maxAliases}`);
        if (acc.fields > limits.maxFields) problems.push(`more than ${limits.maxFields} fields`);
        if (problems.length) {
          context.reportError(new GraphQLError(`Query too complex: ${problems.join('; ')}`, { nodes: [node], extensions: { code: 'BAD_USER_INPUT' } }));
        }
      },
    };
  };
}
