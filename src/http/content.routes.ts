import { Router, type Request, type Response } from 'express';
import { INLINE_KINDS } from '../modules/policy/media-types.js';
import { create as contentDisposition } from 'content-disposition';
import { createHmac } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { errors, isAppError } from '../errors/index.js';
import { requireScope } from '../auth/http-auth.js';
import type { Services } from '../services.js';
import type { MediaRecord } from '../modules/media/media.record.js';
import { variantKey, type ByteRange } from '../storage/index.js';
import { isRenderable, parseRenderQuery, planPreset, planRender, type RenderPlan, type RenderSourceImage } from '../modules/renders/render-plan.js';
import { mediaRenderSource, type StoredRender } from '../modules/renders/render.service.js';
import { renderPath } from '../modules/media/media.links.js';
import { route } from './respond.js';
import { factsOf } from './request-facts.js';
import { IntegrityFailure } from '../crypto/segmented-gcm.js';
import { keyOrIntegrityError, openChecksum } from '../crypto/sealed-checksum.js';
import { firstChunk } from '../crypto/content-crypto.js';


/** One stored object to send: where it is and the headers that describe it. */
export interface Servable {
  key: string;
  size: number;
  mediaType: string;
  etag: string;
  fileName: string;
  inline: boolean;
  /** Cache-Control of the response (also sent with 304 and 416). */
  cacheControl: string;
  /** The body for a range (or all of it); default: the stored bytes as they are. */
  open?: (range: ByteRange | undefined) => Promise<Readable>;
  /** Request headers the response depends on (a render with format=auto: Accept). */
  vary?: string;
  /**
   * Called once the request is known to need the body (not a 304): makes it
   * (a render) and says its size and how to open it. Until then `size` is unused.
   */
  load?: () => Promise<{ size: number; mediaType?: string; open?: (range: ByteRange | undefined) => Promise<Readable>; headers?: Record<string, string> }>;
}

/**
 * Resolves the tenant of a content request: a signed link made for exactly this
 * path (`?token=`), or a user token with media:read.
 */
