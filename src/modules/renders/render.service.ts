import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { Readable } from 'node:stream';
import type { PrismaClient } from '../../generated/prisma/client.js';
import type { ContentCrypto, EncryptionMode } from '../../crypto/content-crypto.js';
import type { PendingWrites } from '../../db/pending-writes.js';
import { transact } from '../../db/transact.js';
import { errors, isAppError } from '../../errors/index.js';
import type { Metrics } from '../../http/metrics.js';
import type { Logger } from '../../logger.js';
import type { Storage } from '../../storage/index.js';
import type { ImageQueue } from './image-queue.js';
import { renderImage } from './render-image.js';
import type { RenderPlan } from './render-plan.js';
import { objectKeys } from '../../storage/index.js';
import type { MediaRecord } from '../media/media.record.js';

/** The original a render is made from: a media's (perhaps encrypted) or an image asset's. */
export interface RenderSource {
  kind: 'media' | 'asset';
  tenant: string;
  /** The media's or the asset's id. */
  ownerId: string;
  /** Storage key of the original now (a render of an earlier one is never served). */
  sourceKey: string;
  /** Where its renders are stored: the media's prefix, or the asset's revision folder (ends with '/'). */
  folder: string;
  /** Plaintext size of the original. */
  size: number;
  /** Hex SHA-256 of the original's plaintext, checked while it is read. */
  checksum?: string | undefined;
  /** Set for an encrypted media: how its original is sealed (its renders are sealed too). */
  encryption?: { kid: string; mode: EncryptionMode | null } | undefined;
}

/** The render source of a media (`checksum`: the plaintext hex SHA-256; an encrypted media's row holds it sealed). */
export function mediaRenderSource(media: MediaRecord, checksum: string): RenderSource {
  return {
    kind: 'media',
    tenant: media.tenantId,
    ownerId: media.id,
    sourceKey: media.storageKey,
    folder: objectKeys.prefix(media.tenantId, media.id),
    size: media.fileSize,
    checksum,
    encryption: media.encrypted && media.encryptionKeyId ? { kid: media.encryptionKeyId, mode: media.encryptionMode } : undefined,
  };
}

/** A stored render, as its row records it. */
export interface StoredRender {
  key: string;
  size: number;
  mediaType: string;
  width: number;
  height: number;
  /** The ring key and mode that sealed it; null for plaintext renders. */
  kid: string | null;
  mode: EncryptionMode | null;
}

/** How a render request was answered: from the store, rendered by it, or by a concurrent identical request it waited for. */
export type RenderOutcome = 'hit' | 'rendered' | 'coalesced';

interface Row {
  storage_key: string;
  size: bigint | number;
  media_type: string;
  width: number;
  height: number;
  encryption_key_id: string | null;
  encryption_mode: string | null;
}

/** Advisory locks of renders live in their own class of two-key locks (the sweep's is a one-key lock: another key space). */
const RENDER_LOCK_CLASS = 727276;

const storedOf = (r: Row): StoredRender => ({
  key: r.storage_key,
  size: Number(r.size),
  mediaType: r.media_type,
  width: r.width,
  height: r.height,
  kid: r.encryption_key_id,
  mode: (r.encryption_mode as EncryptionMode | null) ?? null,
});

/**
 * Renders on demand, stored once (SPEC 16). A render is looked up by its
 * original and its canonical parameters; a miss renders it in a turn of the image
 * queue and stores it beside the original (sealed like the original when that is
 * encrypted), then records it. Concurrent identical misses run it once: in this
 * process they share one promise; across instances the renderer holds a
 * PostgreSQL advisory lock named after the render and looks again once it has it,
 * so the second instance finds the first one's row. Writes are announced to the
 * sweep first (a pending write on the owner's group), and the row is inserted
 * only while the original is still current (not deleted, replaced or re-keyed
 * meanwhile); otherwise the object is deleted again and the request is NOT_FOUND.
 */
export class RenderService {
  private readonly inflight = new Map<string, Promise<StoredRender>>();
  private warming = 0;

  constructor(
    private readonly deps: {
      prisma: PrismaClient;
      pool: pg.Pool;
      storage: Storage;
      crypto: ContentCrypto;
      images: ImageQueue;
      pending: PendingWrites;
      logger: Logger;
      metrics?: Metrics;
    },
  ) {}

