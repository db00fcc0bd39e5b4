import { describe, expect, it } from 'vitest';
import { findUnstorableText, unstorableText } from '../../src/util/storable-text.js';
import { urlProblem } from '../../src/http/edge-input.js';

describe('unstorableText', () => {
  it('finds a NUL and unpaired surrogates, nothing else', () => {
    expect(unstorableText('a\u0000b')).toMatch(/NUL/);
    expect(unstorableText('\ud800')).toMatch(/surrogate/);
    expect(unstorableText('x\udc00')).toMatch(/surrogate/);
    expect(unstorableText('\udc00\ud800')).toMatch(/surrogate/); // reversed pair
    for (const ok of ['', 'plain', 'é', '🏠', '\u202e\u200b\ufeff', '\u0001\u001f\u007f', '\ufffd', '\uffff']) expect(unstorableText(ok), JSON.stringify(ok)).toBeUndefined();
  });
});

describe('findUnstorableText', () => {
  it('walks arrays and plain objects, keys included, and names the path', () => {
    expect(findUnstorableText({ a: [1, 'x', { b: 'y\u0000' }] }, 'input')).toEqual({ path: 'input.a.2.b', problem: expect.stringMatching(/NUL/) });
    expect(findUnstorableText({ ['k\u0000']: 1 }, 'v')?.path).toBe('v.k?');
    expect(findUnstorableText(['ok', 'a\ud800'], 'tags')?.path).toBe('tags.1');
    expect(findUnstorableText({ a: 'ok', b: [null, 2, true] }, 'x')).toBeUndefined();
  });

  it('reports the first bad string in document order', () => {
    expect(findUnstorableText({ a: 'x\u0000', b: 'y\u0000' }, 'v')?.path).toBe('v.a');
  });

  it('does not enter non-plain objects (uploads, dates)', () => {
    class Upload {
      name = 'x\u0000';
    }
    expect(findUnstorableText({ file: new Upload(), at: new Date() }, 'v')).toBeUndefined();
  });

  it('survives a deeply nested value', () => {
    let deep: unknown = 'end\u0000';
    for (let i = 0; i < 200_000; i++) deep = [deep];
    expect(findUnstorableText(deep, 'v')?.problem).toMatch(/NUL/);
  });
});

describe('urlProblem', () => {
  it('accepts ordinary paths and queries', () => {
    for (const url of ['/', '/media/x/content', '/tenants/abc/assets/caf%C3%A9?handleError=true&v=2', '/x?a', '/x?a=&b=1+2', '/x?', '/x?a=%2F%26']) expect(urlProblem(url), url).toBeUndefined();
  });

  it('refuses a NUL or a broken percent-encoding, naming the path or the parameter', () => {
    expect(urlProblem('/media/%00/content')).toMatchObject({ field: 'path' });
    expect(urlProblem('/media/%E0%A4%A/content')).toMatchObject({ field: 'path' });
    expect(urlProblem('/media/%ED%A0%80')).toMatchObject({ field: 'path' }); // an encoded surrogate is not UTF-8
    expect(urlProblem('/x?token=%00')).toMatchObject({ field: 'token' });
    expect(urlProblem('/x?token=%zz')).toMatchObject({ field: 'token' });
    expect(urlProblem('/x?%00=1')).toMatchObject({ field: 'query' });
    expect(urlProblem('/x?%E0=1')).toMatchObject({ field: 'query' });
  });
});
