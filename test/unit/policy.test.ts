import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors/index.js';
import { SUPPORTED_TYPES, TYPE_GROUPS } from '../../src/modules/policy/media-types.js';
import { DEFAULT_POLICY_SOURCE, PolicyRegistry, levelAtLeast, maxLevel } from '../../src/modules/policy/policy.js';

const MiB = 1024 * 1024;

function appError(fn: () => unknown): AppError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    return e as AppError;
  }
  throw new Error('expected an AppError');
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'policy-test-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function policyFile(name: string, content: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, content);
  return file;
}

describe('PolicyRegistry defaults (SPEC 4)', () => {
  const reg = PolicyRegistry.load(undefined);

  it('lists the five built-in entity types with their levels', () => {
    expect(Object.fromEntries(reg.list().map((p) => [p.entityType, p.securityLevel]))).toEqual({
      property: 'STANDARD',
      unit: 'STANDARD',
      person: 'SENSITIVE',
      lease: 'CRITICAL',
      company: 'STANDARD',
    });
  });

  it('expands groups into MIME types', () => {
    expect(new Set(reg.get('property').allowedMediaTypes)).toEqual(new Set([...TYPE_GROUPS['images']!, 'application/pdf', 'video/mp4']));
    expect(new Set(reg.get('person').allowedMediaTypes)).toEqual(new Set([...TYPE_GROUPS['images']!, 'application/pdf']));
    expect(new Set(reg.get('company').allowedMediaTypes)).toEqual(new Set([...TYPE_GROUPS['images']!, 'application/pdf', ...TYPE_GROUPS['office']!]));
    expect(reg.get('lease').allowedMediaTypes).not.toContain('video/mp4');
  });

  it('caps sizes: per kind where the policy has none, else the policy', () => {
    expect(reg.get('property').maxFileSize).toBe(100 * MiB);
    expect(reg.get('company').maxFileSize).toBe(20 * MiB);
    expect(reg.get('person').maxFileSize).toBe(10 * MiB);
    expect(reg.get('lease').maxFileSize).toBe(20 * MiB);
  });

  it('limitFor is the smaller of the kind and the policy', () => {
    expect(reg.limitFor(reg.get('property'), 'image/jpeg')).toBe(10 * MiB);
    expect(reg.limitFor(reg.get('property'), 'application/pdf')).toBe(20 * MiB);
    expect(reg.limitFor(reg.get('property'), 'video/mp4')).toBe(100 * MiB);
    expect(reg.limitFor(reg.get('person'), 'application/pdf')).toBe(10 * MiB);
    expect(reg.limitFor(reg.get('lease'), 'image/png')).toBe(10 * MiB);
  });

  it('limitFor refuses a type the entity does not accept and an unsupported type', () => {
    const e = appError(() => reg.limitFor(reg.get('person'), 'video/mp4'));
    expect(e.extensions['code']).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(e.message).toContain('person');
    expect(appError(() => reg.limitFor(reg.get('company'), 'image/svg+xml')).extensions['code']).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(appError(() => reg.limitFor(reg.get('property'), 'application/msword')).extensions['code']).toBe('UNSUPPORTED_MEDIA_TYPE');
  });

  it('an unknown entity type is BAD_USER_INPUT naming the field and the known types', () => {
    const e = appError(() => reg.get('spaceship', 'input.entity.type'));
    expect(e.extensions['code']).toBe('BAD_USER_INPUT');
    expect(e.extensions['field']).toBe('input.entity.type');
    expect(e.message).toContain('spaceship');
    expect(e.message).toContain('property');
    // Not an object-prototype lookup either.
    expect(appError(() => reg.get('constructor')).extensions['code']).toBe('BAD_USER_INPUT');
    expect(appError(() => reg.get('__proto__')).extensions['code']).toBe('BAD_USER_INPUT');
  });

  it('is the same as the exported default source', () => {
    expect(new PolicyRegistry(DEFAULT_POLICY_SOURCE).list()).toEqual(reg.list());
  });
});

