/**
 * Where resumable uploads keep their bytes until they become media: outside every
 * media group ({tenant}/{id}/, which the sweep judges by its rows), under a name no
 * tenant can have (tenants are [a-z][a-z0-9]{2,15}; this has a hyphen). On local
 * disk a directory of the blob root, so that completion is a hard link; on S3 a key
 * prefix of the bucket, so that completion is a server-side copy.
 */
export const TUS_PREFIX = 'tus-uploads/';

const KEY_RE = /^tus-uploads\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?:\.(?:info|part|json))?$/;

/** The upload id of a storage key under TUS_PREFIX (its bytes, or the store's .info/.part/.json), or undefined. */
export const tusIdOfKey = (key: string): string | undefined => KEY_RE.exec(key)?.[1];
