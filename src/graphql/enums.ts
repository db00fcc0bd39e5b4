import { registerEnumType } from 'type-graphql';
import { AssetAccess, AssetType, MediaKind, MediaRole, SecurityLevel } from '../generated/prisma/enums.js';

export { AssetAccess, AssetType, MediaKind, MediaRole, SecurityLevel };

export const VariantName = { THUMB: 'THUMB', MEDIUM: 'MEDIUM', LARGE: 'LARGE', LARGE_2X: 'LARGE_2X' } as const;
export type VariantName = (typeof VariantName)[keyof typeof VariantName];

registerEnumType(SecurityLevel, { name: 'SecurityLevel', description: 'How sensitive content is; SENSITIVE and CRITICAL content is stored encrypted.' });
registerEnumType(MediaRole, { name: 'MediaRole', description: 'A role a media holds for an entity; at most one holder per entity and role.' });
registerEnumType(MediaKind, { name: 'MediaKind', description: 'Kind of content, from the detected MIME type.' });
registerEnumType(VariantName, { name: 'VariantName', description: 'Image variant sizes (long edge): THUMB 160, MEDIUM 640, LARGE 1280, LARGE_2X 2560.' });
registerEnumType(AssetType, { name: 'AssetType', description: 'BLOB: a stored file; LINK: an external URL.' });
registerEnumType(AssetAccess, { name: 'AssetAccess', description: 'PUBLIC: anyone may fetch the content; PRIVATE: only the tenant, with asset:read.' });

export const ImageFit = { COVER: 'cover', CONTAIN: 'contain', INSIDE: 'inside' } as const;
export type ImageFit = (typeof ImageFit)[keyof typeof ImageFit];
export const ImageFormat = { AUTO: 'auto', WEBP: 'webp', AVIF: 'avif', JPEG: 'jpeg', PNG: 'png' } as const;
export type ImageFormat = (typeof ImageFormat)[keyof typeof ImageFormat];

registerEnumType(ImageFit, {
  name: 'ImageFit',
  description: 'How a render fits its box: INSIDE (default) keeps the whole image within it; COVER fills it, cropping the centre; CONTAIN letterboxes the whole image into it.',
});
registerEnumType(ImageFormat, {
  name: 'ImageFormat',
  description: "A render's format; AUTO (default) picks AVIF, then WebP, then the original's format from the client's Accept header.",
});
