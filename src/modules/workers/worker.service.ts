import type { Metrics } from '../../http/metrics.js';
import { KeyMismatch, keyOrIntegrityError, openChecksum } from '../../crypto/sealed-checksum.js';
import type { IncomingFile } from '../../graphql/multipart.js';
import type { PrismaClient } from '../../generated/prisma/client.js';
import type { Readable } from 'node:stream';
import { VerifyChecksum, type ContentCrypto } from '../../crypto/content-crypto.js';
import { IntegrityFailure } from '../../crypto/segmented-gcm.js';
import { errors } from '../../errors/index.js';
import type { Logger } from '../../logger.js';
import type { Storage } from '../../storage/index.js';
import type { MediaRecord } from '../media/media.record.js';
import { mediaRepository } from '../media/media.repository.js';
import type { MediaService } from '../media/media.service.js';
import { discardUpload, type Plan, type UploadService } from '../media/upload.service.js';
import type { EntityPolicy } from '../policy/policy.js';

const MiB = 1024 * 1024;
/** workerMedia serves documents and images up to this size (the whole content travels as base64). */
export const WORKER_MAX_SIZE = 20 * MiB;
const WORKER_TYPES = new Set(['application/pdf', 'image/jpeg', 'image/png', 'image/gif', 'image/webp']);

/** Signed documents: PDF only, CRITICAL, at most 20 MiB. */
const SIGNED_DOCUMENT_POLICY: EntityPolicy = Object.freeze({
  entityType: 'signed-document',
  securityLevel: 'CRITICAL',
  allowedMediaTypes: Object.freeze(['application/pdf']),
  maxFileSize: 20 * MiB,
});

/** The two operations back-office workers (e-signature, OTP, OCR) may call (SPEC 8). */
export class WorkerService {
  constructor(
    private readonly deps: {
      prisma: PrismaClient;
      storage: Storage;
      crypto: ContentCrypto;
      media: MediaService;
      uploads: UploadService;
      logger: Logger;
      metrics?: Metrics;
    },
  ) {}

  async mediaContent(tenant: string, id: string, workerType: string) {
    const media = await this.deps.media.require(tenant, id);
    if (!WORKER_TYPES.has(media.mediaType)) throw errors.unsupportedType(`workerMedia serves PDFs and images only; this media is ${media.mediaType}`);
    if (media.fileSize > WORKER_MAX_SIZE) throw errors.tooLarge(WORKER_MAX_SIZE);
    const content = await this.readVerified(media);
    this.deps.logger.info({ mediaId: media.id, tenant, workerType }, 'worker read a document');
    return {
      contentBase64: content.toString('base64'),
      documentName: media.fileName,
      contentType: media.mediaType,
      fileSize: media.fileSize,
      checksum: openChecksum(this.deps.crypto.ring, media),
      securityLevel: media.securityLevel,
    };
  }

  /** The whole content, decrypted where needed, its SHA-256 verified (bounded by WORKER_MAX_SIZE). */
  private async readVerified(media: MediaRecord): Promise<Buffer> {
    const { storage, crypto } = this.deps;
    let body: Readable;
    try {
      const checksum = openChecksum(crypto.ring, media);
      body = media.encrypted
        ? await crypto.open(storage, { key: media.storageKey, kid: media.encryptionKeyId!, mode: media.encryptionMode, plainSize: media.fileSize, checksum })
        : (await storage.get(media.storageKey)).pipe(new VerifyChecksum(media.checksum));
      const parts: Buffer[] = [];
      for await (const c of body) parts.push(c as Buffer);
      return Buffer.concat(parts);
    } catch (e) {
      if (e instanceof KeyMismatch) throw keyOrIntegrityError(e, this.deps, media);
      if (e instanceof IntegrityFailure) {
        this.deps.metrics?.integrityFailure('INTEGRITY_ERROR');
        this.deps.logger.error({ event: 'INTEGRITY_ERROR', mediaId: media.id, reason: e.message }, 'integrity failure: stored content does not verify');
        throw errors.integrity('Stored content failed verification');
      }
      throw e;
    }
  }

  /**
   * Stores a signed PDF for a document as a new CRITICAL, encrypted media,
   * attached to every entity the original is attached to; where the original
   * holds LEASE_ORIGINAL, the new media takes LEASE_SIGNED.
   */
  async uploadSigned(tenant: string, workerType: string, originalId: string, file: IncomingFile): Promise<MediaRecord> {
    let plan: Plan;
    try {
      await this.deps.media.require(tenant, originalId);
      const [entities, roles] = await Promise.all([
        mediaRepository.entitiesForMedia(this.deps.prisma, tenant, [originalId]),
        mediaRepository.rolesForMedia(this.deps.prisma, tenant, [originalId]),
      ]);
      const originals = new Set(roles.filter((r) => r.role === 'LEASE_ORIGINAL').map((r) => `${r.entityType}\u0000${r.entityId}`));
      const attachTo = entities.map(({ entity }) => ({
        entity,
        role: originals.has(`${entity.type}\u0000${entity.id}`) ? ('LEASE_SIGNED' as const) : null,
      }));
      const first = attachTo[0]?.entity ?? { type: 'lease', id: originalId };
      plan = { entity: first, policy: SIGNED_DOCUMENT_POLICY, tags: ['signed'], role: null, level: 'CRITICAL', attachTo };
    } catch (e) {
      await discardUpload(file);
      throw e;
    }
    const stored = await this.deps.uploads.store(tenant, plan, file, 'worker');
    const [media] = await this.deps.uploads.commitOrRemove(tenant, `worker:${workerType}`, [stored], 'worker');
    // Committed: nothing from here on may lead to deleting its objects.
    this.deps.logger.info({ mediaId: stored.id, originalId, tenant, workerType }, 'worker stored a signed document');
    return media!;
  }
}

