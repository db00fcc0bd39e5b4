import type { IncomingFile } from '../graphql/multipart.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../http/metrics.js';
import type { ClamdScanner } from '../scan/clamd.js';
import { InspectStream, type InspectOptions } from './inspect-stream.js';
import { receiveUpload, type ReceiveOptions, type ReceivedUpload } from './receive-upload.js';
import { ScanStep, type ScanOutcome } from './scan-step.js';

/** Where a file came in (logs and metrics). */
export type IngestSource = 'upload' | 'upload_many' | 'direct' | 'worker' | 'asset' | 'resumable';

/** Who sent a file, for the log line of a refusal. */
export interface IngestContext {
  tenant: string;
  source: IngestSource;
}

export interface IngestOptions {
  /** CLAMD_URL: every file is scanned; undefined: none is. */
  scanning?: { scanner: ClamdScanner; failOpen: boolean } | undefined;
  logger: Logger;
  metrics?: Metrics | undefined;
}

/**
 * The pipeline as the entry points use it (see index.ts): it builds each file's
 * InspectStream with the process's scanner, and reports every scan's outcome
 * (log line and media_scans_total).
 */
export class Ingest {
  constructor(private readonly options: IngestOptions) {}

  /** Whether files are scanned for malware (CLAMD_URL). */
  get scanning(): boolean {
    return this.options.scanning !== undefined;
  }

  /** A multipart file part through every check into `options.write` (receiveUpload). */
  receive<T>(file: IncomingFile, options: Omit<ReceiveOptions<T>, 'scan'>, context: IngestContext): Promise<ReceivedUpload<T>> {
    return receiveUpload(file, { ...options, scan: this.scanStep(context) });
  }

  /** The checks as a pass-through, for bytes already stored (a direct upload's, a resumable upload's). */
  inspector(options: Omit<InspectOptions, 'scan'>, context: IngestContext): InspectStream {
    return new InspectStream({ ...options, scan: this.scanStep(context) });
  }

  /** Readiness: clamd answers PING (when scanning). */
  async check(): Promise<void> {
    await this.options.scanning?.scanner.ping();
  }

  private scanStep(context: IngestContext): ScanStep | undefined {
    const scanning = this.options.scanning;
    if (!scanning) return undefined;
    const { logger, metrics } = this.options;
    return new ScanStep({
      ...scanning,
      report: (outcome: ScanOutcome, detail?: string) => {
        metrics?.scan(outcome, context.source);
        const facts = { event: `SCAN_${outcome.toUpperCase()}`, tenant: context.tenant, source: context.source };
        if (outcome === 'infected') logger.warn({ ...facts, signature: detail }, 'malware scan: the file was refused, the scanner recognised it');
        else if (outcome === 'unavailable') logger.error({ ...facts, reason: detail }, 'malware scan: the scanner failed; the file was refused (SCANNER_UNAVAILABLE)');
        else if (outcome === 'unscanned') logger.warn({ ...facts, reason: detail }, 'malware scan: the scanner failed; the file was accepted unscanned (CLAMD_FAIL_OPEN)');
      },
    });
  }
}
