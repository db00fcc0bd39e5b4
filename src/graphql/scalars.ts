import { GraphQLError, GraphQLScalarType } from 'graphql';
import { GraphQLDateTime, GraphQLSafeInt, GraphQLJSONObject } from 'graphql-scalars';
import { IncomingFile } from './multipart.js';

/** A file of a GraphQL multipart request: resolvers receive its IncomingFile (src/graphql/multipart.ts). */
const UploadScalar = new GraphQLScalarType<IncomingFile, never>({
  name: 'Upload',
  description: 'The `Upload` scalar type represents a file upload.',
  parseValue(value) {
    if (value instanceof IncomingFile) return value;
    throw new GraphQLError('Upload value invalid: send the file in a multipart request (GraphQL multipart request spec)', { extensions: { code: 'BAD_USER_INPUT' } });
  },
  parseLiteral() {
    throw new GraphQLError('Upload literal unsupported: pass the file as a variable', { extensions: { code: 'BAD_USER_INPUT' } });
  },
  serialize() {
    throw new GraphQLError('Upload serialization unsupported');
  },
});

export { GraphQLDateTime as DateTimeScalar, GraphQLSafeInt as SafeIntScalar, GraphQLJSONObject as JSONObjectScalar, UploadScalar };
