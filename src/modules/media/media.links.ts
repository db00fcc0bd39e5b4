import type { Services } from '../../services.js';
import type { MediaRecord, VariantRecord } from './media.record.js';

export const contentPath = (id: string) => `/media/${id}/content`;
export const variantPath = (id: string, name: string) => `/media/${id}/variants/${name}`;

/**
 * A link that works without credentials for a limited time, for STANDARD media
 * only; encrypted or sensitive content is served with credentials (null here).
 */
export function signedUrl(services: Services, media: MediaRecord, path: string): string | null {
  if (media.encrypted || media.securityLevel !== 'STANDARD') return null;
  const token = services.links.sign(media.tenantId, path, services.config.signedUrlTtlSeconds);
  return `${services.urls.base()}${path}?token=${encodeURIComponent(token)}`;
}

export function variantUrl(services: Services, media: MediaRecord, v: VariantRecord): string {
  const path = variantPath(media.id, v.name);
  return signedUrl(services, media, path) ?? `${services.urls.base()}${path}`;
}