describe('PolicyRegistry from a policy file', () => {
  it('reads a custom policy: levels, single MIME types, groups, fractional MB caps', async () => {
    const file = await policyFile(
      'custom.json',
      JSON.stringify({
        vehicle: { securityLevel: 'STANDARD', allowed: ['image/png', 'pdf'], maxFileSizeMB: 1.5 },
        contract: { securityLevel: 'CRITICAL', allowed: ['pdf'] },
        clip: { securityLevel: 'SENSITIVE', allowed: ['video', 'audio'], maxFileSizeMB: 500 },
      }),
    );
    const reg = PolicyRegistry.load(file);
    expect(reg.list().map((p) => p.entityType)).toEqual(['vehicle', 'contract', 'clip']);
    expect(reg.get('vehicle')).toEqual({ entityType: 'vehicle', securityLevel: 'STANDARD', allowedMediaTypes: ['image/png', 'application/pdf'], maxFileSize: 1.5 * MiB });
    expect(reg.limitFor(reg.get('vehicle'), 'image/png')).toBe(1.5 * MiB);
    expect(reg.limitFor(reg.get('vehicle'), 'application/pdf')).toBe(1.5 * MiB);
    expect(appError(() => reg.limitFor(reg.get('vehicle'), 'image/jpeg')).extensions['code']).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(reg.get('contract')).toMatchObject({ securityLevel: 'CRITICAL', maxFileSize: 20 * MiB });
    // A policy cap above every kind's is cut down to the largest kind allowed; each type keeps its own kind limit.
    expect(reg.get('clip').maxFileSize).toBe(100 * MiB);
    expect(reg.limitFor(reg.get('clip'), 'audio/mpeg')).toBe(50 * MiB);
    expect(reg.limitFor(reg.get('clip'), 'video/mp4')).toBe(100 * MiB);
    // The built-in types are gone.
    expect(appError(() => reg.get('property')).extensions['code']).toBe('BAD_USER_INPUT');
  });

  it.each([
    ['not JSON', '{ property: ', /MEDIA_POLICY_FILE .*bad-0\.json/],
    ['an unknown level', JSON.stringify({ x: { securityLevel: 'TOP_SECRET', allowed: ['pdf'] } }), /securityLevel/],
    ['an unknown type or group', JSON.stringify({ x: { securityLevel: 'STANDARD', allowed: ['image/svg+xml'] } }), /image\/svg\+xml/],
    ['an empty allowed list', JSON.stringify({ x: { securityLevel: 'STANDARD', allowed: [] } }), /allowed/],
    ['a negative size', JSON.stringify({ x: { securityLevel: 'STANDARD', allowed: ['pdf'], maxFileSizeMB: -1 } }), /maxFileSizeMB/],
    ['a bad entity type name', JSON.stringify({ 'Bad Name': { securityLevel: 'STANDARD', allowed: ['pdf'] } }), /lowercase/],
    ['an array', JSON.stringify([1, 2]), /MEDIA_POLICY_FILE/],
  ])('refuses a policy file with %s, naming the file', async (_name, content, pattern) => {
    const name = `bad-${['not JSON', 'x'].indexOf(_name) === 0 ? 0 : Math.random().toString(36).slice(2)}.json`;
    const file = await policyFile(name, content);
    let error: unknown;
    try {
      PolicyRegistry.load(file);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toContain(`MEDIA_POLICY_FILE ${file}`);
    expect((error as Error).message).toMatch(pattern);
  });

  it('refuses a missing policy file, naming it', () => {
    const file = path.join(dir, 'does-not-exist.json');
    expect(() => PolicyRegistry.load(file)).toThrow(`MEDIA_POLICY_FILE ${file}`);
  });
});

describe('security levels', () => {
  it('maxLevel picks the highest, STANDARD when none', () => {
    expect(maxLevel()).toBe('STANDARD');
    expect(maxLevel(null, undefined)).toBe('STANDARD');
    expect(maxLevel('SENSITIVE', 'STANDARD')).toBe('SENSITIVE');
    expect(maxLevel('STANDARD', 'CRITICAL', 'SENSITIVE')).toBe('CRITICAL');
  });

  it('levelAtLeast orders STANDARD < SENSITIVE < CRITICAL', () => {
    expect(levelAtLeast('CRITICAL', 'SENSITIVE')).toBe(true);
    expect(levelAtLeast('SENSITIVE', 'SENSITIVE')).toBe(true);
    expect(levelAtLeast('STANDARD', 'SENSITIVE')).toBe(false);
  });

  it('every supported type has a kind limit', () => {
    for (const t of SUPPORTED_TYPES.values()) expect(t.maxSize).toBeGreaterThan(0);
  });
});
