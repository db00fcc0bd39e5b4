// The multipart operations s3rver 3.7 lacks, added to a server before it runs:
// ListParts (GET ?uploadId), AbortMultipartUpload (DELETE ?uploadId) and
// ListMultipartUploads (GET bucket?uploads). @tus/s3-store lists the parts of its
// multipart upload on every PATCH and HEAD and aborts it on termination, and the
// sweep lists and aborts stale ones: without these, resumable uploads cannot run on
// s3rver at all. They read and remove what s3rver's own multipart operations
// write: {root}/{bucket}/._S3rver_uploads/{uploadId}/ with `key`, `metadata` and
// the parts `N` (bytes) and `N.md5`.
import { createRequire } from 'node:module';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type S3rver from 's3rver';

const require = createRequire(import.meta.url);
const S3Error = require('s3rver/lib/models/error') as new (code: string, message: string, detail?: Record<string, unknown>) => Error;

interface KoaContext {
  method: string;
  path: string;
  query: Record<string, string | string[] | undefined>;
  status: number;
  body: unknown;
}

const one = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);

export function addMultipartOperations(server: S3rver, directory: string): void {
  const uploadsOf = (bucket: string) => path.join(directory, bucket, '._S3rver_uploads');
  const noSuchUpload = () => new S3Error('NoSuchUpload', 'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.');

  async function uploadKey(bucket: string, uploadId: string): Promise<string | undefined> {
    if (!/^[0-9a-f]+$/.test(uploadId)) return undefined;
    return readFile(path.join(uploadsOf(bucket), uploadId, 'key'), 'utf8').catch(() => undefined);
  }

  async function listParts(ctx: KoaContext, bucket: string, key: string, uploadId: string): Promise<void> {
    if ((await uploadKey(bucket, uploadId)) !== key) throw noSuchUpload();
    const dir = path.join(uploadsOf(bucket), uploadId);
    const marker = Number(one(ctx.query['part-number-marker']) ?? 0);
    const max = Math.min(Number(one(ctx.query['max-parts']) ?? 1000), 1000);
    const numbers = (await readdir(dir)).filter((f) => /^\d+$/.test(f)).map(Number).filter((n) => n > marker).sort((a, b) => a - b);
    const page = numbers.slice(0, max);
    const parts = [];
    for (const n of page) {
      const s = await stat(path.join(dir, String(n)));
      const md5 = await readFile(path.join(dir, `${n}.md5`), 'utf8').catch(() => '');
      parts.push({ PartNumber: n, LastModified: s.mtime.toISOString(), ETag: JSON.stringify(md5), Size: s.size });
    }
    const truncated = numbers.length > page.length;
    ctx.body = {
      ListPartsResult: {
        Bucket: bucket,
        Key: key,
        UploadId: uploadId,
        PartNumberMarker: marker,
        ...(truncated ? { NextPartNumberMarker: page[page.length - 1] } : {}),
        MaxParts: max,
        IsTruncated: truncated,
        Part: parts,
      },
    };
  }

  async function abort(ctx: KoaContext, bucket: string, key: string, uploadId: string): Promise<void> {
    if ((await uploadKey(bucket, uploadId)) !== key) throw noSuchUpload();
    await rm(path.join(uploadsOf(bucket), uploadId), { recursive: true, force: true });
    ctx.status = 204;
    ctx.body = '';
  }

  async function listUploads(ctx: KoaContext, bucket: string): Promise<void> {
    const prefix = one(ctx.query['prefix']) ?? '';
    const keyMarker = one(ctx.query['key-marker']) ?? '';
    const idMarker = one(ctx.query['upload-id-marker']) ?? '';
    const max = Math.min(Number(one(ctx.query['max-uploads']) ?? 1000), 1000);
    const all: { Key: string; UploadId: string; Initiated: string }[] = [];
    for (const id of await readdir(uploadsOf(bucket)).catch(() => [] as string[])) {
      const file = path.join(uploadsOf(bucket), id, 'key');
      const key = await readFile(file, 'utf8').catch(() => undefined);
      if (key === undefined || !key.startsWith(prefix)) continue;
      all.push({ Key: key, UploadId: id, Initiated: (await stat(file)).mtime.toISOString() });
    }
    all.sort((a, b) => (a.Key < b.Key ? -1 : a.Key > b.Key ? 1 : a.UploadId < b.UploadId ? -1 : a.UploadId > b.UploadId ? 1 : 0));
    const after = all.filter((u) => u.Key > keyMarker || (u.Key === keyMarker && idMarker !== '' && u.UploadId > idMarker));
    const page = after.slice(0, max);
    const truncated = after.length > page.length;
    const last = page[page.length - 1];
    ctx.body = {
      ListMultipartUploadsResult: {
        Bucket: bucket,
        KeyMarker: keyMarker,
        UploadIdMarker: idMarker,
        ...(truncated && last ? { NextKeyMarker: last.Key, NextUploadIdMarker: last.UploadId } : {}),
        Prefix: prefix,
        MaxUploads: max,
        IsTruncated: truncated,
        Upload: page,
      },
    };
  }

  const middleware = async (ctx: KoaContext, next: () => Promise<void>) => {
    // The SDK names a bucket `/{bucket}/` (trailing slash), an object `/{bucket}/{key}`.
    const m = /^\/([^/]+)(?:\/(.*))?$/.exec(ctx.path);
    const uploadId = one(ctx.query['uploadId']);
    if (m && m[2] && uploadId !== undefined && ctx.method === 'GET') return listParts(ctx, m[1]!, decodeURIComponent(m[2]), uploadId);
    if (m && m[2] && uploadId !== undefined && ctx.method === 'DELETE') return abort(ctx, m[1]!, decodeURIComponent(m[2]), uploadId);
    if (m && !m[2] && 'uploads' in ctx.query && ctx.method === 'GET') return listUploads(ctx, m[1]!);
    return next();
  };
  // Just before s3rver's router (its last middleware), after its XML encoder and error handling.
  const stack = (server as unknown as { middleware: unknown[] }).middleware;
  stack.splice(stack.length - 1, 0, middleware);
}
