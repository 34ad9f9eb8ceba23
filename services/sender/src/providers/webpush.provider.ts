import http, { type IncomingHttpHeaders, type OutgoingHttpHeaders } from "node:http";
import https from "node:https";
import { SpanStatusCode, trace, type Tracer } from "@opentelemetry/api";
import { startProviderSpan } from "./provider.span.js";
import { checkEndpoint, type TokenRules } from "@herald/store";
import webPush from "web-push";
import { tokenHash } from "@herald/platform";
import type { Outcome, ProviderTarget, PushProvider, RequestObserver, SendRequest, TargetResult } from "../provider.types.js";
import { networkOutcome, outcomeOf } from "./webpush.outcome.js";
import { pushOptions, type PushOptions } from "./webpush.options.js";
import { VapidSigner, type VapidKeys } from "./webpush.vapid.js";

// Web Push (RFC 8030/8291/8292) over HTTP/1.1 keep-alive. web-push does the aes128gcm
// encryption and the VAPID JWT; the request itself is ours, so the connection pool, the
// timeout, the SSRF guard and the refusal of redirects are under our control.

export interface WebPushProviderConfig {
  vapid: VapidKeys;
  // The endpoint allow-list (SSRF guard); tests allow 127.0.0.1/localhost and http.
  tokenRules: TokenRules;
  // Extra CA (PEM) to trust, e.g. a test CA in front of fakes.
  ca?: string;
  // Keep-alive sockets per push-service host.
  maxSockets?: number;
  // Per request, from dispatch to the end of the response.
  timeoutMs?: number;
  now?: () => Date;
  // Defaults to the global provider's "herald.sender" tracer.
  tracer?: Tracer;
  // Told of every HTTP request: its status (0 without an answer) and duration (metrics).
  onRequest?: RequestObserver;
}

// 4096-byte record − 16 salt − 4 rs − 1 idlen − 65 key − 16 tag − 1 padding delimiter.
export const MAX_PLAINTEXT = 3993;

class RequestError extends Error {
  constructor(readonly code: "Timeout" | "Aborted") {
    super(code);
  }
}

interface Subscription {
  endpoint: string;
  keys: { p256dh: string; auth: string };
}

export class WebPushProvider implements PushProvider {
  readonly name = "webpush" as const;
  private readonly httpsAgent: https.Agent;
  private readonly httpAgent: http.Agent;
  private readonly vapid: VapidSigner;
  private readonly tracer: Tracer;
  private readonly now: () => Date;
  private readonly maxSockets: number;
  private readonly timeoutMs: number;

  constructor(private readonly config: WebPushProviderConfig) {
    this.now = config.now ?? (() => new Date());
    this.maxSockets = config.maxSockets ?? 64;
    this.timeoutMs = config.timeoutMs ?? 30_000;
    const pool = { keepAlive: true, maxSockets: this.maxSockets, scheduling: "lifo" as const };
    this.httpsAgent = new https.Agent({ ...pool, ...(config.ca ? { ca: config.ca } : {}) });
    this.httpAgent = new http.Agent(pool);
    this.vapid = new VapidSigner(config.vapid, this.now);
    this.tracer = config.tracer ?? trace.getTracer("herald.sender");
  }

