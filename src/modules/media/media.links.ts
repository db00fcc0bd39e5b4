import { create as contentDisposition } from 'content-disposition';
import { INLINE_KINDS } from '../policy/media-types.js';
import type { Services } from '../../services.js';
import type { MediaRecord, VariantRecord } from './media.record.js';
import { variantKey } from '../../storage/index.js';

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

export async function variantUrl(services: Services, media: MediaRecord, v: VariantRecord): Promise<string> {
  const path = variantPath(media.id, v.name);
  return (await signedUrl(services, media, path, variantKey(media, v), v)) ?? `${services.urls.base()}${path}`;
}
