// Rotations before the copy-into-new-keys design spooled decrypted documents to
// os.tmpdir()/media-rotate-*/plain; a killed one left a lease there in plaintext.
// Start-up and every rotation remove such directories (issue 12, item 4).
import { describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { removeStaleRotationSpools } from '../../src/crypto/rotation.js';
import { createLogger } from '../../src/logger.js';

describe('stale rotation spools', () => {
  it('removes every media-rotate-* directory with its plaintext, and nothing else', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'spool-test-'));
    try {
      for (const name of ['media-rotate-abc123', 'media-rotate-zz']) {
        await mkdir(path.join(dir, name));
        await writeFile(path.join(dir, name, 'plain'), '%PDF-1.7 the signed lease');
      }
      await mkdir(path.join(dir, 'media-api-app-keep'));
      await writeFile(path.join(dir, 'media-rotate.txt'), 'a file, not a spool directory of ours? it has no dash after rotate');
      const lines: string[] = [];
      const logger = createLogger('info', { write: (l: string) => void lines.push(l) });
      expect(await removeStaleRotationSpools(logger, dir)).toBe(2);
      expect((await readdir(dir)).sort()).toEqual(['media-api-app-keep', 'media-rotate.txt']);
      expect(lines.filter((l) => l.includes('plaintext spool'))).toHaveLength(2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
