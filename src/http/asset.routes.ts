import { Router, type Request, type Response } from 'express';
import { requireHttpUser, requireScope } from '../auth/http-auth.js';
import { errors } from '../errors/index.js';
import type { Services } from '../services.js';
import type { AssetRecord } from '../modules/assets/asset.record.js';
import { publicUrlOf } from '../modules/assets/asset.record.js';
import { INLINE_KINDS, SUPPORTED_TYPES } from '../modules/policy/media-types.js';
import { RENDER_OUTCOME_HEADER, renderFileName, renderOpener, serveContent, variantFileName, type Servable } from './content.routes.js';
import { asksForRender, canonicalQuery, parseRenderQuery, planPreset, planRender, type RenderPlan } from '../modules/renders/render-plan.js';
import type { RenderSource } from '../modules/renders/render.service.js';
import { route } from './respond.js';
import { factsOf } from './request-facts.js';
import { allowAnyOrigin } from './cors.js';
import { sanitiseFileName } from '../ingest/file-name.js';

const TENANT_RE = /^[a-z][a-z0-9]{2,15}$/;
/** PUBLIC blobs: 30 days (SPEC 11); a replaced file gets a new URL (?v={version}). */
const PUBLIC_CACHE = 'public, max-age=2592000';
const PRIVATE_CACHE = 'private, no-store';

/**
 * What a blob request serves: the original, one of its variants
 * (`?variant=THUMB`), or a render (`?w=&h=&fit=&format=&q=`); null when there is
 * no such variant. Variants stored with the asset (before renders on demand) are
 * served as they are; the others are renders, made on their first request.
 */
async function servableOf(services: Services, req: Request, res: Response, asset: AssetRecord, variant: string | undefined): Promise<Servable | null> {
  const cacheControl = asset.access === 'PUBLIC' ? PUBLIC_CACHE : PRIVATE_CACHE;
  // A stored name is sanitised when the row is read; a key's last segment is named here.
  const fileName = asset.fileName ?? sanitiseFileName(asset.key.split('/').pop(), asset.mimeType);
  const query = req.query as Record<string, unknown>;
  if (asksForRender(query)) {
    if (variant !== undefined) throw errors.badInput('variant', 'Ask for a variant or for a render (w, h, fit, format, q), not both');
    const request = parseRenderQuery(query, { allowedSizes: services.config.renderSizes, ignore: ['v', 'handleError', 'token'] });
    const plan = planRender(request, await services.assets.imageOf(asset), req.headers.accept);
    return assetRender(services, res, asset, plan, { cacheControl, fileName: renderFileName(fileName, plan) });
  }
  if (variant !== undefined) {
    const v = asset.variants.find((x) => x.name === variant);
    if (!v) return null;
    if (v.size === undefined || v.key === undefined) {
      const plan = planPreset(v.name, await services.assets.imageOf(asset));
      return assetRender(services, res, asset, plan, { cacheControl, fileName: variantFileName(fileName, v.name) });
    }
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

/** A render of an image asset, stored in the folder of its original; made (or found) only when the body is needed. */
function assetRender(services: Services, res: Response, asset: AssetRecord, plan: RenderPlan, o: { cacheControl: string; fileName: string }): Servable {
  const sourceKey = asset.storageKey!;
  const source: RenderSource = {
    kind: 'asset',
    tenant: asset.tenantId,
    ownerId: asset.id,
    sourceKey,
    folder: sourceKey.slice(0, sourceKey.lastIndexOf('/') + 1),
    size: asset.bytes ?? 0,
  };
  return {
    key: '',
    size: 0,
    mediaType: plan.mediaType,
    etag: `"${asset.checksum}-r${plan.hash}"`,
    fileName: o.fileName,
    inline: true,
    cacheControl: o.cacheControl,
    ...(plan.varyAccept ? { vary: 'Accept' } : {}),
    load: async () => {
      const { render, outcome } = await services.renders.get(source, plan);
      return { size: render.size, mediaType: render.mediaType, open: renderOpener(services, res, asset.id, render), headers: { [RENDER_OUTCOME_HEADER]: outcome } };
    },
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
 * Both take `?variant=THUMB|MEDIUM|LARGE|LARGE_2X` for image variants and
 * `?w=&h=&fit=&format=&q=` for renders (a PUBLIC asset's render is public), and serve
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
      const item = asset.type === 'BLOB' ? await servableOf(services, req, res, asset, variant) : null;
      if (variant !== undefined && !item) throw errors.notFound('Variant', `${asset.id}/${variant}`);
      if (asset.type === 'LINK') {
        const target = services.assets.linkTarget(asset);
        if (!target) throw errors.notFound('Asset', `${asset.id} (its link names a host that is not public)`);
        return redirect(res, target);
      }
      if (asset.access === 'PUBLIC') {
        const query = req.query as Record<string, unknown>;
        const render = asksForRender(query) ? canonicalQuery(parseRenderQuery(query, { allowedSizes: services.config.renderSizes, ignore: ['v', 'token', 'handleError'] })) : '';
        const url = publicUrlOf(services.urls.base(), asset, variant)!;
        return redirect(res, render ? url.replace('?', `?${render}&`) : url);
      }
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
      const item = await servableOf(services, req, res, asset, variantParam(req));
      if (!item) return missing();
      // Public content, for any page to use; a missing key or a PRIVATE asset keeps the listed origins only.
      if (asset.access === 'PUBLIC') allowAnyOrigin(services.config.corsOrigins, res);
      await serveContent(services, req, res, item);
    }),
  );
  return router;
}
