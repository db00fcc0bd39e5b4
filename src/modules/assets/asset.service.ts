import { mayHaveCommitted, transact } from '../../db/transact.js';
import type { PendingWrite, PendingWrites } from '../../db/pending-writes.js';
import { randomBytes, randomUUID } from 'node:crypto';
import type { IncomingFile } from '../../graphql/multipart.js';
import { Prisma, type PrismaClient } from '../../generated/prisma/client.js';
import type { AssetAccess, AssetType } from '../../generated/prisma/enums.js';
import { AppError, dbSqlState, errors, isUniqueViolation } from '../../errors/index.js';
import type { ExpensiveQueries } from '../../db/expensive-queries.js';
import type { Logger } from '../../logger.js';
import type { Storage } from '../../storage/index.js';
import type { DirectUploadService, FinishClaim } from '../direct-uploads/direct-upload.service.js';
import { isUuid } from '../media/cursor.js';
import type { ImageQueue } from '../renders/image-queue.js';
import { imageFacts } from '../../ingest/image-facts.js';
import { IMAGE_HEADER_BYTES, readHeader, type ImageHeader } from '../../ingest/image-header.js';
import { isRenderable, type RenderSourceImage } from '../renders/render-plan.js';
import type { Ingest } from '../../ingest/ingest.js';
import { discardUpload } from '../media/upload.service.js';
import { sanitiseFileName } from '../../ingest/file-name.js';
import type { Metrics } from '../../http/metrics.js';
import { SUPPORTED_TYPES } from '../policy/media-types.js';
import { ASSET_MAX_BYTES, assetFromRow, assetKeys, type AssetRecord, type AssetRef, type AssetRow, type AssetVariantRecord } from './asset.record.js';
import { assetRepository, pageStatements } from './asset.repository.js';
import { queryError } from './query-language.js';
import { checkLinkUrl } from './link-url.js';

type Upload = IncomingFile;

export interface CreateAssetArgs {
  type: AssetType;
  access: AssetAccess;
  name?: string | null;
  key?: string | null;
  refIds?: AssetRef[] | null;
  file?: Upload | null;
  signedId?: string | null;
  url?: string | null;
  filename?: string | null;
  priority?: number | null;
}

export interface UpdateAssetArgs {
  version: number;
  name?: string | null;
  refIds?: AssetRef[] | null;
  file?: Upload | null;
  url?: string | null;
  filename?: string | null;
  priority?: number | null;
  active?: boolean | null;
}

export interface AssetPageResult {
  items: AssetRecord[];
  totalCount: number;
  pageNumber: number;
  pageSize: number;
}

export const MAX_PAGE_SIZE = 100;
/** What compiling a pattern alone can fail with: invalid, too complex, or an allocation PostgreSQL refuses. */
const PATTERN_STATES = new Set(['2201B', '54000', '54001', '53200', 'XX000']);
const MAX_REFS = 100;

// Keys are path-like and URL-safe, so that GET /tenants/{tenant}/assets/{key} needs no escaping:
// segments of [A-Za-z0-9._~-] separated by single '/', none of them "." or "..".
const KEY_SEGMENT = /^[A-Za-z0-9._~-]+$/;

/** A file written for an asset, with its variants, waiting for its row. */
interface StoredBlob {
  storageKey: string;
  fileName: string;
  mimeType: string;
  bytes: number;
  checksum: string;
  variants: AssetVariantRecord[];
  /** Displayed size of an image. */
  width?: number | undefined;
  height?: number | undefined;
  /** Keys to delete if the row is not written. */
  cleanup: () => Promise<void>;
}

export interface AssetServiceDeps {
  prisma: PrismaClient;
  storage: Storage;
  directUploads: DirectUploadService;
  logger: Logger;
  /** Records writes in progress (the sweep leaves their groups alone). */
  pending: PendingWrites;
  /** LINK urls may name loopback, private and link-local hosts (ASSET_LINKS_ALLOW_PRIVATE_HOSTS; default: refused). */
  allowNonPublicLinkHosts?: boolean;
  /** Queries with regular expressions take a turn and a deadline here. */
  expensive: ExpensiveQueries;
  images: ImageQueue;
  ingest: Ingest;
  metrics?: Metrics;
}

