// Runs s3rver on loopback until killed (used by the benchmarks).
import S3rver from 's3rver';
import { addMultipartOperations } from '../test/helpers/s3rver-multipart.js';

const server = new S3rver({
  port: Number(process.env['S3RVER_PORT']),
  address: '127.0.0.1',
  directory: process.env['S3RVER_DIR']!,
  silent: true,
  configureBuckets: [{ name: process.env['S3RVER_BUCKET']!, configs: [] }],
});
addMultipartOperations(server, process.env['S3RVER_DIR']!);
await server.run();
process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
