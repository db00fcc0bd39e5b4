import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { LinkSigner } from '../../src/auth/signed-links.js';

const NOW = Date.UTC(2026, 10, 23, 12, 0, 0);
const PATH = '/media/0b5e7f8c-3d2a-4c1b-9e8f-7a6b5c4d3e2f/content';

describe('LinkSigner', () => {
  const signer = new LinkSigner(randomBytes(32));

  it('verifies its own link for the same path before expiry, giving the tenant', () => {
    const token = signer.sign('acme', PATH, 60, NOW);
    expect(signer.verify(token, PATH, NOW)).toBe('acme');
    expect(signer.verify(token, PATH, NOW + 59_000)).toBe('acme');
    expect(signer.verify(token, PATH, NOW + 60_000)).toBe('acme');
  });

  it('refuses an expired link', () => {
    const token = signer.sign('acme', PATH, 60, NOW);
    expect(signer.verify(token, PATH, NOW + 61_000)).toBeNull();
    expect(signer.verify(signer.sign('acme', PATH, 0, NOW - 2000), PATH, NOW)).toBeNull();
  });

  it('refuses the link on another path', () => {
    const token = signer.sign('acme', PATH, 60, NOW);
    expect(signer.verify(token, PATH.replace('content', 'variants/THUMB'), NOW)).toBeNull();
    expect(signer.verify(token, `${PATH}/`, NOW)).toBeNull();
    expect(signer.verify(token, '/media/00000000-0000-4000-8000-000000000000/content', NOW)).toBeNull();
  });

  it('refuses tampered links: another tenant, a later expiry, a changed MAC', () => {
    const token = signer.sign('acme', PATH, 60, NOW);
    const [tenant, exp, mac] = token.split('.') as [string, string, string];
    expect(tenant).toBe('acme');
    expect(signer.verify(`other.${exp}.${mac}`, PATH, NOW)).toBeNull();
    expect(signer.verify(`${tenant}.${Number(exp) + 3600}.${mac}`, PATH, NOW)).toBeNull();
    const flipped = (mac[0] === 'A' ? 'B' : 'A') + mac.slice(1);
    expect(signer.verify(`${tenant}.${exp}.${flipped}`, PATH, NOW)).toBeNull();
    expect(signer.verify(`${tenant}.${exp}.${mac.slice(0, -1)}`, PATH, NOW)).toBeNull();
    expect(signer.verify(`${tenant}.${exp}.`, PATH, NOW)).toBeNull();
  });

  it('refuses malformed tokens', () => {
    for (const t of ['', 'acme', 'acme.123', 'acme.abc.def', '.1.x', 'acme.-1.x', 'acme.1e9.x']) expect(signer.verify(t, PATH, NOW)).toBeNull();
  });

  it('refuses a link made with another key', () => {
    const other = new LinkSigner(randomBytes(32));
    expect(signer.verify(other.sign('acme', PATH, 60, NOW), PATH, NOW)).toBeNull();
  });

  it('refuses a valid link with extra dot-separated segments appended', () => {
    const token = signer.sign('acme', PATH, 60, NOW);
    expect(signer.verify(`${token}.extra`, PATH, NOW)).toBeNull();
  });
});
