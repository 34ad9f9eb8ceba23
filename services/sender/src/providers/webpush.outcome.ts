import type { IncomingHttpHeaders } from "node:http";
import type { Outcome } from "../provider.types.js";
import { retryAfter } from "./retry.after.js";

// How a push service's answer (RFC 8030 §5, RFC 8292 §4) maps onto the runtime's outcomes.

export function outcomeOf(status: number, headers: IncomingHttpHeaders, now: Date): Outcome {
  const reason = `webpush:${status}`;
  if (status >= 200 && status < 300) {
    // The Location header names the message resource: the closest thing to a message id.
    return headers.location ? { kind: "sent", id: headers.location } : { kind: "sent" };
  }
  // 404 / 410 are the only answers that mean the subscription itself is dead.
  if (status === 404 || status === 410) return { kind: "invalid_token", reason };
  // VAPID rejected (bad signature, wrong key for the subscription, expired JWT): a configuration
  // problem of the app, never of the device.
  if (status === 401 || status === 403) return { kind: "credentials", reason };
  if (status === 429 || status === 408 || status >= 500) {
    const retryAfterMs = retryAfter(headers["retry-after"], now);
    return retryAfterMs === undefined ? { kind: "retry", reason } : { kind: "retry", reason, retryAfterMs };
  }
  // 3xx included: redirects are never followed, because the new location would bypass the
  // endpoint allow-list.
  return { kind: "failed", reason };
}


export function networkOutcome(err: unknown): Extract<Outcome, { kind: "retry" }> {
  const code = (err as { code?: unknown })?.code;
  return { kind: "retry", reason: `webpush:${typeof code === "string" && code ? code : "NetworkError"}` };
}
