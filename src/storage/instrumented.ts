import { isAppError } from '../errors/index.js';
import type { ListedObject, Storage } from './storage.js';

/** How one driver call ended: ok, not_found (a missing object, an answer), or error. */
export type StorageOutcome = 'ok' | 'not_found' | 'error';

/** Receives the duration of every timed driver call. */
export type StorageObserver = (operation: string, outcome: StorageOutcome, seconds: number) => void;

/** Driver calls that are timed; everything else (driver, transport(), driver-specific members) passes through untouched. */
const TIMED = new Set<string>([
  'put',
  'get',
  'head',
  'copy',
  'delete',
  'deletePrefix',
  'list',
  'now',
  'sweepTemporary',
  'abortStaleMultipartUploads',
  'check',
  'presignGet',
  'presignPut',
  'probeSseC',
]);

/**
 * The driver with every call timed (storage_operation_duration_seconds). A
 * Proxy over the driver itself: optional methods stay absent where the driver
 * has none (`storage.listPages?.(…)` still tells), `instanceof` and
 * driver-specific members (the S3 client) still work, and methods run with the
 * driver as `this`. `get` is timed until the stream is open, `listPages` per page.
 */
export function instrumentStorage(storage: Storage, observe: StorageObserver): Storage {
  // One wrapper per method, made again if the method is replaced (tests swap methods of a running app's driver).
  const wrappers = new Map<PropertyKey, { fn: unknown; wrapped: unknown }>();
  return new Proxy(storage, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      const cached = wrappers.get(prop);
      if (cached?.fn === value) return cached.wrapped;
      const fn = value as (...args: unknown[]) => unknown;
      let wrapped: unknown;
      if (typeof prop === 'string' && TIMED.has(prop)) {
        wrapped = (...args: unknown[]) => time(observe, prop, () => fn.apply(target, args) as Promise<unknown>);
      } else if (prop === 'listPages') {
        wrapped = (...args: unknown[]) => timedPages(observe, fn.apply(target, args) as AsyncIterable<ListedObject[]>);
      } else {
        wrapped = fn.bind(target);
      }
      wrappers.set(prop, { fn: value, wrapped });
      return wrapped;
    },
  });
}

async function time<T>(observe: StorageObserver, operation: string, call: () => Promise<T>): Promise<T> {
  const start = process.hrtime.bigint();
  const seconds = () => Number(process.hrtime.bigint() - start) / 1e9;
  try {
    const result = await call();
    observe(operation, 'ok', seconds());
    return result;
  } catch (e) {
    observe(operation, isAppError(e) && e.code === 'NOT_FOUND' ? 'not_found' : 'error', seconds());
    throw e;
  }
}

async function* timedPages(observe: StorageObserver, pages: AsyncIterable<ListedObject[]>): AsyncGenerator<ListedObject[]> {
  const it = pages[Symbol.asyncIterator]();
  let done = false;
  try {
    while (true) {
      const r = await time(observe, 'listPages', () => it.next());
      if (r.done) {
        done = true;
        return;
      }
      yield r.value;
    }
  } finally {
    // A consumer that stops early (break) ends the driver's iteration too.
    if (!done) await it.return?.();
  }
}
