import { createPublicKey, verify, type KeyObject } from "node:crypto";

// The push service's check of RFC 8292 VAPID: `Authorization: vapid t=<ES256 JWT>, k=<key>`.

export interface VapidClaims {
  aud: string;
  sub: string;
  exp: number;
  // The `k` parameter, base64url.
  publicKey: string;
}

export type VapidCheck = { ok: true; claims: VapidClaims } | { ok: false; status: 401 | 403; error: string };

const MAX_LIFETIME_S = 24 * 60 * 60;

export class VapidVerifier {
  // Importing a key costs more than verifying with it; a sender uses very few keys.
  private readonly keys = new Map<string, KeyObject>();
  // Senders reuse one JWT for hours; verifying its signature once keeps the fake fast under load.
  // Time-dependent claims are still checked on every request.
  private readonly verified = new Map<string, VapidClaims>();

  constructor(
    private readonly origin: string,
    private readonly now: () => number,
  ) {}

  check(authorization: string | undefined): VapidCheck {
    const deny = (error: string, status: 401 | 403 = 401): VapidCheck => ({ ok: false, status, error });
    if (!authorization) return deny("missing Authorization");
    const match = /^vapid\s+(.*)$/is.exec(authorization.trim());
    if (!match?.[1]) return deny("Authorization scheme is not vapid");
    const params = new Map<string, string>();
    for (const part of match[1].split(",")) {
      const eq = part.indexOf("=");
      if (eq < 0) continue;
      params.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1"));
    }
    const token = params.get("t");
    const k = params.get("k");
    if (!token || !k) return deny("vapid needs both t and k");
    const cached = this.verified.get(`${k} ${token}`);
    if (cached) return this.fresh(cached);
    const key = this.key(k);
    if (!key) return deny("k is not an uncompressed P-256 public key");

    const parts = token.split(".");
    if (parts.length !== 3) return deny("t is not a JWT");
    const [h, p, s] = parts as [string, string, string];
    let header: { alg?: unknown };
    let claims: { aud?: unknown; sub?: unknown; exp?: unknown };
    try {
      header = JSON.parse(Buffer.from(h, "base64url").toString("utf8"));
      claims = JSON.parse(Buffer.from(p, "base64url").toString("utf8"));
    } catch {
      return deny("JWT header or claims are not JSON");
    }
    if (header.alg !== "ES256") return deny(`JWT alg ${String(header.alg)} is not ES256`);
    const signature = Buffer.from(s, "base64url");
    if (signature.length !== 64 || !verify("sha256", Buffer.from(`${h}.${p}`), { key, dsaEncoding: "ieee-p1363" }, signature)) {
      return deny("JWT signature does not verify with k");
    }
    if (claims.aud !== this.origin) return deny(`aud ${String(claims.aud)} is not ${this.origin}`);
    if (typeof claims.exp !== "number" || !Number.isFinite(claims.exp)) return deny("exp is missing");
    if (typeof claims.sub !== "string" || !/^(mailto:|https:)/.test(claims.sub)) return deny("sub is not a mailto: or https: contact");
    const checked: VapidClaims = { aud: claims.aud, sub: claims.sub, exp: claims.exp, publicKey: k };
    const result = this.fresh(checked);
    if (result.ok) {
      if (this.verified.size > 10_000) this.verified.clear();
      this.verified.set(`${k} ${token}`, checked);
    }
    return result;
  }

  private fresh(claims: VapidClaims): VapidCheck {
    const nowS = this.now() / 1000;
    if (claims.exp <= nowS) return { ok: false, status: 401, error: "JWT expired" };
    if (claims.exp > nowS + MAX_LIFETIME_S) return { ok: false, status: 401, error: "exp is more than 24 hours ahead" };
    return { ok: true, claims };
  }

  private key(k: string): KeyObject | undefined {
    const cached = this.keys.get(k);
    if (cached) return cached;
    const raw = Buffer.from(k, "base64url");
    if (raw.length !== 65 || raw[0] !== 4) return undefined;
    try {
      const key = createPublicKey({
        key: { kty: "EC", crv: "P-256", x: raw.subarray(1, 33).toString("base64url"), y: raw.subarray(33).toString("base64url") },
        format: "jwk",
      });
      if (this.keys.size > 1000) this.keys.clear();
      this.keys.set(k, key);
      return key;
    } catch {
      return undefined;
    }
  }
}
