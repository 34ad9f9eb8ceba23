import { createHmac } from "node:crypto";
import http from "node:http";
import https from "node:https";
import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { Counter, Histogram, type Registry } from "prom-client";
import { backoffDelay, DEFAULT_DENIED_NETWORKS, DeniedAddressError, NetworkPolicy, type Bus, type BusMessage, type Logger, type Subscription } from "@herald/platform";
import { BusGroups, BusTopics, events } from "@herald/proto";
import type { AppRecord, Store } from "@herald/store";
import type { UserTokens } from "./usertoken.jwt.js";
import { deliveryFailed, deviceReceipt, publishCompleted, tokenInvalidated, type AppEvent } from "./webhook.events.js";

// Signed webhooks. Two stages, each at-least-once on Kafka:
// 1. events → calls: publish endings, failed deliveries, dead tokens and receipts become one
//    WebhookDelivery per matching endpoint of the app, on herald.webhooks;
// 2. calls: each is POSTed, signed with the app's secret; a failure goes to
//    herald.webhook-retries with exponential backoff (honouring Retry-After), and after
//    maxAttempts (or a 4xx that retrying cannot fix) to herald.webhook-deadletter.
// An offset is committed only once the next step is on Kafka, so a crash repeats a call rather
// than losing it: receivers dedupe by X-Herald-Webhook-Id.

export interface WebhookOptions {
  maxAttempts: number;
  retryInitialMs: number;
  retryMaxMs: number;
  timeoutMs: number;
  // Networks (CIDR) a call may not connect to, checked on the resolved address.
  deniedNetworks: readonly string[];
}

export const DEFAULT_WEBHOOK_OPTIONS: WebhookOptions = { maxAttempts: 8, retryInitialMs: 1000, retryMaxMs: 300_000, timeoutMs: 10_000, deniedNetworks: DEFAULT_DENIED_NETWORKS };

interface Answer {
  status: number;
  retryAfter: string | undefined;
}

export class WebhookMetrics {
  readonly deliveries: Counter<"app" | "type" | "result">;
  readonly requests: Histogram<"status">;

  constructor(registry: Registry) {
    this.deliveries = new Counter({ name: "herald_webhook_deliveries_total", help: "Webhook calls by result: delivered, retrying, dead_lettered", labelNames: ["app", "type", "result"], registers: [registry] });
    this.requests = new Histogram({ name: "herald_webhook_request_duration_seconds", help: "Webhook HTTP requests by status (0: no answer)", labelNames: ["status"], buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [registry] });
  }
}

interface Outcome {
  ok: boolean;
  // Retrying cannot help (a 4xx other than 408 / 429, a denied address).
  permanent: boolean;
  retryAfterMs: number;
  error: string;
}

const APP_CACHE_MS = 10_000;

export const WEBHOOK_TRACER = "herald.webhooks";

export class WebhookWorker {
  private readonly apps = new Map<string, { app: AppRecord | null; until: number }>();
  private readonly subscriptions: Subscription[] = [];

  constructor(
    private readonly d: { store: Store; bus: Bus; userTokens: UserTokens; logger: Logger; now: () => Date; options: WebhookOptions; network: NetworkPolicy; metrics?: WebhookMetrics },
  ) {}

  async start(): Promise<void> {
    const { bus } = this.d;
    const sources: Record<string, (value: Uint8Array) => AppEvent | undefined> = {
      [BusTopics.publishEvents]: (v) => publishCompleted(events.PublishFinished.decode(v)),
      [BusTopics.results]: (v) => deliveryFailed(events.DeliveryResult.decode(v)),
      [BusTopics.tokenFeedback]: (v) => tokenInvalidated(events.TokenFeedback.decode(v)),
      [BusTopics.receipts]: (v) => deviceReceipt(events.Receipt.decode(v)),
    };
    this.subscriptions.push(
      await bus.subscribe({
        group: BusGroups.webhookEvents,
        topics: Object.keys(sources),
        handler: async (m: BusMessage) => {
          const event = sources[m.topic]?.(m.value);
          if (event) await this.enqueue(event);
        },
      }),
      await bus.subscribe({ group: BusGroups.webhooks, topics: [BusTopics.webhooks], handler: (m) => this.deliver(events.WebhookDelivery.decode(m.value)) }),
      await bus.subscribe({ group: BusGroups.webhookRetries, topics: [BusTopics.webhookRetries], handler: (m) => this.deliver(events.WebhookDelivery.decode(m.value)) }),
    );
  }