  /** The stored render of `plan` from `source`, rendering it first when there is none. */
  async get(source: RenderSource, plan: RenderPlan): Promise<{ render: StoredRender; outcome: RenderOutcome }> {
    const found = await this.find(source, plan);
    if (found) return this.counted(source, { render: found, outcome: 'hit' });
    const id = `${source.tenant}/${source.ownerId}/${source.sourceKey}/${plan.hash}`;
    const running = this.inflight.get(id);
    if (running) return this.counted(source, { render: await running, outcome: 'coalesced' });
    let outcome: RenderOutcome = 'rendered';
    const job = this.produce(source, plan, id, () => (outcome = 'hit'));
    this.inflight.set(id, job);
    try {
      return this.counted(source, { render: await job, outcome });
    } finally {
      this.inflight.delete(id);
    }
  }

  /**
   * Renders `plan` in the background if the image queue is idle (RENDER_WARM_THUMBS:
   * the THUMB of a new upload): never queued behind requests, never more at once than
   * the queue runs, and its failure only logged. Returns whether it started.
   */
  warm(source: RenderSource, plan: RenderPlan): boolean {
    const q = this.deps.images.stats();
    if (q.waiting > 0 || q.running + this.warming >= this.deps.images.options.concurrency) return false;
    this.warming++;
    this.get(source, plan)
      .catch((err: unknown) => this.deps.logger.warn({ err, ownerId: source.ownerId }, 'warming a render failed; it is made on its first request'))
      .finally(() => this.warming--);
    return true;
  }

  /** Renders being made in this process now. */
  get running(): number {
    return this.inflight.size;
  }

  /** Opens a stored render for reading (decrypted and authenticated for a sealed one). */
  open(render: StoredRender, range?: { start: number; end: number }): Promise<Readable> {
    if (render.kid === null) return this.deps.storage.get(render.key, range);
    return this.deps.crypto.open(this.deps.storage, { key: render.key, kid: render.kid, mode: render.mode, plainSize: render.size, ...(range ? { range } : {}) });
  }

  private counted<T extends { outcome: RenderOutcome }>(source: RenderSource, r: T): T {
    this.deps.metrics?.render(source.kind, r.outcome);
    return r;
  }

  private async find(source: RenderSource, plan: RenderPlan): Promise<StoredRender | null> {
    const rows = await this.deps.prisma.$queryRaw<Row[]>`
      SELECT storage_key, size, media_type, width, height, encryption_key_id, encryption_mode FROM image_render
      WHERE tenant_id = ${source.tenant} AND owner_id = ${source.ownerId}::uuid AND source_key = ${source.sourceKey} AND params_hash = ${plan.hash}`;
    return rows[0] ? storedOf(rows[0]) : null;
  }

  private produce(source: RenderSource, plan: RenderPlan, id: string, foundAfterLock: () => void): Promise<StoredRender> {
    const { images } = this.deps;
    return images.run(async (reserve) => {
      const lock = await this.lock(id);
      try {
        // Another instance may have made it while this one waited for the lock.
        const again = await this.find(source, plan);
        if (again) {
          foundAfterLock();
          return again;
        }
        return await this.renderAndStore(source, plan, { reserve, budget: images.memoryBytes });
      } finally {
        await lock.release();
      }
    });
  }

