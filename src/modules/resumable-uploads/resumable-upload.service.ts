import { randomUUID } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { DataStore, ERRORS, Upload } from '@tus/utils';
import type { PrismaClient } from '../../generated/prisma/client.js';
import type { MediaRole } from '../../generated/prisma/enums.js';
import { errors, isAppError } from '../../errors/index.js';
import type { Logger } from '../../logger.js';
import type { PendingWrites } from '../../db/pending-writes.js';
import { objectKeys, type Storage } from '../../storage/index.js';
import { normaliseMime, SUPPORTED_TYPES } from '../policy/media-types.js';
import type { EntityPolicy, PolicyRegistry } from '../policy/policy.js';
import { detectType, HEAD_BYTES, imageFacts, inspectStored, RunningInspection, sanitiseFileName, type ImageQueue, type InspectResult, type Plan, type UploadService } from './ingest-adapter.js';
import type { PgLocker } from './pg-locker.js';
import type { TusBackend } from './tus-backend.js';
import { readMetadata } from './upload-metadata.js';
import type { Ingest } from '../../ingest/ingest.js';

export interface ResumableUploadDeps {
  prisma: PrismaClient;
  storage: Storage;
  policies: PolicyRegistry;
  uploads: UploadService;
  pending: PendingWrites;
  images: ImageQueue;
  /** The ingest pipeline: with CLAMD_URL a finished upload's bytes are read once through it, scanned. */
  ingest: Ingest;
  logger: Logger;
  locker: PgLocker;
  backend: TusBackend;
  /** An upload expires this long after its creation. */
  ttlSeconds: number;
  /** Unfinished, unexpired uploads a tenant may hold at once. */
  maxOutstanding: number;
}

/** One row of resumable_upload. */
export interface ResumableRow {
  id: string;
  tenant_id: string;
  created_by: string;
  entity_type: string;
  entity_id: string;
  tags: string[];
  role: MediaRole | null;
  file_name: string;
  declared_type: string | null;
  length: bigint;
  detected_type: string | null;
  metadata: Record<string, string | null>;
  writer: string | null;
  media_id: string | null;
  created_at: Date;
  expires_at: Date;
}

/** What `resumableUpload(id)` reports. */
export interface ResumableState {
  id: string;
  offset: number;
  length: number;
  expiresAt: Date;
  mediaId: string | null;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export const isUploadId = (id: string) => UUID_RE.test(id);
/** Upload ids whose tenant an instance remembers (an upload's tenant never changes; its ids are never reused). */
const OWNERS_CACHED = 10_000;
/** Running inspections an instance keeps (uploads in progress on it), and how long an idle one is kept. */
const MAX_INSPECTIONS = 256;
const INSPECTION_IDLE_MS = 3600_000;
/** Advisory lock class (with the tenant's hash) that serialises creations per tenant (the cap). */
const CREATE_LOCK_CLASS = 727278;
/**
 * Refusals that no retry can fix: the bytes will never make a media (a type or
 * size the policy refuses, content that does not match what was accepted, an
 * upload whose entity is no longer valid). They end the upload: its bytes and its
 * row go. Anything else (storage, database, a busy image queue) keeps it, so that
 * the next request of the client completes it.
 */
const ENDS_THE_UPLOAD: ReadonlySet<string> = new Set(['UNSUPPORTED_MEDIA_TYPE', 'PAYLOAD_TOO_LARGE', 'BAD_USER_INPUT', 'INTEGRITY_ERROR', 'MALWARE_DETECTED']);

/**
 * Resumable uploads (SPEC 17): the rules behind the tus endpoint. Everything an
 * upload will be (entity, tags, role, STANDARD level, size limit) is decided at
 * creation from its Upload-Metadata and recorded in its row before the tus store
 * creates anything; the type is decided from the first bytes (HEAD_BYTES, held
 * back until then, so that nothing of a refused type is ever stored); every byte
 * passes once through the upload pipeline's inspection (type, size limit, SHA-256,
 * pages, duration): on its way into the store, or, when the bytes did not all come
 * through this instance's inspection, read back from storage at completion; on the
 * last byte the bytes are copied to the new media's own key and the media is
 * committed with its row's media_id in one transaction, under a pending write.
 * `store` is the DataStore the tus server uses: it maps tus's calls onto these rules
 * and the driver's tus store (TusBackend).
 */
export class ResumableUploadService {
  readonly store: ResumableStore;
  /**
   * Per upload in progress on this instance: the inspection its bytes went through
   * on their way into the store, from byte 0, in order. When it covers every byte at
   * completion, the stored bytes need not be read again.
   */
  private readonly inspections = new Map<string, { run: RunningInspection; token: string; usedAt: number }>();
  /** The tenant of uploads this instance has seen, oldest first (belongsTo). */
  private readonly owners = new Map<string, string>();

