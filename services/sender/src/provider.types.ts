// The contract between the sender runtime (Kafka consumption, retries, results, token feedback)
// and one push provider (APNs, FCM, HMS, Web Push). A provider speaks its wire protocol and
// classifies every outcome; it never retries, sleeps or deletes anything itself — the runtime
// decides that from the outcome, the same way for every provider.

export type ProviderName = "apns" | "fcm" | "hms" | "webpush";

export interface ProviderTarget {
  // Empty for raw-token sends (no registered device).
  deviceId: string;
  // APNs hex token; FCM/HMS registration token; Web Push subscription JSON.
  token: string;
  // Replaces the job payload for this target (per-device templates).
  payload?: Uint8Array;
}

export interface SendRequest {
  app: string;
  publishId: string;
  jobId: string;
  // 0 for the first try.
  attempt: number;
  targets: ProviderTarget[];
  // APNs: the JSON body. FCM/HMS: the `message` JSON without its target. Web Push: plaintext.
  payload: Uint8Array;
  // APNs: apns-* headers. Web Push: TTL, Urgency, Topic. FCM/HMS: none.
  headers: Record<string, string>;
  priority: "high" | "normal" | "low";
  // Past this instant nothing may be sent.
  expireAt?: Date;
  // FCM/HMS native topic or condition; `targets` is then empty.
  nativeTopic?: string;
  nativeCondition?: string;
  signal?: AbortSignal;
}

export type Outcome =
  // Accepted by the provider; `id` is its message id when it returns one (apns-id, FCM name).
  | { kind: "sent"; id?: string }
  // The token is dead: the registry deletes the device. Only for the explicit per-provider list:
  // APNs 410 Unregistered/ExpiredToken and 400 BadDeviceToken; FCM UNREGISTERED (and
  // INVALID_ARGUMENT naming the token); HMS illegal_tokens / 80300007; Web Push 404/410.
  | { kind: "invalid_token"; reason: string; invalidSince?: Date }
  // Transient (429, 5xx, GOAWAY, network): try again later, after retryAfterMs when the provider said.
  | { kind: "retry"; reason: string; retryAfterMs?: number }
  // This message can never be delivered to this target as it is (bad payload, too large, bad topic).
  | { kind: "failed"; reason: string }
  // Credentials or configuration are wrong (APNs 403, FCM 401/403 SENDER_ID_MISMATCH, HMS auth
  // codes, VAPID 401/403): never touch devices; the runtime stops sending for the app and
  // marks it degraded.
  | { kind: "credentials"; reason: string };

// Called once per provider HTTP request with its HTTP status (0: no answer) and its duration,
// for the request latency histogram.
export type RequestObserver = (status: number, seconds: number) => void;

export interface TargetResult {
  target: ProviderTarget;
  outcome: Outcome;
}

export interface PushProvider {
  readonly name: ProviderName;
  // Sends to every target (or the native topic/condition) and classifies each result. Rejects
  // only on programming errors; provider and network failures are outcomes. Reasons are
  // "<provider>:<provider's own code>", e.g. "apns:BadDeviceToken", "fcm:QUOTA_EXCEEDED",
  // "hms:80300007", "webpush:410".
  send(request: SendRequest): Promise<TargetResult[]>;
  // Closes pooled connections.
  close(): Promise<void>;
}
