import sharp from 'sharp';

/** A real JPEG of the given size (a flat colour plus a gradient band, so it compresses but is not trivial). */
export async function jpeg(width = 800, height = 600, name = 'photo.jpg'): Promise<File> {
  const buf = await sharp({ create: { width, height, channels: 3, background: { r: 40, g: 90, b: 160 } } })
    .composite([{ input: Buffer.from(`<svg width="${width}" height="${Math.max(1, height >> 2)}"><rect width="100%" height="100%" fill="orange"/></svg>`), top: 0, left: 0 }])
    .jpeg({ quality: 80 })
    .toBuffer();
  return new File([buf], name, { type: 'image/jpeg' });
}

export async function png(width = 320, height = 200, name = 'image.png', type = 'image/png'): Promise<File> {
  const buf = await sharp({ create: { width, height, channels: 4, background: { r: 10, g: 200, b: 30, alpha: 1 } } }).png().toBuffer();
  return new File([buf], name, { type });
}

/** A small valid PDF with `pages` pages. */
export function pdfBytes(pages = 2): Buffer {
  const objects: string[] = [];
  const kids = Array.from({ length: pages }, (_, i) => `${3 + i} 0 R`).join(' ');
  objects.push('<< /Type /Catalog /Pages 2 0 R >>');
  objects.push(`<< /Type /Pages /Kids [${kids}] /Count ${pages} >>`);
  for (let i = 0; i < pages; i++) objects.push('<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>');
  let out = '%PDF-1.4\n%\xe2\xe3\xcf\xd3\n';
  const offsets: number[] = [];
  objects.forEach((o, i) => {
    offsets.push(Buffer.byteLength(out, 'latin1'));
    out += `${i + 1} 0 obj\n${o}\nendobj\n`;
  });
  const xref = Buffer.byteLength(out, 'latin1');
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const off of offsets) out += `${String(off).padStart(10, '0')} 00000 n \n`;
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, 'latin1');
}

export function pdf(pages = 2, name = 'document.pdf'): File {
  return new File([pdfBytes(pages)], name, { type: 'application/pdf' });
}

/** An MP4 header (ftyp box) followed by filler: enough for magic-number detection. */
export function mp4(size = 64 * 1024, name = 'clip.mp4'): File {
  const buf = Buffer.alloc(size, 0);
  Buffer.from([0, 0, 0, 0x18]).copy(buf, 0);
  Buffer.from('ftypisom\0\0\x02\0isomiso2', 'latin1').copy(buf, 4);
  Buffer.from([0, 0, 0, 8]).copy(buf, 24);
  Buffer.from('free', 'latin1').copy(buf, 28);
  return new File([buf], name, { type: 'video/mp4' });
}

/** A PNG-signature-less HTML page wearing an image name. */
export function htmlAsPng(name = 'innocent.png'): File {
  return new File(['<!doctype html><html><body><script>alert(1)</script></body></html>'], name, { type: 'image/png' });
}

/**
 * A JPEG of exactly `size` bytes: a real JPEG followed by padding after its end
 * marker (decoders ignore trailing bytes), for limit tests.
 */
export async function jpegOfSize(size: number, name = 'big.jpg'): Promise<File> {
  const base = Buffer.from(await (await jpeg(64, 64)).arrayBuffer());
  if (size < base.length) throw new Error('size too small for a JPEG');
  const buf = Buffer.alloc(size, 0);
  base.copy(buf);
  return new File([buf], name, { type: 'image/jpeg' });
}

export async function sha256Hex(data: Blob | Buffer | ArrayBuffer): Promise<string> {
  const { createHash } = await import('node:crypto');
  const buf = data instanceof Blob ? Buffer.from(await data.arrayBuffer()) : Buffer.from(data as ArrayBuffer);
  return createHash('sha256').update(buf).digest('hex');
}

/** An ISO BMFF box: 32-bit size (or 1 and a 64-bit size when `large`), type, payload. */
export function mp4Box(type: string, payload: Buffer, large = false): Buffer {
  const head = Buffer.alloc(large ? 16 : 8);
  if (large) {
    head.writeUInt32BE(1, 0);
    head.writeBigUInt64BE(BigInt(16 + payload.length), 8);
  } else head.writeUInt32BE(8 + payload.length, 0);
  head.write(type, 4, 'latin1');
  return Buffer.concat([head, payload]);
}