  constructor(private readonly deps: ResumableUploadDeps) {
    this.store = new ResumableStore(this, deps.ttlSeconds * 1000);
  }

  /** The locker of the tus server (and of completions and the sweep). */
  get locker(): PgLocker {
    return this.deps.locker;
  }

  /** The largest Upload-Length any entity type accepts (OPTIONS answers it as Tus-Max-Size). */
  maxSize(): number {
    return this.deps.policies.maxFileSize();
  }

  /**
   * onUploadCreate: checks the metadata and the length against the entity's policy
   * (before any byte), then records the upload. Throws the client's error.
   */
  async admit(tenant: string, createdBy: string, upload: Upload): Promise<void> {
    const meta = readMetadata(upload.metadata);
    const plan = this.deps.uploads.plan({ file: undefined as never, entity: meta.entity, tags: meta.tags, role: meta.role }, 'Upload-Metadata');
    if (plan.level !== 'STANDARD') {
      throw errors.badInput(
        'Upload-Metadata.entityType',
        `Resumable uploads are for STANDARD content only; ${plan.level} content ("${plan.entity.type}"${plan.role ? `, role ${plan.role}` : ''}) must be sent with upload`,
      );
    }
    let declared = normaliseMime(meta.filetype) ?? null;
    if (declared === 'application/octet-stream') declared = null;
    let limit: number;
    if (declared !== null) {
      if (!SUPPORTED_TYPES.has(declared)) throw errors.unsupportedType(`Content of type ${declared.slice(0, 100)} is not supported`);
      limit = this.deps.policies.limitFor(plan.policy, declared);
    } else limit = largestLimit(this.deps.policies, plan.policy);
    const size = upload.size;
    if (size === undefined) throw errors.badInput('Upload-Length', 'Upload-Length is required (deferred lengths are not supported)');
    if (size === 0) throw errors.badInput('Upload-Length', 'File is empty');
    if (size > limit) throw errors.tooLarge(limit);
    const fileName = sanitiseFileName(meta.filename ?? 'upload');
    const { prisma } = this.deps;
    const cap = this.deps.maxOutstanding;
    // Count and insert under a per-tenant lock, the count in a statement after the
    // one that took it: concurrent creations cannot overshoot the cap.
    const [, inserted] = await prisma.$transaction([
      prisma.$executeRaw`SELECT pg_advisory_xact_lock(${CREATE_LOCK_CLASS}::int, hashtext(${tenant}))`,
      prisma.$executeRaw`
        INSERT INTO resumable_upload (id, tenant_id, created_by, entity_type, entity_id, tags, role, file_name, declared_type, length, metadata, expires_at)
        SELECT ${upload.id}::uuid, ${tenant}, ${createdBy}, ${plan.entity.type}, ${plan.entity.id}, ${plan.tags}::text[], ${plan.role}::"MediaRole",
               ${fileName}, ${declared}, ${BigInt(size)}::bigint, ${JSON.stringify(upload.metadata ?? {})}::jsonb,
               now() + make_interval(secs => ${this.deps.ttlSeconds}::int)
        WHERE (SELECT count(*) FROM (SELECT 1 FROM resumable_upload
                 WHERE tenant_id = ${tenant} AND completed_at IS NULL AND expires_at > now() LIMIT ${cap}::int) open) < ${cap}::int`,
    ]);
    if (inserted !== 1) {
      const [soonest] = await prisma.$queryRaw<{ at: Date | null }[]>`
        SELECT min(expires_at) AS at FROM resumable_upload WHERE tenant_id = ${tenant} AND completed_at IS NULL AND expires_at > now()`;
      const retryAfterSeconds = soonest?.at ? Math.max(1, Math.ceil((soonest.at.getTime() - Date.now()) / 1000)) : 1;
      throw errors.tooManyRequests(`This tenant already has ${cap} resumable uploads in progress, the most allowed: finish or terminate them, or let them expire`, {
        reason: 'RESUMABLE_UPLOADS',
        limit: cap,
        retryAfterSeconds,
      });
    }
  }

