import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export interface SignedIdPayload {
  /** Direct upload id (and future media id). */
  id: string;
  tenant: string;
  /** subjectTag() of the user who created it: only they complete it. */
  owner: string;
  /** Expiry, seconds since the epoch. */
  exp: number;
  /** Base64 MD5 the PUT must match, when the client declared one. */
  md5?: string;
}

/**
 * Stands for a user's subject inside a signed id: a truncated SHA-256 (128 bits),
 * so that ids stay short and a subject never appears in an upload URL or a log.
 */
export function subjectTag(subject: string): string {
  return createHash('sha256').update('direct-upload-owner\0').update(subject).digest('base64url').slice(0, 22);
}

export type SignedIdCheck = { ok: true; payload: SignedIdPayload } | { ok: false; reason: 'malformed' | 'forged' | 'expired' };

/**
 * Tamper-proof direct upload ids: base64url(JSON payload) + "." + HMAC-SHA-256
 * over it. The payload names the tenant and the expiry; the database row makes
 * them single-use.
 */
export class SignedIds {
  constructor(private readonly key: Buffer) {}

  private mac(body: string): string {
    return createHmac('sha256', this.key).update('direct-upload\0').update(body).digest('base64url');
  }

  sign(payload: SignedIdPayload): string {
    const fields: unknown[] = [payload.id, payload.tenant, payload.owner, payload.exp];
    if (payload.md5) fields.push(payload.md5);
    const body = Buffer.from(JSON.stringify(fields)).toString('base64url');
    return `${body}.${this.mac(body)}`;
  }

  verify(signedId: string, now = Date.now()): SignedIdCheck {
    const [body, mac, extra] = signedId.split('.');
    if (!body || !mac || extra !== undefined || signedId.length > 512) return { ok: false, reason: 'malformed' };
    const expected = Buffer.from(this.mac(body));
    const given = Buffer.from(mac);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) return { ok: false, reason: 'forged' };
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
    } catch {
      return { ok: false, reason: 'malformed' };
    }
    if (!Array.isArray(parsed) || (parsed.length !== 4 && parsed.length !== 5)) return { ok: false, reason: 'malformed' };
    const [id, tenant, owner, exp, md5] = parsed as [unknown, unknown, unknown, unknown, unknown];
    if (typeof id !== 'string' || typeof tenant !== 'string' || typeof owner !== 'string' || typeof exp !== 'number') return { ok: false, reason: 'malformed' };
    if (md5 !== undefined && typeof md5 !== 'string') return { ok: false, reason: 'malformed' };
    if (exp * 1000 <= now) return { ok: false, reason: 'expired' };
    return { ok: true, payload: { id, tenant, owner, exp, ...(md5 !== undefined ? { md5 } : {}) } };
  }
}
