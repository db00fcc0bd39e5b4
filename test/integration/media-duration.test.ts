import { createHash } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CompleteDirectUploadDocument, CreateDirectUploadDocument, MediaDocument, UploadDocument } from '../generated/graphql.js';
import { newTenant, startTestApp, STORAGE_DRIVER, type TestApp } from '../helpers/app.js';
import { ok } from '../helpers/client.js';
import { mp3Bytes, mp4Bytes } from '../helpers/files.js';

// Duration of audio and video (SPEC 5), read from the headers while the upload streams.

let app: TestApp;
beforeAll(async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'media-policy-'));
  const policyFile = path.join(dir, 'policy.json');
  await writeFile(
    policyFile,
    JSON.stringify({
      property: { securityLevel: 'STANDARD', allowed: ['images', 'pdf', 'video', 'audio'] },
      person: { securityLevel: 'SENSITIVE', allowed: ['audio'] },
    }),
  );
  app = await startTestApp({ env: { MEDIA_POLICY_FILE: policyFile } });
});
afterAll(() => app?.close());

const file = (bytes: Buffer, name: string, type: string) => new File([bytes], name, { type });

describe(`durationSeconds (${STORAGE_DRIVER})`, () => {
  it('reads an MP4 whose moov comes after a large mdat, and keeps it on the media', async () => {
    const token = await app.token(newTenant());
    // The moov lies past the first 64 KiB the service holds back to sniff the type.
    const bytes = mp4Bytes({ moovAtEnd: true, mdatSize: 512 * 1024, timescale: 90_000, duration: 90_000 * 95 + 30_000, version: 1 });
    const { upload } = await ok(app.url, UploadDocument, { input: { file: file(bytes, 'walkthrough.mp4', 'video/mp4'), entity: { type: 'property', id: 'p1' } } }, { token });
    expect(upload).toMatchObject({ kind: 'VIDEO', mediaType: 'video/mp4', fileSize: bytes.length, durationSeconds: 95.333, width: null, pageCount: null });
    const { media } = await ok(app.url, MediaDocument, { id: upload.id }, { token });
    expect(media?.durationSeconds).toBe(95.333);
  });

  it('reads an MP3 with a Xing header, also when the content is stored encrypted', async () => {
    const token = await app.token(newTenant());
    const bytes = mp3Bytes({ frames: 2000, header: 'Xing', id3Size: 4096 });
    const seconds = Math.round(((2000 * 1152) / 44_100) * 1000) / 1000;
    const plain = await ok(app.url, UploadDocument, { input: { file: file(bytes, 'voice.mp3', 'audio/mpeg'), entity: { type: 'property', id: 'p1' } } }, { token });
    expect(plain.upload).toMatchObject({ kind: 'AUDIO', encrypted: false, durationSeconds: seconds });
    const sealed = await ok(app.url, UploadDocument, { input: { file: file(bytes, 'statement.mp3', 'audio/mpeg'), entity: { type: 'person', id: 'u1' } } }, { token });
    expect(sealed.upload).toMatchObject({ kind: 'AUDIO', encrypted: true, durationSeconds: seconds });
  });

  it('leaves it null when the file does not say, and for images', async () => {
    const token = await app.token(newTenant());
    const bytes = mp4Bytes({ duration: 0xffffffff });
    const { upload } = await ok(app.url, UploadDocument, { input: { file: file(bytes, 'live.mp4', 'video/mp4'), entity: { type: 'property', id: 'p1' } } }, { token });
    expect(upload.kind).toBe('VIDEO');
    expect(upload.durationSeconds).toBeNull();
  });

  it('leaves it null when a forged mvhd claims 2^63 units (9.2e18 s)', async () => {
    const token = await app.token(newTenant());
    const bytes = mp4Bytes({ version: 1, timescale: 1, duration: 2n ** 63n });
    const { upload } = await ok(app.url, UploadDocument, { input: { file: file(bytes, 'forged.mp4', 'video/mp4'), entity: { type: 'property', id: 'p1' } } }, { token });
    expect(upload.kind).toBe('VIDEO');
    expect(upload.durationSeconds).toBeNull();
  });

  it('reads it on a direct upload too', async () => {
    const token = await app.token(newTenant());
    const bytes = mp4Bytes({ timescale: 600, duration: 600 * 12 });
    const { createDirectUpload: t } = await ok(
      app.url,
      CreateDirectUploadDocument,
      { input: { filename: 'clip.mp4', contentType: 'video/mp4', byteSize: bytes.length, checksum: createHash('sha256').update(bytes).digest('base64') } },
      { token },
    );
    const res = await fetch(t.url, { method: 'PUT', headers: t.headers.all as Record<string, string>, body: bytes });
    expect(res.status).toBe(200);
    const { completeDirectUpload: m } = await ok(app.url, CompleteDirectUploadDocument, { signedId: t.signedId, entity: { type: 'property', id: 'p1' } }, { token });
    expect(m).toMatchObject({ kind: 'VIDEO', durationSeconds: 12 });
  });
});
