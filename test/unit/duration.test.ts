import { describe, expect, it } from 'vitest';
import { durationProbeFor } from '../../src/ingest/duration.js';
import { mp3Bytes, mp4Box, mp4Bytes, mvhd } from '../helpers/files.js';

/** Feeds `bytes` to a fresh probe in pieces of the given sizes (cycled), and finishes it. */
function probe(mime: string, bytes: Buffer, pieces: number[] = [bytes.length]): number | undefined {
  const p = durationProbeFor(mime)!;
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = Math.max(1, pieces[i % pieces.length]!);
    p.feed(bytes.subarray(at, at + n));
    at += n;
  }
  return p.finish(bytes.length);
}

/** The same answer however the bytes are split into chunks. */
function everyChunking(mime: string, bytes: Buffer): number | undefined {
  const whole = probe(mime, bytes);
  for (const pieces of [[1], [3], [7], [8], [13], [16], [100], [4095], [65_536], [5, 1, 64 * 1024, 2, 9]]) {
    expect(probe(mime, bytes, pieces), `pieces ${pieces.join(',')}`).toBe(whole);
  }
  return whole;
}

describe('MP4 duration', () => {
  it('reads mvhd when moov comes first', () => {
    expect(everyChunking('video/mp4', mp4Bytes({ timescale: 1000, duration: 12_345 }))).toBe(12.345);
  });

  it('skips a large mdat to a moov at the end, with a version 1 mvhd', () => {
    const bytes = mp4Bytes({ moovAtEnd: true, mdatSize: 300 * 1024, timescale: 90_000, duration: 90_000n * 61n + 45_000n, version: 1 });
    expect(everyChunking('video/mp4', bytes)).toBe(61.5);
  });

  it('follows a 64-bit box size', () => {
    expect(everyChunking('video/mp4', mp4Bytes({ moovAtEnd: true, largeMdat: true, mdatSize: 70_000, timescale: 600, duration: 600 * 7 }))).toBe(7);
  });

  it('finds mvhd after other children of moov', () => {
    const bytes = mp4Bytes({ moovChildren: [mp4Box('udta', Buffer.alloc(300)), mvhd(25, 250)] });
    expect(everyChunking('video/mp4', bytes)).toBe(10);
  });

  it('gives no duration when the file does not say', () => {
    expect(probe('video/mp4', mp4Bytes({ duration: 0xffffffff }))).toBeUndefined(); // "unknown"
    expect(probe('video/mp4', mp4Bytes({ timescale: 0 }))).toBeUndefined();
    expect(probe('video/mp4', mp4Bytes({ moovChildren: [mp4Box('udta', Buffer.alloc(40))] }))).toBeUndefined();
    // no moov at all; a box claiming 3 bytes; a box running to the end of the file (size 0)
    const ftyp = mp4Box('ftyp', Buffer.from('isom\0\0\x02\0isomiso2', 'latin1'));
    expect(probe('video/mp4', Buffer.concat([ftyp, mp4Box('mdat', Buffer.alloc(500))]))).toBeUndefined();
    const broken = Buffer.concat([ftyp, Buffer.from([0, 0, 0, 3]), Buffer.from('junk'), mp4Box('moov', mvhd(1000, 5000))]);
    expect(probe('video/mp4', broken)).toBeUndefined();
    const toEnd = Buffer.concat([ftyp, Buffer.from([0, 0, 0, 0]), Buffer.from('mdat'), Buffer.alloc(100)]);
    expect(probe('video/mp4', toEnd)).toBeUndefined();
  });

  it('reads a moov cut short by the end of the file', () => {
    const whole = mp4Bytes({ moovAtEnd: true, timescale: 1000, duration: 4000 });
    // The moov box claims more bytes than the file has left; its mvhd is complete.
    const cut = Buffer.concat([whole.subarray(0, whole.length - 108 - 8), Buffer.from([0, 1, 0, 0]), Buffer.from('moov'), whole.subarray(whole.length - 108)]);
    expect(probe('video/mp4', cut)).toBe(4);
  });
});

