import { Router, type Request, type Response } from 'express';
import { requireHttpUser, requireScope } from '../auth/http-auth.js';
import { errors } from '../errors/index.js';
import type { Services } from '../services.js';
import type { AssetRecord } from '../modules/assets/asset.record.js';
import { publicUrlOf } from '../modules/assets/asset.record.js';
import { INLINE_KINDS, SUPPORTED_TYPES } from '../modules/policy/media-types.js';
import { serveContent, variantFileName, type Servable } from './content.routes.js';
import { route } from './respond.js';
import { factsOf } from './request-facts.js';
import { allowAnyOrigin } from './cors.js';
import { sanitiseFileName } from '../modules/media/file-name.js';

const TENANT_RE = /^[a-z][a-z0-9]{2,15}$/;
/** PUBLIC blobs: 30 days (SPEC 11); a replaced file gets a new URL (?v={version}). */
const PUBLIC_CACHE = 'public, max-age=2592000';
const PRIVATE_CACHE = 'private, no-store';

/** The original of a blob asset, or one of its variants (`?variant=THUMB`); null when there is no such variant. */
function servableOf(asset: AssetRecord, variant: string | undefined): Servable | null {
  const cacheControl = asset.access === 'PUBLIC' ? PUBLIC_CACHE : PRIVATE_CACHE;
  // A stored name is sanitised when the row is read; a key's last segment is named here.
  const fileName = asset.fileName ?? sanitiseFileName(asset.key.split('/').pop(), asset.mimeType);
  if (variant !== undefined) {
    const v = asset.variants.find((x) => x.name === variant);
    if (!v) return null;
    return {
      key: v.key,
      size: v.size,
      mediaType: v.mediaType,
      etag: `"${asset.checksum}-${v.name.toLowerCase()}"`,
      fileName: variantFileName(fileName, v.name),
      inline: true,
      cacheControl,
    };
  }
  return {
    key: asset.storageKey!,
    size: asset.bytes!,
    mediaType: asset.mimeType!,
    etag: `"${asset.checksum}"`,
    fileName,
    inline: INLINE_KINDS.has(SUPPORTED_TYPES.get(asset.mimeType!)?.kind ?? ''),
    cacheControl,
  };
}

/** 301 to a URL. Not cacheable: the target changes when the asset does (a new version, a new link). */
function redirect(res: Response, url: string): void {
  res.status(301).setHeader('Cache-Control', 'no-store');
  res.location(url).end();
}

const variantParam = (req: Request) => (typeof req.query['variant'] === 'string' ? req.query['variant'] : undefined);

/**
 * Asset downloads (SPEC 11), beside /graphql:
 * - GET /assets/{id}/download (asset:read): 301 to the public URL for PUBLIC
 *   blobs and LINKs, the bytes for PRIVATE blobs;
 * - GET /tenants/{tenant}/assets/{key}: a PUBLIC blob to anyone (cacheable for 30
 *   days), a PRIVATE blob only with a token of that tenant with asset:read, a LINK
 *   as 301 (a PRIVATE one under the same rule as a PRIVATE blob); `?handleError=true`
 *   answers a missing key with an empty 204.
 * With CORS on (CORS_ORIGINS), the PUBLIC assets of the second route answer any
 * origin (src/http/cors.ts); everything else answers the listed origins only.
 * Both take `?variant=THUMB|MEDIUM|LARGE|LARGE_2X` for image variants, and serve
 * content like the media routes (nosniff, sandbox CSP, Content-Disposition,
 * ETag / If-None-Match, Range).
 */
export function assetRoutes(services: Services): Router {
  const router = Router();
  const log = services.logger;

  router.get(
    '/assets/:id/download',
    route(log, async (req, res) => {
      const user = await requireScope(services, req, 'asset:read');
      const asset = await services.assets.require(user.tenant, String(req.params['id']));
      const variant = variantParam(req);
      const item = asset.type === 'BLOB' ? servableOf(asset, variant) : null;
      if (variant !== undefined && !item) throw errors.notFound('Variant', `${asset.id}/${variant}`);
      if (asset.type === 'LINK') {
        const target = services.assets.linkTarget(asset);
        if (!target) throw errors.notFound('Asset', `${asset.id} (its link names a host that is not public)`);
        return redirect(res, target);
      }
      if (asset.access === 'PUBLIC') return redirect(res, publicUrlOf(services.urls.base(), asset, variant)!);
      await serveContent(services, req, res, item!);
    }),
  );

  router.get(
    '/tenants/:tenant/assets/*key',
    route(log, async (req, res) => {
      const tenant = String(req.params['tenant']);
      const key = ([] as string[]).concat(req.params['key'] as unknown as string[]).join('/');
      const missing = () => {
        if (req.query['handleError'] === 'true') {
          res.status(204).setHeader('Cache-Control', 'no-store');
          res.end();
          return;
        }
        throw errors.notFound('Asset', `with key "${key}"`);
      };
      if (TENANT_RE.test(tenant)) factsOf(res).tenant = tenant;
      const asset = TENANT_RE.test(tenant) ? await services.assets.byKey(tenant, key) : null;
      if (!asset) return missing();
      if (asset.access === 'PRIVATE') {
        // Blob or link alike (a private link's URL is private too): credentials first (401),
        // then the tenant (another tenant's key is missing for them), then the scope (403).
        const user = await requireHttpUser(services, req);
        if (user.tenant !== tenant) return missing();
        if (!user.scopes.has('asset:read')) throw errors.forbidden('asset:read');
      }
      if (asset.type === 'LINK') {
        const target = services.assets.linkTarget(asset);
        if (target && asset.access === 'PUBLIC') allowAnyOrigin(services.config.corsOrigins, res);
        return target ? redirect(res, target) : missing();
      }
      const item = servableOf(asset, variantParam(req));
      if (!item) return missing();
      // Public content, for any page to use; a missing key or a PRIVATE asset keeps the listed origins only.
      if (asset.access === 'PUBLIC') allowAnyOrigin(services.config.corsOrigins, res);
      await serveContent(services, req, res, item);
    }),
  );
  return router;
}
