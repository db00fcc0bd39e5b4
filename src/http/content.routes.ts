import { Router, type Request, type Response } from 'express';
import { create as contentDisposition } from 'content-disposition';
import { pipeline } from 'node:stream/promises';
import { errors } from '../errors/index.js';
import { requireScope } from '../auth/http-auth.js';
import type { Services } from '../services.js';
import type { MediaRecord } from '../modules/media/media.record.js';
import { objectKeys, type ByteRange } from '../storage/index.js';
import { route } from './respond.js';

const INLINE_KINDS = new Set(['IMAGE', 'VIDEO', 'AUDIO']);

interface Servable {
  key: string;
  size: number;
  mediaType: string;
  etag: string;
  fileName: string;
  inline: boolean;
}

/**
 * Resolves the tenant of a content request: a signed link made for exactly this
 * path (`?token=`), or a user token with media:read.
 */
async function tenantFor(services: Services, req: Request): Promise<string> {
  const token = typeof req.query['token'] === 'string' ? req.query['token'] : undefined;
  if (token !== undefined) {
    const tenant = services.links.verify(token, req.path);
    if (!tenant) throw errors.unauthenticated('The link is invalid or has expired');
    return tenant;
  }
  const user = await requireScope(services, req, 'media:read');
  return user.tenant;
}

function parseRange(req: Request, size: number): ByteRange | 'unsatisfiable' | null {
  if (!req.headers.range) return null;
  const r = req.range(size, { combine: true });
  if (r === -1) return 'unsatisfiable';
  if (r === -2 || r === undefined || r.type !== 'bytes' || r.length !== 1) return null; // malformed or multipart: send it all
  return { start: r[0]!.start, end: r[0]!.end };
}

async function serve(services: Services, req: Request, res: Response, item: Servable, media: MediaRecord): Promise<void> {
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Content-Security-Policy', "default-src 'none'; sandbox");
  res.setHeader('Cache-Control', media.encrypted || media.securityLevel !== 'STANDARD' ? 'private, no-store' : 'private, no-cache');
  res.setHeader('ETag', item.etag);
  res.setHeader('Accept-Ranges', 'bytes');
  res.setHeader('Content-Disposition', contentDisposition(item.fileName, { type: item.inline ? 'inline' : 'attachment' }));
  if (req.fresh) {
    res.status(304).end();
    return;
  }
  const range = parseRange(req, item.size);
  if (range === 'unsatisfiable') {
    res.status(416).setHeader('Content-Range', `bytes */${item.size}`);
    res.end();
    return;
  }
  res.type(item.mediaType);
  if (range) {
    res.status(206).setHeader('Content-Range', `bytes ${range.start}-${range.end}/${item.size}`);
    res.setHeader('Content-Length', String(range.end - range.start + 1));
  } else {
    res.status(200).setHeader('Content-Length', String(item.size));
  }
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  const body = await services.storage.get(item.key, range ?? undefined);
  await pipeline(body, res);
}

export function contentRoutes(services: Services): Router {
  const router = Router();
  const log = services.logger;

  router.get(
    '/media/:id/content',
    route(log, async (req, res) => {
      const tenant = await tenantFor(services, req);
      const media = await services.media.require(tenant, String(req.params['id']));
      await serve(services, req, res, {
        key: media.storageKey,
        size: media.fileSize,
        mediaType: media.mediaType,
        etag: `"${media.checksum}"`,
        fileName: media.fileName,
        inline: INLINE_KINDS.has(media.kind),
      }, media);
    }),
  );

  router.get(
    '/media/:id/variants/:name',
    route(log, async (req, res) => {
      const tenant = await tenantFor(services, req);
      const media = await services.media.require(tenant, String(req.params['id']));
      const v = media.variants.find((x) => x.name === req.params['name']);
      if (!v) throw errors.notFound('Variant', `${media.id}/${String(req.params['name'])}`);
      const base = media.fileName.replace(/\.[^.]*$/, '');
      const ext = media.fileName.includes('.') ? media.fileName.slice(media.fileName.lastIndexOf('.')) : '';
      await serve(services, req, res, {
        key: objectKeys.variant(media.tenantId, media.id, v.name),
        size: v.size,
        mediaType: v.mediaType,
        etag: `"${media.checksum}-${v.name.toLowerCase()}"`,
        fileName: `${base}-${v.name.toLowerCase()}${ext}`,
        inline: true,
      }, media);
    }),
  );
  return router;
}