  /** The row of an upload of the tenant, or null (unknown, another tenant's, or not an upload id). */
  async rowOf(tenant: string, id: string): Promise<ResumableRow | null> {
    if (!isUploadId(id)) return null;
    const [row] = await this.deps.prisma.$queryRaw<ResumableRow[]>`SELECT * FROM resumable_upload WHERE tenant_id = ${tenant} AND id = ${id}::uuid`;
    return row ?? null;
  }

  /**
   * Whether `id` is an upload of the tenant: the check in front of every tus request
   * but creations. Answered from memory once the row was seen: ownership never
   * changes, and an upload gone since is not found by the store's calls that follow.
   */
  async belongsTo(tenant: string, id: string): Promise<boolean> {
    if (!isUploadId(id)) return false;
    const known = this.owners.get(id);
    if (known !== undefined) return known === tenant;
    const row = await this.rowOf(tenant, id);
    if (!row) return false;
    this.owners.set(id, tenant);
    if (this.owners.size > OWNERS_CACHED) this.owners.delete(this.owners.keys().next().value!);
    return true;
  }

  /** @internal The row by id alone: tus's store calls come after onIncomingRequest checked the tenant. */
  async row(id: string): Promise<ResumableRow | null> {
    if (!isUploadId(id)) return null;
    const [row] = await this.deps.prisma.$queryRaw<ResumableRow[]>`SELECT * FROM resumable_upload WHERE id = ${id}::uuid`;
    return row ?? null;
  }

  /** What `resumableUpload(id)` reports for the tenant's upload, or null. */
  async describe(tenant: string, id: string): Promise<ResumableState | null> {
    const row = await this.rowOf(tenant, id);
    if (!row) return null;
    const length = Number(row.length);
    let offset = length;
    if (!row.media_id) {
      const { backend } = this.deps;
      offset = await backend.store.getUpload(backend.storeId(id)).then(
        (u) => u.offset,
        (e: unknown) => {
          // Bytes that are gone (expired and swept, or never created) are at offset 0.
          if (isTusError(e) && (e.status_code === 404 || e.status_code === 410)) return 0;
          throw errors.storageUnavailable(e);
        },
      );
    }
    return { id: row.id, offset, length, expiresAt: row.expires_at, mediaId: row.media_id };
  }

  /** @internal tus getUpload: the row's facts, with the offset of the stored bytes. */
  async upload(id: string): Promise<Upload> {
    // The row and the stored bytes' offset side by side: one round trip less before a PATCH's bytes flow.
    const { backend } = this.deps;
    const stored = isUploadId(id) ? (async () => backend.store.getUpload(backend.storeId(id)))() : undefined;
    stored?.catch(() => undefined);
    const row = await this.row(id);
    if (!row) throw ERRORS.FILE_NOT_FOUND;
    const length = Number(row.length);
    const offset = row.media_id ? length : (await stored!).offset;
    return new Upload({
      id,
      size: length,
      offset,
      metadata: row.metadata,
      // tus derives Upload-Expires (and 410 Gone) from the creation date and the store's
      // expiration period: this creation date makes that the row's expires_at exactly.
      creation_date: new Date(row.expires_at.getTime() - this.store.getExpiration()).toISOString(),
    });
  }

  /** @internal tus create: the tus store's own records, after admit() wrote the row. */
  async create(upload: Upload): Promise<Upload> {
    const { backend } = this.deps;
    try {
      await backend.store.create(new Upload({ id: backend.storeId(upload.id), size: upload.size, offset: 0, metadata: upload.metadata, creation_date: upload.creation_date }));
    } catch (e) {
      await this.forget(upload.id);
      throw e;
    }
    return upload;
  }

