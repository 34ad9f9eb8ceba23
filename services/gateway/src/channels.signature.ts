import { createHash } from "node:crypto";
import { isAppId, type AdminClients } from "./admin.clients.js";
import { fromGrpcError, HttpError } from "./http.errors.js";
import type { HttpRequest } from "./http.router.js";

// Pusher Channels' request signing, checked by the registry (the secret never leaves it):
//   auth_signature = hex HMAC-SHA256(secret, METHOD \n path \n sorted query without auth_signature)
// where the query holds auth_key, auth_timestamp, auth_version=1.0, body_md5 (hex MD5 of the body,
// when there is one) and the call's own parameters, keys lowercased, values not escaped.
// The Pusher app id and key are both the Herald app id, the secret is the app's secret (its user
// token secret, derived from the installation's master key, so usable as a MAC key without being
// stored; a Herald API key cannot be one: only its hash is stored).

// Refusals are Channels' statuses with its wording, as JSON {error}: Channels answers text, but
// every refusal of the gateway is a JSON body naming the error, and Pusher's libraries only pass
// the body on. A refusal from the router or a service keeps its status and says it in words.
export const channelsFail = (status: number, message: string, field?: string) => new HttpError(status, message, message, field);
export const channelsError = (e: HttpError) => ({ error: e.message || e.error, ...(e.field ? { field: e.field } : {}) });

// The registry's replay window (SIGNATURE_WINDOW_MS); Channels allows 600 s.
const WINDOW_SECONDS = 300;

// The query as Channels signs it.
export function channelsStringToSign(method: string, path: string, query: URLSearchParams): string {
  const pairs: Array<[string, string]> = [];
  for (const [k, v] of query) if (k.toLowerCase() !== "auth_signature") pairs.push([k.toLowerCase(), v]);
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return [method.toUpperCase(), path, pairs.map(([k, v]) => `${k}=${v}`).join("&")].join("\n");
}

// Checks the request's signature for the app of the path; throws Channels' refusal otherwise.
export async function checkChannelsSignature(c: Pick<AdminClients, "apps">, req: HttpRequest, app: string): Promise<void> {
  const q = req.query;
  const key = q.get("auth_key");
  const timestamp = q.get("auth_timestamp") ?? "";
  const signature = q.get("auth_signature") ?? "";
  const version = q.get("auth_version");
  if (!key || !timestamp || !signature) throw channelsFail(401, "Missing authentication parameters: auth_key, auth_timestamp and auth_signature are required");
  if (version !== null && version !== "1.0") throw channelsFail(401, `Unsupported auth_version ${version}: only 1.0`);
  // Unknown app and wrong key look alike: Channels' answer for a key it does not know.
  if (!isAppId(app) || key !== app) throw channelsFail(401, "Unknown auth_key");
  if (!/^\d{1,12}$/.test(timestamp)) throw channelsFail(401, "auth_timestamp must be the unix time in seconds");
  const now = Math.floor(Date.now() / 1000);
  if (Math.abs(now - Number(timestamp)) > WINDOW_SECONDS) throw channelsFail(401, `Timestamp expired: Given timestamp (${timestamp}) not within ${WINDOW_SECONDS}s of server time (${now})`);
  if (req.body.length > 0) {
    const md5 = createHash("md5").update(req.body).digest("hex");
    if (q.get("body_md5") !== md5) throw channelsFail(401, "Invalid body_md5: it must be the hex MD5 of the request body");
  }
  if (!/^[0-9a-fA-F]{64}$/.test(signature)) throw channelsFail(401, "Invalid signature: auth_signature must be 64 hex characters of HMAC-SHA256");
  const stringToSign = channelsStringToSign(req.method, req.path, q);
  let verdict: { valid: boolean; reason: string };
  try {
    verdict = await c.apps.verifyRequestSignature({ appId: app, stringToSign, signature, timestamp: Number(timestamp) });
  } catch (err) {
    throw fromGrpcError(err);
  }
  // A replay still had a valid HMAC and a fresh timestamp. Channels signs no nonce: two identical
  // triggers in the same second (same event, same data) are legitimate and carry the same
  // signature, so a repeat is accepted as Channels accepts it (within the shorter window).
  if (verdict.valid || verdict.reason === "REPLAYED_SIGNATURE") return;
  if (verdict.reason === "UNKNOWN_APP") throw channelsFail(401, "Unknown auth_key");
  if (verdict.reason === "STALE_TIMESTAMP") throw channelsFail(401, `Timestamp expired: Given timestamp (${timestamp}) not within ${WINDOW_SECONDS}s of server time (${now})`);
  throw channelsFail(401, `Invalid signature: you should have sent HmacSHA256Hex(${JSON.stringify(stringToSign)}, your_secret)`);
}

// A Channels `auth` ("<key>:<hex HMAC-SHA256(secret, socket_id:channel[:channel_data])>", what
// pusher.authorizeChannel returns) checked by the registry. Its signature has no timestamp: the
// check is given the current time, and a repeat (a device subscribing again) is as good as the
// first.
export async function checkChannelAuth(c: Pick<AdminClients, "apps">, app: string, auth: string, signed: string): Promise<boolean> {
  const match = /^([^:]+):([0-9a-fA-F]{64})$/.exec(auth);
  if (!match || match[1] !== app) return false;
  let verdict: { valid: boolean; reason: string };
  try {
    verdict = await c.apps.verifyRequestSignature({ appId: app, stringToSign: signed, signature: match[2]!, timestamp: Math.floor(Date.now() / 1000) });
  } catch (err) {
    throw fromGrpcError(err);
  }
  return verdict.valid || verdict.reason === "REPLAYED_SIGNATURE";
}
