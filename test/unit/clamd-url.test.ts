import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { errors, httpStatusOf } from '../../src/errors/index.js';
import { ClamdScanner, formatClamdAddress, parseClamdUrl, sanitiseSignature } from '../../src/scan/clamd.js';

describe('parseClamdUrl', () => {
  it.each([
    ['tcp://127.0.0.1:3310', { kind: 'tcp', host: '127.0.0.1', port: 3310 }],
    ['tcp://clamd.internal:3310/', { kind: 'tcp', host: 'clamd.internal', port: 3310 }],
    ['TCP://clamd:1', { kind: 'tcp', host: 'clamd', port: 1 }],
    ['localhost:3310', { kind: 'tcp', host: 'localhost', port: 3310 }],
    ['  clamav-clamd.svc.cluster.local:65535 ', { kind: 'tcp', host: 'clamav-clamd.svc.cluster.local', port: 65535 }],
    ['[::1]:3310', { kind: 'tcp', host: '::1', port: 3310 }],
    ['tcp://[fd00::5]:3310', { kind: 'tcp', host: 'fd00::5', port: 3310 }],
    ['unix:///run/clamav/clamd.ctl', { kind: 'unix', path: '/run/clamav/clamd.ctl' }],
    ['/var/run/clamav/clamd.ctl', { kind: 'unix', path: '/var/run/clamav/clamd.ctl' }],
  ])('%s', (raw, expected) => {
    expect(parseClamdUrl(raw)).toEqual(expected);
  });

  it.each([
    ['', /is empty/],
    ['clamd', /has no port \(clamd usually listens on 3310\)/],
    ['tcp://clamd', /has no port/],
    ['clamd:', /has no port/],
    ['clamd:0', /port outside 1-65535/],
    ['clamd:65536', /port outside 1-65535/],
    ['clamd:33a', /not host:port/],
    ['http://clamd:3310', /has the scheme http:/],
    ['tcp://clamd:3310/scan', /has a path/],
    ['tcp://u:p@clamd:3310', /user name/],
    ['tcp://:3310', /no valid host name/],
    ['tcp://cl_amd:3310', /no valid host name/],
    ['[::zz]:3310', /invalid IPv6/],
    ['::1:3310', /not host:port/],
    ['unix://clamd.sock', /not an absolute socket path/],
    ['unix:/run/clamd.sock', /three slashes/],
    ['unix:///run/clamav/', /names a directory/],
    [`/${'a'.repeat(120)}`, /longer than 107 bytes/],
    ['clamd.sock', /has no port/],
  ])('refuses %j in one line', (raw, message) => {
    let error: Error | undefined;
    try {
      parseClamdUrl(raw);
    } catch (e) {
      error = e as Error;
    }
    expect(error?.message).toMatch(message);
    expect(error?.message).toContain('expected tcp://host:port, host:port, unix:///path/to/clamd.sock or an absolute socket path');
    expect(error?.message).not.toContain('\n');
  });

  it('formats addresses back as URLs', () => {
    expect(formatClamdAddress(parseClamdUrl('[::1]:3310'))).toBe('tcp://[::1]:3310');
    expect(formatClamdAddress(parseClamdUrl('clamd:3310'))).toBe('tcp://clamd:3310');
    expect(formatClamdAddress(parseClamdUrl('/run/c.sock'))).toBe('unix:///run/c.sock');
  });

  it('ClamdScanner refuses a bad URL or timeout when it is made, not at the first scan', () => {
    expect(() => new ClamdScanner({ url: 'nowhere', timeoutMs: 1000 })).toThrow(/has no port/);
    expect(() => new ClamdScanner({ url: 'clamd:3310', timeoutMs: 0 })).toThrow(/timeoutMs/);
  });
});

describe('sanitiseSignature', () => {
  it('keeps ClamAV names as they are', () => {
    for (const name of ['Eicar-Test-Signature.UNOFFICIAL', 'Win.Test.EICAR_HDB-1', 'Doc.Dropper.Agent-1540415', 'PUA.Win.Packer.Upx-4']) expect(sanitiseSignature(name)).toBe(name);
  });

  it('replaces control characters, spaces, quotes and markup, and bounds the length', () => {
    expect(sanitiseSignature('Evil\nname\x1b[31m "<script>')).toBe('Evil_name_[31m___script_');
    expect(sanitiseSignature('é')).toBe('_');
    expect(sanitiseSignature('')).toBe('unknown');
    const long = sanitiseSignature('A'.repeat(10_000));
    expect(long.length).toBe(100);
    expect(long.endsWith('...')).toBe(true);
  });
});