  /**
   * @internal tus write, under the upload's lock: the bytes go to the driver's tus
   * store; until the type is decided, the first HEAD_BYTES are held back and
   * checked (nothing of a refused type is stored, and a refusal ends the upload).
   */
  async write(stream: Readable, id: string, offset: number): Promise<number> {
    if (!isUploadId(id)) throw ERRORS.FILE_NOT_FOUND;
    // The writer this write will be, recorded before a byte is written (a write of
    // another instance in between makes this one's inspection useless), in the
    // statement that reads the row and the writer before it.
    const token = this.inspections.get(id)?.token ?? randomUUID();
    const [claimed] = await this.deps.prisma.$queryRaw<(ResumableRow & { previous_writer: string | null })[]>`
      WITH prev AS (SELECT id, writer FROM resumable_upload WHERE id = ${id}::uuid)
      UPDATE resumable_upload r SET writer = ${token}::uuid FROM prev
      WHERE r.id = prev.id AND r.media_id IS NULL
      RETURNING r.*, prev.writer AS previous_writer`.catch((e: unknown) => {
      this.dropInspection(id);
      throw errors.storageUnavailable(e);
    });
    if (!claimed) {
      const row = await this.row(id);
      if (!row) throw ERRORS.FILE_NOT_FOUND;
      // Finished: tus lets only an empty body through (Upload-Offset = Upload-Length).
      for await (const _ of stream) void _;
      return Number(row.length);
    }
    const { previous_writer: previousWriter, ...row } = claimed;
    const length = Number(row.length);
    const { backend, locker } = this.deps;
    if (row.detected_type === null && offset !== 0) throw errors.internal(new Error(`resumable upload ${id} has bytes (offset ${offset}) but no detected type`));
    const inspection = this.inspectionFor({ ...row, writer: previousWriter }, offset, token);
    let source: Readable = stream;
    let gate: HeadGate | undefined;
    if (row.detected_type === null || inspection) {
      // One stage for both: every stage between the body and the file holds a block, which a PATCH's end waits for.
      gate = new HeadGate(row.detected_type === null ? Math.min(HEAD_BYTES, length) : 0, (head) => this.decideType(row, head), inspection);
      source = join(source, gate);
    }
    // Not one byte without the lock: when its connection fails, the body is cut at once.
    const lost = locker.lostSignal(id);
    const onLost = () => source.destroy(errors.storageUnavailable(lost?.reason));
    lost?.addEventListener('abort', onLost, { once: true });
    try {
      if (lost?.aborted) onLost();
      const stored = await backend.store.write(source, backend.storeId(id), offset);
      // The inspection saw exactly the stored bytes, or it is of no use.
      if (inspection && inspection.bytes !== stored) this.dropInspection(id);
      return stored;
    } catch (e) {
      this.dropInspection(id);
      // A refused type or size ends the upload; a head that came short leaves it at offset 0.
      if (gate?.refusal && isAppError(gate.refusal) && ENDS_THE_UPLOAD.has(gate.refusal.code)) await this.end(row, gate.refusal);
      throw gate?.failure ?? (lost?.aborted ? errors.storageUnavailable(lost.reason) : e);
    } finally {
      lost?.removeEventListener('abort', onLost);
    }
  }

  /**
   * The running inspection a write at `offset` feeds: a new one from byte 0, the
   * one that has seen exactly the bytes before `offset`, or none (the bytes before
   * went through another instance, or an inspection was dropped): then completion
   * reads the stored bytes. `row.writer` is the writer before this write, `token`
   * the one this write recorded (a new inspection is kept under it).
   */
  private inspectionFor(row: ResumableRow, offset: number, token: string): RunningInspection | undefined {
    const now = Date.now();
    const entry = this.inspections.get(row.id);
    // Its own bytes only: it wrote last (row.writer, before this write), and saw exactly the bytes before `offset`.
    if (entry && entry.run.failure === undefined && entry.run.bytes === offset && offset > 0 && row.writer === entry.token && token === entry.token) {
      entry.usedAt = now;
      return entry.run;
    }
    this.dropInspection(row.id);
    if (offset !== 0) return undefined;
    for (const [id, e] of this.inspections) if (now - e.usedAt > INSPECTION_IDLE_MS) this.dropInspection(id);
    if (this.inspections.size >= MAX_INSPECTIONS) this.dropInspection(this.inspections.keys().next().value!);
    const run = new RunningInspection({ fileName: row.file_name, accept: (mime) => this.deps.policies.limitFor(this.planOf(row).policy, mime) });
    // The token this write recorded as the row's writer.
    this.inspections.set(row.id, { run, token, usedAt: now });
    return run;
  }

