import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors/index.js';
import { InspectStream, SNIFF_BYTES, type InspectResult } from '../../src/ingest/inspect-stream.js';
import { DEFAULT_POLICY_SOURCE, PolicyRegistry } from '../../src/modules/policy/policy.js';
import { jpeg, mp4, pdfBytes, png } from '../helpers/files.js';

interface Run {
  result: InspectResult;
  output: Buffer;
  accepted: string[];
}

/** Streams `chunks` through an InspectStream (with backpressure) and collects what it passes on. */
async function inspect(chunks: Buffer[], options: { limit?: number; fileName?: string; accept?: (mime: string) => number } = {}): Promise<Run> {
  const accepted: string[] = [];
  const stream = new InspectStream({
    fileName: options.fileName ?? 'file.bin',
    accept: (mime) => {
      accepted.push(mime);
      return options.accept ? options.accept(mime) : (options.limit ?? 1e9);
    },
  });
  const out: Buffer[] = [];
  await pipeline(
    async function* () {
      for (const c of chunks) yield c;
    },
    stream,
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        out.push(chunk);
        cb();
      },
    }),
  );
  return { result: stream.result(), output: Buffer.concat(out), accepted };
}

async function inspectError(chunks: Buffer[], options: Parameters<typeof inspect>[1] = {}): Promise<AppError> {
  try {
    await inspect(chunks, options);
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    return e as AppError;
  }
  throw new Error('expected the stream to fail');
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Splits a buffer into chunks of `size` bytes. */
function chunked(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

/**
 * A PDF whose page objects sit beyond the sniffing window (so chunk boundaries
 * fall inside the markers while streaming), with the marker spelled in every way
 * PDF allows, and /Pages nodes among them that must not count.
 */
function bigPdf(): { bytes: Buffer; pages: number; markersFrom: number; markersTo: number } {
  const head = `%PDF-1.7\n%\xe2\xe3\xcf\xd3\n%${'x'.repeat(SNIFF_BYTES + 1000)}\n`;
  const body = [
    '1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n',
    '2 0 obj\n<< /Type /Pages /Kids [3 0 R 4 0 R 5 0 R 6 0 R 7 0 R 9 0 R] /Count 6 >>\nendobj\n',
    '3 0 obj\n<< /Type /Page /Parent 2 0 R >>\nendobj\n',
    '4 0 obj\n<</Type/Page/Parent 2 0 R>>\nendobj\n',
    '5 0 obj\n<< /Type\n/Page\n/Parent 2 0 R >>\nendobj\n',
    '6 0 obj\n<< /Parent 2 0 R /Type /Page>>\nendobj\n',
    '8 0 obj\n<< /Type /Pages /Kids [7 0 R 9 0 R] /Count 2 /Parent 2 0 R >>\nendobj\n',
    '7 0 obj\n<< /Type   /Page /Parent 8 0 R >>\nendobj\n',
    '9 0 obj\n<</Type /Page/Parent 8 0 R>>endobj\n',
    '10 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n',
  ].join('');
  const tail = 'trailer\n<< /Root 1 0 R >>\n%%EOF\n';
  const bytes = Buffer.from(head + body + tail, 'latin1');
  const markersFrom = Buffer.byteLength(head, 'latin1');
  return { bytes, pages: 6, markersFrom, markersTo: markersFrom + Buffer.byteLength(body, 'latin1') };
}

describe('InspectStream: PDF page count', () => {
  const pdf = bigPdf();

  it('the fixture really puts its markers beyond the sniffing window', () => {
    expect(pdf.markersFrom).toBeGreaterThan(SNIFF_BYTES);
    expect(pdf.bytes.toString('latin1').match(/\/Type\s*\/Page(?![a-zA-Z])/g)).toHaveLength(pdf.pages);
  });

  it('counts pages exactly in one chunk', async () => {
    const r = await inspect([pdf.bytes]);
    expect(r.result).toMatchObject({ mime: 'application/pdf', pageCount: pdf.pages, size: pdf.bytes.length, checksum: sha256(pdf.bytes) });
    expect(r.output.equals(pdf.bytes)).toBe(true);
  });

  it('counts pages exactly whatever the offset of a split between two chunks', async () => {
    const wrong: { offset: number; pageCount: number | undefined }[] = [];
    for (let k = pdf.markersFrom - 2; k <= pdf.markersTo + 2; k++) {
      const r = await inspect([pdf.bytes.subarray(0, k), pdf.bytes.subarray(k)]);
      if (r.result.pageCount !== pdf.pages) wrong.push({ offset: k, pageCount: r.result.pageCount });
      if (!r.output.equals(pdf.bytes)) throw new Error(`output differs from input at split ${k}`);
    }
    expect(wrong).toEqual([]);
  });

  it('counts pages exactly with every split of three chunks across the marker region', async () => {
    // Two boundaries inside the same marker: every pair (a, b) in a window around the first page object.
    const start = pdf.bytes.indexOf('3 0 obj', 0, 'latin1');
    const end = pdf.bytes.indexOf('4 0 obj', 0, 'latin1');
    const wrong: [number, number][] = [];
    for (let a = start; a < end; a++) {
      for (let b = a + 1; b <= end; b++) {
        const r = await inspect([pdf.bytes.subarray(0, a), pdf.bytes.subarray(a, b), pdf.bytes.subarray(b)]);
        if (r.result.pageCount !== pdf.pages) wrong.push([a, b]);
      }
    }
    expect(wrong).toEqual([]);
  });

  it.each([1, 2, 3, 5, 7, 11, 13, 64, 1000])('counts pages exactly when fed %i-byte chunks', async (size) => {
    const r = await inspect(chunked(pdf.bytes, size));
    expect(r.result.pageCount).toBe(pdf.pages);
    expect(r.result.checksum).toBe(sha256(pdf.bytes));
  });

  it('does not count /Pages nodes: a PDF without page objects has no page count', async () => {
    const noPages = Buffer.from(`%PDF-1.4\n%${'y'.repeat(SNIFF_BYTES)}\n1 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n<</Type/Pages>>\n%%EOF\n`, 'latin1');
    for (const k of [noPages.length - 60, noPages.length - 40, noPages.length - 30]) {
      const r = await inspect([noPages.subarray(0, k), noPages.subarray(k)]);
      expect(r.result.pageCount).toBeUndefined();
    }
  });

  it('counts the pages of a small PDF (all in the sniffing window)', async () => {
    for (const pages of [1, 2, 7]) {
      const r = await inspect([pdfBytes(pages)]);
      expect(r.result.pageCount).toBe(pages);
    }
  });

  it('gives no page count for types other than PDF', async () => {
    const bytes = Buffer.from(await (await png(20, 20)).arrayBuffer());
    const withMarker = Buffer.concat([bytes, Buffer.from('/Type /Page /Type /Page ')]);
    expect((await inspect([withMarker])).result.pageCount).toBeUndefined();
  });
});

describe('InspectStream: size limit', () => {
  const pdf = bigPdf().bytes;

  it('accepts content of exactly the limit', async () => {
    const r = await inspect(chunked(pdf, 4096), { limit: pdf.length });
    expect(r.result.size).toBe(pdf.length);
  });

  it('fails with PAYLOAD_TOO_LARGE one byte over the limit (streaming past the sniffing window)', async () => {
    const e = await inspectError(chunked(pdf, 4096), { limit: pdf.length - 1 });
    expect(e.extensions['code']).toBe('PAYLOAD_TOO_LARGE');
    expect(e.extensions['limit']).toBe(pdf.length - 1);
  });

  it('fails with PAYLOAD_TOO_LARGE one byte over the limit within the sniffing window', async () => {
    const small = pdfBytes(2);
    expect(small.length).toBeLessThan(SNIFF_BYTES);
    expect((await inspect([small], { limit: small.length })).result.size).toBe(small.length);
    const e = await inspectError([small], { limit: small.length - 1 });
    expect(e.extensions['code']).toBe('PAYLOAD_TOO_LARGE');
  });

  it('stops reading as soon as the limit is passed', async () => {
    const stream = new InspectStream({ fileName: 'x', accept: () => 256 * 1024 });
    let pulled = 0;
    const first = Buffer.concat([pdfBytes(1), Buffer.alloc(SNIFF_BYTES)]);
    const err = await pipeline(
      async function* () {
        yield first;
        // An endless body: the stream must fail long before this ends.
        for (;;) {
          pulled++;
          if (pulled > 10_000) throw new Error('read on after the limit');
          yield Buffer.alloc(16 * 1024);
        }
      },
      stream,
      new Writable({ write: (_c, _e, cb) => cb() }),
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).extensions['code']).toBe('PAYLOAD_TOO_LARGE');
    expect(pulled).toBeLessThan(40);
  });
});

describe('InspectStream: detection', () => {
  it('fails an empty stream with BAD_USER_INPUT on the file', async () => {
    const e = await inspectError([]);
    expect(e.extensions['code']).toBe('BAD_USER_INPUT');
    expect(e.extensions['field']).toBe('file');
    const e2 = await inspectError([Buffer.alloc(0)]);
    expect(e2.extensions['code']).toBe('BAD_USER_INPUT');
  });

  it('detects JPEG, PNG, PDF and MP4 from the bytes, whatever the name', async () => {
    const cases: [Buffer, string][] = [
      [Buffer.from(await (await jpeg(64, 48)).arrayBuffer()), 'image/jpeg'],
      [Buffer.from(await (await png(30, 20)).arrayBuffer()), 'image/png'],
      [pdfBytes(1), 'application/pdf'],
      [Buffer.from(await mp4(200 * 1024).arrayBuffer()), 'video/mp4'],
    ];
    for (const [bytes, mime] of cases) {
      for (const chunks of [[bytes], chunked(bytes, 1000)]) {
        const r = await inspect(chunks, { fileName: 'misleading.txt' });
        expect(r.result.mime).toBe(mime);
        expect(r.accepted).toEqual([mime]);
        expect(r.result.size).toBe(bytes.length);
        expect(r.result.checksum).toBe(sha256(bytes));
        expect(r.output.equals(bytes)).toBe(true);
      }
    }
  });

  it('tells DOC from XLS inside an OLE container by the name, and refuses other OLE files', async () => {
    const cfb = Buffer.concat([Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]), Buffer.alloc(2048, 1)]);
    expect((await inspect([cfb], { fileName: 'Report.DOC' })).result.mime).toBe('application/msword');
    expect((await inspect([cfb], { fileName: 'sheet.xls' })).result.mime).toBe('application/vnd.ms-excel');
    expect((await inspectError([cfb], { fileName: 'thing.msi' })).extensions['code']).toBe('UNSUPPORTED_MEDIA_TYPE');
  });

  it.each([
    ['plain text', Buffer.from('just some text, nothing else\n'.repeat(10))],
    ['HTML', Buffer.from('<!doctype html><html><body><script>alert(1)</script></body></html>')],
    ['random bytes over the sniffing window', Buffer.alloc(SNIFF_BYTES + 10, 0x5a)],
  ])('refuses unrecognisable content (%s) with UNSUPPORTED_MEDIA_TYPE, without asking for a limit', async (_name, bytes) => {
    const seen: string[] = [];
    const e = await inspectError([bytes], { accept: (m) => (seen.push(m), 1e9) });
    expect(e.extensions['code']).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(seen).toEqual([]);
  });

  it.each([
    ['SVG', Buffer.from('<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"></svg>'), 'application/xml'],
    ['an ELF executable', Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), Buffer.alloc(200)]), 'application/x-elf'],
    ['a ZIP archive', Buffer.concat([Buffer.from('PK\x03\x04', 'latin1'), Buffer.alloc(100)]), 'application/zip'],
  ])('refuses %s (recognised, not supported) with UNSUPPORTED_MEDIA_TYPE through the policy', async (_name, bytes, detected) => {
    // The upload service's accept: the policy's limitFor, here for the most permissive built-in entity type.
    const policies = new PolicyRegistry(DEFAULT_POLICY_SOURCE);
    const seen: string[] = [];
    const e = await inspectError([bytes], { accept: (m) => (seen.push(m), policies.limitFor(policies.get('company'), m)) });
    expect(e.extensions['code']).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(seen).toEqual([detected]);
  });

  it('passes on the error of accept (a type the policy refuses)', async () => {
    const refusal = new AppError('UNSUPPORTED_MEDIA_TYPE', 'not here');
    const e = await inspectError([pdfBytes(1)], {
      accept: () => {
        throw refusal;
      },
    });
    expect(e).toBe(refusal);
  });

  it('refuses to give a result before the end', () => {
    const s = new InspectStream({ fileName: 'x', accept: () => 1 });
    expect(() => s.result()).toThrow();
  });
});

describe('InspectStream: PDF page marker at the very end', () => {
  it('counts a page marker that ends the file (no byte follows it)', async () => {
    const bytes = Buffer.concat([pdfBytes(1), Buffer.from('<< /Type /Page')]);
    const whole = await inspect([bytes]);
    expect(whole.result.pageCount).toBe(2);
    const split = await inspect([bytes.subarray(0, bytes.length - 3), bytes.subarray(bytes.length - 3)]);
    expect(split.result.pageCount).toBe(2);
    // "/Pages" at the end is not a page.
    const pages = await inspect([Buffer.concat([pdfBytes(1), Buffer.from('<< /Type /Pages')])]);
    expect(pages.result.pageCount).toBe(1);
  });
});
