import { describe, expect, it } from 'vitest';
import { sanitiseFileName } from '../../src/ingest/file-name.js';

describe('sanitiseFileName: what is shown is what the name is', () => {
  it('strips bidi controls: "invoice\\u202Egnp.exe" (shown as "invoiceexe.png") keeps its real order', () => {
    expect(sanitiseFileName('invoice\u202Egnp.exe')).toBe('invoicegnp.exe');
    expect(sanitiseFileName('\u202Bx\u202C\u202Ay\u202D\u2066z\u2067\u2068\u2069\u200E\u200F\u061C.pdf')).toBe('xyz.pdf');
  });

  it('strips zero-width and other invisible format characters, C1 controls, line separators, Hangul fillers', () => {
    for (const c of ['\u200B', '\uFEFF', '\u2060', '\u2061', '\u2064', '\u00AD', '\u180E', '\uFFF9', '\u206A', '\u{E0001}', '\u{E0041}', '\u0085', '\u009B', '\u2028', '\u2029', '\u3164', '\u115F', '\uFFA0']) {
      expect(sanitiseFileName(`re${c}port.pdf`), `U+${c.codePointAt(0)!.toString(16)}`).toBe('report.pdf');
    }
  });

  it('keeps ZWJ and ZWNJ (emoji sequences, Persian and Indic spelling), accents, emoji and right-to-left letters', () => {
    expect(sanitiseFileName('👩‍💻 مى\u200Cخواهم.pdf')).toBe('👩‍💻 مى\u200Cخواهم.pdf');
    expect(sanitiseFileName('Relevé café ❤️ עברית.pdf')).toBe('Relevé café ❤️ עברית.pdf');
  });

  it('keeps no path parts, control characters, unpaired surrogates, or trailing dots and spaces; composes to NFC', () => {
    expect(sanitiseFileName('../../etc/passwd')).toBe('passwd');
    expect(sanitiseFileName('C:\\Users\\x\\a.pdf')).toBe('a.pdf');
    expect(sanitiseFileName('a\r\nb\u0000c\u007f.pdf')).toBe('abc.pdf');
    expect(sanitiseFileName('a\ud800b.pdf')).toBe('ab.pdf');
    expect(sanitiseFileName('evil.exe. . ')).toBe('evil.exe');
    expect(sanitiseFileName('cafe\u0301.pdf')).toBe('café.pdf');
    expect(sanitiseFileName('\u202E\u200B')).toBe('file');
    expect(sanitiseFileName(undefined)).toBe('file');
  });

  it('is idempotent', () => {
    for (const n of ['invoice\u202Egnp.exe', 'x.html', 'scan', 'a'.repeat(400) + '.pdf', '.pdf']) {
      for (const mime of [undefined, 'application/pdf', 'image/png']) {
        const once = sanitiseFileName(n, mime);
        expect(sanitiseFileName(once, mime)).toBe(once);
      }
    }
  });
});

describe('sanitiseFileName: the extension agrees with the detected type', () => {
  it('replaces an extension that names another type, adds one where there is none', () => {
    expect(sanitiseFileName('invoice.html', 'application/pdf')).toBe('invoice.pdf');
    expect(sanitiseFileName('invoice\u202Egnp.exe', 'image/png')).toBe('invoicegnp.png');
    expect(sanitiseFileName('photo.png', 'image/jpeg')).toBe('photo.jpg');
    expect(sanitiseFileName('archive.tar.gz', 'application/pdf')).toBe('archive.tar.pdf');
    expect(sanitiseFileName('scan', 'application/pdf')).toBe('scan.pdf');
    expect(sanitiseFileName('evil.exe.', 'image/gif')).toBe('evil.gif');
    expect(sanitiseFileName('', 'video/mp4')).toBe('file.mp4');
  });

  it('appends rather than replaces what is not an extension (digits, spaces, long words)', () => {
    expect(sanitiseFileName('report.2024', 'application/pdf')).toBe('report.2024.pdf');
    expect(sanitiseFileName('Mr. Smith', 'application/pdf')).toBe('Mr. Smith.pdf');
    expect(sanitiseFileName('notes.verylongword', 'application/pdf')).toBe('notes.verylongword.pdf');
    expect(sanitiseFileName('.html', 'application/pdf')).toBe('.html.pdf');
  });

  it('keeps an extension that names the type, in any case or spelling', () => {
    expect(sanitiseFileName('Photo.JPEG', 'image/jpeg')).toBe('Photo.JPEG');
    expect(sanitiseFileName('a.jpe', 'image/jpeg')).toBe('a.jpe');
    expect(sanitiseFileName('clip.m4v', 'video/mp4')).toBe('clip.m4v');
    expect(sanitiseFileName('Report.DOC', 'application/msword')).toBe('Report.DOC');
    expect(sanitiseFileName('sheet.xls', 'application/vnd.ms-excel')).toBe('sheet.xls');
    expect(sanitiseFileName('sheet.xlsx', 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet')).toBe('sheet.xlsx');
  });

  it('leaves the name alone for a type it does not know', () => {
    expect(sanitiseFileName('x.html', 'text/html')).toBe('x.html');
    expect(sanitiseFileName('x.html', null)).toBe('x.html');
  });

  it('shortens a long name to 255 UTF-16 units keeping the extension, never splitting a surrogate pair', () => {
    const long = sanitiseFileName('a'.repeat(300) + '.html', 'application/pdf');
    expect(long).toHaveLength(255);
    expect(long.endsWith('a.pdf')).toBe(true);
    const emoji = sanitiseFileName('b' + '🏠'.repeat(200) + '.pdf', 'application/pdf');
    expect(emoji.length).toBeLessThanOrEqual(255);
    expect(emoji.endsWith('🏠.pdf')).toBe(true);
    expect(/[\ud800-\udbff](?![\udc00-\udfff])/.test(emoji)).toBe(false);
    expect(sanitiseFileName('c'.repeat(300))).toHaveLength(255);
  });
});
