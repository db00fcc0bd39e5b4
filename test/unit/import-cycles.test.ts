import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

// The modules import each other without cycles (issue 15: the ingest pipeline got a
// module of its own so that upload paths and the pipeline stop importing each other).
// Value imports only: `import type` is erased at run time.

const SRC = path.resolve(import.meta.dirname, '../../src');
const IMPORT = /^(?:import|export)\s+(type\s+)?[^'"]*?from\s+['"](\.{1,2}\/[^'"]+)\.js['"]/gm;

async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory() && e.name !== 'generated') out.push(...(await sources(p)));
    else if (e.isFile() && e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

describe('src/', () => {
  it('has no import cycles, and the ingest pipeline imports no entry point', async () => {
    const graph = new Map<string, string[]>();
    for (const file of await sources(SRC)) {
      const text = await readFile(file, 'utf8');
      const deps = [...text.matchAll(IMPORT)].filter((m) => !m[1]).map((m) => path.resolve(path.dirname(file), `${m[2]}.ts`));
      graph.set(file, deps);
    }
    expect(graph.size).toBeGreaterThan(50);
    expect([...graph.values()].flat().length).toBeGreaterThan(200);
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const stack: string[] = [];
    const visit = (f: string) => {
      state.set(f, 'open');
      stack.push(f);
      for (const d of graph.get(f) ?? []) {
        if (state.get(d) === 'open') cycles.push(stack.slice(stack.indexOf(d)).concat(d).map((x) => path.relative(SRC, x)).join(' -> '));
        else if (!state.has(d)) visit(d);
      }
      stack.pop();
      state.set(f, 'done');
    };
    for (const f of graph.keys()) if (!state.has(f)) visit(f);
    expect(cycles).toEqual([]);
    const ingest = [...graph].filter(([f]) => f.startsWith(path.join(SRC, 'ingest')));
    expect(ingest.length).toBeGreaterThan(5);
    const entryPoints = /modules\/(media\/upload\.service|direct-uploads|assets|workers)\b/;
    expect(ingest.flatMap(([f, deps]) => deps.filter((d) => entryPoints.test(d)).map((d) => `${path.relative(SRC, f)} -> ${path.relative(SRC, d)}`))).toEqual([]);
  });
});
