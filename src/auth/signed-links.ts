import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Short-lived links for content routes: `?token=<exp>.<mac>` where the MAC covers
 * the tenant, the path and the expiry. A link works without further credentials
 * until it expires and only for the path it was made for.
 */
export class LinkSigner {
  constructor(private readonly key: Buffer) {}

  private mac(tenant: string, pathname: string, exp: number): string {
    return createHmac('sha256', this.key).update(`${tenant}\n${pathname}\n${exp}`).digest('base64url');
  }

  sign(tenant: string, pathname: string, ttlSeconds: number, now = Date.now()): string {
    const exp = Math.floor(now / 1000) + ttlSeconds;
    return `${tenant}.${exp}.${this.mac(tenant, pathname, exp)}`;
  }

  /** The tenant the link was made for, or null when it is forged, altered or expired. */
  verify(token: string, pathname: string, now = Date.now()): string | null {
    const parts = token.split('.');
    if (parts.length !== 3) return null;
    const [tenant, expRaw, mac] = parts;
    if (!tenant || !expRaw || !mac || !/^\d+$/.test(expRaw)) return null;
    const exp = Number(expRaw);
    if (exp * 1000 < now) return null;
    const expected = Buffer.from(this.mac(tenant, pathname, exp));
    const given = Buffer.from(mac);
    return expected.length === given.length && timingSafeEqual(expected, given) ? tenant : null;
  }
}
