import { createHmac } from "node:crypto";
import { invalidArgument, sameSecret, unauthenticated } from "@herald/platform";

// User tokens prove to Herald that the app's backend vouches for "this device belongs to user X"
// (Pusher Beams tokens): HS256 JWTs, sub = user id, iss = "herald:<app>" (or, for tokens made by
// a Pusher Beams server SDK with the app's secret, "https://<app>.pushnotifications.pusher.com"),
// exp required.
// Each app's signing secret is derived from the deployment's master secret, so nothing secret is
// stored per app; rotating bumps the version in the derivation and invalidates older tokens.
export class UserTokens {
  constructor(
    private readonly masterSecret: string,
    private readonly now: () => Date = () => new Date(),
  ) {
    if (masterSecret.length < 16) throw new Error("the master secret must be at least 16 characters");
  }

  secretFor(app: string, version: number): string {
    return createHmac("sha256", this.masterSecret).update(`herald-user-token\n${app}\n${version}`).digest("base64url");
  }

  sign(app: string, version: number, user: string, ttlSeconds: number): { token: string; expiresAt: Date } {
    const iat = Math.floor(this.now().getTime() / 1000);
    const exp = iat + ttlSeconds;
    const header = b64json({ alg: "HS256", typ: "JWT" });
    const payload = b64json({ sub: user, iss: `herald:${app}`, iat, exp });
    const signature = hmac(this.secretFor(app, version), `${header}.${payload}`);
    return { token: `${header}.${payload}.${signature}`, expiresAt: new Date(exp * 1000) };
  }

  // Returns the user id the token vouches for, or throws UNAUTHENTICATED with the reason.
  verify(app: string, version: number, token: string): string {
    return this.verifyClaims(app, version, token).user;
  }

  // The user and the private topics the token lets that user's device join (a `topics` claim:
  // an array of topic names, absent for none).
  verifyClaims(app: string, version: number, token: string): { user: string; topics: string[] } {
    if (!token) throw invalidArgument("user_token", "is required", "USER_TOKEN_REQUIRED");
    const parts = token.split(".");
    if (parts.length !== 3) throw unauthenticated("MALFORMED_USER_TOKEN", "the user token is not a JWT");
    const [header, payload, signature] = parts as [string, string, string];
    const head = parseJson(header);
    if (head?.alg !== "HS256") throw unauthenticated("MALFORMED_USER_TOKEN", "the user token must be signed with HS256");
    if (!sameSecret(hmac(this.secretFor(app, version), `${header}.${payload}`), signature)) {
      throw unauthenticated("BAD_USER_TOKEN_SIGNATURE", "the user token was not signed with this app's secret");
    }
    const claims = parseJson(payload);
    if (!claims) throw unauthenticated("MALFORMED_USER_TOKEN", "the user token payload is not JSON");
    if (claims.iss !== `herald:${app}` && claims.iss !== beamsIssuer(app)) throw unauthenticated("WRONG_USER_TOKEN_ISSUER", `the user token issuer must be "herald:${app}"`);
    if (typeof claims.exp !== "number") throw unauthenticated("MALFORMED_USER_TOKEN", "the user token has no exp claim");
    if (claims.exp * 1000 <= this.now().getTime()) throw unauthenticated("EXPIRED_USER_TOKEN", "the user token has expired");
    if (typeof claims.sub !== "string" || !claims.sub) throw unauthenticated("MALFORMED_USER_TOKEN", "the user token has no sub claim");
    const topics = claims.topics ?? [];
    if (!Array.isArray(topics) || !topics.every((t) => typeof t === "string")) throw unauthenticated("MALFORMED_USER_TOKEN", "the user token's topics claim must be an array of topic names");
    return { user: claims.sub, topics };
  }
}

// What Pusher Beams server SDKs put in `iss` (the instance id is the app id).
const beamsIssuer = (app: string) => `https://${app}.pushnotifications.pusher.com`;

const b64json = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
const hmac = (secret: string, data: string) => createHmac("sha256", secret).update(data).digest("base64url");

function parseJson(part: string): Record<string, unknown> | null {
  try {
    const value = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
    return value && typeof value === "object" ? value : null;
  } catch {
    return null;
  }
}