/** A movie header box (`mvhd`) of version 0 or 1. */
export function mvhd(timescale: number, duration: number | bigint, version: 0 | 1 = 0): Buffer {
  const body = Buffer.alloc(version === 0 ? 100 : 112);
  body[0] = version;
  if (version === 0) {
    body.writeUInt32BE(timescale, 12);
    body.writeUInt32BE(Number(duration), 16);
  } else {
    body.writeUInt32BE(timescale, 20);
    body.writeBigUInt64BE(BigInt(duration), 24);
  }
  return mp4Box('mvhd', body);
}

/**
 * An MP4 file's bytes: ftyp, then moov (holding `moovChildren`, mvhd by default)
 * before or after an mdat of `mdatSize` bytes.
 */
export function mp4Bytes(o: { timescale?: number; duration?: number | bigint; version?: 0 | 1; moovAtEnd?: boolean; mdatSize?: number; largeMdat?: boolean; moovChildren?: Buffer[] } = {}): Buffer {
  const ftyp = mp4Box('ftyp', Buffer.from('isom\0\0\x02\0isomiso2', 'latin1'));
  const moov = mp4Box('moov', Buffer.concat(o.moovChildren ?? [mvhd(o.timescale ?? 1000, o.duration ?? 12_345, o.version ?? 0)]));
  const payload = Buffer.alloc(o.mdatSize ?? 4096);
  for (let i = 0; i < payload.length; i += 4096) payload[i] = i & 0xff;
  const mdat = mp4Box('mdat', payload, o.largeMdat);
  return Buffer.concat(o.moovAtEnd ? [ftyp, mdat, moov] : [ftyp, moov, mdat]);
}

/**
 * MP3 bytes: an optional ID3v2 tag of `id3Size` bytes, a first frame carrying a
 * Xing/Info or VBRI header (or none), `frames` audio frames, an optional ID3v1 tag.
 * MPEG-1 layer III 128 kbit/s 44.1 kHz stereo by default; `mpeg2Mono` gives MPEG-2
 * layer III 64 kbit/s 22.05 kHz mono.
 */
export function mp3Bytes(o: { frames: number; header?: 'Xing' | 'Info' | 'VBRI' | null; id3Size?: number; id3v1?: boolean; mpeg2Mono?: boolean }): Buffer {
  const sync = o.mpeg2Mono ? [0xff, 0xf3, 0x80, 0xc0] : [0xff, 0xfb, 0x90, 0x00];
  const frameLength = o.mpeg2Mono ? Math.floor((72 * 64_000) / 22_050) : Math.floor((144 * 128_000) / 44_100);
  const frame = () => {
    const f = Buffer.alloc(frameLength);
    Buffer.from(sync).copy(f);
    return f;
  };
  const parts: Buffer[] = [];
  if (o.id3Size) {
    const tag = Buffer.alloc(o.id3Size);
    tag.write('ID3', 0, 'latin1');
    tag[3] = 4;
    const size = o.id3Size - 10;
    tag[6] = (size >> 21) & 0x7f;
    tag[7] = (size >> 14) & 0x7f;
    tag[8] = (size >> 7) & 0x7f;
    tag[9] = size & 0x7f;
    tag.write('TIT2', 10, 'latin1');
    parts.push(tag);
  }
  if (o.header) {
    const f = frame();
    if (o.header === 'VBRI') {
      f.write('VBRI', 36, 'latin1');
      f.writeUInt32BE(o.frames, 36 + 14);
    } else {
      const at = 4 + (o.mpeg2Mono ? 9 : 32);
      f.write(o.header, at, 'latin1');
      f.writeUInt32BE(1, at + 4); // flags: frame count present
      f.writeUInt32BE(o.frames, at + 8);
    }
    parts.push(f);
  }
  for (let i = 0; i < o.frames; i++) parts.push(frame());
  if (o.id3v1) {
    const tag = Buffer.alloc(128);
    tag.write('TAG', 0, 'latin1');
    parts.push(tag);
  }
  return Buffer.concat(parts);
}
