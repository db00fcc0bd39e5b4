import type { MediaKind, SecurityLevel, MediaRole } from '../../generated/prisma/enums.js';
import { sanitiseFileName } from '../../ingest/file-name.js';

export interface VariantRecord {
  name: 'THUMB' | 'MEDIUM' | 'LARGE' | 'LARGE_2X';
  width: number;
  height: number;
  /**
   * Bytes of the stored variant: only on variants written with the upload (before
   * variants rendered on demand, issue 14); absent, the variant is a render made
   * on its first request (image_render).
   */
  size?: number;
  mediaType: string;
  /**
   * Storage key of the variant's object, recorded once key rotation moved it
   * (`{tenant}/{id}/{name}-{kid}`); absent: the key derived from the name
   * (`variantKey` in storage.ts resolves both).
   */
  key?: string;
}

/** A media row as the service hands it around (tenant-checked, not deleted). */
export interface MediaRecord {
  id: string;
  tenantId: string;
  fileName: string;
  mediaType: string;
  kind: MediaKind;
  fileSize: number;
  checksum: string;
  securityLevel: SecurityLevel;
  encrypted: boolean;
  encryptionKeyId: string | null;
  /** How the encrypted objects are stored; null when not encrypted (or not yet recorded: a legacy row). */
  encryptionMode: 'app' | 'sse-c' | null;
  /** Fingerprint of the ring key that encrypted it (KeyRing.fingerprint); null when not encrypted or not recorded. */
  encryptionKeyFp?: string | null;
  storageKey: string;
  tags: string[];
  width: number | null;
  height: number | null;
  durationSeconds: number | null;
  pageCount: number | null;
  variants: VariantRecord[];
  createdBy: string | null;
  createdAt: Date;
  updatedAt: Date;
  version: number;
}

export interface EntityRef {
  type: string;
  id: string;
}

export interface RoleRecord {
  role: MediaRole;
  entityType: string;
  entityId: string;
  mediaId: string;
  assignedAt: Date;
}

export interface Connection<T> {
  nodes: T[];
  pageInfo: { endCursor: string | null; hasNextPage: boolean };
  /** A number, or a promise of it that is only made when the field is read (see toConnection). */
  readonly totalCount: number | Promise<number>;
}

/** Raw row of `SELECT m.* FROM media m`. */
export interface MediaRow {
  id: string;
  tenant_id: string;
  file_name: string;
  media_type: string;
  kind: MediaKind;
  file_size: bigint | number | string;
  checksum: string;
  security_level: SecurityLevel;
  encrypted: boolean;
  encryption_key_id: string | null;
  encryption_mode: 'app' | 'sse-c' | null;
  encryption_key_fp?: string | null;
  storage_key: string;
  tags: string[];
  width: number | null;
  height: number | null;
  duration_seconds: number | null;
  page_count: number | null;
  variants: unknown;
  created_by: string | null;
  created_at: Date;
  updated_at: Date;
  version: number;
}

export function mediaFromRow(r: MediaRow): MediaRecord {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    // Rows stored before today's naming rules are served by them (idempotent for newer rows).
    fileName: sanitiseFileName(r.file_name, r.media_type),
    mediaType: r.media_type,
    kind: r.kind,
    fileSize: Number(r.file_size),
    checksum: r.checksum,
    securityLevel: r.security_level,
    encrypted: r.encrypted,
    encryptionKeyId: r.encryption_key_id,
    encryptionMode: r.encryption_mode ?? null,
    encryptionKeyFp: r.encryption_key_fp ?? null,
    storageKey: r.storage_key,
    tags: r.tags ?? [],
    width: r.width,
    height: r.height,
    durationSeconds: r.duration_seconds,
    pageCount: r.page_count,
    variants: (typeof r.variants === 'string' ? JSON.parse(r.variants) : (r.variants ?? [])) as VariantRecord[],
    createdBy: r.created_by,
    createdAt: new Date(r.created_at),
    updatedAt: new Date(r.updated_at),
    version: r.version,
  };
}
