import type { Config } from './config.js';
import type { Authenticator } from './auth/tokens.js';
import type { LinkSigner } from './auth/signed-links.js';
import type { Database } from './db/prisma.js';
import type { Logger } from './logger.js';
import type { Storage } from './storage/index.js';
import type { PolicyRegistry } from './modules/policy/policy.js';
import type { MediaService } from './modules/media/media.service.js';
import type { UploadService } from './modules/media/upload.service.js';
import type { RolesService } from './modules/roles/roles.service.js';
import type { Metrics } from './http/metrics.js';
import type { SweepService } from './modules/sweep/sweep.service.js';
import type { ContentCrypto } from './crypto/content-crypto.js';
import type { KeyRotation } from './crypto/rotation.js';
import type { WorkerService } from './modules/workers/worker.service.js';
import type { DirectUploadService } from './modules/direct-uploads/direct-upload.service.js';
import type { AssetService } from './modules/assets/asset.service.js';
import type { ImageQueue } from './modules/renders/image-queue.js';
import type { RenderService } from './modules/renders/render.service.js';
import type { ExpensiveQueries } from './db/expensive-queries.js';
import type { ResumableUploadService } from './modules/resumable-uploads/resumable-upload.service.js';

/** Where the API hands out URLs; known once the server listens (the port may be ephemeral). */
export interface PublicUrls {
  base(): string;
}

/** Everything a request handler may use, built once at start (src/app.ts). */
export interface Services {
  readonly config: Config;
  readonly logger: Logger;
  readonly db: Database;
  readonly storage: Storage;
  readonly policies: PolicyRegistry;
  readonly auth: Authenticator;
  readonly links: LinkSigner;
  readonly urls: PublicUrls;
  readonly media: MediaService;
  readonly uploads: UploadService;
  readonly directUploads: DirectUploadService;
  /** Resumable (tus) uploads: the rules behind /uploads/resumable. */
  readonly resumable: ResumableUploadService;
  readonly assets: AssetService;
  readonly roles: RolesService;
  readonly metrics: Metrics;
  readonly sweep: SweepService;
  readonly crypto: ContentCrypto;
  readonly rotation: KeyRotation;
  readonly workers: WorkerService;
  /** Every image decode and resize takes a turn here. */
  readonly images: ImageQueue;
  /** Image renders and variants, made on first request and stored. */
  readonly renders: RenderService;
  /** Queries whose cost a tenant controls take a turn here. */
  readonly expensiveQueries: ExpensiveQueries;
}