  async stop(): Promise<void> {
    await Promise.all(this.subscriptions.splice(0).map((s) => s.stop()));
  }

  // One call per endpoint that wants this type of event.
  async enqueue(event: AppEvent): Promise<void> {
    const app = await this.app(event.app);
    const endpoints = (app?.webhooks ?? []).filter((w) => w.events.length === 0 || w.events.includes(event.type));
    if (endpoints.length === 0) return;
    const body = JSON.stringify({ id: event.id, type: event.type, app: event.app, createdAt: event.at.toISOString(), data: event.data });
    // Pusher Channels' envelope: the event as one of `events`, named by its type.
    const pusherBody = JSON.stringify({ time_ms: event.at.getTime(), events: [{ ...event.data, name: event.type, id: event.id }] });
    const createdAt = this.d.now();
    await this.d.bus.publish(
      BusTopics.webhooks,
      endpoints.map((w) => ({ key: callKey(event.app, w.url), value: events.WebhookDelivery.encode({ app: event.app, eventId: event.id, type: event.type, url: w.url, body: w.format === "pusher" ? pusherBody : body, attempt: 0, createdAt, lastError: "" }).finish() })),
    );
  }

  async deliver(call: events.WebhookDelivery): Promise<void> {
    // A retry waits for its time here, on the retry topic, so first attempts never queue behind it.
    const wait = (call.notBefore?.getTime() ?? 0) - this.d.now().getTime();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const app = await this.app(call.app);
    // An app deleted meanwhile, or an endpoint removed from it: the call has nobody to go to.
    if (!app || !app.webhooks.some((w) => w.url === call.url)) {
      this.d.logger.info({ app: call.app, event: call.eventId }, "webhook dropped: the endpoint is no longer configured");
      return;
    }
    // The endpoint's format as it is now: a call enqueued before a change keeps its body, and is
    // signed for the format it is sent in.
    const format = app.webhooks.find((w) => w.url === call.url)?.format;
    const outcome = await this.post(call, this.d.userTokens.secretFor(app.id, app.secretVersion), format);
    const labels = { app: call.app, type: call.type };
    if (outcome.ok) {
      this.d.metrics?.deliveries.inc({ ...labels, result: "delivered" });
      return;
    }
    const attempt = call.attempt + 1;
    const { options } = this.d;
    if (outcome.permanent || attempt >= options.maxAttempts) {
      await this.d.bus.publish(BusTopics.webhookDeadLetter, [{ key: callKey(call.app, call.url), value: events.WebhookDelivery.encode({ ...call, attempt, lastError: outcome.error }).finish() }]);
      this.d.metrics?.deliveries.inc({ ...labels, result: "dead_lettered" });
      this.d.logger.warn({ app: call.app, event: call.eventId, url: call.url, attempt, error: outcome.error }, "webhook dead-lettered");
      return;
    }
    const delay = Math.max(outcome.retryAfterMs, backoffDelay(attempt, { initialMs: options.retryInitialMs, maxMs: options.retryMaxMs }));
    const notBefore = new Date(this.d.now().getTime() + delay);
    await this.d.bus.publish(BusTopics.webhookRetries, [{ key: callKey(call.app, call.url), value: events.WebhookDelivery.encode({ ...call, attempt, notBefore, lastError: outcome.error }).finish() }]);
    this.d.metrics?.deliveries.inc({ ...labels, result: "retrying" });
  }

