// Reading the run's S3 store as an outsider would: with a plain S3 client of its
// own (no service code), with or without an SSE-C customer key, and (Ceph RGW) the
// bytes RADOS holds for an object. Used to check that SSE-C is really applied.
import { GetObjectCommand, HeadObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { testS3Store } from './app.js';

const run = promisify(execFile);

export const md5Base64 = (key: Buffer) => createHash('md5').update(key).digest('base64');

/** The SSE-C request parameters for a customer key (AES256 + the key's MD5), as AWS documents them. */
export function sseC(key: Buffer) {
  return { SSECustomerAlgorithm: 'AES256', SSECustomerKey: key.toString('base64'), SSECustomerKeyMD5: md5Base64(key) };
}

let client: S3Client | undefined;
/** A client of the store that shares nothing with the service's driver. */
export function plainS3Client(): S3Client {
  const store = testS3Store();
  client ??= new S3Client({
    region: 'us-east-1',
    endpoint: store.endpoint,
    forcePathStyle: true,
    credentials: store.credentials,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  return client;
}

export interface RawRead {
  status: number;
  body?: Buffer;
  /** x-amz-server-side-encryption-customer-algorithm of the answer. */
  algorithm?: string;
  keyMd5?: string;
}

/** GET of an object by a plain client, with a customer key or without: the status, and the bytes on success. */
export async function rawGet(key: string, sseKey?: Buffer, range?: string): Promise<RawRead> {
  const store = testS3Store();
  try {
    const out = await plainS3Client().send(new GetObjectCommand({ Bucket: store.bucket, Key: key, ...(range ? { Range: range } : {}), ...(sseKey ? sseC(sseKey) : {}) }));
    const body = Buffer.from(await out.Body!.transformToByteArray());
    return { status: out.$metadata.httpStatusCode ?? 200, body, ...(out.SSECustomerAlgorithm ? { algorithm: out.SSECustomerAlgorithm } : {}), ...(out.SSECustomerKeyMD5 ? { keyMd5: out.SSECustomerKeyMD5 } : {}) };
  } catch (e) {
    if (e instanceof S3ServiceException && e.$metadata.httpStatusCode) return { status: e.$metadata.httpStatusCode };
    throw e;
  }
}

/** HEAD of an object by a plain client: the status (and size on success). */
export async function rawHead(key: string, sseKey?: Buffer): Promise<{ status: number; size?: number }> {
  const store = testS3Store();
  try {
    const out = await plainS3Client().send(new HeadObjectCommand({ Bucket: store.bucket, Key: key, ...(sseKey ? sseC(sseKey) : {}) }));
    return { status: out.$metadata.httpStatusCode ?? 200, size: Number(out.ContentLength) };
  } catch (e) {
    if (e instanceof S3ServiceException && e.$metadata.httpStatusCode) return { status: e.$metadata.httpStatusCode };
    throw e;
  }
}

/**
 * Ceph RGW only: every RADOS object of the data pool that holds bytes of `key` (the
 * head object, multipart parts and their shadow objects), concatenated in name
 * order. What the cluster keeps at rest, below RGW's SSE-C layer.
 */
export async function radosBytes(key: string): Promise<Buffer> {
  const conf = testS3Store().cephConf;
  if (!conf) throw new Error('radosBytes needs the run to start Ceph RGW (TEST_RGW=1)');
  const pool = 'default.rgw.buckets.data';
  const { stdout } = await run('rados', ['-c', conf, '-p', pool, 'ls'], { maxBuffer: 64 << 20 });
  const names = stdout
    .split('\n')
    .filter((n) => n.includes(key))
    .sort();
  if (names.length === 0) throw new Error(`no RADOS object holds ${key}`);
  const parts: Buffer[] = [];
  for (const n of names) {
    const { stdout: bytes } = await run('rados', ['-c', conf, '-p', pool, 'get', n, '-'], { encoding: 'buffer', maxBuffer: 256 << 20 });
    parts.push(bytes);
  }
  return Buffer.concat(parts);
}
