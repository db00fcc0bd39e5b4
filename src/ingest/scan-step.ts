import { errors } from '../errors/index.js';
import { ScannerUnavailable, type ClamdScanner, type ScanSession } from '../scan/clamd.js';

/** How a file's scan ended: clean; infected (refused); unavailable (refused: the scanner failed); unscanned (accepted: fail open). */
export type ScanOutcome = 'clean' | 'infected' | 'unavailable' | 'unscanned';

/** Malware scanning as the pipeline runs it (CLAMD_URL): the scanner, what its failure does, and who hears each outcome. */
export interface Scanning {
  scanner: ClamdScanner;
  /** CLAMD_FAIL_OPEN: a file the scanner could not scan is accepted (and reported `unscanned`) instead of refused. */
  failOpen: boolean;
  /** Hears every outcome once per file (logs and metrics); `detail`: the signature, or why the scanner failed. */
  report(outcome: ScanOutcome, detail?: string): void;
}

/**
 * One file's scan inside the pipeline's single pass (InspectStream): every chunk
 * is sent to clamd (INSTREAM) as it goes by, and the verdict is awaited before
 * the stream may end, so a store writing the stream never completes an
 * infected file (MALWARE_DETECTED) or, failing closed, an unscanned one
 * (SCANNER_UNAVAILABLE). The connection opens with the first chunk.
 */
export class ScanStep {
  private session: ScanSession | undefined;
  private unscanned: ScannerUnavailable | undefined;
  private done = false;

  constructor(private readonly scanning: Scanning) {}

  /** Sends a chunk; a promise when the caller should wait (clamd reads slower), rejected when the file is refused. */
  write(chunk: Buffer): Promise<void> | undefined {
    if (this.unscanned || this.done) return undefined;
    this.session ??= this.scanning.scanner.scan();
    if (this.session.error) return this.failed(this.session.error);
    return this.session.write(chunk)?.catch((e: unknown) => this.failed(e));
  }

  /** After the last chunk: resolves when the file may be kept; rejects with MALWARE_DETECTED or SCANNER_UNAVAILABLE. */
  async finish(): Promise<void> {
    if (this.done) return;
    if (this.unscanned) return this.conclude('unscanned', this.unscanned.message);
    this.session ??= this.scanning.scanner.scan();
    let verdict;
    try {
      verdict = await this.session.finish();
    } catch (e) {
      await this.failed(e);
      return this.conclude('unscanned', (e as Error).message);
    }
    if (!verdict.clean) {
      this.conclude('infected', verdict.signature);
      throw errors.malwareDetected(verdict.signature);
    }
    this.conclude('clean');
  }

  /** The stream failed or was dropped: closes the connection (no outcome is reported: the file was refused for another reason). */
  abort(): void {
    this.done = true;
    this.session?.abort();
  }

  /** Fail open: the rest goes unscanned (resolves); fail closed: SCANNER_UNAVAILABLE (rejects). */
  private failed(e: unknown): Promise<void> {
    if (!(e instanceof ScannerUnavailable)) return Promise.reject(e);
    if (this.scanning.failOpen) {
      this.unscanned ??= e;
      this.session?.abort();
      return Promise.resolve();
    }
    this.conclude('unavailable', e.message);
    this.session?.abort();
    return Promise.reject(errors.scannerUnavailable(e.reason, e));
  }

  private conclude(outcome: ScanOutcome, detail?: string): void {
    if (this.done) return;
    this.done = true;
    this.scanning.report(outcome, detail);
  }
}
