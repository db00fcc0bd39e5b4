import { randomUUID } from 'node:crypto';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import type { PrismaClient } from '../../generated/prisma/client.js';
import type { MediaRole } from '../../generated/prisma/enums.js';
import { errors, isAppError } from '../../errors/index.js';
import type { Logger } from '../../logger.js';
import type { Storage } from '../../storage/index.js';
import { objectKeys } from '../../storage/index.js';
import type { ImageQueue } from '../media/image-queue.js';
import { processImage } from '../media/images.js';
import { InspectStream, type InspectResult } from '../media/inspect-stream.js';
import type { EntityRef, MediaRecord } from '../media/media.record.js';
import type { UploadService } from '../media/upload.service.js';
import { sanitiseFileName } from '../media/upload.service.js';
import { normaliseMime, SUPPORTED_TYPES } from '../policy/media-types.js';
import { CRITICAL_ROLES, type PolicyRegistry } from '../policy/policy.js';
import type { SignedIds } from './signed-id.js';

export interface DirectUploadDeps {
  prisma: PrismaClient;
  storage: Storage;
  policies: PolicyRegistry;
  uploads: UploadService;
  signedIds: SignedIds;
  logger: Logger;
  images: ImageQueue;
  /** Lifetime of a direct upload (URL and signed id). */
  ttlSeconds: number;
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

/** A claimed direct upload whose stored object passed every check. */
export interface VerifiedUpload extends InspectResult {
  /** The upload's id: the id of the media or asset it becomes. */
  id: string;
  storageKey: string;
  fileName: string;
}

const SHA256_B64 = /^[A-Za-z0-9+/]{43}=$/;

export const directUploadPath = (signedId: string) => `/direct-uploads/${encodeURIComponent(signedId)}`;

/**
 * Browser-to-storage uploads (SPEC 10): a signed, single-use ticket with a PUT URL;
 * completion verifies the stored object (size, SHA-256, detected type) and then
 * creates the media exactly like `upload`. STANDARD content only.
 */
export class DirectUploadService {
  constructor(private readonly deps: DirectUploadDeps) {}

  async create(tenant: string, input: { filename: string; contentType: string; byteSize: number; checksum: string }): Promise<DirectUploadTicket> {
    const filename = sanitiseFileName(input.filename);
    const contentType = normaliseMime(input.contentType) ?? '';
    if (!SUPPORTED_TYPES.has(contentType)) throw errors.unsupportedType(`Content type "${input.contentType}" is not supported`);
    if (!Number.isSafeInteger(input.byteSize) || input.byteSize < 1) throw errors.badInput('input.byteSize', 'byteSize must be a positive integer');
    const limit = this.deps.policies.kindLimit(contentType);
    if (input.byteSize > limit) throw errors.tooLarge(limit);
    if (!SHA256_B64.test(input.checksum)) throw errors.badInput('input.checksum', 'checksum must be the base64 SHA-256 of the content (44 characters)');

    const id = randomUUID();
    const key = objectKeys.original(tenant, id);
    const expiresAt = new Date(Date.now() + this.deps.ttlSeconds * 1000);
    await this.deps.prisma.directUpload.create({
      data: { id, tenantId: tenant, storageKey: key, fileName: filename, contentType, byteSize: BigInt(input.byteSize), checksum: input.checksum, expiresAt },
    });
    const signedId = this.deps.signedIds.sign({ id, tenant, exp: Math.floor(expiresAt.getTime() / 1000) });
    const url = this.deps.storage.presignPut
      ? await this.deps.storage.presignPut(key, { expiresIn: this.deps.ttlSeconds, contentType, size: input.byteSize })
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
      headers: { contentType, contentMd5: null, contentDisposition: null, all: { 'Content-Type': contentType } },
      expiresAt,
    };
  }

  /** Checks a signed id and returns its upload row id; the caller's tenant must be the id's. */
  private open(signedId: string, tenant: string, field: string): string {
    const check = this.deps.signedIds.verify(signedId);
    if (!check.ok) {
      throw errors.badInput(field, check.reason === 'expired' ? 'The direct upload has expired' : 'Invalid signed id');
    }
    if (check.payload.tenant !== tenant) throw errors.notFound('Direct upload', 'for this signed id');
    return check.payload.id;
  }

  /**
   * The service's own PUT endpoint (local disk): the signed id is the credential.
   * The body must have the declared Content-Type and exactly the declared size.
   */
  async receive(signedId: string, contentType: string | undefined, contentLength: number | undefined, body: Readable): Promise<void> {
    const check = this.deps.signedIds.verify(signedId);
    if (!check.ok) throw errors.forbiddenMessage(check.reason === 'expired' ? 'The upload URL has expired' : 'Invalid upload URL');
    const { id, tenant } = check.payload;
    const row = await this.deps.prisma.directUpload.findUnique({ where: { tenantId_id: { tenantId: tenant, id } } });
    if (!row) throw errors.notFound('Direct upload', id);
    if (row.completedAt) throw errors.conflict('This direct upload was already completed');
    const declared = Number(row.byteSize);
    if (normaliseMime(contentType) !== row.contentType) throw errors.badInput('Content-Type', `Content-Type must be ${row.contentType}`);
    if (contentLength !== undefined && contentLength !== declared) throw errors.badInput('Content-Length', `Content-Length must be ${declared}`);
    const limited = limitBytes(body, declared);
    const stored = await this.deps.storage.put(row.storageKey, limited, { contentType: row.contentType, size: declared });
    if (stored.size !== declared) {
      await this.deps.storage.delete(row.storageKey);
      throw errors.badInput('body', `Expected ${declared} bytes, received ${stored.size}`);
    }
  }