async function tenantFor(services: Services, req: Request, signedPath = req.path): Promise<string> {
  const token = typeof req.query['token'] === 'string' ? req.query['token'] : undefined;
  if (token !== undefined) {
    const tenant = services.links.verify(token, signedPath);
    if (!tenant) throw errors.unauthenticated('The link is invalid or has expired');
    const facts = factsOf(req.res);
    facts.tenant = tenant;
    facts.subject = 'signed-link';
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

/**
 * Sends a stored object the way every content route does (media and assets):
 * nosniff, a sandboxing CSP, Content-Disposition with an RFC 6266 file name,
 * ETag / If-None-Match (304), a single byte Range (206, 416), HEAD.
 */
export async function serveContent(services: Services, req: Request, res: Response, item: Servable): Promise<void> {
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Content-Security-Policy', "default-src 'none'; sandbox");
  res.setHeader('Cache-Control', item.cacheControl);
  res.setHeader('ETag', item.etag);
  res.setHeader('Accept-Ranges', 'bytes');
  res.setHeader('Content-Disposition', contentDisposition(item.fileName, { type: item.inline ? 'inline' : 'attachment' }));
  if (item.vary) res.vary(item.vary);
  if (req.fresh) {
    res.status(304).end();
    return;
  }
  if (item.load) {
    const loaded = await item.load();
    item = { ...item, size: loaded.size, mediaType: loaded.mediaType ?? item.mediaType, ...(loaded.open ? { open: loaded.open } : {}) };
    for (const [k, v] of Object.entries(loaded.headers ?? {})) res.setHeader(k, v);
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
  const body = item.open ? await item.open(range ?? undefined) : await services.storage.get(item.key, range ?? undefined);
  await pipeline(body, res);
}

/**
 * The body of a media object: encrypted content is decrypted and authenticated
 * segment by segment, and the checksum of a full read is verified before its last
 * bytes leave, so wrong content never completes; a failure is logged as an
 * integrity failure and answers INTEGRITY_ERROR when nothing was sent yet.
 * `locate` names the object of the media (its original, or a variant). A read that
 * finds it gone raced a key rotation: the row has moved to the new copy (and the
 * old object was deleted after it), so the row is read again and, when it names
 * another object, that one is served (the same plaintext).
 */
/** Turns an IntegrityFailure into INTEGRITY_ERROR, logged and counted; other errors pass. */
function integrityOf(services: Services, res: Response, mediaId: string, key: string) {
  return (e: unknown) => {
    if (!(e instanceof IntegrityFailure)) return e;
    services.metrics.integrityFailure('INTEGRITY_ERROR');
    services.logger.error(
      { event: 'INTEGRITY_ERROR', mediaId, key, reason: e.message, requestId: res.locals['requestId'] },
      'integrity failure: stored content does not verify',
    );
    return errors.integrity('Stored content failed verification');
  };
}

function mediaBody(services: Services, res: Response, media: MediaRecord, locate: (m: MediaRecord) => string, size: number, checksum?: string) {
  if (!media.encrypted) return undefined;
  const key = locate(media);
  const integrity = integrityOf(services, res, media.id, key);
  const open = (m: MediaRecord, at: string, range: ByteRange | undefined) =>
    services.crypto.open(services.storage, {
      key: at,
      kid: m.encryptionKeyId!,
      mode: m.encryptionMode,
      plainSize: size,
      ...(range ? { range } : {}),
      ...(checksum ? { checksum } : {}),
    });
  return async (range: ByteRange | undefined): Promise<Readable> => {
    try {
      let body: Readable;
      try {
        body = await open(media, key, range);
      } catch (e) {
        if (!(isAppError(e) && e.code === 'NOT_FOUND')) throw e;
        const moved = await services.media.require(media.tenantId, media.id);
        const now = locate(moved);
        if (now === key) throw e;
        body = await open(moved, now, range);
      }
      body.on('error', integrity);
      // Authenticate the first segment before the status line goes out, so a
      // corrupt object answers INTEGRITY_ERROR instead of a cut-off 200.
      await firstChunk(body);
      return body;
    } catch (e) {
      throw integrity(e);
    }
  };
}

/** "photo.jpg" and THUMB → "photo-thumb.jpg". */
export function variantFileName(fileName: string, variant: string): string {
  const base = fileName.replace(/\.[^.]*$/, '');
  const ext = fileName.includes('.') ? fileName.slice(fileName.lastIndexOf('.')) : '';
  return `${base}-${variant.toLowerCase()}${ext}`;
}

function mediaCacheControl(media: MediaRecord): string {
  return media.encrypted || media.securityLevel !== 'STANDARD' ? 'private, no-store' : 'private, no-cache';
}

/**
 * The ETag of a media's content or variant. For encrypted media it is an HMAC of the
 * checksum under a key derived from the media's ring key, not the plaintext SHA-256:
 * that would let anyone who sees an ETag (a proxy, a log) confirm that a known
 * document is stored. It changes when the media's key rotates (one re-download).
 */
function mediaEtag(services: Services, res: Response, media: MediaRecord, variant?: string): string {
  const suffix = variant ? `-${variant.toLowerCase()}` : '';
  if (!media.encrypted || !media.encryptionKeyId) return `"${media.checksum}${suffix}"`;
  const key = services.crypto.ring.objectKey(media.encryptionKeyId, 'etag');
  return `"${createHmac('sha256', key).update(`${plainChecksum(services, res, media)}${suffix}`).digest('base64url').slice(0, 32)}"`;
}

/** The hex SHA-256 of a media's content (an encrypted media's row holds it sealed): KEY_MISMATCH when the ring holds another key of its name, INTEGRITY_ERROR when it does not open. */
function plainChecksum(services: Services, res: Response, media: MediaRecord): string {
  try {
    return openChecksum(services.crypto.ring, media);
  } catch (e) {
    throw keyOrIntegrityError(e, services, media, res.locals['requestId']);
  }
}

export function contentRoutes(services: Services): Router {
  const router = Router();
  const log = services.logger;

  router.get(
    '/media/:id/content',
    route(log, async (req, res) => {
      const tenant = await tenantFor(services, req);
      const media = await services.media.require(tenant, String(req.params['id']));
      factsOf(res).touchMedia(media.id);
      await serveContent(services, req, res, {
        key: media.storageKey,
        size: media.fileSize,
        mediaType: media.mediaType,
        etag: mediaEtag(services, res, media),
        fileName: media.fileName,
        inline: INLINE_KINDS.has(media.kind),
        cacheControl: mediaCacheControl(media),
        open: mediaBody(services, res, media, (m) => m.storageKey, media.fileSize, plainChecksum(services, res, media)),
      });
    }),
  );

  router.get(
    '/media/:id/variants/:name',
    route(log, async (req, res) => {
      const tenant = await tenantFor(services, req);
      const media = await services.media.require(tenant, String(req.params['id']));
      factsOf(res).touchMedia(media.id);
      const v = media.variants.find((x) => x.name === req.params['name']);
      if (!v) throw errors.notFound('Variant', `${media.id}/${String(req.params['name'])}`);
      if (v.size === undefined) {
        // A preset render, made on its first request.
        const plan = planPreset(v.name, imageOf(media));
        return serveRender(services, req, res, media, plan, variantFileName(media.fileName, v.name), v.name);
      }
      // Stored with the upload (media from before renders on demand).
      const key = variantKey(media, v);
      await serveContent(services, req, res, {
        key,
        size: v.size,
        mediaType: v.mediaType,
        etag: mediaEtag(services, res, media, v.name),
        fileName: variantFileName(media.fileName, v.name),
        inline: true,
        cacheControl: mediaCacheControl(media),
        open: mediaBody(services, res, media, (m) => {
          const now = m.variants.find((x) => x.name === v.name);
          return now ? variantKey(m, now) : key;
        }, v.size),
      });
    }),
  );

  router.get(
    '/media/:id/render',
    route(log, async (req, res) => {
      const request = parseRenderQuery(req.query as Record<string, unknown>, { allowedSizes: services.config.renderSizes, ignore: ['token'] });
      const tenant = await tenantFor(services, req, renderPath(String(req.params['id']), request));
      const media = await services.media.require(tenant, String(req.params['id']));
      factsOf(res).touchMedia(media.id);
      const plan = planRender(request, imageOf(media), req.headers.accept);
      await serveRender(services, req, res, media, plan, renderFileName(media.fileName, plan));
    }),
  );
  return router;
}

/** The size and type renders of a media are planned from; UNSUPPORTED_MEDIA_TYPE when it is not an image renders are made of. */
function imageOf(media: MediaRecord): RenderSourceImage {
  if (!isRenderable(media.mediaType) || !media.width || !media.height) {
    throw errors.unsupportedType(`Media ${media.id} is ${media.mediaType}: renders are made of JPEG, PNG, WebP and GIF images`);
  }
  return { width: media.width, height: media.height, mediaType: media.mediaType };
}

/** "photo.jpg" rendered 640 x 480 as WebP → "photo-640x480.webp". */
export function renderFileName(fileName: string, plan: RenderPlan): string {
  const base = fileName.includes('.') ? fileName.slice(0, fileName.lastIndexOf('.')) : fileName;
  return `${base}-${plan.width}x${plan.height}.${plan.format === 'jpeg' ? 'jpg' : plan.format}`;
}

/** What is sent once a render is known: how it was answered (hit, rendered, coalesced). */
export const RENDER_OUTCOME_HEADER = 'X-Render-Outcome';

/**
 * Serves one render of a media like its content: the same authentication, the
 * media's Cache-Control, an ETag of the original and the plan (known before
 * anything is rendered, so a revalidation is a 304 without work), Vary: Accept
 * for format=auto. The render is made (or found) only when the body is needed.
 */
async function serveRender(services: Services, req: Request, res: Response, media: MediaRecord, plan: RenderPlan, fileName: string, variant?: string): Promise<void> {
  const source = mediaRenderSource(media, plainChecksum(services, res, media));
  await serveContent(services, req, res, {
    key: '',
    size: 0,
    mediaType: plan.mediaType,
    etag: mediaEtag(services, res, media, variant ?? `r${plan.hash}`),
    fileName,
    inline: true,
    cacheControl: mediaCacheControl(media),
    ...(plan.varyAccept ? { vary: 'Accept' } : {}),
    load: async () => {
      const { render, outcome } = await services.renders.get(source, plan);
      return { size: render.size, mediaType: render.mediaType, open: renderOpener(services, res, media.id, render), headers: { [RENDER_OUTCOME_HEADER]: outcome } };
    },
  });
}

/** Opens a stored render; a sealed one is authenticated segment by segment, its first before the status line goes out. */
export function renderOpener(services: Services, res: Response, ownerId: string, render: StoredRender) {
  return async (range: ByteRange | undefined): Promise<Readable> => {
    const integrity = integrityOf(services, res, ownerId, render.key);
    try {
      const body = await services.renders.open(render, range);
      if (render.kid === null) return body;
      body.on('error', integrity);
      await firstChunk(body);
      return body;
    } catch (e) {
      throw integrity(e);
    }
  };
}

