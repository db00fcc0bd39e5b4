// Writes schema.graphql from the resolver classes: `npm run schema:emit`.
// test/integration/schema.test.ts fails when the committed file is stale.
import { writeFileSync } from 'node:fs';
import { renderSchema } from '../src/graphql/print-schema.js';

writeFileSync(new URL('../schema.graphql', import.meta.url), await renderSchema());
console.log('schema.graphql written');
