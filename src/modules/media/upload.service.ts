import { randomUUID } from 'node:crypto';
import type { IncomingFile } from '../../graphql/multipart.js';
import type { Prisma, PrismaClient } from '../../generated/prisma/client.js';
import type { MediaRole, SecurityLevel } from '../../generated/prisma/enums.js';
import { errors, isAppError } from '../../errors/index.js';
import type { Logger } from '../../logger.js';
import type { Storage } from '../../storage/index.js';
import { objectKeys } from '../../storage/index.js';
import { SUPPORTED_TYPES } from '../policy/media-types.js';
import { CRITICAL_ROLES, levelAtLeast, maxLevel, type EntityPolicy, type PolicyRegistry } from '../policy/policy.js';
import { checkRoleLevel, upsertRole } from '../roles/roles.service.js';
import type { ImageQueue } from '../renders/image-queue.js';
import { imageFacts } from '../../ingest/image-facts.js';
import { mediaRenderSource, type RenderService } from '../renders/render.service.js';
import { isRenderable, planPreset } from '../renders/render-plan.js';
import type { Ingest, IngestSource } from '../../ingest/ingest.js';
import type { ContentCrypto, EncryptionMode } from '../../crypto/content-crypto.js';
import type { EntityRef, MediaRecord } from './media.record.js';
import type { MediaService } from './media.service.js';
import { normaliseTags } from './tags.js';
import { mediaRepository } from './media.repository.js';
import { mayHaveCommitted, transact } from '../../db/transact.js';
import type { PendingWrite, PendingWrites } from '../../db/pending-writes.js';
import { sealChecksum } from '../../crypto/sealed-checksum.js';
import type { Metrics, UploadSource } from '../../http/metrics.js';

export interface UploadRequest {
  file: IncomingFile;
  entity: EntityRef;
  tags?: string[] | null;
  role?: MediaRole | null;
  securityLevel?: SecurityLevel | null;
}

export const MAX_BATCH = 20;

/** What an upload will be, decided from its arguments before any byte is read. */
export interface Plan {
  entity: EntityRef;
  policy: EntityPolicy;
  tags: string[];
  role: MediaRole | null;
  level: SecurityLevel;
  /** Where the new media is attached, and the role it takes there (default: entity and role above). */
  attachTo?: { entity: EntityRef; role: MediaRole | null }[];
}

/** A file written to storage, checked, waiting for its rows. */
export interface Stored {
  id: string;
  plan: Plan;
  fileName: string;
  mime: string;
  size: number;
  checksum: string;
  pageCount: number | undefined;
  durationSeconds: number | undefined;
  width: number | undefined;
  height: number | undefined;
  variants: MediaRecord['variants'];
  /** Ring key id when the content is stored encrypted. */
  encryptionKeyId: string | null;
  /** How the encrypted objects are stored; null when not encrypted. */
  encryptionMode: EncryptionMode | null;
  /** The record that keeps the sweep off the objects until commit() settles it (closed by the caller). */
  pending?: PendingWrite | undefined;
  /** process.hrtime.bigint() when store() began (media_upload_duration_seconds runs from there to the commit). */
  startedAt?: bigint;
}

/** Ends the pending writes of stored files: after their commit (no error) or after `error`. */
export async function closePending(stored: Pick<Stored, 'pending'>[], error?: unknown): Promise<void> {
  await Promise.all(stored.map((s) => s.pending?.close(error)));
}

/**
 * Says that an upload will not be stored, so the multipart parser reads past it
 * and the request cannot hang. Never throws.
 */
export async function discardUpload(file: IncomingFile | null | undefined): Promise<void> {
  file?.discard();
}

export class UploadService {
  constructor(
    private readonly deps: {
      prisma: PrismaClient;
      storage: Storage;
      policies: PolicyRegistry;
      media: MediaService;
      logger: Logger;
      crypto: ContentCrypto;
      images: ImageQueue;
      /** The ingest pipeline (src/ingest): every file's checks, scanning included. */
      ingest: Ingest;
      pending: PendingWrites;
      metrics?: Metrics;
      /** RENDER_WARM_THUMBS: each new image's THUMB is rendered in the background after its commit, when the image queue is idle. */
      warmThumbs?: { renders: RenderService } | undefined;
    },
  ) {}

  /** After the commit of `media` (plaintext checksum `checksum`): warms its THUMB when set up to (never delays the caller). */
  warmThumb(media: MediaRecord, checksum: string): void {
    const warm = this.deps.warmThumbs;
    if (!warm || media.kind !== 'IMAGE' || !media.width || !media.height || !isRenderable(media.mediaType)) return;
    warm.renders.warm(mediaRenderSource(media, checksum), planPreset('THUMB', { width: media.width, height: media.height, mediaType: media.mediaType }));
  }