  async send(request: SendRequest): Promise<TargetResult[]> {
    if (!request.targets.length) {
      const topic = request.nativeTopic ?? request.nativeCondition;
      // Web Push has no server-side topics; only subscriptions can be addressed.
      return topic ? [{ target: { deviceId: "", token: topic }, outcome: { kind: "failed", reason: "webpush:NativeTopicUnsupported" } }] : [];
    }
    const options = pushOptions(request, this.now());
    const results: TargetResult[] = new Array(request.targets.length);
    let next = 0;
    // At most one request per pooled socket from this call: more would only queue in the agent,
    // where the timeout is already running.
    const worker = async () => {
      for (let i = next++; i < request.targets.length; i = next++) {
        const target = request.targets[i]!;
        const outcome: Outcome = "error" in options ? { kind: "failed", reason: options.error } : await this.sendOne(request, target, options);
        results[i] = { target, outcome };
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.maxSockets, request.targets.length) }, worker));
    return results;
  }

  async close(): Promise<void> {
    this.httpsAgent.destroy();
    this.httpAgent.destroy();
  }

  private async sendOne(request: SendRequest, target: ProviderTarget, options: PushOptions): Promise<Outcome> {
    const subscription = parseSubscription(target.token);
    if (!subscription) return { kind: "failed", reason: "webpush:InvalidSubscription" };
    let url: URL;
    try {
      // Before any connection: the endpoint is user input. A refusal is "failed", never
      // "invalid_token" — the registry accepted it, and tightening the policy must not delete devices.
      url = checkEndpoint(subscription.endpoint, this.config.tokenRules);
    } catch {
      return { kind: "failed", reason: "webpush:EndpointNotAllowed" };
    }
    const payload = target.payload ?? request.payload;
    if (payload.byteLength > MAX_PLAINTEXT) return { kind: "failed", reason: "webpush:PayloadTooLarge" };
    if (request.signal?.aborted) return { kind: "retry", reason: "webpush:Aborted" };

    let authorization: string;
    try {
      authorization = this.vapid.authorization(url.origin);
    } catch {
      return { kind: "credentials", reason: "webpush:InvalidVapidKeys" };
    }
    let details: ReturnType<typeof webPush.generateRequestDetails>;
    try {
      details = webPush.generateRequestDetails(subscription, Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength), {
        // null, not undefined: skips web-push's module-global VAPID details; we sign (and cache) ourselves.
        vapidDetails: null as unknown as undefined,
        contentEncoding: "aes128gcm",
        TTL: options.ttl,
        urgency: options.urgency,
        ...(options.topic ? { topic: options.topic } : {}),
      });
    } catch {
      // p256dh not a P-256 point, auth too short: this subscription can never be encrypted to.
      return { kind: "failed", reason: "webpush:InvalidSubscription" };
    }
    const headers: OutgoingHttpHeaders = { ...details.headers, Authorization: authorization };

    const started = performance.now();
    let status = 0;
    const span = startProviderSpan(this.tracer, "webpush send", () => ({
      "herald.app": request.app,
      "herald.publish_id": request.publishId,
      "herald.provider": "webpush",
      "herald.attempt": request.attempt,
      "http.request.method": "POST",
      "server.address": url.hostname,
      // The subscription (its endpoint is a bearer capability for the device) stays out of
      // traces: only its hash, the same as every provider's (tokenHash of the token as stored).
      "herald.token_hash": tokenHash(target.token),
    }));
    let outcome: Outcome;
    try {
      const response = await this.post(url, headers, details.body ?? Buffer.alloc(0), request.signal);
      status = response.status;
      span.setAttribute("http.response.status_code", response.status);
      outcome = outcomeOf(response.status, response.headers, this.now());
    } catch (err) {
      const failure = err instanceof RequestError ? { kind: "retry" as const, reason: `webpush:${err.code}` } : networkOutcome(err);
      span.setAttribute("error.type", failure.reason);
      outcome = failure;
    }
    span.setAttribute("herald.outcome", outcome.kind);
    if (outcome.kind !== "sent") span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.reason });
    span.end();
    this.config.onRequest?.(status, (performance.now() - started) / 1000);
    return outcome;
  }

  private post(url: URL, headers: OutgoingHttpHeaders, body: Buffer, signal?: AbortSignal): Promise<{ status: number; headers: IncomingHttpHeaders }> {
    return new Promise((resolve, reject) => {
      const secure = url.protocol === "https:";
      let settled = false;
      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        fn();
      };
      const req = (secure ? https : http).request(url, { method: "POST", agent: secure ? this.httpsAgent : this.httpAgent, headers }, (res) => {
        // Read to the end so the socket goes back to the pool; the body carries nothing we act on.
        res.resume();
        res.on("end", () => settle(() => resolve({ status: res.statusCode ?? 0, headers: res.headers })));
        res.on("error", (err) => settle(() => reject(err)));
        res.on("close", () => settle(() => reject(Object.assign(new Error("response closed early"), { code: "ECONNRESET" }))));
      });
      const timer = setTimeout(() => req.destroy(new RequestError("Timeout")), this.timeoutMs);
      const onAbort = () => req.destroy(new RequestError("Aborted"));
      signal?.addEventListener("abort", onAbort, { once: true });
      req.on("error", (err) => settle(() => reject(err)));
      req.end(body);
    });
  }
}

function parseSubscription(token: string): Subscription | undefined {
  try {
    const sub = JSON.parse(token) as { endpoint?: unknown; keys?: { p256dh?: unknown; auth?: unknown } };
    const { endpoint, keys } = sub;
    if (typeof endpoint !== "string" || typeof keys?.p256dh !== "string" || typeof keys.auth !== "string") return undefined;
    return { endpoint, keys: { p256dh: keys.p256dh, auth: keys.auth } };
  } catch {
    return undefined;
  }
}
