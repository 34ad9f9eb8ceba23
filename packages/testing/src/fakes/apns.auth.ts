import { createPublicKey, generateKeyPairSync, randomBytes, verify, type KeyObject } from "node:crypto";

// The fake APNs' side of token-based authentication: ES256 provider tokens checked against the
// registered .p8 public keys, with Apple's timing rules (older than an hour is expired; a
// connection may switch to a new token at most every 20 minutes) and one team per connection.

export interface ApnsKeyRegistration {
  // The 10-character key id Apple shows next to the .p8 key (the JWT `kid`).
  keyId: string;
  // The team id (the JWT `iss`).
  teamId: string;
  publicKeyPem: string;
  // Apps of the team this key may push to; token auth is team-wide, so every key of a team
  // allows the topics of every registered app of that team.
  bundleId: string | string[];
}

// A test key pair: the private half goes into the sender's config, the public half into
// fake.registerKey().
export interface ApnsTestKey {
  keyId: string;
  teamId: string;
  privateKeyPem: string;
  publicKeyPem: string;
}

export function generateApnsKey(ids: { keyId?: string; teamId?: string } = {}): ApnsTestKey {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    keyId: ids.keyId ?? randomId(),
    teamId: ids.teamId ?? randomId(),
    // PKCS#8, the format of the .p8 file Apple hands out.
    privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
  };
}

// What one HTTP/2 connection has presented so far.
export interface ConnectionTokenState {
  teamId?: string;
  token?: string;
  // Fake clock (epoch ms) when `token` was first presented on this connection.
  tokenSince?: number;
}

export type TokenCheck =
  // `changed`: the connection switched to this token with this request.
  | { ok: true; teamId: string; keyId: string; iat: number; topics: ReadonlySet<string>; changed: boolean }
  | { ok: false; status: 403 | 429; reason: string };

const HOUR_MS = 60 * 60 * 1000;
const MIN_REFRESH_MS = 20 * 60 * 1000;
const CACHE_LIMIT = 10_000;

interface VerifiedToken {
  keyId: string;
  teamId: string;
  iat: number;
}

export class ApnsTokenVerifier {
  private readonly keys = new Map<string, { teamId: string; key: KeyObject }>();
  private readonly topicsByTeam = new Map<string, Set<string>>();
  // A sender reuses one token for most of an hour; verifying its signature once keeps the fake
  // fast under benchmark load. The time rules are still applied on every request.
  private readonly verified = new Map<string, VerifiedToken>();

  register(registration: ApnsKeyRegistration): void {
    this.keys.set(registration.keyId, { teamId: registration.teamId, key: createPublicKey(registration.publicKeyPem) });
    const topics = this.topicsByTeam.get(registration.teamId) ?? new Set<string>();
    for (const bundle of [registration.bundleId].flat()) topics.add(bundle);
    this.topicsByTeam.set(registration.teamId, topics);
    // A key registered again under the same id may be a different key.
    this.verified.clear();
  }

  check(authorization: string, connection: ConnectionTokenState, now: number): TokenCheck {
    const deny = (reason: string, status: 403 | 429 = 403): TokenCheck => ({ ok: false, status, reason });
    const match = /^bearer\s+(\S+)$/i.exec(authorization.trim());
    if (!match?.[1]) return deny("MissingProviderToken");
    const jwt = match[1];
    const token = this.verified.get(jwt) ?? this.verify(jwt);
    if (!token) return deny("InvalidProviderToken");
    if (now - token.iat * 1000 > HOUR_MS) return deny("ExpiredProviderToken");
    if (connection.teamId !== undefined && connection.teamId !== token.teamId) return deny("InvalidProviderToken");
    const changed = connection.token !== jwt;
    if (changed) {
      if (connection.token !== undefined && connection.tokenSince !== undefined && now - connection.tokenSince < MIN_REFRESH_MS) {
        return deny("TooManyProviderTokenUpdates", 429);
      }
      connection.token = jwt;
      connection.tokenSince = now;
    }
    connection.teamId = token.teamId;
    return { ok: true, ...token, topics: this.topicsByTeam.get(token.teamId) ?? new Set(), changed };
  }

  private verify(jwt: string): VerifiedToken | undefined {
    const parts = jwt.split(".");
    if (parts.length !== 3) return undefined;
    const [h, p, s] = parts as [string, string, string];
    let header: { alg?: unknown; kid?: unknown };
    let claims: { iss?: unknown; iat?: unknown };
    try {
      header = JSON.parse(Buffer.from(h, "base64url").toString("utf8"));
      claims = JSON.parse(Buffer.from(p, "base64url").toString("utf8"));
    } catch {
      return undefined;
    }
    if (header.alg !== "ES256" || typeof header.kid !== "string") return undefined;
    const registered = this.keys.get(header.kid);
    if (!registered || claims.iss !== registered.teamId || typeof claims.iat !== "number" || !Number.isInteger(claims.iat)) return undefined;
    // JWS ES256 signatures are raw r‖s (64 bytes), not DER.
    const signature = Buffer.from(s, "base64url");
    if (signature.length !== 64) return undefined;
    if (!verify("sha256", Buffer.from(`${h}.${p}`), { key: registered.key, dsaEncoding: "ieee-p1363" }, signature)) return undefined;
    const token = { keyId: header.kid, teamId: registered.teamId, iat: claims.iat };
    if (this.verified.size >= CACHE_LIMIT) this.verified.clear();
    this.verified.set(jwt, token);
    return token;
  }
}

function randomId(): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  return Array.from(randomBytes(10), (b) => alphabet[b % alphabet.length]).join("");
}
