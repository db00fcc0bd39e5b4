import { lexicographicSortSchema, printSchema } from 'graphql';
import { buildAppSchema } from './schema.js';

/** The SDL committed as schema.graphql (sorted, so diffs stay readable). */
export async function renderSchema(): Promise<string> {
  const schema = await buildAppSchema();
  return `# Generated from the resolvers by \`npm run schema:emit\`. Do not edit.\n\n${printSchema(lexicographicSortSchema(schema))}\n`;
}
