import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { OffThreadSha256, sha256Of } from '../../src/crypto/off-thread-hash.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function hashInChunks(data: Buffer, sizes: number[]): Promise<string> {
  const h = new OffThreadSha256();
  let at = 0;
  let i = 0;
  while (at < data.length) {
    const n = sizes[i++ % sizes.length]!;
    const wait = h.update(data.subarray(at, at + n));
    if (wait) await wait;
    at += n;
  }
  return h.digest();
}

describe('OffThreadSha256', () => {
  it('equals SHA-256 of the same bytes, whatever the chunking', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    for (const sizes of [[1], [7, 65536], [1024 * 1024], [333_333, 1, 2_000_000]]) {
      const input = sizes[0] === 1 ? data.subarray(0, 5000) : data;
      expect(await hashInChunks(input, sizes)).toBe(sha(input));
    }
  });

  it('hashes the empty input, and many jobs at once without mixing them', async () => {
    expect(await new OffThreadSha256().digest()).toBe(sha(Buffer.alloc(0)));
    const inputs = Array.from({ length: 12 }, (_, i) => randomBytes(200_000 + i * 131_071));
    const digests = await Promise.all(inputs.map((d) => hashInChunks(d, [65536])));
    expect(digests).toEqual(inputs.map(sha));
  });

  it('slows a fast producer down (back-pressure) and still gets every byte right', async () => {
    const data = randomBytes(40 * 1024 * 1024);
    const h = new OffThreadSha256();
    let waits = 0;
    for (let at = 0; at < data.length; at += 1024 * 1024) {
      const w = h.update(data.subarray(at, at + 1024 * 1024));
      if (w) {
        waits++;
        await w;
      }
    }
    expect(waits).toBeGreaterThan(0);
    expect(await h.digest()).toBe(sha(data));
  });

  it('forgets an aborted job; later jobs are unaffected', async () => {
    const h = new OffThreadSha256();
    h.update(randomBytes(2 * 1024 * 1024));
    h.abort();
    const data = randomBytes(100_000);
    expect(await hashInChunks(data, [4096])).toBe(sha(data));
  });
});

describe('sha256Of', () => {
  it('hashes a buffer over shared memory in place, and any other buffer by copy, offsets respected', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 5);
    const shared = Buffer.from(new SharedArrayBuffer(data.length + 100));
    data.copy(shared, 100);
    expect(await sha256Of(shared.subarray(100))).toBe(sha(data));
    expect(await sha256Of(shared.subarray(100, 100 + 4096))).toBe(sha(data.subarray(0, 4096)));
    expect(await sha256Of(data.subarray(7))).toBe(sha(data.subarray(7)));
    expect(await sha256Of(Buffer.alloc(0))).toBe(sha(Buffer.alloc(0)));
  });

  it('answers many at once, each with its own digest', async () => {
    const inputs = Array.from({ length: 20 }, (_, i) => {
      const b = Buffer.from(new SharedArrayBuffer(50_000 + i));
      randomBytes(b.length).copy(b);
      return b;
    });
    expect(await Promise.all(inputs.map(sha256Of))).toEqual(inputs.map(sha));
  });
});

describe('the hash worker and the process', () => {
  // A command that has hashed what it needed must end by itself (the worker kept
  // `npm run keys:rotate` alive after its work); one that awaits a digest must not
  // be ended under it. A child process shows both: it prints both digests and exits.
  it('keeps the process alive while it has work, and not after', async () => {
    const { execFile } = await import('node:child_process');
    const path = await import('node:path');
    const module = path.resolve(import.meta.dirname, '../../src/crypto/off-thread-hash.ts');
    const script = `import { OffThreadSha256, sha256Of } from ${JSON.stringify(module)};
      const h = new OffThreadSha256(); await h.update(new Uint8Array(3 << 20)); console.log(await h.digest());
      console.log(await sha256Of(new Uint8Array(new SharedArrayBuffer(64))));`;
    const started = Date.now();
    const { code, out } = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { timeout: 20_000 }, (err, stdout) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, out: stdout }),
      );
      child.stdin?.end();
    });
    expect(code).toBe(0);
    expect(out.trim().split('\n')).toEqual([createHash('sha256').update(new Uint8Array(3 << 20)).digest('hex'), createHash('sha256').update(new Uint8Array(64)).digest('hex')]);
    expect(Date.now() - started).toBeLessThan(20_000);
  }, 30_000);
});
