import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { unauthenticated } from "./errors.js";

export type Principal =
  | { kind: "admin" }
  | { kind: "app"; app: string; role: "server" | "client"; keyId: string };

export interface KeyLookupResult {
  app: string;
  role: "server" | "client";
  keyId: string;
  revoked: boolean;
}

export interface Authenticator {
  // `authorization` is the raw metadata value ("Bearer <key>").
  authenticate(authorization: string | undefined): Promise<Principal>;
}

// Compares two secrets (HMACs, derived keys) in constant time for equal lengths.
export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export const hashApiKey = (key: string): string => createHash("sha256").update(key).digest("hex");

// Keys carry their app for humans reading configs; authority comes only from the stored hash.
// The prefix (the readable head plus 4 random characters) identifies a key in listings.
export function generateApiKey(app: string, role: "server" | "client"): { secret: string; prefix: string } {
  const head = `hk_${role === "server" ? "s" : "c"}_${app}_`;
  const secret = `${head}${randomBytes(24).toString("base64url")}`;
  return { secret, prefix: secret.slice(0, head.length + 4) };
}

export interface ApiKeyAuthenticatorOptions {
  // The admin key in plaintext (from a Secret) or its SHA-256 hex; either may be absent.
  adminKey?: string;
  adminKeySha256?: string;
  lookup: (hash: string) => Promise<KeyLookupResult | null>;
  // Positive and negative lookups are cached this long; revocation takes effect within it.
  cacheTtlMs?: number;
  now?: () => number;
}

// Bearer API keys: stored only as SHA-256 hashes (keys are 192-bit random, so a fast hash is
// enough), cached briefly so the hot publish path does not hit the database per call.
export class ApiKeyAuthenticator implements Authenticator {
  private readonly cache = new Map<string, { result: KeyLookupResult | null; until: number }>();
  private readonly adminHash: Buffer | undefined;
  private readonly ttl: number;
  private readonly now: () => number;

  constructor(private readonly options: ApiKeyAuthenticatorOptions) {
    const hex = options.adminKeySha256 ?? (options.adminKey ? hashApiKey(options.adminKey) : undefined);
    this.adminHash = hex ? Buffer.from(hex, "hex") : undefined;
    this.ttl = options.cacheTtlMs ?? 10_000;
    this.now = options.now ?? Date.now;
  }

  async authenticate(authorization: string | undefined): Promise<Principal> {
    const key = parseBearer(authorization);
    const hash = hashApiKey(key);
    if (this.adminHash && timingSafeEqual(Buffer.from(hash, "hex"), this.adminHash)) return { kind: "admin" };
    const found = await this.cachedLookup(hash);
    if (!found) throw unauthenticated("UNKNOWN_API_KEY", "the API key is not valid");
    if (found.revoked) throw unauthenticated("REVOKED_API_KEY", "the API key was revoked");
    return { kind: "app", app: found.app, role: found.role, keyId: found.keyId };
  }

  forget(): void {
    this.cache.clear();
  }

  private async cachedLookup(hash: string): Promise<KeyLookupResult | null> {
    const now = this.now();
    const hit = this.cache.get(hash);
    if (hit && hit.until > now) return hit.result;
    const result = await this.options.lookup(hash);
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(hash, { result, until: now + this.ttl });
    return result;
  }
}

function parseBearer(authorization: string | undefined): string {
  if (!authorization) throw unauthenticated("MISSING_API_KEY", "send `authorization: Bearer <api key>`");
  const match = /^Bearer\s+(\S+)$/i.exec(authorization.trim());
  if (!match?.[1]) throw unauthenticated("MALFORMED_AUTHORIZATION", "expected `authorization: Bearer <api key>`");
  return match[1];
}
