import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { SecurityLevel, MediaRole, MediaKind } from '../../generated/prisma/enums.js';
import { errors } from '../../errors/index.js';
import { SUPPORTED_TYPES, TYPE_GROUPS } from './media-types.js';

const MiB = 1024 * 1024;

export interface EntityPolicy {
  readonly entityType: string;
  readonly securityLevel: SecurityLevel;
  readonly allowedMediaTypes: readonly string[];
  /** The policy's own cap; the effective limit is the smaller of this and the kind's. */
  readonly maxFileSize: number;
}

const LEVEL_ORDER: Record<SecurityLevel, number> = { STANDARD: 0, SENSITIVE: 1, CRITICAL: 2 };

/** Roles that always make their media CRITICAL (SPEC 4). */
export const CRITICAL_ROLES: ReadonlySet<MediaRole> = new Set<MediaRole>(['ID_DOCUMENT', 'LEASE_ORIGINAL', 'LEASE_SIGNED']);

export function maxLevel(...levels: (SecurityLevel | undefined | null)[]): SecurityLevel {
  let best: SecurityLevel = 'STANDARD';
  for (const l of levels) if (l && LEVEL_ORDER[l] > LEVEL_ORDER[best]) best = l;
  return best;
}

export function levelAtLeast(level: SecurityLevel, floor: SecurityLevel): boolean {
  return LEVEL_ORDER[level] >= LEVEL_ORDER[floor];
}

/** The policy file format: entity type -> { securityLevel, allowed (MIME types or group names), maxFileSizeMB? }. */
const PolicyFileSchema = z.record(
  z.string().regex(/^[a-z][a-z0-9_-]{0,63}$/, 'entity type names are lowercase [a-z0-9_-]'),
  z.object({
    securityLevel: z.enum(['STANDARD', 'SENSITIVE', 'CRITICAL']),
    allowed: z.array(z.string()).min(1),
    maxFileSizeMB: z.number().positive().optional(),
  }),
);

export const DEFAULT_POLICY_SOURCE: z.input<typeof PolicyFileSchema> = {
  property: { securityLevel: 'STANDARD', allowed: ['images', 'pdf', 'video'] },
  unit: { securityLevel: 'STANDARD', allowed: ['images', 'pdf', 'video'] },
  person: { securityLevel: 'SENSITIVE', allowed: ['images', 'pdf'], maxFileSizeMB: 10 },
  lease: { securityLevel: 'CRITICAL', allowed: ['pdf', 'images'], maxFileSizeMB: 20 },
  company: { securityLevel: 'STANDARD', allowed: ['images', 'pdf', 'office'] },
};

/** Per-kind size limits in bytes that replace the built-in ones (MEDIA_KIND_LIMITS_MB). */
export type KindLimits = Partial<Record<MediaKind, number>>;

export class PolicyRegistry {
  private readonly byType: ReadonlyMap<string, EntityPolicy>;

  constructor(
    source: unknown,
    private readonly kindLimits: KindLimits = {},
  ) {
    const parsed = PolicyFileSchema.parse(source);
    const map = new Map<string, EntityPolicy>();
    for (const [entityType, p] of Object.entries(parsed)) {
      const allowed = new Set<string>();
      for (const item of p.allowed) {
        const group = TYPE_GROUPS[item];
        if (group) group.forEach((m) => allowed.add(m));
        else if (SUPPORTED_TYPES.has(item)) allowed.add(item);
        else throw new Error(`policy for "${entityType}": "${item}" is neither a supported MIME type nor a group (${Object.keys(TYPE_GROUPS).join(', ')})`);
      }
      const kindMax = Math.max(...[...allowed].map((m) => this.kindLimit(m)));
      const maxFileSize = p.maxFileSizeMB !== undefined ? Math.min(Math.floor(p.maxFileSizeMB * MiB), kindMax) : kindMax;
      map.set(entityType, Object.freeze({ entityType, securityLevel: p.securityLevel, allowedMediaTypes: Object.freeze([...allowed]), maxFileSize }));
    }
    this.byType = map;
  }

  static load(file: string | undefined, kindLimits: KindLimits = {}): PolicyRegistry {
    if (!file) return new PolicyRegistry(DEFAULT_POLICY_SOURCE, kindLimits);
    try {
      return new PolicyRegistry(JSON.parse(readFileSync(file, 'utf8')), kindLimits);
    } catch (e) {
      throw new Error(`MEDIA_POLICY_FILE ${file}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /** Size limit of a supported type's kind (built-in, or as configured). */
  kindLimit(mime: string): number {
    const t = SUPPORTED_TYPES.get(mime);
    if (!t) return 0;
    return this.kindLimits[t.kind] ?? t.maxSize;
  }

  /** The largest file any entity type accepts: the multipart parser's own cut-off is one byte above. */
  maxFileSize(): number {
    return Math.max(...[...this.byType.values()].map((p) => p.maxFileSize));
  }

  list(): EntityPolicy[] {
    return [...this.byType.values()];
  }

  /** The policy of an entity type; BAD_USER_INPUT when the type is unknown. */
  get(entityType: string, field = 'entity.type'): EntityPolicy {
    const p = this.byType.get(entityType);
    if (!p) throw errors.badInput(field, `Unknown entity type "${entityType}"; known types: ${[...this.byType.keys()].join(', ')}`);
    return p;
  }

  /** Size limit for a detected type under a policy, or an UNSUPPORTED_MEDIA_TYPE error. */
  limitFor(policy: EntityPolicy, mime: string): number {
    const t = SUPPORTED_TYPES.get(mime);
    if (!t || !policy.allowedMediaTypes.includes(mime)) {
      throw errors.unsupportedType(`Content of type ${mime} is not accepted for entity type "${policy.entityType}"`);
    }
    return Math.min(this.kindLimit(mime), policy.maxFileSize);
  }
}