  private dropInspection(id: string): void {
    this.inspections.get(id)?.run.abort();
    this.inspections.delete(id);
  }

  /** The facts of the running inspection that saw all `length` bytes of the upload (and wrote them), once; undefined when there is none. */
  private async takeInspection(row: ResumableRow, length: number): Promise<InspectResult | undefined> {
    const entry = this.inspections.get(row.id);
    this.inspections.delete(row.id);
    if (!entry) return undefined;
    if (entry.run.bytes !== length || entry.run.failure !== undefined || row.writer !== entry.token) {
      entry.run.abort();
      return undefined;
    }
    // A failure here is authoritative only once the stored bytes say so too.
    return entry.run.finish().catch(() => undefined);
  }

  /** @internal tus remove (termination by the owner, under the lock): bytes and row go. */
  async terminate(id: string): Promise<void> {
    const row = await this.row(id);
    if (!row) throw ERRORS.FILE_NOT_FOUND;
    this.dropInspection(id);
    await this.deps.backend.purge(id);
    await this.forget(id);
  }

  /** The media a finished upload became (null: not finished), and when the upload expires; null for an unknown id. */
  async progressOf(id: string): Promise<{ mediaId: string | null; expiresAt: Date } | null> {
    const row = await this.row(id);
    return row ? { mediaId: row.media_id, expiresAt: row.expires_at } : null;
  }

  /**
   * Makes the media of an upload whose bytes are all there, once: under the
   * upload's lock, a second call (a retried final PATCH, a HEAD) finds media_id set
   * and returns it. The bytes are copied to the new media's own key (a hard link on
   * local disk, a server-side copy on S3); their facts are the running inspection's
   * when it saw (and wrote) every byte, else the copy is read once and inspected; the
   * media, attachment, tags and role are committed with media_id in one transaction,
   * under a pending write. A refusal that no retry can fix ends the upload; any other
   * failure keeps it for the next request.
   */
  async finish(id: string): Promise<string> {
    const lock = this.deps.locker.newLock(id);
    // The completion is bounded work that must not be cut: it ignores requests to let go.
    await lock.lock(new AbortController().signal, () => undefined);
    try {
      const row = await this.row(id);
      if (!row) throw ERRORS.FILE_NOT_FOUND;
      if (row.media_id) return row.media_id;
      const { backend } = this.deps;
      const stored = await backend.store.getUpload(backend.storeId(id));
      if (stored.offset !== Number(row.length)) throw errors.conflict(`The upload has ${stored.offset} of its ${row.length} bytes: send the rest first`);
      return await this.commit(row);
    } finally {
      await lock.unlock();
    }
  }