  plan(req: UploadRequest, field = 'input'): Plan {
    const entity = this.deps.media.entity(req.entity, `${field}.entity`);
    const policy = this.deps.policies.get(entity.type, `${field}.entity.type`);
    const tags = normaliseTags(req.tags, `${field}.tags`);
    if (req.securityLevel && !levelAtLeast(req.securityLevel, policy.securityLevel)) {
      throw errors.badInput(`${field}.securityLevel`, `Entity type "${entity.type}" requires at least ${policy.securityLevel}; a lower level cannot be asked for`);
    }
    const role = req.role ?? null;
    const level = maxLevel(policy.securityLevel, req.securityLevel, role && CRITICAL_ROLES.has(role) ? 'CRITICAL' : undefined);
    if (role) checkRoleLevel(role, level, `${field}.role`);
    return { entity, policy, tags, role, level };
  }

  async upload(tenant: string, createdBy: string, req: UploadRequest): Promise<MediaRecord> {
    let plan: Plan;
    try {
      plan = this.plan(req);
    } catch (e) {
      await discardUpload(req.file);
      throw e;
    }
    const stored = await this.store(tenant, plan, req.file);
    const [media] = await this.commitOrRemove(tenant, createdBy, [stored], 'upload');
    return media!;
  }

  /**
   * All-or-nothing: arguments of every input are checked before any byte is read;
   * files are then stored one after the other (they arrive in that order on the
   * wire); one transaction creates every row. On any failure, objects already
   * written are deleted, later files are drained, and the error carries the
   * failing input's position in extensions.index.
   */
  async uploadMany(tenant: string, createdBy: string, reqs: UploadRequest[]): Promise<MediaRecord[]> {
    const drainAll = () => Promise.all(reqs.map((r) => discardUpload(r.file)));
    if (reqs.length > MAX_BATCH) {
      await drainAll();
      throw errors.badInput('inputs', `At most ${MAX_BATCH} files in one request`);
    }
    const plans: Plan[] = [];
    for (const [i, r] of reqs.entries()) {
      try {
        plans.push(this.plan(r, `inputs.${i}`));
      } catch (e) {
        await drainAll();
        throw isAppError(e) ? e.atIndex(i) : e;
      }
    }
    const stored: Stored[] = [];
    for (const [i, r] of reqs.entries()) {
      try {
        stored.push(await this.store(tenant, plans[i]!, r.file, 'upload_many'));
      } catch (e) {
        await Promise.all([this.removeObjects(tenant, stored.map((s) => s.id)), ...reqs.slice(i + 1).map((x) => discardUpload(x.file))]);
        await closePending(stored, e);
        throw isAppError(e) ? e.atIndex(i) : e;
      }
    }
    return this.commitOrRemove(tenant, createdBy, stored, 'upload_many');
  }

  /**
   * commit(), deleting the stored objects when it fails, but only when its
   * transaction is known not to have committed; when the outcome is unknown they
   * stay (the sweep deletes groups without rows once the grace period is over).
   * Nothing runs after the commit inside the clean-up's reach.
   */
  async commitOrRemove(tenant: string, createdBy: string, stored: Stored[], source: UploadSource): Promise<MediaRecord[]> {
    let media: MediaRecord[];
    try {
      media = await this.commit(tenant, createdBy, stored);
    } catch (e) {
      await this.removeUnlessCommitted(tenant, stored.map((s) => s.id), e);
      await closePending(stored, e);
      throw e;
    }
    await closePending(stored);
    for (const s of stored) this.recordStored(source, s.mime, s.size, s.startedAt);
    for (const [i, m] of media.entries()) this.warmThumb(m, stored[i]!.checksum);
    return media;
  }

  /** Counts a committed file (media_upload_bytes_total and friends); `startedAt`: process.hrtime.bigint() when its storing began. */
  recordStored(source: UploadSource, mime: string, bytes: number, startedAt: bigint | undefined): void {
    const seconds = startedAt === undefined ? 0 : Number(process.hrtime.bigint() - startedAt) / 1e9;
    this.deps.metrics?.upload({ source, kind: SUPPORTED_TYPES.get(mime)?.kind ?? 'FILE', driver: this.deps.storage.driver, bytes, seconds });
  }

  /** After `e` from commit(): deletes the objects of `ids` if nothing of them can have committed; otherwise keeps them and says so. */
  async removeUnlessCommitted(tenant: string, ids: string[], e: unknown): Promise<void> {
    if (!mayHaveCommitted(e)) return this.removeObjects(tenant, ids);
    this.deps.logger.error({ err: e, mediaIds: ids }, 'the commit of an upload may or may not have taken effect; its objects are kept (the sweep deletes them if no row claims them)');
  }

  /**
   * Streams one file into storage: sniff, limit, hash, read an image's header,
   * and (SENSITIVE, CRITICAL) encrypt while writing. A
   * pending-write record is written first: the sweep leaves the objects alone
   * until commit() settles it, and the caller closes it (closePending).
   */
  async store(tenant: string, plan: Plan, file: IncomingFile, source: IngestSource = 'upload'): Promise<Stored> {
    const startedAt = process.hrtime.bigint();
    const id = randomUUID();
    let pending: PendingWrite;
    try {
      pending = await this.deps.pending.begin(tenant, id);
    } catch (e) {
      await discardUpload(file);
      throw e;
    }
    try {
      return { ...(await this.storeAs(tenant, id, plan, file, source)), pending, startedAt };
    } catch (e) {
      await pending.close(e);
      throw e;
    }
  }

