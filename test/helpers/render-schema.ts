// Prints renderSchema() to stdout, run by Node (tsx) the way `npm run schema:emit`
// runs. test/integration/schema.test.ts runs it in a child process: under vitest,
// `graphql` resolves to its ESM build for our files and to its CommonJS build for
// type-graphql, and lexicographicSortSchema refuses a schema from the other copy.
import { renderSchema } from '../../src/graphql/print-schema.js';

process.stdout.write(await renderSchema());
