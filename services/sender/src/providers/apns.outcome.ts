import type { IncomingHttpHeaders } from "node:http2";
import type { Http2Answer as ApnsAnswer } from "./http2.pool.js";
import type { Outcome } from "../provider.types.js";
import { retryAfter } from "./retry.after.js";

// How an APNs answer (reference/providers.md, Apple's "Handling notification responses from
// APNs") maps onto the runtime's outcomes.

// 429 TooManyProviderTokenUpdates means our token changed too often on one connection: a bug on
// our side, not a load problem. The same token is accepted again once the connection's last
// change is 20 minutes old; a minute keeps the retry from hammering meanwhile.
export const TOKEN_UPDATES_RETRY_MS = 60_000;

// Tokens Apple says are dead. DeviceTokenNotForTopic is on the list too: the token belongs to
// another app, so it can never receive this app's pushes. All of them also appear when the
// sender's environment (production/sandbox) or bundle id is misconfigured; devices carry no
// environment of their own yet, so that check has to happen where the app is configured.
const DEAD_TOKEN = new Set(["Unregistered", "ExpiredToken", "BadDeviceToken", "DeviceTokenNotForTopic"]);

export function apnsReasonOf(answer: ApnsAnswer): string | undefined {
  if (!answer.body) return undefined;
  try {
    const parsed = JSON.parse(answer.body) as { reason?: unknown };
    return typeof parsed.reason === "string" && parsed.reason ? parsed.reason : undefined;
  } catch {
    return undefined;
  }
}

export function outcomeOf(answer: ApnsAnswer, now: Date): Outcome {
  const { status, headers } = answer;
  if (status === 200) {
    const id = headers["apns-id"];
    return typeof id === "string" && id ? { kind: "sent", id } : { kind: "sent" };
  }
  const code = apnsReasonOf(answer);
  const reason = `apns:${code ?? status}`;
  if ((status === 410 || status === 400) && code && DEAD_TOKEN.has(code)) {
    const invalidSince = status === 410 ? timestampOf(answer.body) : undefined;
    return invalidSince ? { kind: "invalid_token", reason, invalidSince } : { kind: "invalid_token", reason };
  }
  if (status === 403) {
    // The provider renews the token; the same target goes out again with it.
    if (code === "ExpiredProviderToken") return { kind: "retry", reason };
    return { kind: "credentials", reason };
  }
  if (status === 429 && code === "TooManyProviderTokenUpdates") return { kind: "retry", reason, retryAfterMs: TOKEN_UPDATES_RETRY_MS };
  if (status === 429 || status >= 500) {
    const retryAfterMs = retryAfter(headerOf(headers, "retry-after"), now);
    return retryAfterMs === undefined ? { kind: "retry", reason } : { kind: "retry", reason, retryAfterMs };
  }
  // Other 400s, 404/405 (our bug), 410 with another reason, 413: this message cannot go out as it is.
  return { kind: "failed", reason };
}

// Errors before any answer: the stream or the connection broke, or we gave up waiting.
export function networkOutcome(code: string | undefined): Extract<Outcome, { kind: "retry" }> {
  return { kind: "retry", reason: `apns:${code || "NetworkError"}` };
}

// The 410 body's timestamp: milliseconds since the epoch when the token stopped being valid.
function timestampOf(body: string): Date | undefined {
  try {
    const { timestamp } = JSON.parse(body) as { timestamp?: unknown };
    const ms = typeof timestamp === "number" ? timestamp : typeof timestamp === "string" && /^\d+$/.test(timestamp) ? Number(timestamp) : NaN;
    return Number.isFinite(ms) && ms > 0 ? new Date(ms) : undefined;
  } catch {
    return undefined;
  }
}


function headerOf(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}
