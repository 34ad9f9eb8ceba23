import { SpanStatusCode, trace, type Tracer } from "@opentelemetry/api";
import { startProviderSpan } from "./provider.span.js";
import { tokenHash } from "@herald/platform";
import type { Outcome, ProviderTarget, PushProvider, SendRequest, TargetResult } from "../provider.types.js";
import { APNS_PRODUCTION_URL, DEFAULT_MAX_SESSIONS, DEFAULT_REQUEST_TIMEOUT_MS, type ApnsProviderConfig } from "./apns.config.js";
import { apnsHeaders, invalidHeader } from "./apns.headers.js";
import { http2Endpoint, Http2Pool, Http2PoolError, sharedSignal } from "./http2.pool.js";
import { ApnsJwtSigner, DEFAULT_TOKEN_REFRESH_MS } from "./apns.jwt.js";
import { apnsReasonOf, networkOutcome, outcomeOf } from "./apns.outcome.js";

export { APNS_PRODUCTION_URL, APNS_SANDBOX_URL, type ApnsAuth, type ApnsProviderConfig } from "./apns.config.js";

// Apple's HTTP/2 provider API: one POST /3/device/<token> per target, all targets of a job at
// once over the shared session pool (the pool, not this class, bounds the streams in flight).
// Limits such as the payload size are left to APNs, the one authority on them; its answer is
// classified like any other.

// Device tokens are hex. Anything else could never be delivered (and must not reach the URL path).
const DEVICE_TOKEN = /^[0-9a-fA-F]{1,400}$/;

// Expired jobs are normally dropped by the runtime before they get here; a job that expires
// while it waits is refused here with this reason, without a request.
export const EXPIRED_REASON = "expired";

export class ApnsProvider implements PushProvider {
  readonly name = "apns" as const;
  private readonly client: Http2Pool;
  private readonly jwt: ApnsJwtSigner | undefined;
  private readonly tracer: Tracer;
  private readonly now: () => Date;
  private readonly timeoutMs: number;
  private readonly serverAddress: string;

  constructor(private readonly config: ApnsProviderConfig) {
    this.now = config.now ?? (() => new Date());
    this.timeoutMs = config.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.tracer = config.tracer ?? trace.getTracer("herald.sender");
    const endpoint = http2Endpoint(config.url ?? APNS_PRODUCTION_URL, config.servername);
    this.serverAddress = endpoint.servername ?? endpoint.connectHost;
    const { auth } = config;
    this.client = new Http2Pool({
      endpoint,
      maxSessions: config.maxSessions ?? DEFAULT_MAX_SESSIONS,
      ...(config.ca ? { ca: config.ca } : {}),
      ...(auth.kind === "certificate" ? { cert: auth.certPem, key: auth.keyPem } : {}),
      ...(auth.kind === "pkcs12" ? { pfx: auth.pfx } : {}),
      ...(auth.kind !== "token" && auth.passphrase ? { passphrase: auth.passphrase } : {}),
    });
    this.jwt = auth.kind === "token" ? new ApnsJwtSigner(auth, this.now, config.tokenRefreshMs ?? DEFAULT_TOKEN_REFRESH_MS) : undefined;
  }

  // Connections opened so far.
  get connects(): number {
    return this.client.connects;
  }

  // Provider tokens signed so far.
  get tokensGenerated(): number {
    return this.jwt?.generated ?? 0;
  }