  async complete(
    tenant: string,
    createdBy: string,
    args: { signedId: string; entity: EntityRef; tags?: string[] | null; role?: MediaRole | null },
  ): Promise<MediaRecord> {
    const id = this.open(args.signedId, tenant, 'signedId');
    const policy = this.deps.policies.get(args.entity.type, 'entity.type');
    if (policy.securityLevel !== 'STANDARD' || (args.role && CRITICAL_ROLES.has(args.role))) {
      throw errors.badInput('entity', `Direct uploads are for STANDARD content only; "${args.entity.type}" content must be sent with upload`);
    }
    const plan = this.deps.uploads.plan({ file: undefined as never, entity: args.entity, tags: args.tags ?? null, role: args.role ?? null }, 'input');
    const upload = await this.claimVerified(tenant, id, 'signedId', (mime) => this.deps.policies.limitFor(plan.policy, mime));
    try {
      const kind = SUPPORTED_TYPES.get(upload.mime)!.kind;
      const image = kind === 'IMAGE' ? await processImage(this.deps.storage, tenant, id, upload.mime, this.deps.images) : undefined;
      const [media] = await this.deps.uploads.commit(tenant, createdBy, [
        {
          id,
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
        },
      ]);
      return media!;
    } catch (e) {
      await this.deps.uploads.removeObjects(tenant, [id]);
      throw isAppError(e) ? e : errors.storageUnavailable(e);
    }
  }

  /**
   * Claims a completed direct upload for a new asset (createAsset with signedId):
   * the same single-use claim and verification as completeDirectUpload, with any
   * supported type up to `limit` bytes. The asset takes the upload's id, and the
   * object stays where it is. On failure nothing is left stored.
   */
  async claimForAsset(tenant: string, signedId: string, limit: number, field = 'input.signedId'): Promise<VerifiedUpload> {
    const id = this.open(signedId, tenant, field);
    return this.claimVerified(tenant, id, field, (mime) => {
      if (!SUPPORTED_TYPES.has(mime)) throw errors.unsupportedType(`Content of type ${mime} is not supported`);
      return limit;
    });
  }

  /**
   * Claims the ticket (exactly one caller wins, even when two race) and verifies
   * the stored object: it exists, has the declared size, a detected type that
   * `limitFor` accepts (returning its size limit) and equal to the declared one,
   * and the declared SHA-256. On any failure the object is deleted.
   */
  private async claimVerified(tenant: string, id: string, field: string, limitFor: (mime: string) => number): Promise<VerifiedUpload> {
    const claimed = await this.deps.prisma.$queryRaw<{ storage_key: string; content_type: string; byte_size: bigint; checksum: string; file_name: string }[]>`
      UPDATE direct_upload SET completed_at = now()
      WHERE tenant_id = ${tenant} AND id = ${id}::uuid AND completed_at IS NULL AND expires_at > now()
      RETURNING storage_key, content_type, byte_size, checksum, file_name`;
    const row = claimed[0];
    if (!row) {
      const existing = await this.deps.prisma.directUpload.findUnique({ where: { tenantId_id: { tenantId: tenant, id } } });
      if (!existing) throw errors.notFound('Direct upload', id);
      if (existing.completedAt) throw errors.conflict('This signed id was already used');
      throw errors.badInput(field, 'The direct upload has expired');
    }
    try {
      const declaredSize = Number(row.byte_size);
      const head = await this.deps.storage.head(row.storage_key);
      if (!head) throw errors.badInput(field, 'Nothing was uploaded for this signed id');
      if (head.size !== declaredSize) throw errors.badInput(field, `Uploaded ${head.size} bytes but ${declaredSize} were declared`);
      const inspector = new InspectStream({
        fileName: row.file_name,
        accept: (mime) => {
          const limit = limitFor(mime);
          if (mime !== row.content_type) throw errors.unsupportedType(`Declared type ${row.content_type} does not match the content, which is ${mime}`);
          return limit;
        },
      });
      await pipeline(await this.deps.storage.get(row.storage_key), inspector, new Writable({ write: (_c, _e, cb) => cb() }));
      const facts = inspector.result();
      if (Buffer.from(facts.checksum, 'hex').toString('base64') !== row.checksum) {
        throw errors.integrity('The uploaded content does not match the declared checksum');
      }
      return { id, storageKey: row.storage_key, fileName: row.file_name, ...facts };
    } catch (e) {
      await this.deps.uploads.removeObjects(tenant, [id]);
      throw isAppError(e) ? e : errors.storageUnavailable(e);
    }
  }
}

/** Passes at most `max` bytes; one more fails the stream (the PUT was larger than declared). */
function limitBytes(source: Readable, max: number): Readable {
  let seen = 0;
  const t = new Transform({
    transform(chunk: Buffer, _e: BufferEncoding, cb: (err?: Error | null, data?: Buffer) => void) {
      seen += chunk.length;
      if (seen > max) return cb(errors.badInput('body', `Body is larger than the declared ${max} bytes`));
      cb(null, chunk);
    },
  });
  source.on('error', (e) => t.destroy(e));
  return source.pipe(t);
}
