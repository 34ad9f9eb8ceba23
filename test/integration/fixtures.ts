import assert from "node:assert/strict";
import { createECDH, createHmac, randomBytes } from "node:crypto";
import { errorReason, Status } from "@herald/platform";
import { common } from "@herald/proto";

export const { Provider, Platform } = common;

export const apnsToken = () => randomBytes(32).toString("hex");
export const fcmToken = () => `fcm:${randomBytes(40).toString("base64url")}`;

export function webPushToken(endpointHost = "fcm.googleapis.com"): string {
  const ecdh = createECDH("prime256v1");
  ecdh.generateKeys();
  return JSON.stringify({
    endpoint: `https://${endpointHost}/fcm/send/${randomBytes(16).toString("hex")}`,
    expirationTime: null,
    keys: { p256dh: ecdh.getPublicKey().toString("base64url"), auth: randomBytes(16).toString("base64url") },
  });
}

// What an app backend does with its user token secret (the Beams server SDK's generateToken).
export function signUserToken(secret: string, claims: Record<string, unknown>, alg = "HS256"): string {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const head = `${b64({ alg, typ: "JWT" })}.${b64(claims)}`;
  return `${head}.${createHmac("sha256", secret).update(head).digest("base64url")}`;
}

export const nowSeconds = () => Math.floor(Date.now() / 1000);

// Returns the error, for assertions on its message.
export async function expectError(promise: Promise<unknown>, code: Status, reason?: string, field?: string): Promise<Error> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught, `expected gRPC status ${Status[code]}${reason ? ` (${reason})` : ""}, the call succeeded`);
  const got = errorReason(caught);
  assert.equal(got.code, code, `expected ${Status[code]}, got ${Status[got.code ?? 2]}: ${(caught as Error).message}`);
  if (reason) assert.equal(got.reason, reason, (caught as Error).message);
  if (field) assert.equal(got.field, field, (caught as Error).message);
  return caught as Error;
}

export { Status };
