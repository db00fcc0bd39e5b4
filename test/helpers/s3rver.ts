import S3rver from 's3rver';
import { addMultipartOperations } from './s3rver-multipart.js';

export const TEST_BUCKET = 'media-test';
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

/** An in-process S3 protocol server on loopback with the test bucket. */
export async function startS3rver(directory: string): Promise<{ endpoint: string; close(): Promise<void> }> {
  const server = new S3rver({
    port: 0,
    address: '127.0.0.1',
    directory,
    silent: true,
    configureBuckets: [{ name: TEST_BUCKET, configs: [] }],
  });
  addMultipartOperations(server, directory);
  const address = (await server.run()) as { port: number };
  return { endpoint: `http://127.0.0.1:${address.port}`, close: () => server.close() };
}