  async send(request: SendRequest): Promise<TargetResult[]> {
    if (!request.targets.length) {
      const topic = request.nativeTopic ?? request.nativeCondition;
      // APNs addresses devices only; it has no server-side topics or conditions.
      return topic ? [{ target: { deviceId: "", token: topic }, outcome: { kind: "failed", reason: "apns:NativeTopicUnsupported" } }] : [];
    }
    if (request.expireAt && request.expireAt.getTime() <= this.now().getTime()) {
      return request.targets.map((target) => ({ target, outcome: { kind: "failed", reason: EXPIRED_REASON } }));
    }
    const headers = apnsHeaders(request, this.config.bundleId);
    if (invalidHeader(headers) !== undefined) {
      return request.targets.map((target) => ({ target, outcome: { kind: "failed", reason: "apns:InvalidHeader" } }));
    }
    // One provider token for the whole job: it changes at most every 20 minutes anyway.
    let jwt: string | undefined;
    try {
      jwt = this.jwt?.current();
    } catch {
      return request.targets.map((target) => ({ target, outcome: { kind: "credentials", reason: "apns:InvalidSigningKey" } }));
    }
    const jobHeaders = jwt ? { ...headers, authorization: `bearer ${jwt}` } : headers;
    const { signal, release } = sharedSignal(request.signal);
    try {
      const shared = signal ? { ...request, signal } : request;
      return await Promise.all(request.targets.map((target) => this.deliver(shared, target, jobHeaders, jwt)));
    } finally {
      release();
    }
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  private async deliver(request: SendRequest, target: ProviderTarget, headers: Record<string, string>, jwt: string | undefined): Promise<TargetResult> {
    // Never sent: the path would be wrong and APNs could only answer BadDeviceToken (or BadPath).
    if (!DEVICE_TOKEN.test(target.token)) return { target, outcome: { kind: "invalid_token", reason: "apns:BadDeviceToken" } };
    const body = target.payload ?? request.payload;
    const first = await this.attempt(request, target, headers, jwt, body, false);
    // A request APNs never saw (GOAWAY, refused stream) goes out once more at once, on another
    // connection; twice in a row is left to the runtime's backoff.
    if (!first.unsent) return { target, outcome: first.outcome };
    return { target, outcome: (await this.attempt(request, target, headers, jwt, body, true)).outcome };
  }

  private async attempt(
    request: SendRequest,
    target: ProviderTarget,
    headers: Record<string, string>,
    jwt: string | undefined,
    body: Uint8Array,
    resend: boolean,
  ): Promise<{ outcome: Outcome; unsent: boolean }> {
    if (request.signal?.aborted) return { outcome: { kind: "retry", reason: "apns:Aborted" }, unsent: false };
    const started = performance.now();
    let status = 0;
    const span = startProviderSpan(this.tracer, "apns send", () => ({
      "herald.app": request.app,
      "herald.publish_id": request.publishId,
      "herald.provider": "apns",
      "herald.attempt": request.attempt,
      "http.request.method": "POST",
      "server.address": this.serverAddress,
      // A device token identifies a person's device: only a hash goes into traces.
      "herald.token_hash": tokenHash(target.token),
      ...(resend ? { "herald.apns.resend": true } : {}),
    }));
    let outcome: Outcome;
    let unsent = false;
    try {
      const answer = await this.client.post(`/3/device/${target.token}`, headers, body, {
        timeoutMs: this.timeoutMs,
        ...(request.signal ? { signal: request.signal } : {}),
      });
      status = answer.status;
      span.setAttribute("http.response.status_code", answer.status);
      const apnsId = answer.headers["apns-id"];
      if (typeof apnsId === "string") span.setAttribute("herald.apns.id", apnsId);
      const reason = apnsReasonOf(answer);
      if (reason) span.setAttribute("herald.apns.reason", reason);
      outcome = outcomeOf(answer, this.now());
      if (jwt && reason === "ExpiredProviderToken") this.jwt?.expired(jwt);
      if (reason === "TooManyProviderTokenUpdates") {
        this.config.logger?.warn({ app: request.app, provider: "apns" }, "APNs refused a provider token change (TooManyProviderTokenUpdates); token refresh is too frequent");
      }
    } catch (err) {
      const failure = err instanceof Http2PoolError ? err : new Http2PoolError("ClientError", false, { cause: err });
      unsent = failure.unsent && !resend;
      outcome = networkOutcome(failure.code);
      span.setAttribute("error.type", failure.code);
    }
    span.setAttribute("herald.outcome", outcome.kind);
    if (outcome.kind !== "sent") span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.reason });
    span.end();
    this.config.onRequest?.(status, (performance.now() - started) / 1000);
    return { outcome, unsent };
  }
}
