import type { CodegenConfig } from '@graphql-codegen/cli';

// Typed documents (TypedDocumentNode) for the operations in test/operations,
// checked against the committed schema.graphql. Run by `npm test` before vitest.
const config: CodegenConfig = {
  schema: 'schema.graphql',
  documents: ['test/operations/**/*.graphql'],
  generates: {
    'test/generated/': {
      preset: 'client',
      presetConfig: { fragmentMasking: false },
      config: {
        scalars: { DateTime: 'string', SafeInt: 'number', JSONObject: 'Record<string, unknown>', Upload: 'File | Blob' },
        enumsAsTypes: true,
        useTypeImports: true,
      },
    },
  },
  ignoreNoDocuments: false,
  emitLegacyCommonJSImports: false,
};
export default config;
