import { SpanStatusCode, trace, type Tracer } from "@opentelemetry/api";
import { startProviderSpan } from "./provider.span.js";
import { tokenHash } from "@herald/platform";
import type { Outcome, ProviderTarget, PushProvider, RequestObserver, SendRequest, TargetResult } from "../provider.types.js";
import { serviceAccountTokens, type ServiceAccount } from "./fcm.auth.js";
import { fcmErrorOf, outcomeOf } from "./fcm.outcome.js";
import { http2Endpoint, Http2Pool, Http2PoolError, sharedSignal } from "./http2.pool.js";
import { TokenEndpointError, type AccessTokenCache } from "./oauth.token.js";

// FCM HTTP v1: one POST per target (Google removed multi-token sends), all targets of a job at
// once over a pool of HTTP/2 sessions to a configurable base URL — firebase-admin's sendEach
// opens a new session per call and cannot be pointed anywhere but Google (providers.md).

export const FCM_URL = "https://fcm.googleapis.com";

export interface FcmProviderConfig {
  serviceAccount: ServiceAccount;
  // The Firebase project to send for; the service account's by default.
  projectId?: string;
  // FCM_URL by default; a fake's URL in tests.
  url?: string;
  // Extra CA (PEM) to trust, for the fake's test CA (token endpoint and FCM alike).
  ca?: string;
  maxSessions?: number;
  requestTimeoutMs?: number;
  now?: () => Date;
  tracer?: Tracer;
  // Told of every HTTP request: its status (0 without an answer) and duration (metrics).
  onRequest?: RequestObserver;
}

// A 401 with a token younger than this is not an expiry but a refusal of the credentials.
const FRESH_TOKEN_MS = 60_000;

export class FcmProvider implements PushProvider {
  readonly name = "fcm" as const;
  private readonly pool: Http2Pool;
  private readonly tokens: AccessTokenCache;
  private readonly path: string;
  private readonly now: () => Date;
  private readonly timeoutMs: number;
  private readonly tracer: Tracer;
  private readonly onRequest: RequestObserver | undefined;

  constructor(config: FcmProviderConfig) {
    this.onRequest = config.onRequest;
    this.now = config.now ?? (() => new Date());
    this.timeoutMs = config.requestTimeoutMs ?? 15_000;
    this.tracer = config.tracer ?? trace.getTracer("herald.sender");
    this.pool = new Http2Pool({ endpoint: http2Endpoint(config.url ?? FCM_URL), maxSessions: config.maxSessions ?? 2, ...(config.ca ? { ca: config.ca } : {}) });
    this.tokens = serviceAccountTokens(config.serviceAccount, { ...(config.ca ? { ca: config.ca } : {}), timeoutMs: this.timeoutMs, now: () => this.now().getTime() });
    this.path = `/v1/projects/${encodeURIComponent(config.projectId ?? config.serviceAccount.project_id)}/messages:send`;
  }

  // Access tokens fetched so far.
  get tokenFetches(): number {
    return this.tokens.fetches;
  }

  async send(request: SendRequest): Promise<TargetResult[]> {
    const native = request.nativeTopic !== undefined ? { key: "topic", value: request.nativeTopic } : request.nativeCondition !== undefined ? { key: "condition", value: request.nativeCondition } : undefined;
    const targets: Array<{ target: ProviderTarget; key: string }> = request.targets.length
      ? request.targets.map((target) => ({ target, key: "token" }))
      : native
        ? [{ target: { deviceId: "", token: native.value }, key: native.key }]
        : [];
    if (request.expireAt && request.expireAt.getTime() <= this.now().getTime()) {
      return targets.map(({ target }) => ({ target, outcome: { kind: "failed", reason: "expired" } }));
    }
    let token: string;
    try {
      token = await this.tokens.get();
    } catch (err) {
      const e = err instanceof TokenEndpointError ? err : new TokenEndpointError(String(err), false, "TokenError");
      const outcome: Outcome = e.credentials ? { kind: "credentials", reason: `fcm:oauth:${e.code}` } : { kind: "retry", reason: `fcm:oauth:${e.code}` };
      return targets.map(({ target }) => ({ target, outcome }));
    }
    const { signal, release } = sharedSignal(request.signal);
    try {
      return await Promise.all(targets.map(async ({ target, key }) => ({ target, outcome: await this.deliver(request, target, key, token, signal) })));
    } finally {
      release();
    }
  }

  async close(): Promise<void> {
    await this.pool.close();
  }

  private async deliver(request: SendRequest, target: ProviderTarget, key: string, token: string, signal: AbortSignal | undefined): Promise<Outcome> {
    const started = performance.now();
    let status = 0;
    const span = startProviderSpan(this.tracer, "fcm send", () => ({
      "herald.app": request.app,
      "herald.publish_id": request.publishId,
      "herald.provider": "fcm",
      "herald.attempt": request.attempt,
      "http.request.method": "POST",
      // A registration token identifies a person's device: only a hash goes into traces.
      "herald.token_hash": tokenHash(target.token),
    }));
    let outcome: Outcome;
    try {
      const answer = await this.pool.post(this.path, { "content-type": "application/json; charset=utf-8", authorization: `Bearer ${token}` }, messageBody(target.payload ?? request.payload, key, target.token), {
        timeoutMs: this.timeoutMs,
        ...(signal ? { signal } : {}),
      });
      status = answer.status;
      span.setAttribute("http.response.status_code", answer.status);
      outcome = outcomeOf(answer, this.now());
      if (answer.status === 401 && fcmErrorOf(answer).code === "UNAUTHENTICATED") {
        // An expired or revoked access token: the next attempt fetches a new one. Refused right
        // after it was issued, the service account itself is the problem.
        const fresh = this.tokens.ageMs(token) < FRESH_TOKEN_MS;
        this.tokens.invalidate(token);
        outcome = fresh ? { kind: "credentials", reason: "fcm:UNAUTHENTICATED" } : { kind: "retry", reason: "fcm:UNAUTHENTICATED" };
      }
    } catch (err) {
      const code = err instanceof Http2PoolError ? err.code : "ClientError";
      outcome = { kind: "retry", reason: `fcm:${code}` };
      span.setAttribute("error.type", code);
    }
    span.setAttribute("herald.outcome", outcome.kind);
    if (outcome.kind !== "sent") span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.reason });
    span.end();
    this.onRequest?.(status, (performance.now() - started) / 1000);
    return outcome;
  }
}

// {"message": {<target>, ...the job's message}}: the job's bytes go out unchanged after the target.
export function messageBody(message: Uint8Array, key: string, value: string): Buffer {
  const text = Buffer.from(message.buffer, message.byteOffset, message.byteLength).toString("utf8").trim();
  const rest = text.length > 2 ? `,${text.slice(1)}` : "}";
  return Buffer.from(`{"message":{${JSON.stringify(key)}:${JSON.stringify(value)}${rest}}`);
}