  private async post(call: events.WebhookDelivery, secret: string, format?: "pusher"): Promise<Outcome> {
    const timestamp = String(Math.floor(this.d.now().getTime() / 1000));
    const signature = createHmac("sha256", secret).update(`${timestamp}.${call.body}`).digest("hex");
    // Pusher's validators check X-Pusher-Key against the app's key (the app id) and
    // X-Pusher-Signature, the HMAC of the body alone (its format has no timestamp).
    const signing: Record<string, string> =
      format === "pusher"
        ? { "x-pusher-key": call.app, "x-pusher-signature": createHmac("sha256", secret).update(call.body).digest("hex") }
        : { "x-herald-timestamp": timestamp, "x-herald-signature": `v1=${signature}` };
    const started = performance.now();
    let status = 0;
    // One CLIENT span per attempt, a child of the bus message's context: the trace of whatever
    // caused the event (the publish, the delivery, the receipt), retries included.
    const span = trace.getTracer(WEBHOOK_TRACER).startSpan("webhook send", {
      kind: SpanKind.CLIENT,
      attributes: {
        "herald.app": call.app,
        "herald.webhook.event": call.type,
        "herald.webhook.id": call.eventId,
        "herald.attempt": call.attempt + 1,
        "http.request.method": "POST",
        ...urlAttributes(call.url),
      },
    });
    const settle = (outcome: Outcome, errorType = String(status)): Outcome => {
      if (status > 0) span.setAttribute("http.response.status_code", status);
      if (!outcome.ok) {
        span.setAttribute("error.type", errorType);
        span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.error });
      }
      return outcome;
    };
    try {
      const answer = await this.request(call, {
        "content-type": "application/json",
        "user-agent": "Herald-Webhooks/0.1",
        "x-herald-webhook-id": call.eventId,
        "x-herald-event": call.type,
        ...signing,
        "x-herald-attempt": String(call.attempt + 1),
      });
      status = answer.status;
      if (status >= 200 && status < 300) return settle({ ok: true, permanent: false, retryAfterMs: 0, error: "" });
      const retryAfter = Number(answer.retryAfter);
      const permanent = status >= 400 && status < 500 && status !== 408 && status !== 429;
      return settle({ ok: false, permanent, retryAfterMs: answer.retryAfter && Number.isFinite(retryAfter) ? retryAfter * 1000 : 0, error: `HTTP ${status}` });
    } catch (err) {
      span.recordException(err instanceof Error ? err : new Error(String(err)));
      // The address is checked again on every attempt, so a later answer of the name cannot help.
      if (err instanceof DeniedAddressError) return settle({ ok: false, permanent: true, retryAfterMs: 0, error: `refused: ${err.message}` }, "denied_address");
      const timedOut = (err as Error).name === "TimeoutError";
      return settle({ ok: false, permanent: false, retryAfterMs: 0, error: timedOut ? `no answer within ${this.d.options.timeoutMs} ms` : (err as Error).message }, timedOut ? "timeout" : ((err as NodeJS.ErrnoException).code ?? (err as Error).name));
    } finally {
      span.end();
      this.d.metrics?.requests.observe({ status: String(status) }, (performance.now() - started) / 1000);
    }
  }

  // node:http rather than fetch, for the lookup hook: the network policy sees every resolved
  // address. Redirects are not followed (an answer, not an instruction: the signed body goes only
  // where configured).
  private request(call: events.WebhookDelivery, headers: Record<string, string>): Promise<Answer> {
    const url = new URL(call.url);
    this.d.network.checkHost(url.hostname);
    const client = url.protocol === "https:" ? https : http;
    return new Promise<Answer>((resolve, reject) => {
      const req = client.request(url, { method: "POST", headers: { ...headers, "content-length": String(Buffer.byteLength(call.body)) }, lookup: this.d.network.lookup, signal: AbortSignal.timeout(this.d.options.timeoutMs) }, (res) => {
        res.resume();
        const retryAfter = res.headers["retry-after"];
        resolve({ status: res.statusCode ?? 0, retryAfter: Array.isArray(retryAfter) ? retryAfter[0] : retryAfter });
      });
      // A timeout aborts with the TimeoutError as its cause.
      req.on("error", (err) => reject(err.name === "AbortError" && err.cause instanceof Error ? err.cause : err));
      req.end(call.body);
    });
  }

  private async app(id: string): Promise<AppRecord | null> {
    const hit = this.apps.get(id);
    if (hit && hit.until > Date.now()) return hit.app;
    const app = await this.d.store.apps.get(id);
    if (this.apps.size > 10_000) this.apps.clear();
    this.apps.set(id, { app, until: Date.now() + APP_CACHE_MS });
    return app;
  }
}

// Calls are keyed by endpoint, not by app: a partition is worked in order, so a receiver that
// is slow to answer holds up only the endpoints that hash with it, not all of its app's calls.
function callKey(app: string, url: string): string {
  return `${app}\n${url}`;
}

// The endpoint as a span may show it: scheme, host, port and path. The query (receivers put
// tokens there) and any user:password (refused at configuration, dropped here all the same) stay
// out of traces.
export function urlAttributes(raw: string): Record<string, string | number> {
  const url = new URL(raw);
  const port = url.port ? Number(url.port) : url.protocol === "https:" ? 443 : 80;
  return { "url.full": `${url.protocol}//${url.host}${url.pathname}`, "server.address": url.hostname, "server.port": port };
}
