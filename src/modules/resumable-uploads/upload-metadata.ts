import { errors } from '../../errors/index.js';
import { MediaRole } from '../../generated/prisma/enums.js';
import { unstorableText } from '../../util/storable-text.js';

/**
 * The Upload-Metadata keys a resumable upload reads (tus sends each value
 * base64-encoded; @tus/server decodes them). Keys are case-sensitive; other keys
 * (Uppy adds `name`, `type`, `relativePath`, …) are kept for HEAD answers and
 * otherwise ignored.
 */
export const METADATA_KEYS = {
  /** Entity type of the policy, e.g. `property` (required). */
  entityType: 'entityType',
  /** Entity id, 1-128 characters (required). */
  entityId: 'entityId',
  /** Tags, comma-separated, normalised like `upload`'s (optional). */
  tags: 'tags',
  /** A MediaRole, e.g. PRIMARY_PHOTO (optional; CRITICAL roles are refused). */
  role: 'role',
  /** The file's name (optional; Uppy's `name` when absent). */
  filename: 'filename',
  /** The file's MIME type as the client sees it (optional; Uppy's `type` when absent). */
  filetype: 'filetype',
} as const;

/** At most this many keys, each value at most MAX_VALUE characters (a tag list of 32 tags of 64 fits). */
const MAX_KEYS = 32;
const MAX_VALUE = 4096;

export interface ResumableMetadata {
  entity: { type: string; id: string };
  tags: string[] | null;
  role: MediaRole | null;
  filename: string | null;
  filetype: string | null;
}

const ROLES = new Set<string>(Object.values(MediaRole));

/**
 * Reads the parsed Upload-Metadata (key → decoded value, null for a key without
 * one); BAD_USER_INPUT names the key at fault. The entity, tags and role are
 * checked further by the upload plan.
 */
export function readMetadata(raw: Record<string, string | null> | undefined): ResumableMetadata {
  const meta = raw ?? {};
  const keys = Object.keys(meta);
  if (keys.length > MAX_KEYS) throw errors.badInput('Upload-Metadata', `At most ${MAX_KEYS} Upload-Metadata keys`);
  for (const k of keys) {
    const v = meta[k];
    if (v === null || v === undefined) continue;
    if (v.length > MAX_VALUE) throw errors.badInput(`Upload-Metadata.${k.slice(0, 64)}`, `Upload-Metadata value of "${k.slice(0, 64)}" is longer than ${MAX_VALUE} characters`);
    const problem = unstorableText(v);
    if (problem) throw errors.badInput(`Upload-Metadata.${k.slice(0, 64)}`, `Upload-Metadata value of "${k.slice(0, 64)}" ${problem}`);
  }
  const text = (key: string) => {
    const v = meta[key];
    return v === null || v === undefined || v.trim() === '' ? null : v;
  };
  const required = (key: string) => {
    const v = text(key);
    if (v === null) throw errors.badInput(`Upload-Metadata.${key}`, `Upload-Metadata must carry "${key}" (base64): ${Object.values(METADATA_KEYS).join(', ')}`);
    return v;
  };
  const entityType = required(METADATA_KEYS.entityType).trim();
  const entityId = required(METADATA_KEYS.entityId);
  const tags = text(METADATA_KEYS.tags);
  const role = text(METADATA_KEYS.role)?.trim() ?? null;
  if (role !== null && !ROLES.has(role)) {
    throw errors.badInput(`Upload-Metadata.${METADATA_KEYS.role}`, `Unknown role "${role.slice(0, 64)}"; roles: ${[...ROLES].join(', ')}`);
  }
  return {
    entity: { type: entityType, id: entityId },
    // One string with commas: the plan splits, trims and normalises it like upload's tags.
    tags: tags === null ? null : [tags],
    role: role as MediaRole | null,
    filename: text(METADATA_KEYS.filename) ?? text('name'),
    filetype: text(METADATA_KEYS.filetype) ?? text('type'),
  };
}