/**
 * Tenant assets (SPEC 11): BLOB assets (a stored file, from a multipart upload or
 * a completed direct upload) and LINK assets (an absolute http(s) URL), PUBLIC or
 * PRIVATE; optimistic locking on `version`; soft deletion; the query language.
 */
export class AssetService {
  constructor(private readonly deps: AssetServiceDeps) {}

  /** A live asset of the tenant, or NOT_FOUND (another tenant's ids included). */
  async require(tenant: string, id: string): Promise<AssetRecord> {
    const [a] = isUuid(id) ? await assetRepository.byIds(this.deps.prisma, tenant, [id]) : [];
    if (!a) throw errors.notFound('Asset', id);
    return a;
  }

  byKey(tenant: string, key: string): Promise<AssetRecord | null> {
    return assetRepository.byKey(this.deps.prisma, tenant, key);
  }

  async list(tenant: string, args: { pageNumber: number; pageSize: number; sort: string | null; q: string | null }): Promise<AssetPageResult> {
    const { pageNumber, pageSize } = args;
    if (!Number.isInteger(pageNumber) || pageNumber < 1) throw errors.badInput('pageNumber', 'pageNumber starts at 1');
    if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE_SIZE) throw errors.badInput('pageSize', `pageSize must be between 1 and ${MAX_PAGE_SIZE}`);
    const offset = (pageNumber - 1) * pageSize;
    if (offset > 1_000_000) throw errors.badInput('pageNumber', 'pageNumber is too large; narrow the query with q');
    const statements = pageStatements(tenant, { q: args.q, sort: args.sort, limit: pageSize, offset });
    const regexes = statements.terms.filter((t) => t.expression.kind === 'regex');
    const result = regexes.length
      ? await this.deps.expensive
          .run(tenant, 'assets(q:) with a regular expression', (query) => assetRepository.pageInOrder(query, statements))
          .catch(async (e: unknown) => {
            throw await this.regexFailure(e, regexes.map((t) => ({ text: t.text, pattern: (t.expression as { pattern: string }).pattern })));
          })
      : await assetRepository.page(this.deps.prisma, statements);
    return { items: result.rows, totalCount: result.total, pageNumber, pageSize };
  }

  /**
   * PostgreSQL decides what a regular expression is (its ARE syntax is not
   * JavaScript's). A query with patterns that failed: past the timeout, the client's
   * error naming its first pattern; otherwise each pattern is compiled alone, and
   * one that fails there (invalid, or so complex that PostgreSQL refuses the
   * allocation) is the client's error naming its term. Anything else (a failover, a
   * pool timeout) stays the server's.
   */
  private async regexFailure(e: unknown, regexes: { text: string; pattern: string }[]): Promise<unknown> {
    if (dbSqlState(e) === '57014') {
      return queryError('q', regexes[0]!.text, `the query took longer than ${this.deps.expensive.limits.timeoutMs} ms; simplify the regular expression or narrow the query with other terms`);
    }
    if (!dbSqlState(e)) return e;
    for (const r of regexes) {
      const refused = await this.deps.prisma.$queryRaw`SELECT '' ~ ${r.pattern}`.then(() => undefined, (err: unknown) => err);
      if (refused && PATTERN_STATES.has(dbSqlState(refused) ?? '')) {
        const message = refused instanceof Error && /invalid regular expression: /.test(refused.message) ? refused.message.slice(refused.message.indexOf('invalid regular expression: ')).replace(/`.*$/s, '').slice(0, 200) : 'invalid or too complex regular expression';
        return queryError('q', r.text, message);
      }
    }
    return e;
  }

  /** `subject`: the user creating it (a signedId must be one they created). */
  async create(tenant: string, subject: string, input: CreateAssetArgs): Promise<AssetRecord> {
    let fields: ReturnType<AssetService['checkCreate']>;
    try {
      fields = this.checkCreate(input);
      if (fields.key && (await assetRepository.keyTaken(this.deps.prisma, tenant, fields.key))) throw duplicateKey(fields.key);
    } catch (e) {
      await discardUpload(input.file ?? undefined);
      throw e;
    }
    const id = randomUUID();
    if (input.type !== 'BLOB') return this.insert(tenant, id, input, fields, null);
    return this.whilePending(tenant, id, input.file, (pending) => this.createBlob(tenant, subject, id, input, fields, pending));
  }

  /**
   * Runs a write of objects into the asset's group with a pending-write record
   * (the sweep leaves the group alone until the row commits, see
   * PendingWrites): written before the first object, settled by the transaction
   * of the row, closed here.
   */
  private async whilePending<T>(tenant: string, id: string, file: Upload | null | undefined, write: (pending: PendingWrite) => Promise<T>): Promise<T> {
    let pending: PendingWrite;
    try {
      pending = await this.deps.pending.begin(tenant, id);
    } catch (e) {
      await discardUpload(file ?? undefined);
      throw e;
    }
    try {
      const result = await write(pending);
      await pending.close();
      return result;
    } catch (e) {
      await pending.close(e);
      throw e;
    }
  }

  private async createBlob(tenant: string, subject: string, id: string, input: CreateAssetArgs, fields: ReturnType<AssetService['checkCreate']>, pending: PendingWrite): Promise<AssetRecord> {
    const startedAt = process.hrtime.bigint();
    if (!input.file) {
      // A direct upload: its verified bytes are copied into the new asset's first revision folder.
      const folder = assetKeys.revision(tenant, id, revision(1));
      return this.deps.directUploads.claimForAsset(tenant, subject, input.signedId!, { limit: ASSET_MAX_BYTES, destination: `${folder}original` }, async (upload, finish) => {
        const blob = await this.withVariants(upload.image, {
          storageKey: upload.storageKey,
          fileName: sanitiseFileName(fields.filename ?? upload.fileName, upload.mime),
          mimeType: upload.mime,
          bytes: upload.size,
          checksum: upload.checksum,
          variants: [],
          cleanup: () => this.deps.storage.deletePrefix(folder),
        });
        const asset = await this.insert(tenant, id, input, fields, blob, finish, pending);
        this.recordStored(blob, startedAt);
        return asset;
      });
    }
    const blob = await this.storeUpload(tenant, id, 1, input.file, fields.filename);
    const asset = await this.insert(tenant, id, input, fields, blob, undefined, pending);
    this.recordStored(blob, startedAt);
    return asset;
  }

  /** Counts a committed asset file (media_upload_bytes_total and friends, source "asset"). */
  private recordStored(blob: StoredBlob, startedAt: bigint): void {
    const kind = SUPPORTED_TYPES.get(blob.mimeType)?.kind ?? 'FILE';
    this.deps.metrics?.upload({ source: 'asset', kind, driver: this.deps.storage.driver, bytes: blob.bytes, seconds: Number(process.hrtime.bigint() - startedAt) / 1e9 });
  }

  /** Writes the row of a new asset; on failure its stored objects are deleted. `first` runs in the same transaction, before the insert. */
  private async insert(
    tenant: string,
    id: string,
    input: CreateAssetArgs,
    fields: ReturnType<AssetService['checkCreate']>,
    blob: StoredBlob | null,
    first?: FinishClaim,
    pending?: PendingWrite,
  ): Promise<AssetRecord> {
    const key = fields.key ?? id;
    const name = fields.name ?? fields.filename ?? blob?.fileName ?? fields.url ?? key;
    const statement = (db: Prisma.TransactionClient | PrismaClient) => db.$queryRaw<AssetRow[]>`
        INSERT INTO asset (tenant_id, id, type, access, name, key, ref_ids, priority, active, link_url,
                           storage_key, file_name, mime_type, bytes, checksum, variants, width, height)
        VALUES (${tenant}, ${id}::uuid, ${input.type}::"AssetType", ${input.access}::"AssetAccess", ${name.slice(0, 255)}, ${key},
                ${JSON.stringify(fields.refIds ?? [])}::jsonb, ${fields.priority ?? 0}::int, true, ${fields.url},
                ${blob?.storageKey ?? null}, ${blob?.fileName ?? fields.filename ?? null}, ${blob?.mimeType ?? null},
                ${blob?.bytes ?? null}::bigint, ${blob?.checksum ?? null}, ${JSON.stringify(blob?.variants ?? [])}::jsonb,
                ${blob?.width ?? null}::int, ${blob?.height ?? null}::int)
        RETURNING *`;
    let rows: AssetRow[];
    try {
      // A transaction even for the single INSERT: an error while it runs means it
      // did not commit; one from COMMIT leaves the outcome unknown (mayHaveCommitted).
      rows = await transact(this.deps.prisma, async (tx) => {
        await first?.(tx);
        await pending?.settle(tx);
        return statement(tx);
      });
    } catch (e) {
      await this.cleanupUnlessCommitted(id, blob, e, 'could not delete the objects of a refused asset; the sweep will');
      if (isUniqueViolation(e)) throw duplicateKey(key);
      throw e;
    }
    // Committed: nothing from here on may delete the objects.
    return assetFromRow(rows[0]!);
  }

  /** Deletes a blob's objects after `e`, unless its row may have committed (then the sweep decides). */
  private async cleanupUnlessCommitted(id: string, blob: StoredBlob | null, e: unknown, message: string): Promise<void> {
    if (!blob) return;
    if (mayHaveCommitted(e)) {
      this.deps.logger.error({ err: e, assetId: id, key: blob.storageKey }, 'the write of an asset may or may not have taken effect; its new objects are kept (the sweep deletes them if the row does not point at them)');
      return;
    }
    await blob.cleanup().catch((err: unknown) => this.deps.logger.error({ err, assetId: id }, message));
  }

  async update(tenant: string, id: string, input: UpdateAssetArgs): Promise<AssetRecord> {
    let current: AssetRecord;
    let fields: ReturnType<AssetService['checkUpdate']>;
    try {
      if (!Number.isInteger(input.version) || input.version < 1) throw errors.badInput('input.version', 'version is the metadata.version you last read');
      current = await this.require(tenant, id);
      fields = this.checkUpdate(current, input);
      // Refused before any byte is stored; the conditional UPDATE below is what guards a race.
      if (current.version !== input.version) throw staleVersion(id, input.version);
    } catch (e) {
      await discardUpload(input.file ?? undefined);
      throw e;
    }
    if (!input.file) return this.updateAs(tenant, id, input, current, fields, null);
    const file = input.file;
    const startedAt = process.hrtime.bigint();
    return this.whilePending(tenant, id, file, async (pending) => {
      const blob = await this.storeUpload(tenant, id, current.version + 1, file, fields.filename);
      const asset = await this.updateAs(tenant, id, input, current, fields, blob, pending);
      this.recordStored(blob, startedAt);
      return asset;
    });
  }

  private async updateAs(
    tenant: string,
    id: string,
    input: UpdateAssetArgs,
    current: AssetRecord,
    fields: ReturnType<AssetService['checkUpdate']>,
    blob: StoredBlob | null,
    pending?: PendingWrite,
  ): Promise<AssetRecord> {

    const set: Prisma.Sql[] = [];
    if (fields.name !== undefined) set.push(Prisma.sql`name = ${fields.name}`);
    if (fields.refIds !== undefined) set.push(Prisma.sql`ref_ids = ${JSON.stringify(fields.refIds)}::jsonb`);
    if (fields.priority !== undefined) set.push(Prisma.sql`priority = ${fields.priority}::int`);
    if (fields.active !== undefined) set.push(Prisma.sql`active = ${fields.active}`);
    if (fields.url !== undefined) set.push(Prisma.sql`link_url = ${fields.url}`);
    if (blob) {
      set.push(
        Prisma.sql`storage_key = ${blob.storageKey}, file_name = ${blob.fileName}, mime_type = ${blob.mimeType}, bytes = ${blob.bytes}::bigint,
                   checksum = ${blob.checksum}, variants = ${JSON.stringify(blob.variants)}::jsonb, width = ${blob.width ?? null}::int, height = ${blob.height ?? null}::int`,
      );
    } else if (fields.filename !== undefined) set.push(Prisma.sql`file_name = ${sanitiseFileName(fields.filename, current.mimeType)}`);
    set.push(Prisma.sql`version = version + 1, modified_at = now()`);

    let rows: AssetRow[];
    try {
      rows = await transact(this.deps.prisma, async (tx) => {
        await pending?.settle(tx);
        return tx.$queryRaw<AssetRow[]>`
          UPDATE asset SET ${Prisma.join(set)}
          WHERE tenant_id = ${tenant} AND id = ${id}::uuid AND deleted_at IS NULL AND version = ${input.version}::int
          RETURNING *`;
      });
    } catch (e) {
      await this.cleanupUnlessCommitted(id, blob, e, 'could not delete the objects of a failed update; the sweep will');
      throw e;
    }
    if (!rows[0]) {
      await blob?.cleanup().catch((err: unknown) => this.deps.logger.error({ err, assetId: id }, 'could not delete the objects of a refused update; the sweep will'));
      await this.require(tenant, id); // deleted meanwhile: NOT_FOUND
      throw staleVersion(id, input.version);
    }
    // The row now points at the new objects: the old ones can go.
    if (blob) {
      // The renders of the replaced original go with it (their rows first: nothing serves them afterwards).
      const renders = await this.deps.prisma.$queryRaw<{ storage_key: string }[]>`
        DELETE FROM image_render WHERE tenant_id = ${tenant} AND owner_id = ${id}::uuid AND source_key = ${current.storageKey} RETURNING storage_key`.catch((err: unknown) => {
        this.deps.logger.warn({ err, assetId: id }, 'could not delete the renders of a replaced asset original; the sweep will');
        return [];
      });
      await this.deleteObjects(tenant, id, [current.storageKey, ...current.variants.map((v) => v.key ?? null), ...renders.map((r) => r.storage_key)]);
    }
    return assetFromRow(rows[0]);
  }

  /** Soft delete: the asset leaves every read at once; its objects are purged right after (or by the sweep). */
  async delete(tenant: string, id: string): Promise<boolean> {
    const n = isUuid(id)
      ? await this.deps.prisma.$executeRaw`UPDATE asset SET deleted_at = now(), version = version + 1, modified_at = now()
          WHERE tenant_id = ${tenant} AND id = ${id}::uuid AND deleted_at IS NULL`
      : 0;
    if (n === 0) throw errors.notFound('Asset', id);
    await purgeAsset(this.deps, tenant, id);
    return true;
  }

  /** Checks the arguments of createAsset before any byte is read. */
  private checkCreate(input: CreateAssetArgs) {
    const hasFile = input.file !== undefined && input.file !== null;
    const hasSignedId = input.signedId !== undefined && input.signedId !== null;
    if (input.type === 'BLOB') {
      if (hasFile && hasSignedId) throw errors.badInput('input.signedId', 'Give either file or signedId, not both');
      if (!hasFile && !hasSignedId) throw errors.badInput('input.file', 'A BLOB asset needs a file (or the signedId of a completed direct upload)');
      if (input.url != null) throw errors.badInput('input.url', 'A BLOB asset takes a file, not a url');
    } else {
      if (hasFile) throw errors.badInput('input.file', 'A LINK asset takes a url, not a file');
      if (hasSignedId) throw errors.badInput('input.signedId', 'A LINK asset takes a url, not a signedId');
      if (input.url == null) throw errors.badInput('input.url', 'A LINK asset needs a url');
    }
    return {
      name: input.name == null ? undefined : checkName(input.name),
      key: input.key == null ? undefined : checkKey(input.key),
      refIds: input.refIds == null ? undefined : checkRefs(input.refIds),
      priority: input.priority ?? undefined,
      url: input.url == null ? null : this.checkUrl(input.url),
      filename: input.filename == null ? undefined : sanitiseFileName(input.filename),
    };
  }

  /** Checks the arguments of updateAsset against the asset; `type` and `access` cannot change (they are not in the input). */
  private checkUpdate(current: AssetRecord, input: UpdateAssetArgs) {
    if (current.type === 'LINK' && input.file != null) throw errors.badInput('input.file', 'A LINK asset takes a url, not a file');
    if (current.type === 'BLOB' && input.url != null) throw errors.badInput('input.url', 'A BLOB asset takes a file, not a url');
    return {
      name: input.name == null ? undefined : checkName(input.name),
      refIds: input.refIds == null ? undefined : checkRefs(input.refIds),
      priority: input.priority ?? undefined,
      active: input.active ?? undefined,
      url: input.url == null ? undefined : this.checkUrl(input.url),
      filename: input.filename == null ? undefined : sanitiseFileName(input.filename),
    };
  }

  /**
   * Where a LINK asset redirects to, checked again when served: a link stored before
   * non-public hosts were refused (or under another setting) is never redirected to
   * from the service's origin; null then.
   */
  /**
   * The size and type renders of a blob asset are planned from; UNSUPPORTED_MEDIA_TYPE
   * when it is not an image renders are made of. An image stored before sizes were
   * recorded has its header read once (the first MiB of the original) and its row
   * completed.
   */
  async imageOf(asset: AssetRecord): Promise<RenderSourceImage> {
    if (asset.type !== 'BLOB' || !asset.storageKey || !isRenderable(asset.mimeType)) {
      throw errors.unsupportedType(`Asset ${asset.id} is ${asset.mimeType ?? 'a link'}: renders are made of JPEG, PNG, WebP and GIF images`);
    }
    if (asset.width && asset.height) return { width: asset.width, height: asset.height, mediaType: asset.mimeType! };
    const end = Math.min(asset.bytes ?? IMAGE_HEADER_BYTES, IMAGE_HEADER_BYTES) - 1;
    const chunks: Buffer[] = [];
    let length = 0;
    const body = await this.deps.storage.get(asset.storageKey, { start: 0, end: Math.max(0, end) });
    for await (const c of body) {
      chunks.push(c as Buffer);
      length += (c as Buffer).length;
      if (length > IMAGE_HEADER_BYTES) break;
    }
    const header = await readHeader(Buffer.concat(chunks).subarray(0, IMAGE_HEADER_BYTES));
    if (!header) throw errors.unsupportedType(`Asset ${asset.id} could not be read as an image`);
    await this.deps.prisma.$executeRaw`UPDATE asset SET width = ${header.displayWidth}::int, height = ${header.displayHeight}::int
      WHERE tenant_id = ${asset.tenantId} AND id = ${asset.id}::uuid AND storage_key = ${asset.storageKey}`;
    return { width: header.displayWidth, height: header.displayHeight, mediaType: asset.mimeType! };
  }

  linkTarget(asset: AssetRecord): string | null {
    if (asset.type !== 'LINK' || !asset.linkUrl) return null;
    try {
      return this.checkUrl(asset.linkUrl);
    } catch {
      return null;
    }
  }

  private checkUrl(url: string): string {
    return checkLinkUrl(url, { allowNonPublicHosts: this.deps.allowNonPublicLinkHosts ?? false });
  }

  /** Streams an uploaded file into a new revision folder of the asset, then writes its image variants. */
  private async storeUpload(tenant: string, id: string, version: number, file: Upload, filename: string | undefined): Promise<StoredBlob> {
    const folder = assetKeys.revision(tenant, id, revision(version));
    const storageKey = `${folder}original`;
    const { storage } = this.deps;
    const received = await this.deps.ingest.receive(file, {
      limit: ASSET_MAX_BYTES,
      accept: (mime) => {
        if (!SUPPORTED_TYPES.has(mime)) throw errors.unsupportedType(`Content of type ${mime} is not supported`);
        return ASSET_MAX_BYTES;
      },
      write: (body, contentType) => storage.put(storageKey, body, { contentType }),
      remove: () => storage.delete(storageKey),
    }, { tenant, source: 'asset' });
    return this.withVariants(received.image, {
      storageKey,
      fileName: sanitiseFileName(filename ?? received.fileName, received.mime),
      mimeType: received.mime,
      bytes: received.size,
      checksum: received.checksum,
      variants: [],
      cleanup: () => this.deps.storage.deletePrefix(folder),
    });
  }

  /**
   * Image blobs get the media variants (THUMB always, larger ones where the image
   * is larger), each rendered on its first request into the revision folder;
   * what is known here comes from the image's header (size, and the checks that
   * cost nothing). An image refused by them is deleted again.
   */
  private async withVariants(header: ImageHeader | undefined, blob: StoredBlob): Promise<StoredBlob> {
    if (SUPPORTED_TYPES.get(blob.mimeType)?.kind !== 'IMAGE') return blob;
    try {
      const facts = imageFacts(header, blob.mimeType, this.deps.images.memoryBytes);
      return { ...blob, width: facts.width, height: facts.height, variants: facts.variants };
    } catch (e) {
      await blob.cleanup().catch(() => undefined);
      throw e instanceof AppError ? e : errors.storageUnavailable(e);
    }
  }

  private async deleteObjects(tenant: string, id: string, keys: (string | null)[]): Promise<void> {
    await Promise.all(
      keys
        .filter((k): k is string => !!k && k.startsWith(assetKeys.prefix(tenant, id)))
        .map((k) => this.deps.storage.delete(k).catch((err: unknown) => this.deps.logger.warn({ err, assetId: id, key: k }, 'could not delete a replaced asset object; the sweep will'))),
    );
  }
}

/**
 * Removes a deleted asset's objects, then marks them gone (storage_key NULL); the
 * row stays as a tombstone. Safe to repeat; a failure (an object the store could
 * not delete) leaves storage_key set, for the sweep. True when purged.
 */
export async function purgeAsset(deps: { prisma: PrismaClient; storage: Storage; logger: Logger }, tenant: string, id: string): Promise<boolean> {
  try {
    await deps.storage.deletePrefix(assetKeys.prefix(tenant, id));
    await deps.prisma.$executeRaw`DELETE FROM image_render WHERE tenant_id = ${tenant} AND owner_id = ${id}::uuid`;
    await deps.prisma.$executeRaw`UPDATE asset SET storage_key = NULL, variants = '[]'::jsonb
      WHERE tenant_id = ${tenant} AND id = ${id}::uuid AND deleted_at IS NOT NULL`;
    return true;
  } catch (e) {
    deps.logger.warn({ err: e, assetId: id }, 'purge of a deleted asset failed; left for the sweep');
    return false;
  }
}

/** A fresh revision folder name: the version it is written for, and random bits (racing updates never share one). */
function revision(version: number): string {
  return `v${version}-${randomBytes(4).toString('hex')}`;
}

function duplicateKey(key: string): AppError {
  return new AppError('CONFLICT', `An asset with key "${key}" already exists`, { field: 'input.key' });
}

function staleVersion(id: string, version: number): AppError {
  return new AppError('CONFLICT', `Asset ${id} is no longer at version ${version}: read it again and retry`, { field: 'input.version' });
}

function checkName(raw: string): string {
  const name = raw.trim();
  // eslint-disable-next-line no-control-regex
  if (name.length === 0 || name.length > 255 || /[\u0000-\u001f\u007f]/.test(name)) {
    throw errors.badInput('input.name', 'name must be 1-255 characters without control characters');
  }
  return name;
}

export function checkKey(key: string): string {
  const segments = key.split('/');
  if (key.length === 0 || key.length > 255 || segments.some((s) => !KEY_SEGMENT.test(s) || s === '.' || s === '..')) {
    throw errors.badInput('input.key', 'key must be 1-255 characters of A-Z a-z 0-9 . _ ~ - in segments separated by single "/" (no "." or ".." segments)');
  }
  return key;
}

function checkRefs(refs: AssetRef[]): AssetRef[] {
  if (refs.length > MAX_REFS) throw errors.badInput('input.refIds', `At most ${MAX_REFS} references`);
  const out: AssetRef[] = [];
  for (const [i, r] of refs.entries()) {
    const ref = { id: r.id.trim(), type: r.type.trim() };
    if (ref.id.length === 0 || ref.id.length > 128) throw errors.badInput(`input.refIds.${i}.id`, 'A reference id is 1-128 characters');
    if (ref.type.length === 0 || ref.type.length > 64) throw errors.badInput(`input.refIds.${i}.type`, 'A reference type is 1-64 characters, e.g. PRODUCT');
    if (!out.some((o) => o.id === ref.id && o.type === ref.type)) out.push(ref);
  }
  return out;
}