  private async commit(row: ResumableRow): Promise<string> {
    const { storage, backend, uploads, policies, pending } = this.deps;
    const tenant = row.tenant_id;
    const length = Number(row.length);
    const startedAt = process.hrtime.bigint();
    const mediaId = randomUUID();
    const original = objectKeys.original(tenant, mediaId);
    let plan: Plan;
    try {
      plan = this.planOf(row);
    } catch (e) {
      await this.end(row, e);
      throw e;
    }
    // Every byte went through one inspection on its way into the store (every PATCH
    // came to this instance, in order), or the stored bytes are read once now.
    // With scanning on, the finished bytes are always read once through the ingest pipeline:
    // a clamd connection cannot be held open across PATCH requests (clamd's ReadTimeout).
    const inspectedOnTheWay = await this.takeInspection(row, length);
    const running = this.deps.ingest.scanning ? undefined : inspectedOnTheWay;
    // Before the new media's first object: the sweep leaves its group alone until the commit.
    const write = await pending.begin(tenant, mediaId);
    try {
      await backend.assemble(row.id, length);
      await storage.copy(backend.dataKey(row.id), original, { size: length });
      const facts =
        running ??
        (await inspectStored(storage, original, {
          fileName: row.file_name,
          accept: (mime) => {
            const limit = policies.limitFor(plan.policy, mime);
            if (row.detected_type !== null && mime !== row.detected_type) {
              throw errors.integrity(`The stored bytes are ${mime}, but the upload's first bytes were ${row.detected_type}`);
            }
            return limit;
          },
        }, { ingest: this.deps.ingest, tenant }));
      if (running && running.mime !== row.detected_type) throw errors.integrity(`The upload's bytes are ${running.mime}, but its first bytes were ${row.detected_type}`);
      // Inspected on the way in: the copy must hold exactly that many bytes.
      const copied = running ? (await storage.head(original))?.size : facts.size;
      if (facts.size !== length || copied !== length) throw errors.integrity(`Stored ${copied ?? 'no'} bytes, but the upload has ${length}`);
      const image = imageFacts(facts, this.deps.images);
      await uploads.commit(
        tenant,
        row.created_by,
        [
          {
            id: mediaId,
            plan,
            fileName: sanitiseFileName(row.file_name, facts.mime),
            mime: facts.mime,
            size: facts.size,
            checksum: facts.checksum,
            pageCount: facts.pageCount,
            durationSeconds: facts.durationSeconds,
            width: image?.width,
            height: image?.height,
            variants: image?.variants ?? [],
            encryptionKeyId: null,
            encryptionMode: null,
            pending: write,
          },
        ],
        async (tx) => {
          const n = await tx.$executeRaw`
            UPDATE resumable_upload SET media_id = ${mediaId}::uuid, completed_at = now()
            WHERE id = ${row.id}::uuid AND media_id IS NULL`;
          if (n !== 1) throw errors.conflict('This resumable upload was completed by another request');
        },
      );
      await write.close();
      uploads.recordStored('resumable', facts.mime, facts.size, startedAt);
      this.deps.logger.info({ uploadId: row.id, tenant, mediaId, bytes: length, inspected: running ? 'on the way in' : 'read back' }, 'resumable upload completed');
    } catch (e) {
      await uploads.removeUnlessCommitted(tenant, [mediaId], e);
      await write.close(e);
      if (isAppError(e) && ENDS_THE_UPLOAD.has(e.code)) await this.end(row, e);
      throw isAppError(e) ? e : errors.storageUnavailable(e);
    }
    // The media has its own copy: the upload's bytes are spent (its row stays until it expires).
    await backend.purge(row.id).catch((err: unknown) => this.deps.logger.warn({ err, uploadId: row.id }, 'could not remove the bytes of a finished resumable upload; the sweep will'));
    return mediaId;
  }

  /** The upload's plan, checked again (the policy may have changed since its creation). */
  private planOf(row: ResumableRow): Plan {
    return this.deps.uploads.plan({ file: undefined as never, entity: { type: row.entity_type, id: row.entity_id }, tags: row.tags, role: row.role }, 'Upload-Metadata');
  }

  /** The first bytes arrived: their type must be one the entity accepts (and the declared one), at the upload's length. */
  private async decideType(row: ResumableRow, head: Buffer): Promise<void> {
    const mime = await detectType(head, row.file_name);
    if (row.declared_type !== null && row.declared_type !== mime) {
      throw errors.unsupportedType(`Declared type ${row.declared_type} does not match the content, which is ${mime}`);
    }
    const limit = this.deps.policies.limitFor(this.planOf(row).policy, mime);
    if (Number(row.length) > limit) throw errors.tooLarge(limit);
    await this.deps.prisma.$executeRaw`UPDATE resumable_upload SET detected_type = ${mime} WHERE id = ${row.id}::uuid AND detected_type IS NULL`;
  }

  /** Ends an upload that can never become a media: its bytes and its row go. */
  private async end(row: ResumableRow, why: unknown): Promise<void> {
    this.deps.logger.info({ uploadId: row.id, tenant: row.tenant_id, reason: isAppError(why) ? why.code : 'error' }, 'resumable upload refused; its bytes are removed');
    this.dropInspection(row.id);
    try {
      await this.deps.backend.purge(row.id);
      await this.forget(row.id);
    } catch (err) {
      this.deps.logger.warn({ err, uploadId: row.id }, 'could not remove a refused resumable upload; the sweep removes it when it expires');
    }
  }

