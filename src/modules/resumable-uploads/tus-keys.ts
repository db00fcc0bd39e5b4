/**
 * Where resumable uploads keep their bytes until they become media: outside every
 * media group ({tenant}/{id}/, which the sweep judges by its rows), under a name no
 * tenant can have (tenants are [a-z][a-z0-9]{2,15}; this has a hyphen). On local
 * disk a directory of the blob root, so that completion is a hard link; on S3 a key
 * prefix of the bucket, so that completion is a server-side copy.
 */
export const TUS_PREFIX = 'tus-uploads/';
