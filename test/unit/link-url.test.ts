import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors/index.js';
import { checkLinkUrl, isNonPublicHost } from '../../src/modules/assets/link-url.js';

const hostOf = (url: string) => new URL(url).hostname;

describe('isNonPublicHost (on hostnames as the WHATWG URL parser gives them)', () => {
  it.each([
    // IPv4 ranges, and the forms the URL parser normalises into them
    'http://127.0.0.1/', 'http://127.255.255.254/', 'http://2130706433/', 'http://0x7f000001/', 'http://0177.0.0.1/', 'http://127.1/', 'http://0x7f.1/',
    'http://%31%32%37.0.0.1/', 'http://127.0.0.1./', 'http://0.0.0.0/', 'http://0/', 'http://10.1.2.3/', 'http://172.16.0.1/', 'http://172.31.255.255/',
    'http://192.168.0.1/', 'http://169.254.169.254/', 'http://100.64.0.1/', 'http://192.0.0.8/', 'http://192.0.2.1/', 'http://198.18.0.1/',
    'http://224.0.0.1/', 'http://255.255.255.255/', 'http://240.0.0.1/',
    // IPv6: loopback, unspecified, IPv4-mapped and -compatible, NAT64, 6to4, Teredo, ULA, link-local, site-local, multicast, documentation
    'http://[::1]/', 'http://[0:0:0:0:0:0:0:1]/', 'http://[::]/', 'http://[::ffff:127.0.0.1]/', 'http://[::ffff:a9fe:a9fe]/', 'http://[::ffff:10.0.0.1]/',
    'http://[::127.0.0.1]/', 'http://[64:ff9b::7f00:1]/', 'http://[2002:7f00:1::]/', 'http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/',
    'http://[fc00::1]/', 'http://[fd12:3456::1]/', 'http://[fe80::1]/', 'http://[fec0::1]/', 'http://[ff02::1]/', 'http://[2001:db8::1]/',
    // special-use and single-label names
    'http://localhost/', 'http://LOCALHOST./', 'http://api.localhost/', 'http://printer.local/', 'http://localhost.localdomain/',
    'http://metadata.google.internal/', 'http://nas.home.arpa/', 'http://intranet/', 'http://metadata/',
  ])('%s is not public', (url) => {
    expect(isNonPublicHost(hostOf(url))).toBe(true);
  });

  it.each([
    'https://example.com/', 'https://cdn.example.com./x', 'http://8.8.8.8/', 'http://1.1.1.1/', 'http://93.184.216.34/', 'http://172.32.0.1/', 'http://172.15.255.255/',
    'http://100.128.0.1/', 'http://169.253.1.1/', 'http://[2606:4700:4700::1111]/', 'http://[::ffff:8.8.8.8]/', 'https://xn--bcher-kva.example/', 'https://bücher.example/',
    'https://local.example.com/', 'https://localhost.example.com/', 'https://my.internal.example/',
  ])('%s is public', (url) => {
    expect(isNonPublicHost(hostOf(url))).toBe(false);
  });
});

describe('checkLinkUrl', () => {
  const refused = (url: string, allow = false): AppError => {
    try {
      checkLinkUrl(url, { allowNonPublicHosts: allow });
    } catch (e) {
      expect(e).toBeInstanceOf(AppError);
      expect((e as AppError).extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.url' });
      return e as AppError;
    }
    throw new Error(`${url} was accepted`);
  };

  it('refuses non-public hosts by default and accepts them when allowed', () => {
    expect(refused('http://169.254.169.254/latest').message).toMatch(/public host/);
    expect(checkLinkUrl('http://169.254.169.254/latest', { allowNonPublicHosts: true })).toBe('http://169.254.169.254/latest');
    expect(checkLinkUrl('http://2130706433/', { allowNonPublicHosts: true })).toBe('http://127.0.0.1/');
  });

  it('still refuses what is not an absolute http(s) URL without credentials, allowed or not', () => {
    for (const allow of [false, true]) {
      for (const url of ['javascript:alert(1)', '/relative', 'ftp://files.example/a', 'https://u:p@example.com/', `https://example.com/${'a'.repeat(2100)}`]) refused(url, allow);
    }
  });

  it('returns the normalised URL', () => {
    expect(checkLinkUrl('  https://Example.COM/a b  ', { allowNonPublicHosts: false })).toBe('https://example.com/a%20b');
  });
});
