import { GraphQLDateTime, GraphQLSafeInt, GraphQLJSONObject } from 'graphql-scalars';
import { GraphQLUpload } from 'graphql-upload-minimal';

export { GraphQLDateTime as DateTimeScalar, GraphQLSafeInt as SafeIntScalar, GraphQLJSONObject as JSONObjectScalar, GraphQLUpload as UploadScalar };
