export { ErrorCode, httpStatusOf } from './codes.js';
export { AppError, isAppError } from './app-error.js';
export { errors } from './errors.js';
export { dbSqlState, isUniqueViolation, isRetryableTxError, mapDbError } from './prisma-errors.js';
