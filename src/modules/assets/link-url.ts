import { BlockList, isIP } from 'node:net';
import { errors } from '../../errors/index.js';

// The URL of a LINK asset is where the service's own origin sends browsers (301
// from /tenants/{tenant}/assets/{key} and /assets/{id}/download). A link to a
// loopback, private or link-local host would make the service an open door into
// each viewer's own network (their router, 169.254.169.254 on a cloud desktop),
// under the service's name. So hosts that are not on the public internet are
// refused unless the deployment allows them (ASSET_LINKS_ALLOW_PRIVATE_HOSTS).
//
// The check is on the URL as written, after the WHATWG URL parser has normalised
// it (decimal, hex, octal and short IPv4 forms become dotted quads, IPv6 is
// compressed, IDNs become punycode). DNS names are not resolved: the service
// never fetches the URL, the browser resolves it later with its own resolver from
// its own network, so an answer here would prove nothing (split-horizon DNS, a
// name re-pointed after the check), and it would make createAsset depend on DNS.
// A public name that resolves to a private address is therefore not caught here.

/** Address ranges that are not globally reachable (RFC 6890 and its updates). */
const NON_PUBLIC = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], // "this network", 0.0.0.0
  ['10.0.0.0', 8], // private
  ['100.64.0.0', 10], // shared address space (carrier-grade NAT)
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local (cloud metadata services)
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.88.99.0', 24], // 6to4 relay anycast (deprecated)
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation
  ['203.0.113.0', 24], // documentation
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, 255.255.255.255
] as const) {
  NON_PUBLIC.addSubnet(net, prefix, 'ipv4');
}
// IPv4-mapped IPv6 (::ffff:a.b.c.d) is checked against the IPv4 ranges by BlockList itself.
for (const [net, prefix] of [
  ['::', 96], // unspecified, loopback, IPv4-compatible (deprecated)
  ['64:ff9b::', 96], // NAT64: an IPv4 address in IPv6 clothing (write the IPv4 instead)
  ['64:ff9b:1::', 48], // local-use NAT64
  ['100::', 64], // discard-only
  ['2001::', 23], // IETF protocol assignments (Teredo, benchmarking, ORCHID)
  ['2001:db8::', 32], // documentation
  ['2002::', 16], // 6to4 (deprecated): embeds an IPv4 address
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
] as const) {
  NON_PUBLIC.addSubnet(net, prefix, 'ipv6');
}

/** Special-use names that never name a public host (RFC 6761, 6762, 8375; ICANN's .internal). */
const LOCAL_SUFFIXES = ['localhost', 'local', 'localdomain', 'internal', 'home.arpa'];

/**
 * Whether a URL's hostname (as `new URL()` gives it) names a host outside the
 * public internet: a non-public IP literal, a special-use local name, or a
 * single-label name (resolved through the viewer's search domains, i.e. their
 * intranet: "http://intranet/", "http://metadata/").
 */
export function isNonPublicHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/\.$/, '');
  const literal = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  const family = isIP(literal);
  if (family) return NON_PUBLIC.check(literal, family === 4 ? 'ipv4' : 'ipv6');
  if (!host.includes('.')) return true;
  return LOCAL_SUFFIXES.some((s) => host === s || host.endsWith(`.${s}`));
}

/**
 * The URL of a LINK asset: absolute http(s), no credentials, at most 2048
 * characters, and (unless `allowNonPublicHosts`) a host on the public internet.
 * Anything else (javascript:, data:, relative, http://127.0.0.1) is BAD_USER_INPUT
 * on `field`.
 */
export function checkLinkUrl(raw: string, options: { allowNonPublicHosts: boolean; field?: string }): string {
  const field = options.field ?? 'input.url';
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw errors.badInput(field, 'url must be an absolute http(s) URL');
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || !url.hostname) throw errors.badInput(field, 'url must be an absolute http(s) URL');
  if (url.username || url.password) throw errors.badInput(field, 'url must not carry credentials');
  if (url.href.length > 2048) throw errors.badInput(field, 'url is longer than 2048 characters');
  if (!options.allowNonPublicHosts && isNonPublicHost(url.hostname)) {
    throw errors.badInput(field, `url must name a public host; ${url.hostname} is a loopback, private, link-local or local-network host`);
  }
  return url.href;
}