describe('implausible durations are no duration', () => {
  const WEEK = 7 * 24 * 3600;

  it('a forged version 1 mvhd of 2^63 units (9.2e18 s), and 2^64-2', () => {
    expect(probe('video/mp4', mp4Bytes({ version: 1, timescale: 1, duration: 2n ** 63n }))).toBeUndefined();
    expect(probe('video/mp4', mp4Bytes({ version: 1, timescale: 1000, duration: 2n ** 64n - 2n }))).toBeUndefined();
  });

  it('a version 0 mvhd of 136 years; a week is believed, a second more is not', () => {
    expect(probe('video/mp4', mp4Bytes({ timescale: 1, duration: 0xfffffffe }))).toBeUndefined();
    expect(probe('video/mp4', mp4Bytes({ timescale: 1, duration: WEEK }))).toBe(WEEK);
    expect(probe('video/mp4', mp4Bytes({ timescale: 1, duration: WEEK + 1 }))).toBeUndefined();
    expect(probe('video/mp4', mp4Bytes({ version: 1, timescale: 90_000, duration: 90_000n * BigInt(WEEK) + 1n }))).toBeUndefined();
  });

  it('an MP3 whose Xing or VBRI header claims 2^32-1 frames (3.6 years)', () => {
    for (const header of ['Xing', 'VBRI'] as const) {
      const bytes = mp3Bytes({ frames: 10, header });
      const at = header === 'VBRI' ? 36 + 14 : 4 + 32 + 8;
      expect(bytes.readUInt32BE(at)).toBe(10);
      bytes.writeUInt32BE(0xffffffff, at);
      expect(probe('audio/mpeg', bytes), header).toBeUndefined();
    }
  });
});

describe('MP3 duration', () => {
  const mpeg1Frame = 1152 / 44_100;

  it('counts frames from a Xing header, after an ID3v2 tag', () => {
    expect(everyChunking('audio/mpeg', mp3Bytes({ frames: 1000, header: 'Xing', id3Size: 2048 }))).toBe(Math.round(1000 * mpeg1Frame * 1000) / 1000);
  });

  it('counts frames from a LAME Info header and a VBRI header', () => {
    expect(everyChunking('audio/mpeg', mp3Bytes({ frames: 250, header: 'Info' }))).toBe(Math.round(250 * mpeg1Frame * 1000) / 1000);
    expect(everyChunking('audio/mpeg', mp3Bytes({ frames: 400, header: 'VBRI' }))).toBe(Math.round(400 * mpeg1Frame * 1000) / 1000);
  });

  it('uses MPEG-2 mono frame sizes and offsets', () => {
    expect(everyChunking('audio/mpeg', mp3Bytes({ frames: 500, header: 'Xing', mpeg2Mono: true }))).toBe(Math.round(((500 * 576) / 22_050) * 1000) / 1000);
  });

  it('takes a stream without a header as constant bitrate, leaving out ID3 tags', () => {
    const bytes = mp3Bytes({ frames: 300, id3Size: 1000, id3v1: true });
    const audioBytes = bytes.length - 1000 - 128;
    expect(audioBytes).toBe(300 * 417);
    expect(everyChunking('audio/mpeg', bytes)).toBe(Math.round(((audioBytes * 8) / 128_000) * 1000) / 1000);
  });

  it('gives no duration without a frame near the start', () => {
    expect(probe('audio/mpeg', Buffer.concat([Buffer.from('ID3\x04\0\0\0\0\0\x0a', 'latin1'), Buffer.alloc(10), Buffer.alloc(8000)]))).toBeUndefined();
  });
});

describe('types without a duration', () => {
  it('has no probe for images and documents', () => {
    expect(durationProbeFor('image/jpeg')).toBeUndefined();
    expect(durationProbeFor('application/pdf')).toBeUndefined();
  });
});