  private async storeAs(tenant: string, id: string, plan: Plan, file: IncomingFile, source: IngestSource): Promise<Stored> {
    const { storage, crypto } = this.deps;
    const key = objectKeys.original(tenant, id);
    const sealed = plan.level !== 'STANDARD';
    const received = await this.deps.ingest.receive(file, {
      limit: plan.policy.maxFileSize,
      accept: (mime) => this.deps.policies.limitFor(plan.policy, mime),
      write: async (body, declaredType) =>
        sealed ? await crypto.seal(storage, key, body) : (await storage.put(key, body, { contentType: declaredType }), null),
      remove: () => this.removeObjects(tenant, [id]),
    }, { tenant, source });
    const kid = received.written?.kid ?? null;
    const mode = received.written?.mode ?? null;
    try {
      const kind = SUPPORTED_TYPES.get(received.mime)!.kind;
      // From the header only: nothing decodes pixels in the upload path (variants render on first request).
      const image = kind === 'IMAGE' ? imageFacts(received.image, received.mime, this.deps.images.memoryBytes) : undefined;
      return {
        encryptionKeyId: kid,
        encryptionMode: mode,
        id,
        plan,
        fileName: received.fileName,
        mime: received.mime,
        size: received.size,
        checksum: received.checksum,
        pageCount: received.pageCount,
        durationSeconds: received.durationSeconds,
        width: image?.width,
        height: image?.height,
        variants: image?.variants ?? [],
      };
    } catch (e) {
      await this.removeObjects(tenant, [id]);
      throw isAppError(e) ? e : errors.storageUnavailable(e);
    }
  }

  /**
   * One transaction for the rows of stored files: media, attachment, role. The
   * result is read inside it, so nothing can fail once it has committed; when it
   * throws, mayHaveCommitted(error) says whether the outcome is unknown (the
   * connection was lost during COMMIT): then the objects must stay.
   * `first` runs at its start (a direct upload's completion: the rows exist only if
   * the ticket could be finished).
   */
  async commit(tenant: string, createdBy: string, stored: Stored[], first?: (tx: Prisma.TransactionClient) => Promise<void>): Promise<MediaRecord[]> {
    const ids = stored.map((s) => s.id);
    // The new rows are read back in the same transaction: once it has committed,
    // nothing can fail any more; and a failure of COMMIT itself is marked (transact),
    // so a caller that deletes the objects when commit() throws never deletes the
    // bytes of committed media.
    const rows = await transact(this.deps.prisma, async (tx) => {
      await first?.(tx);
      for (const s of stored) await s.pending?.settle(tx);
      for (const s of stored) {
        await tx.media.create({
          data: {
            id: s.id,
            tenantId: tenant,
            fileName: s.fileName,
            mediaType: s.mime,
            kind: SUPPORTED_TYPES.get(s.mime)!.kind,
            fileSize: BigInt(s.size),
            // An encrypted media's checksum is a fact about the document: sealed at rest.
            checksum: s.encryptionKeyId !== null ? sealChecksum(this.deps.crypto.ring, s.encryptionKeyId, { tenantId: tenant, id: s.id }, s.checksum) : s.checksum,
            securityLevel: s.plan.level,
            encrypted: s.encryptionKeyId !== null,
            encryptionKeyId: s.encryptionKeyId,
            // Every encrypted row records how its objects were written (reads use it).
            encryptionMode: s.encryptionKeyId !== null ? s.encryptionMode : null,
            encryptionKeyFp: s.encryptionKeyId !== null ? this.deps.crypto.ring.fingerprint(s.encryptionKeyId) : null,
            storageKey: objectKeys.original(tenant, s.id),
            tags: s.plan.tags,
            width: s.width ?? null,
            height: s.height ?? null,
            pageCount: s.pageCount ?? null,
            durationSeconds: s.durationSeconds ?? null,
            variants: s.variants as unknown as object,
            createdBy,
          },
        });
        for (const a of s.plan.attachTo ?? [{ entity: s.plan.entity, role: s.plan.role }]) {
          await tx.mediaAttachment.create({ data: { tenantId: tenant, entityType: a.entity.type, entityId: a.entity.id, mediaId: s.id } });
          if (a.role) await upsertRole(tx, tenant, a.entity, s.id, a.role);
        }
      }
      return mediaRepository.byIds(tx, tenant, ids);
    });
    const byId = new Map(rows.map((r) => [r.id, r]));
    return ids.map((id) => byId.get(id)!);
  }

  async removeObjects(tenant: string, ids: string[]): Promise<void> {
    await Promise.all(
      ids.map((id) =>
        this.deps.storage.deletePrefix(objectKeys.prefix(tenant, id)).catch((e: unknown) => {
          this.deps.logger.error({ err: e, mediaId: id }, 'could not delete objects of a failed upload; the sweep will');
        }),
      ),
    );
  }
}

// The naming rules moved to their own file; kept here for the modules that import them from this one.
export { sanitiseFileName } from '../../ingest/file-name.js';
