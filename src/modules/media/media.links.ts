import { create as contentDisposition } from 'content-disposition';
import { INLINE_KINDS } from '../policy/media-types.js';
import type { Services } from '../../services.js';
import type { MediaRecord, VariantRecord } from './media.record.js';
import { variantKey } from '../../storage/index.js';
import { canonicalQuery, isRenderable, type RenderRequest } from '../renders/render-plan.js';

export const contentPath = (id: string) => `/media/${id}/content`;
export const variantPath = (id: string, name: string) => `/media/${id}/variants/${name}`;


export function dispositionOf(media: Pick<MediaRecord, 'kind' | 'fileName'>, fileName = media.fileName): string {
  return contentDisposition(fileName, { type: INLINE_KINDS.has(media.kind) ? 'inline' : 'attachment' });
}

/**
 * A URL that serves the bytes without further credentials for a limited time, for
 * STANDARD unencrypted media only (null otherwise): a presigned GET where the
 * storage has one (S3), else a signed link to the service's own content route.
 */
export async function signedUrl(services: Services, media: MediaRecord, path: string, key = media.storageKey, variant?: VariantRecord): Promise<string | null> {
  if (media.encrypted || media.securityLevel !== 'STANDARD') return null;
  const ttl = services.config.signedUrlTtlSeconds;
  if (services.storage.presignGet) {
    return services.storage.presignGet(key, {
      expiresIn: ttl,
      contentType: variant?.mediaType ?? media.mediaType,
      contentDisposition: dispositionOf(media),
    });
  }
  const token = services.links.sign(media.tenantId, path, ttl);
  return `${services.urls.base()}${path}?token=${encodeURIComponent(token)}`;
}

/**
 * Where a variant is fetched. A variant stored with its upload (older media) is
 * signed like the content (a presigned GET on S3); one rendered on demand is
 * served by the service itself (it may not exist yet), through a signed link
 * for STANDARD unencrypted media. Otherwise the path, for a caller with a token.
 */
export async function variantUrl(services: Services, media: MediaRecord, v: VariantRecord): Promise<string> {
  const path = variantPath(media.id, v.name);
  if (v.size !== undefined) return (await signedUrl(services, media, path, variantKey(media, v), v)) ?? `${services.urls.base()}${path}`;
  if (media.encrypted || media.securityLevel !== 'STANDARD') return `${services.urls.base()}${path}`;
  const token = services.links.sign(media.tenantId, path, services.config.signedUrlTtlSeconds);
  return `${services.urls.base()}${path}?token=${encodeURIComponent(token)}`;
}

/** The render route of a media with its parameters in canonical form: what a signed render link covers. */
export function renderPath(id: string, request: RenderRequest): string {
  const q = canonicalQuery(request);
  return `/media/${id}/render${q ? `?${q}` : ''}`;
}

/**
 * A signed, time-limited URL of a render of a STANDARD unencrypted image (null
 * otherwise: an encrypted media's renders are fetched with a token, and other
 * media have none). The link covers exactly these parameters.
 */
export function renderUrl(services: Services, media: MediaRecord, request: RenderRequest): string | null {
  if (media.encrypted || media.securityLevel !== 'STANDARD' || !isRenderable(media.mediaType)) return null;
  const path = renderPath(media.id, request);
  const token = services.links.sign(media.tenantId, path, services.config.signedUrlTtlSeconds);
  return `${services.urls.base()}${path}${path.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
}
