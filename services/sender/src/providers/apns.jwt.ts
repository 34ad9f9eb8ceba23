import { createPrivateKey, sign, type KeyObject } from "node:crypto";

// The APNs provider token: an ES256 JWT over {iss: team, iat} with the .p8 key's id as kid.
// Apple refuses tokens older than an hour (403 ExpiredProviderToken) and connections whose token
// changes more often than every 20 minutes (429 TooManyProviderTokenUpdates), so one token is
// shared by every connection and replaced only when it reaches `refreshMs`, or when Apple says
// it expired.

export const MIN_TOKEN_REFRESH_MS = 20 * 60 * 1000;
export const MAX_TOKEN_AGE_MS = 60 * 60 * 1000;
export const DEFAULT_TOKEN_REFRESH_MS = 50 * 60 * 1000;

export interface ApnsSigningKey {
  keyId: string;
  teamId: string;
  privateKeyPem: string;
}

export class ApnsJwtSigner {
  private key: KeyObject | undefined;
  private token: { jwt: string; issuedAt: number } | undefined;
  // Tokens made so far: tests check the refresh rules with it.
  generated = 0;

  constructor(
    private readonly signingKey: ApnsSigningKey,
    private readonly now: () => Date,
    private readonly refreshMs = DEFAULT_TOKEN_REFRESH_MS,
  ) {
    if (!(refreshMs >= MIN_TOKEN_REFRESH_MS && refreshMs < MAX_TOKEN_AGE_MS)) {
      throw new RangeError(`APNs token refresh must be between 20 and 60 minutes, got ${refreshMs} ms`);
    }
  }

  // The bearer token to send now. Throws when the key is unusable (not a P-256 private key).
  current(): string {
    const now = this.now().getTime();
    // A clock that went backwards keeps the token: a new one would count as a change anyway.
    if (this.token && now - this.token.issuedAt < this.refreshMs) return this.token.jwt;
    const header = base64url({ alg: "ES256", kid: this.signingKey.keyId });
    const claims = base64url({ iss: this.signingKey.teamId, iat: Math.floor(now / 1000) });
    const input = `${header}.${claims}`;
    // JWS wants the raw r‖s signature, not DER.
    const signature = sign("sha256", Buffer.from(input), { key: this.privateKey(), dsaEncoding: "ieee-p1363" }).toString("base64url");
    this.token = { jwt: `${input}.${signature}`, issuedAt: now };
    this.generated++;
    return this.token.jwt;
  }

  // Apple answered ExpiredProviderToken to `jwt`: the next current() makes a new one, unless a
  // concurrent request already replaced it (one expiry seen by many streams is one renewal).
  expired(jwt: string): void {
    if (this.token?.jwt === jwt) this.token = undefined;
  }

  private privateKey(): KeyObject {
    if (this.key) return this.key;
    const key = createPrivateKey(this.signingKey.privateKeyPem);
    if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
      throw new Error("the APNs signing key is not a P-256 (ES256) private key");
    }
    this.key = key;
    return key;
  }
}

function base64url(value: object): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}
