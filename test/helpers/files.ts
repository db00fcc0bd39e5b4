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
