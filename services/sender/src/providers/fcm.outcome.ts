import type { Outcome } from "../provider.types.js";
import type { Http2Answer } from "./http2.pool.js";
import { retryAfter } from "./retry.after.js";

// How an FCM HTTP v1 answer (reference/providers.md) maps onto the runtime's outcomes.

// Google asks for at least a minute after QUOTA_EXCEEDED when it sends no Retry-After.
export const QUOTA_RETRY_MS = 60_000;

interface FcmErrorBody {
  error?: { code?: number; message?: string; status?: string; details?: Array<{ "@type"?: string; errorCode?: string; fieldViolations?: Array<{ field?: string }> }> };
}

export function fcmErrorOf(answer: Http2Answer): { code: string; message: string; tokenField: boolean } {
  let body: FcmErrorBody = {};
  try {
    body = JSON.parse(answer.body) as FcmErrorBody;
  } catch {
    // A proxy's HTML: the status decides.
  }
  const details = body.error?.details ?? [];
  const code = details.find((d) => d["@type"]?.endsWith("google.firebase.fcm.v1.FcmError"))?.errorCode ?? body.error?.status ?? String(answer.status);
  const message = body.error?.message ?? "";
  const tokenField = details.some((d) => d.fieldViolations?.some((v) => v.field === "message.token")) || /registration token/i.test(message);
  return { code, message, tokenField };
}

export function outcomeOf(answer: Http2Answer, now: Date): Outcome {
  if (answer.status === 200) {
    let name: unknown;
    try {
      name = (JSON.parse(answer.body) as { name?: unknown }).name;
    } catch {
      name = undefined;
    }
    return typeof name === "string" ? { kind: "sent", id: name } : { kind: "sent" };
  }
  const { code, tokenField } = fcmErrorOf(answer);
  const reason = `fcm:${code}`;
  const after = retryAfter(answer.headers["retry-after"], now);
  switch (code) {
    case "UNREGISTERED":
      return { kind: "invalid_token", reason };
    case "INVALID_ARGUMENT":
      // Only a verdict on the token itself deletes the device; anything else is our message.
      return tokenField ? { kind: "invalid_token", reason } : { kind: "failed", reason };
    case "SENDER_ID_MISMATCH":
    case "THIRD_PARTY_AUTH_ERROR":
    case "PERMISSION_DENIED":
      return { kind: "credentials", reason };
    case "QUOTA_EXCEEDED":
      return { kind: "retry", reason, retryAfterMs: after ?? QUOTA_RETRY_MS };
  }
  if (answer.status === 429 || answer.status >= 500) return after === undefined ? { kind: "retry", reason } : { kind: "retry", reason, retryAfterMs: after };
  if (answer.status === 401 || answer.status === 403) return { kind: "credentials", reason };
  return { kind: "failed", reason };
}
