import { createPrivateKey, sign } from "node:crypto";
import { AccessTokenCache, issuedToken, postForm } from "./oauth.token.js";

// A Google service account (the JSON Firebase hands out) and its OAuth2 JWT-bearer grant:
// an RS256 assertion signed with the account's key, exchanged at its token_uri for an access
// token with the firebase.messaging scope.

export interface ServiceAccount {
  project_id: string;
  client_email: string;
  private_key: string;
  token_uri: string;
}

export const FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging";
const GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token";

// Parses and checks the JSON; the message names the missing field, never a secret.
export function parseServiceAccount(json: string): ServiceAccount {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(json) as Record<string, unknown>;
  } catch {
    throw new Error("the service account file is not JSON");
  }
  for (const field of ["project_id", "client_email", "private_key"]) {
    if (typeof raw[field] !== "string" || !raw[field]) throw new Error(`the service account has no ${field}`);
  }
  try {
    createPrivateKey(raw.private_key as string);
  } catch {
    throw new Error("the service account's private_key is not a PEM private key");
  }
  return {
    project_id: raw.project_id as string,
    client_email: raw.client_email as string,
    private_key: raw.private_key as string,
    token_uri: typeof raw.token_uri === "string" && raw.token_uri ? raw.token_uri : GOOGLE_TOKEN_URI,
  };
}

export function jwtAssertion(account: ServiceAccount, nowS: number): string {
  const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const unsigned = `${b64({ alg: "RS256", typ: "JWT" })}.${b64({ iss: account.client_email, scope: FCM_SCOPE, aud: account.token_uri, iat: nowS, exp: nowS + 3600 })}`;
  return `${unsigned}.${sign("RSA-SHA256", Buffer.from(unsigned), account.private_key).toString("base64url")}`;
}

export function serviceAccountTokens(account: ServiceAccount, options: { ca?: string; timeoutMs: number; now: () => number }): AccessTokenCache {
  return new AccessTokenCache(async () => {
    const assertion = jwtAssertion(account, Math.floor(options.now() / 1000));
    const answer = await postForm(account.token_uri, { grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer", assertion }, options);
    return issuedToken(account.token_uri, answer);
  }, options.now);
}