describe('scanner error codes', () => {
  it('MALWARE_DETECTED is 422 and names the signature; SCANNER_UNAVAILABLE is 503 with the reason, the cause kept from clients', () => {
    expect(httpStatusOf.MALWARE_DETECTED).toBe(422);
    expect(httpStatusOf.SCANNER_UNAVAILABLE).toBe(503);
    const m = errors.malwareDetected('Eicar-Test-Signature');
    expect(m.status).toBe(422);
    expect(m.message).toBe('The file was refused: the malware scanner recognised it (Eicar-Test-Signature)');
    expect(m.extensions).toMatchObject({ code: 'MALWARE_DETECTED', signature: 'Eicar-Test-Signature', field: 'file' });
    const cause = new Error('clamd at tcp://10.0.0.5:3310 is unreachable (ECONNREFUSED)');
    const u = errors.scannerUnavailable('unreachable', cause);
    expect(u.status).toBe(503);
    expect(u.message).toBe('The malware scanner is unavailable, try again later');
    expect(u.extensions).toEqual({ code: 'SCANNER_UNAVAILABLE', reason: 'unreachable' });
    expect((u as { cause?: unknown }).cause).toBe(cause);
    expect(errors.scannerUnavailable('too-large').message).toMatch(/beyond the size the scanner accepts/);
  });
});

describe('clamd settings', () => {
  const refused = (env: Record<string, string>) => {
    try {
      loadConfig(env);
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      return (e as Error).message;
    }
    throw new Error(`expected ${JSON.stringify(env)} to be refused`);
  };

  it('no CLAMD_URL: no scanning', () => {
    expect(loadConfig({}).clamd).toBeUndefined();
    expect(loadConfig({ CLAMD_URL: '  ' }).clamd).toBeUndefined();
  });

  it('CLAMD_URL with the defaults: 30 s, fail closed', () => {
    const c = loadConfig({ CLAMD_URL: 'tcp://clamd:3310' }).clamd;
    expect(c).toEqual({ url: 'tcp://clamd:3310', address: { kind: 'tcp', host: 'clamd', port: 3310 }, timeoutMs: 30_000, failOpen: false });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('reads CLAMD_TIMEOUT_MS and CLAMD_FAIL_OPEN', () => {
    expect(loadConfig({ CLAMD_URL: '/run/clamav/clamd.ctl', CLAMD_TIMEOUT_MS: '5000', CLAMD_FAIL_OPEN: 'true' }).clamd).toMatchObject({
      address: { kind: 'unix', path: '/run/clamav/clamd.ctl' },
      timeoutMs: 5000,
      failOpen: true,
    });
    expect(loadConfig({ CLAMD_URL: 'clamd:3310', CLAMD_FAIL_OPEN: '0' }).clamd?.failOpen).toBe(false);
  });

  it('names each bad value', () => {
    expect(refused({ CLAMD_URL: 'clamd' })).toMatch(/CLAMD_URL: "clamd" has no port/);
    const m = refused({ CLAMD_URL: 'clamd:3310', CLAMD_TIMEOUT_MS: '30s', CLAMD_FAIL_OPEN: 'yes' });
    expect(m).toMatch(/CLAMD_TIMEOUT_MS: must be a whole number of milliseconds/);
    expect(m).toMatch(/CLAMD_FAIL_OPEN: must be true or false/);
    expect(refused({ CLAMD_URL: 'clamd:3310', CLAMD_TIMEOUT_MS: '10' })).toMatch(/CLAMD_TIMEOUT_MS: must be at least 100/);
    expect(refused({ CLAMD_URL: 'clamd:3310', CLAMD_TIMEOUT_MS: '3600000' })).toMatch(/CLAMD_TIMEOUT_MS: must be at most 600000/);
  });

  it('refuses scanner settings without CLAMD_URL (they would silently scan nothing)', () => {
    expect(refused({ CLAMD_FAIL_OPEN: 'true' })).toMatch(/CLAMD_URL: required when CLAMD_TIMEOUT_MS or CLAMD_FAIL_OPEN is set/);
    expect(refused({ CLAMD_TIMEOUT_MS: '1000' })).toMatch(/CLAMD_URL: required/);
  });
});
