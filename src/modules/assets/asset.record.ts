import type { AssetAccess, AssetType } from '../../generated/prisma/enums.js';
import type { VariantRecord } from '../media/media.record.js';
import { sanitiseFileName } from '../../ingest/file-name.js';

/** The size limit of a blob asset (SPEC 11: 50 MB, binary megabytes as every limit here). */
export const ASSET_MAX_BYTES = 50 * 1024 * 1024;

export interface AssetRef {
  id: string;
  type: string;
}

/** An image variant of a blob asset, with the storage key it was written under. */
/** A variant of an image asset; `key` and `size` only on those stored with the asset (before renders on demand). */
export interface AssetVariantRecord extends VariantRecord {
  key?: string;
}

/** An asset row as the service hands it around (tenant-checked, not deleted). */
export interface AssetRecord {
  id: string;
  tenantId: string;
  type: AssetType;
  access: AssetAccess;
  name: string;
  key: string;
  refIds: AssetRef[];
  priority: number;
  active: boolean;
  linkUrl: string | null;
  storageKey: string | null;
  fileName: string | null;
  mimeType: string | null;
  bytes: number | null;
  checksum: string | null;
  variants: AssetVariantRecord[];
  /** Displayed size of an image blob (null: not an image, or stored before it was recorded). */
  width: number | null;
  height: number | null;
  version: number;
  createdAt: Date;
  modifiedAt: Date;
}

/** Raw row of `SELECT a.* FROM asset a`. */
export interface AssetRow {
  tenant_id: string;
  id: string;
  type: AssetType;
  access: AssetAccess;
  name: string;
  key: string;
  ref_ids: unknown;
  priority: number;
  active: boolean;
  link_url: string | null;
  storage_key: string | null;
  file_name: string | null;
  mime_type: string | null;
  bytes: bigint | number | string | null;
  checksum: string | null;
  variants: unknown;
  width: number | null;
  height: number | null;
  version: number;
  created_at: Date;
  modified_at: Date;
  deleted_at: Date | null;
}

const json = <T>(v: unknown, fallback: T): T => (typeof v === 'string' ? (JSON.parse(v) as T) : ((v as T) ?? fallback));

export function assetFromRow(r: AssetRow): AssetRecord {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    type: r.type,
    access: r.access,
    name: r.name,
    key: r.key,
    refIds: json<AssetRef[]>(r.ref_ids, []),
    priority: r.priority,
    active: r.active,
    linkUrl: r.link_url,
    storageKey: r.storage_key,
    // Rows stored before today's naming rules are served by them (idempotent for newer rows).
    fileName: r.file_name === null ? null : sanitiseFileName(r.file_name, r.mime_type),
    mimeType: r.mime_type,
    bytes: r.bytes === null ? null : Number(r.bytes),
    checksum: r.checksum,
    variants: json<AssetVariantRecord[]>(r.variants, []),
    width: r.width ?? null,
    height: r.height ?? null,
    version: r.version,
    createdAt: new Date(r.created_at),
    modifiedAt: new Date(r.modified_at),
  };
}

/**
 * Storage keys of an asset: `{tenant}/{asset id}/{revision}/{original|variant}`.
 * Every new file gets a new revision folder, so a replacement never overwrites
 * the object the committed row still points at (nor another racing update's).
 * An asset made from a direct upload keeps the upload's `{tenant}/{id}/original`.
 */
export const assetKeys = {
  prefix: (tenant: string, id: string) => `${tenant}/${id}/`,
  revision: (tenant: string, id: string, revision: string) => `${tenant}/${id}/${revision}/`,
};

/** API path of the download route of an asset. */
export const downloadPath = (id: string) => `/assets/${id}/download`;

/** Path of the by-key route; keys are URL-safe by construction (see asset.service.ts), segments are still encoded. */
export const keyPath = (tenant: string, key: string) => `/tenants/${tenant}/assets/${key.split('/').map(encodeURIComponent).join('/')}`;

/**
 * The URL anyone may fetch: the by-key route with `?v={version}` for a PUBLIC blob
 * (a replaced file gets a new URL, so caches never serve the old one), the target
 * of a LINK, null for a PRIVATE blob.
 */
export function publicUrlOf(base: string, a: AssetRecord, variant?: string): string | null {
  if (a.type === 'LINK') return a.linkUrl;
  if (a.access !== 'PUBLIC') return null;
  return `${base}${keyPath(a.tenantId, a.key)}?${variant ? `variant=${variant}&` : ''}v=${a.version}`;
}

/** Where a variant can be fetched: public like the asset, else the credentialed download route. */
export function variantUrlOf(base: string, a: AssetRecord, variant: string): string {
  return publicUrlOf(base, a, variant) ?? `${base}${downloadPath(a.id)}?variant=${variant}`;
}