  /** Deletes the row (its bytes are gone or never were). */
  private async forget(id: string): Promise<void> {
    await this.deps.prisma.$executeRaw`DELETE FROM resumable_upload WHERE id = ${id}::uuid`;
  }
}

/**
 * Pipes `from` into `to`, and fails `to` when `from` fails or closes before its end,
 * whenever that happened (the body may have failed while this request awaited the
 * database): a stage left waiting on a dead source would hold the upload's lock forever.
 */
function join<T extends Transform>(from: Readable, to: T): T {
  const dead = () => from.errored ?? new Error('the body stream closed before its end');
  if (from.errored || (from.destroyed && !from.readableEnded)) {
    to.destroy(dead());
    return to;
  }
  from.on('error', (e) => to.destroy(e));
  from.on('close', () => {
    if (!from.readableEnded) to.destroy(dead());
  });
  from.pipe(to);
  return to;
}

/** The largest size an entity type accepts for any of its types. */
function largestLimit(policies: PolicyRegistry, policy: EntityPolicy): number {
  return Math.max(...policy.allowedMediaTypes.map((m) => policies.limitFor(policy, m)));
}

function isTusError(e: unknown): e is { status_code: number; body: string } {
  return typeof e === 'object' && e !== null && typeof (e as { status_code?: unknown }).status_code === 'number';
}

/**
 * The stage between the body and the store: holds back the first `need` bytes of
 * an upload until `decide` accepted them (a refused type never reaches the store),
 * and feeds every byte it passes on to the running inspection, if any (waiting
 * while it hashes behind). A body that ends before `need` bytes (tiny chunks, or a
 * cut connection) fails, and nothing of it is stored; the upload stays at offset 0.
 * With `need` 0 it only feeds the inspection.
 */
class HeadGate extends Transform {
  /** Why the stream failed here: a refusal of `decide`, or a head that came short. */
  failure: Error | undefined;
  /** What `decide` threw. */
  refusal: Error | undefined;
  private head: Buffer[] = [];
  private held = 0;
  private open: boolean;

  constructor(
    private readonly need: number,
    private readonly decide: (head: Buffer) => Promise<void>,
    private readonly inspection: RunningInspection | undefined,
  ) {
    super();
    this.open = need === 0;
    // Reported through the store's write; the store may not listen yet.
    this.on('error', () => undefined);
  }

  override _transform(chunk: Buffer, _e: BufferEncoding, done: TransformCallback): void {
    if (this.open) return this.pass(chunk, done);
    this.head.push(chunk);
    this.held += chunk.length;
    if (this.held < this.need) return done();
    const head = Buffer.concat(this.head);
    this.head = [];
    this.decide(head).then(
      () => {
        this.open = true;
        this.pass(head, done);
      },
      (e: unknown) => done((this.failure = this.refusal = e instanceof Error ? e : new Error(String(e)))),
    );
  }

  override _flush(done: TransformCallback): void {
    if (this.open || this.held === 0) return done();
    this.head = [];
    done(
      (this.failure = errors.badInput(
        'body',
        `Only ${this.held} bytes arrived: the first ${this.need} bytes of an upload must come in one request (its type is checked on them before anything is stored); nothing was stored`,
      )),
    );
  }

  private pass(chunk: Buffer, done: TransformCallback): void {
    const wait = this.inspection?.feed(chunk);
    if (!wait) return done(null, chunk);
    wait.then(() => done(null, chunk));
  }
}

/**
 * The DataStore @tus/server runs on: tus's calls mapped onto the service's rules
 * (rows, the held-back first bytes, completion) and the driver's tus store.
 * Extensions: creation, creation-with-upload, termination, expiration (deferred
 * lengths and concatenation are not offered).
 */
export class ResumableStore extends DataStore {
  constructor(
    private readonly service: ResumableUploadService,
    private readonly expirationMs: number,
  ) {
    super();
    this.extensions = ['creation', 'creation-with-upload', 'termination', 'expiration'];
  }
  override create(upload: Upload): Promise<Upload> {
    return this.service.create(upload);
  }
  override write(stream: Readable, id: string, offset: number): Promise<number> {
    return this.service.write(stream, id, offset);
  }
  override getUpload(id: string): Promise<Upload> {
    return this.service.upload(id);
  }
  override remove(id: string): Promise<void> {
    return this.service.terminate(id);
  }
  override getExpiration(): number {
    return this.expirationMs;
  }
}