  private async renderAndStore(source: RenderSource, plan: RenderPlan, turn: Parameters<typeof renderImage>[2]): Promise<StoredRender> {
    const { storage, crypto, prisma } = this.deps;
    // Named after the original too: a render of a new original (after a rotation, which
    // deletes the old one's renders a little later) never shares an object with one of the old.
    const key = `${source.folder}r-${createHash('sha256').update(`${source.sourceKey}\n${plan.params}`).digest('hex').slice(0, 32)}`;
    const pending = await this.deps.pending.begin(source.tenant, source.ownerId);
    let sealed: { kid: string; mode: EncryptionMode } | null = null;
    let written = false;
    let stored: StoredRender;
    const started = process.hrtime.bigint();
    try {
      const out = await renderImage(
        {
          readOriginal: () =>
            source.encryption
              ? crypto.open(storage, { key: source.sourceKey, kid: source.encryption.kid, mode: source.encryption.mode, plainSize: source.size, ...(source.checksum ? { checksum: source.checksum } : {}) })
              : storage.get(source.sourceKey),
          write: async (body, contentType) => {
            written = true;
            if (!source.encryption) return storage.put(key, body, { contentType });
            const s = await crypto.seal(storage, key, body);
            sealed = { kid: s.kid, mode: s.mode };
            return { size: s.plainSize };
          },
        },
        plan,
        turn,
      );
      this.deps.metrics?.renderDuration(source.kind, Number(process.hrtime.bigint() - started) / 1e9);
      const kid: string | null = (sealed as { kid: string } | null)?.kid ?? null;
      const mode: string | null = (sealed as { mode: string } | null)?.mode ?? null;
      const inserted = await transact(prisma, async (tx) => {
        await pending.settle(tx);
        // Still the original it was made from? (FOR SHARE: a delete, a replacement or a rotation waits for this commit.)
        const current =
          source.kind === 'media'
            ? await tx.$queryRaw<{ ok: number }[]>`SELECT 1 AS ok FROM media WHERE tenant_id = ${source.tenant} AND id = ${source.ownerId}::uuid AND deleted_at IS NULL AND storage_key = ${source.sourceKey} FOR SHARE`
            : await tx.$queryRaw<{ ok: number }[]>`SELECT 1 AS ok FROM asset WHERE tenant_id = ${source.tenant} AND id = ${source.ownerId}::uuid AND deleted_at IS NULL AND storage_key = ${source.sourceKey} FOR SHARE`;
        if (current.length === 0) return false;
        await tx.$executeRaw`
          INSERT INTO image_render (tenant_id, owner_kind, owner_id, source_key, params_hash, params, storage_key, size, media_type, width, height, encryption_key_id, encryption_mode)
          VALUES (${source.tenant}, ${source.kind}, ${source.ownerId}::uuid, ${source.sourceKey}, ${plan.hash}, ${plan.params}, ${key}, ${BigInt(out.size)}, ${plan.mediaType},
                  ${out.width}, ${out.height}, ${kid}, ${mode})
          ON CONFLICT (tenant_id, owner_id, source_key, params_hash) DO UPDATE SET storage_key = EXCLUDED.storage_key, size = EXCLUDED.size, width = EXCLUDED.width, height = EXCLUDED.height,
            encryption_key_id = EXCLUDED.encryption_key_id, encryption_mode = EXCLUDED.encryption_mode, created_at = now()`;
        return true;
      });
      if (!inserted) {
        await storage.delete(key).catch(() => undefined);
        throw errors.notFound(source.kind === 'media' ? 'Media' : 'Asset', `${source.ownerId} (it changed while it was rendered; ask again)`);
      }
      stored = { key, size: out.size, mediaType: plan.mediaType, width: out.width, height: out.height, kid, mode: mode as EncryptionMode | null };
    } catch (e) {
      // Nothing half-written stays: the row is not there, so neither is the object.
      if (written) await storage.delete(key).catch(() => undefined);
      await pending.close(e);
      throw isAppError(e) ? e : errors.storageUnavailable(e);
    }
    await pending.close();
    return stored;
  }

  /**
   * A session advisory lock named after the render, on a connection of its own
   * for as long as the render runs (the pool is shared, but the image queue
   * bounds how many renders hold one). Waiting is bounded by lock_timeout: an
   * instance that cannot get it in time answers SERVICE_BUSY.
   */
  private async lock(id: string): Promise<{ release(): Promise<void> }> {
    const objid = createHash('sha256').update(id).digest().readInt32BE(0);
    const client = await this.deps.pool.connect();
    const onError = () => undefined;
    client.on('error', onError);
    try {
      await client.query(`SET lock_timeout = '30s'`);
      await client.query('SELECT pg_advisory_lock($1, $2)', [RENDER_LOCK_CLASS, objid]);
    } catch (e) {
      client.removeListener('error', onError);
      client.release(e instanceof Error ? e : true);
      if ((e as { code?: string }).code === '55P03') {
        throw errors.busy('The same render is being made elsewhere and did not finish in time; retry later', { reason: 'RENDER_LOCK_TIMEOUT', limit: 1, retryAfterSeconds: 5 });
      }
      throw errors.storageUnavailable(e);
    }
    return {
      release: async () => {
        let failed: Error | undefined;
        await client.query('SELECT pg_advisory_unlock($1, $2)', [RENDER_LOCK_CLASS, objid]).catch((e: unknown) => (failed = e instanceof Error ? e : new Error(String(e))));
        await client.query('RESET lock_timeout').catch((e: unknown) => (failed ??= e instanceof Error ? e : new Error(String(e))));
        client.removeListener('error', onError);
        // A connection that failed is destroyed (its session, and the lock, go with it).
        client.release(failed);
      },
    };
  }
}
