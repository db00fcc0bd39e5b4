import { mayHaveCommitted } from '../../db/transact.js';
import { createHash, randomUUID, type Hash } from 'node:crypto';
import { finished, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import type { Prisma, PrismaClient } from '../../generated/prisma/client.js';
import type { MediaRole } from '../../generated/prisma/enums.js';
import { AppError, errors, isAppError } from '../../errors/index.js';
import type { Logger } from '../../logger.js';
import type { Storage } from '../../storage/index.js';
import { objectKeys } from '../../storage/index.js';
import type { ImageQueue } from '../renders/image-queue.js';
import { imageFacts } from '../../ingest/image-facts.js';
import type { InspectResult } from '../../ingest/inspect-stream.js';
import type { Ingest } from '../../ingest/ingest.js';
import type { EntityRef, MediaRecord } from '../media/media.record.js';
import type { Plan, UploadService } from '../media/upload.service.js';
import type { PendingWrite, PendingWrites } from '../../db/pending-writes.js';
import { sanitiseFileName } from '../../ingest/file-name.js';
import { normaliseMime, SUPPORTED_TYPES } from '../policy/media-types.js';
import { CRITICAL_ROLES, type PolicyRegistry } from '../policy/policy.js';
import { subjectTag, type SignedIds } from './signed-id.js';

export interface DirectUploadDeps {
  prisma: PrismaClient;
  storage: Storage;
  policies: PolicyRegistry;
  uploads: UploadService;
  pending: PendingWrites;
  signedIds: SignedIds;
  logger: Logger;
  images: ImageQueue;
  ingest: Ingest;
  /** Lifetime of a direct upload (URL and signed id). */
  ttlSeconds: number;
  /** Tickets a tenant may hold at once (unexpired and not completed). */
  maxOutstanding: number;
  /** Base of the service's own upload endpoint (local disk). */
  baseUrl: () => string;
}

export interface DirectUploadTicket {
  signedId: string;
  key: string;
  filename: string;
  contentType: string;
  byteSize: number;
  checksum: string;
  serviceName: string;
  url: string;
  headers: { contentType: string; contentMd5: string | null; contentDisposition: string | null; all: Record<string, string> };
  expiresAt: Date;
}

/** The bytes of a claimed direct upload, copied to their final key and verified there. */
export interface VerifiedUpload extends InspectResult {
  /** The final key (the caller's `destination`), where the verified bytes are. */
  storageKey: string;
  fileName: string;
}

/**
 * Completes the claimed ticket inside the caller's transaction (the one that
 * writes the media or asset rows); throws CONFLICT when the claim was lost.
 */
export type FinishClaim = (tx: Prisma.TransactionClient) => Promise<void>;

interface ClaimOptions {
  /** GraphQL argument that carried the signed id (named by errors). */
  field: string;
  /** Key of the new media's or asset's original: the verified bytes are copied there. */
  destination: string;
  /** Called with the detected type: returns its size limit or throws (not allowed). */
  limitFor: (mime: string) => number;
}

interface ClaimedRow {
  storage_key: string;
  content_type: string;
  byte_size: bigint;
  checksum: string;
  file_name: string;
}

const SHA256_B64 = /^[A-Za-z0-9+/]{43}=$/;
/** Base64 of 16 bytes: 22 characters, the last one carrying 2 bits (A, Q, g or w), then "==". */
const MD5_B64 = /^[A-Za-z0-9+/]{21}[AQgw]==$/;
/**
 * How long a completion holds its claim. Only the holder of the claim can finish
 * the ticket (a conditional update in the transaction that writes the media), so a
 * completion slower than its lease loses to the one that took the ticket over and
 * creates nothing; the lease only bounds how long a crashed completion locks a ticket.
 */
const CLAIM_LEASE_SECONDS = 300;
/** Advisory lock class (with the tenant's hash) that serialises ticket creation per tenant. */
const TICKET_LOCK_CLASS = 727276;

/**
 * Keys of a ticket's own object group, {tenant}/{ticket id}/: never a media's or an
 * asset's group (they get fresh ids), so whatever a PUT writes here, even after
 * completion (a presigned URL cannot be revoked), never reaches served content; the
 * sweep deletes the group once the ticket is done.
 */
export const ticketKeys = {
  prefix: (tenant: string, ticketId: string) => `${tenant}/${ticketId}/`,
  /** Where the presigned PUT writes. */
  staging: (tenant: string, ticketId: string) => `${tenant}/${ticketId}/staging`,
  /** Where one PUT to the service's own endpoint writes (the ticket then points at it). */
  received: (tenant: string, ticketId: string) => `${tenant}/${ticketId}/staging-${randomUUID()}`,
};

export const directUploadPath = (signedId: string) => `/direct-uploads/${encodeURIComponent(signedId)}`;

/**
 * Browser-to-storage uploads (SPEC 10): a signed, single-use ticket with a PUT URL
 * that writes to the ticket's staging key. Completion claims the ticket (with a
 * lease), copies the staged bytes to the new media's or asset's own key, verifies
 * them THERE (size, SHA-256, detected type) and creates the rows in the transaction
 * that finishes the ticket. A failed completion releases the claim: the ticket stays
 * usable until it expires. STANDARD content only.
 */
export class DirectUploadService {
  constructor(private readonly deps: DirectUploadDeps) {}

  async create(tenant: string, subject: string, input: { filename: string; contentType: string; byteSize: number; checksum: string; contentMd5?: string | null }): Promise<DirectUploadTicket> {
    const filename = sanitiseFileName(input.filename);
    const contentType = normaliseMime(input.contentType) ?? '';
    if (!SUPPORTED_TYPES.has(contentType)) throw errors.unsupportedType(`Content type "${input.contentType}" is not supported`);
    if (!Number.isSafeInteger(input.byteSize) || input.byteSize < 1) throw errors.badInput('input.byteSize', 'byteSize must be a positive integer');
    const limit = this.deps.policies.kindLimit(contentType);
    if (input.byteSize > limit) throw errors.tooLarge(limit);
    if (!SHA256_B64.test(input.checksum)) throw errors.badInput('input.checksum', 'checksum must be the base64 SHA-256 of the content (44 characters)');
    const contentMd5 = input.contentMd5 ?? undefined;
    if (contentMd5 !== undefined && !MD5_B64.test(contentMd5)) {
      throw errors.badInput('input.contentMd5', 'contentMd5 must be the base64 MD5 of the content (24 characters, 16 bytes)');
    }

    const id = randomUUID();
    const key = ticketKeys.staging(tenant, id);
    const expiresAt = new Date(Date.now() + this.deps.ttlSeconds * 1000);
    const { prisma } = this.deps;
    const cap = this.deps.maxOutstanding;
    // Count and insert under a per-tenant lock, in a statement after the one that
    // took it (so the count sees every ticket committed before): concurrent calls
    // cannot overshoot the cap. The count reads at most `cap` index entries.
    const [, inserted] = await prisma.$transaction([
      prisma.$executeRaw`SELECT pg_advisory_xact_lock(${TICKET_LOCK_CLASS}::int, hashtext(${tenant}))`,
      prisma.$executeRaw`
        INSERT INTO direct_upload (id, tenant_id, storage_key, file_name, content_type, byte_size, checksum, expires_at)
        SELECT ${id}::uuid, ${tenant}, ${key}, ${filename}, ${contentType}, ${BigInt(input.byteSize)}::bigint, ${input.checksum}, ${expiresAt}::timestamptz
        WHERE (SELECT count(*) FROM (SELECT 1 FROM direct_upload
                 WHERE tenant_id = ${tenant} AND completed_at IS NULL AND expires_at > now() LIMIT ${cap}::int) open) < ${cap}::int`,
    ]);
    if (inserted !== 1) {
      // When the oldest outstanding ticket expires a slot is free at the latest.
      const [soonest] = await prisma.$queryRaw<{ at: Date | null }[]>`
        SELECT min(expires_at) AS at FROM direct_upload WHERE tenant_id = ${tenant} AND completed_at IS NULL AND expires_at > now()`;
      throw tooManyTickets(cap, soonest?.at ? Math.max(1, Math.ceil((soonest.at.getTime() - Date.now()) / 1000)) : 1);
    }
    // The MD5 rides in the signed id (tamper-proof): the service's own endpoint checks it there.
    const signedId = this.deps.signedIds.sign({ id, tenant, owner: subjectTag(subject), exp: Math.floor(expiresAt.getTime() / 1000), ...(contentMd5 ? { md5: contentMd5 } : {}) });
    const url = this.deps.storage.presignPut
      ? await this.deps.storage.presignPut(key, { expiresIn: this.deps.ttlSeconds, contentType, size: input.byteSize, ...(contentMd5 ? { contentMd5 } : {}) })
      : `${this.deps.baseUrl()}${directUploadPath(signedId)}`;
    return {
      signedId,
      key,
      filename,
      contentType,
      byteSize: input.byteSize,
      checksum: input.checksum,
      serviceName: this.deps.storage.driver,
      url,
      headers: {
        contentType,
        contentMd5: contentMd5 ?? null,
        contentDisposition: null,
        all: { 'Content-Type': contentType, ...(contentMd5 ? { 'Content-MD5': contentMd5 } : {}) },
      },
      expiresAt,
    };
  }

  /** Checks a signed id and returns its upload row id; the caller's tenant and subject must be the id's. */
  private open(signedId: string, tenant: string, subject: string, field: string): string {
    const check = this.deps.signedIds.verify(signedId);
    if (!check.ok) {
      throw errors.badInput(field, check.reason === 'expired' ? 'The direct upload has expired' : 'Invalid signed id');
    }
    if (check.payload.tenant !== tenant || check.payload.owner !== subjectTag(subject)) throw errors.notFound('Direct upload', 'for this signed id');
    return check.payload.id;
  }

  /**
   * The service's own PUT endpoint (local disk): the signed id is the credential.
   * The body must have the declared Content-Type and exactly the declared size. It
   * is written to a key of its own in the ticket's group; once complete, one
   * conditional update points the ticket at it, unless a completion claimed the
   * ticket meanwhile (then the bytes are dropped and the answer is CONFLICT): a PUT
   * is answered 200 exactly when its bytes are the ones a later completion sees.
   * Like S3 with a signed Content-MD5: a ticket with an MD5 needs the PUT to carry
   * it, and a body whose MD5 differs (computed while it streams) is refused with
   * BAD_USER_INPUT before its object appears; a Content-MD5 sent without one in the
   * ticket is checked the same way.
   */
  async receive(signedId: string, contentType: string | undefined, contentLength: number | undefined, body: Readable, contentMd5?: string): Promise<void> {
    const check = this.deps.signedIds.verify(signedId);
    if (!check.ok) throw errors.forbiddenMessage(check.reason === 'expired' ? 'The upload URL has expired' : 'Invalid upload URL');
    const { id, tenant } = check.payload;
    const row = await this.deps.prisma.directUpload.findUnique({ where: { tenantId_id: { tenantId: tenant, id } } });
    if (!row) throw errors.notFound('Direct upload', id);
    refuseWrites(row);
    const declared = Number(row.byteSize);
    if (normaliseMime(contentType) !== row.contentType) throw errors.badInput('Content-Type', `Content-Type must be ${row.contentType}`);
    if (contentLength !== undefined && contentLength !== declared) throw errors.badInput('Content-Length', `Content-Length must be ${declared}`);
    const md5 = check.payload.md5;
    if (md5 !== undefined && contentMd5 !== md5) throw errors.badInput('Content-MD5', `Content-MD5 must be ${md5}, as declared for this direct upload`);
    if (contentMd5 !== undefined && !MD5_B64.test(contentMd5)) throw errors.badInput('Content-MD5', 'Content-MD5 must be the base64 MD5 of the body (24 characters)');

    const key = ticketKeys.received(tenant, id);
    const { storage, prisma } = this.deps;
    const limited = new BodyLimit(body, declared, md5 ?? contentMd5);
    const short = () => errors.badInput('body', `Expected ${declared} bytes, received ${limited.received}`);
    try {
      const stored = await storage.put(key, limited, { contentType: row.contentType, size: declared });
      if (stored.size !== declared) throw short();
      // A store told the size may stop reading at it (S3): the body must end there too.
      limited.resume();
      await endOf(limited);
    } catch (e) {
      await storage.delete(key).catch(() => undefined);
      if (isAppError(e)) throw e;
      // The body ended early (the driver could not store it): the client's fault.
      if (limited.readableEnded && limited.received < declared) throw short();
      throw errors.storageUnavailable(e);
    }
    // Taking over a lapsed claim ends it: a completion still running with that claim can no longer finish.
    const swapped = await prisma.$queryRaw<{ previous: string }[]>`
      UPDATE direct_upload d SET storage_key = ${key}, claim_token = NULL, claimed_until = NULL
      FROM (SELECT storage_key FROM direct_upload WHERE tenant_id = ${tenant} AND id = ${id}::uuid FOR UPDATE) old
      WHERE d.tenant_id = ${tenant} AND d.id = ${id}::uuid AND d.completed_at IS NULL AND d.expires_at > now()
        AND (d.claimed_until IS NULL OR d.claimed_until <= now())
      RETURNING old.storage_key AS previous`;
    const previous = swapped[0]?.previous;
    if (previous === undefined) {
      await storage.delete(key).catch(() => undefined);
      const now = await prisma.directUpload.findUnique({ where: { tenantId_id: { tenantId: tenant, id } } });
      if (!now) throw errors.notFound('Direct upload', id);
      refuseWrites(now, 'while this body arrived; these bytes were not used');
      throw errors.forbiddenMessage('The upload URL has expired');
    }
    // The bytes of an earlier PUT are superseded (a completion only ever reads the key the ticket points at).
    if (previous !== key && previous.startsWith(ticketKeys.prefix(tenant, id))) {
      await storage.delete(previous).catch((err: unknown) => this.deps.logger.warn({ err, ticketId: id }, 'could not delete a superseded direct upload object; the sweep will'));
    }
  }

  async complete(
    tenant: string,
    createdBy: string,
    args: { signedId: string; entity: EntityRef; tags?: string[] | null; role?: MediaRole | null },
  ): Promise<MediaRecord> {
    this.open(args.signedId, tenant, createdBy, 'signedId');
    const policy = this.deps.policies.get(args.entity.type, 'entity.type');
    if (policy.securityLevel !== 'STANDARD' || (args.role && CRITICAL_ROLES.has(args.role))) {
      throw errors.badInput('entity', `Direct uploads are for STANDARD content only; "${args.entity.type}" content must be sent with upload`);
    }
    const plan = this.deps.uploads.plan({ file: undefined as never, entity: args.entity, tags: args.tags ?? null, role: args.role ?? null }, 'input');
    const mediaId = randomUUID();
    const options: ClaimOptions = {
      field: 'signedId',
      destination: objectKeys.original(tenant, mediaId),
      limitFor: (mime) => this.deps.policies.limitFor(plan.policy, mime),
    };
    // Before the first object of the new media (the verified copy): the sweep leaves its group alone until the commit.
    const startedAt = process.hrtime.bigint();
    const pending = await this.deps.pending.begin(tenant, mediaId);
    try {
      const media = await this.completeAs(tenant, createdBy, args.signedId, mediaId, plan, options, pending);
      await pending.close();
      // The bytes arrived earlier (a PUT); what is timed is the completion: verifying, copying, variants, commit.
      this.deps.uploads.recordStored('direct', media.mediaType, media.fileSize, startedAt);
      this.deps.uploads.warmThumb(media, media.checksum);
      return media;
    } catch (e) {
      await pending.close(e);
      throw e;
    }
  }

  private completeAs(tenant: string, createdBy: string, signedId: string, mediaId: string, plan: Plan, options: ClaimOptions, pending: PendingWrite): Promise<MediaRecord> {
    return this.withClaim(tenant, createdBy, signedId, options, async (upload, finish) => {
      try {
        const kind = SUPPORTED_TYPES.get(upload.mime)!.kind;
        const image = kind === 'IMAGE' ? imageFacts(upload.image, upload.mime, this.deps.images.memoryBytes) : undefined;
        const [media] = await this.deps.uploads.commit(
          tenant,
          createdBy,
          [
            {
              id: mediaId,
              plan,
              fileName: upload.fileName,
              mime: upload.mime,
              size: upload.size,
              checksum: upload.checksum,
              pageCount: upload.pageCount,
              durationSeconds: upload.durationSeconds,
              width: image?.width,
              height: image?.height,
              variants: image?.variants ?? [],
              encryptionKeyId: null,
              encryptionMode: null,
              pending,
            },
          ],
          finish,
        );
        return media!;
      } catch (e) {
        await this.deps.uploads.removeUnlessCommitted(tenant, [mediaId], e);
        throw e;
      }
    });
  }

  /**
   * createAsset with a signedId: the same claim and verification as
   * completeDirectUpload, with any supported type up to `limit` bytes, the bytes
   * copied to `destination` (the new asset's original). `use` writes the asset and
   * must call `finish` in the transaction that inserts its row.
   */
  claimForAsset<T>(
    tenant: string,
    subject: string,
    signedId: string,
    o: { limit: number; destination: string; field?: string },
    use: (upload: VerifiedUpload, finish: FinishClaim) => Promise<T>,
  ): Promise<T> {
    const limitFor = (mime: string) => {
      if (!SUPPORTED_TYPES.has(mime)) throw errors.unsupportedType(`Content of type ${mime} is not supported`);
      return o.limit;
    };
    return this.withClaim(tenant, subject, signedId, { field: o.field ?? 'input.signedId', destination: o.destination, limitFor }, use);
  }

  /**
   * Claims the ticket (one caller at a time, even when several race), verifies its
   * bytes at `destination`, and runs `use`. When anything fails, the copy at
   * `destination` is deleted and the claim released, so the ticket stays usable;
   * on success, the staged object is deleted.
   */
  private async withClaim<T>(tenant: string, subject: string, signedId: string, o: ClaimOptions, use: (upload: VerifiedUpload, finish: FinishClaim) => Promise<T>): Promise<T> {
    const id = this.open(signedId, tenant, subject, o.field);
    const token = randomUUID();
    const row = await this.claim(tenant, id, token, o.field);
    let result: T;
    try {
      const upload = await this.verifyCopy(tenant, row, o);
      result = await use(upload, async (tx) => {
        const n = await tx.$executeRaw`
          UPDATE direct_upload SET completed_at = now(), claimed_until = NULL
          WHERE tenant_id = ${tenant} AND id = ${id}::uuid AND claim_token = ${token}::uuid AND completed_at IS NULL`;
        if (n !== 1) throw lostClaim();
      });
    } catch (e) {
      // A transaction whose outcome is unknown may have committed rows pointing at
      // the destination: it stays (the sweep deletes it if no row claims it), and
      // the claim release below is a no-op if the ticket was completed.
      const uncertain = mayHaveCommitted(e);
      if (!uncertain) await this.deps.storage.delete(o.destination).catch(() => undefined);
      if (isAppError(e) && e.code === 'MALWARE_DETECTED') {
        // Nothing of an infected file remains: the ticket is spent (it cannot be completed
        // or PUT to again) and its staged bytes are deleted.
        await this.deps.prisma.$executeRaw`
          UPDATE direct_upload SET completed_at = now(), claim_token = NULL, claimed_until = NULL
          WHERE tenant_id = ${tenant} AND id = ${id}::uuid AND claim_token = ${token}::uuid AND completed_at IS NULL`.catch(() => undefined);
        await this.deps.storage
          .delete(row.storage_key)
          .catch((err: unknown) => this.deps.logger.warn({ err, ticketId: id }, 'could not delete the staged bytes of an infected direct upload; the sweep will'));
        throw e;
      }
      const released = await this.deps.prisma.$executeRaw`
        UPDATE direct_upload SET claim_token = NULL, claimed_until = NULL
        WHERE tenant_id = ${tenant} AND id = ${id}::uuid AND claim_token = ${token}::uuid AND completed_at IS NULL`.catch((err: unknown) => {
        this.deps.logger.warn({ err, ticketId: id }, 'could not release a direct upload claim; it lapses by itself');
        return null;
      });
      // Nothing to release: another completion took the ticket over (and may have
      // finished, deleting the staged bytes this one was reading); that is the news.
      if (released === 0 && !uncertain) throw lostClaim();
      throw isAppError(e) || uncertain ? e : errors.storageUnavailable(e);
    }
    // The staged object is spent. Only it: a PUT still arriving writes a key of its
    // own, which it deletes itself once refused; anything else in the ticket's group
    // (a late presigned PUT) goes with the ticket in the sweep.
    await this.deps.storage
      .delete(row.storage_key)
      .catch((err: unknown) => this.deps.logger.warn({ err, ticketId: id }, 'could not delete the staging object of a completed direct upload; the sweep will'));
    return result;
  }

  /** Takes the claim, or says why not: unknown, already used, being completed, expired. */
  private async claim(tenant: string, id: string, token: string, field: string): Promise<ClaimedRow> {
    const claimed = await this.deps.prisma.$queryRaw<ClaimedRow[]>`
      UPDATE direct_upload SET claim_token = ${token}::uuid, claimed_until = now() + make_interval(secs => ${CLAIM_LEASE_SECONDS}::int)
      WHERE tenant_id = ${tenant} AND id = ${id}::uuid AND completed_at IS NULL AND expires_at > now()
        AND (claimed_until IS NULL OR claimed_until <= now())
      RETURNING storage_key, content_type, byte_size, checksum, file_name`;
    if (claimed[0]) return claimed[0];
    const existing = await this.deps.prisma.directUpload.findUnique({ where: { tenantId_id: { tenantId: tenant, id } } });
    if (!existing) throw errors.notFound('Direct upload', id);
    if (existing.completedAt) throw errors.conflict('This signed id was already used');
    if (existing.expiresAt.getTime() <= Date.now()) throw errors.badInput(field, 'The direct upload has expired');
    throw errors.conflict('This direct upload is being completed by another request');
  }

  /**
   * Copies the staged object to `destination` and verifies the copy: the declared
   * size, a detected type that `limitFor` accepts and equal to the declared one,
   * and the declared SHA-256. Verifying the copy (which no PUT can reach, its key is
   * new) rather than the staging object means that what is checked is what is kept,
   * whatever a late PUT does to the staging key, on every store.
   */
  private async verifyCopy(tenant: string, row: ClaimedRow, o: ClaimOptions): Promise<VerifiedUpload> {
    const { storage } = this.deps;
    const declared = Number(row.byte_size);
    const nothing = () => errors.badInput(o.field, 'Nothing was uploaded for this signed id yet: PUT the bytes to its url first');
    const head = await storage.head(row.storage_key);
    if (!head) throw nothing();
    if (head.size !== declared) throw errors.badInput(o.field, `Uploaded ${head.size} bytes but ${declared} were declared`);
    await storage.copy(row.storage_key, o.destination).catch((e: unknown) => {
      throw isAppError(e) && e.code === 'NOT_FOUND' ? nothing() : e;
    });
    const inspector = this.deps.ingest.inspector({
      fileName: row.file_name,
      accept: (mime) => {
        const limit = o.limitFor(mime);
        if (mime !== row.content_type) throw errors.unsupportedType(`Declared type ${row.content_type} does not match the content, which is ${mime}`);
        return limit;
      },
    }, { tenant, source: 'direct' });
    await pipeline(await storage.get(o.destination), inspector, new Writable({ write: (_c, _e, cb) => cb() }));
    const facts = inspector.result();
    if (facts.size !== declared) throw errors.badInput(o.field, `Uploaded ${facts.size} bytes but ${declared} were declared`);
    if (Buffer.from(facts.checksum, 'hex').toString('base64') !== row.checksum) {
      throw errors.integrity('The uploaded content does not match the declared checksum');
    }
    // The ticket kept the client's name (DOC and XLS are told apart by it); the media gets it with the detected type's extension.
    return { storageKey: o.destination, fileName: sanitiseFileName(row.file_name, facts.mime), ...facts };
  }
}

/** A PUT cannot change a ticket that is completed or being completed. */
function refuseWrites(row: { completedAt: Date | null; claimedUntil: Date | null }, when = ''): void {
  const suffix = when ? ` ${when}` : '';
  if (row.completedAt) throw errors.conflict(`This direct upload was completed${suffix}`);
  if (row.claimedUntil && row.claimedUntil.getTime() > Date.now()) throw errors.conflict(`This direct upload is being completed${suffix}`);
}

function lostClaim(): AppError {
  return errors.conflict('This direct upload was taken over by another completion (this one outlived its claim)');
}

/** The tenant is at its own limit (like its expensive queries): TOO_MANY_REQUESTS, with when a slot frees at the latest. */
function tooManyTickets(limit: number, retryAfterSeconds: number): AppError {
  return errors.tooManyRequests(`This tenant already has ${limit} direct uploads in progress, the most allowed: complete them or let them expire`, {
    reason: 'DIRECT_UPLOAD_TICKETS',
    limit,
    retryAfterSeconds,
  });
}

/**
 * Passes at most `max` bytes of the request body; one more fails the stream (the
 * PUT was larger than declared), and so does the client going away before the end.
 * With `md5`, a complete body whose MD5 differs fails at its end, so the storage
 * write fails and nothing is stored.
 */
class BodyLimit extends Transform {
  received = 0;
  private readonly hash: Hash | undefined;

  constructor(source: Readable, private readonly max: number, private readonly md5?: string) {
    super();
    this.hash = md5 !== undefined ? createHash('md5') : undefined;
    // From birth: Storage.put reports the error as its rejection, but it may not be
    // listening yet (it awaits a mkdir or a connection first); without this listener
    // that error would be an unhandled 'error' event and end the process.
    this.on('error', () => undefined);
    finished(source, (err) => {
      if (err) this.destroy(errors.badInput('body', `The body ended before the declared ${max} bytes (the client went away)`));
    });
    source.pipe(this);
  }

  override _transform(chunk: Buffer, _e: BufferEncoding, cb: (err?: Error | null, data?: Buffer) => void): void {
    this.received += chunk.length;
    if (this.received > this.max) return cb(errors.badInput('body', `Body is larger than the declared ${this.max} bytes`));
    this.hash?.update(chunk);
    cb(null, chunk);
  }

  override _flush(cb: (err?: Error | null) => void): void {
    // A short body is refused by its length (the caller's check); only a whole one is compared.
    if (this.hash && this.received === this.max && this.hash.digest('base64') !== this.md5) {
      return cb(errors.badInput('Content-MD5', 'The body does not match its Content-MD5 (BadDigest); nothing was stored'));
    }
    cb();
  }
}

/** Resolves when the stream ended, rejects with its error. */
function endOf(stream: Readable): Promise<void> {
  return new Promise((resolve, reject) => finished(stream, (err) => (err ? reject(err) : resolve())));
}
