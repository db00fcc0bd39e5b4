import { describe, expect, it } from 'vitest';
import { readMetadata } from '../../src/modules/resumable-uploads/upload-metadata.js';

const field = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return (e as { extensions?: { field?: string }; message: string }).extensions?.field ?? (e as Error).message;
  }
  return undefined;
};

describe('Upload-Metadata of resumable uploads', () => {
  it('reads the keys tus-js-client and Uppy send', () => {
    expect(readMetadata({ entityType: 'property', entityId: 'p-1', tags: 'a, B', role: 'PRIMARY_PHOTO', filename: 'x.jpg', filetype: 'image/jpeg', relativePath: null })).toEqual({
      entity: { type: 'property', id: 'p-1' },
      tags: ['a, B'],
      role: 'PRIMARY_PHOTO',
      filename: 'x.jpg',
      filetype: 'image/jpeg',
    });
    // Uppy's own names when filename/filetype are absent.
    expect(readMetadata({ entityType: 'unit', entityId: 'u', name: 'clip.mp4', type: 'video/mp4' })).toMatchObject({ filename: 'clip.mp4', filetype: 'video/mp4', tags: null, role: null });
  });

  it('names the key at fault', () => {
    expect(field(() => readMetadata(undefined))).toBe('Upload-Metadata.entityType');
    expect(field(() => readMetadata({ entityType: 'property' }))).toBe('Upload-Metadata.entityId');
    expect(field(() => readMetadata({ entityType: 'property', entityId: '  ' }))).toBe('Upload-Metadata.entityId');
    expect(field(() => readMetadata({ entityType: 'property', entityId: 'p', role: 'OWNER' }))).toBe('Upload-Metadata.role');
    expect(field(() => readMetadata({ entityType: 'property', entityId: 'p', filename: 'x'.repeat(4097) }))).toBe('Upload-Metadata.filename');
    expect(field(() => readMetadata({ entityType: 'property', entityId: 'a\u0000b' }))).toBe('Upload-Metadata.entityId');
    expect(field(() => readMetadata({ entityType: 'property', entityId: '\ud800' }))).toBe('Upload-Metadata.entityId');
    const many = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v']));
    expect(field(() => readMetadata({ entityType: 'property', entityId: 'p', ...many }))).toBe('Upload-Metadata');
  });
});
