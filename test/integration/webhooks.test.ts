import assert from "node:assert/strict";
import { createHmac, timingSafeEqual } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import Pusher from "pusher";
import { startEmbedded, startFakeProviders, type EmbeddedApp, type EmbeddedServer, type FakeProviders } from "@herald/cli";
import { createClient, createLogger, DEFAULT_DENIED_NETWORKS, startTracing, type Subscription, type Tracing } from "@herald/platform";
import { apps, BusTopics, dispatch, events, Platform, Provider, registry } from "@herald/proto";
import { eventually, requireEnv, scenarioToken } from "@herald/testing";
import { expectError, fcmToken, Status } from "./fixtures.js";

// Signed webhooks, end to end on the embedded server: real publishes through the fake providers
// produce publish.completed, delivery.failed and token.invalidated, ReportReceipt produces
// device.acknowledged and device.opened; a receiver checks each signature the way the README's
// recipe does; failures are retried with backoff and dead-lettered after bounded attempts.

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  json: { id: string; type: string; app: string; createdAt: string; data: Record<string, any>; events?: Array<Record<string, any>> };
}

// The README's verification recipe.
function verify(secret: string, headers: IncomingHttpHeaders, body: string, toleranceSeconds = 300): boolean {
  const timestamp = String(headers["x-herald-timestamp"]);
  const signature = String(headers["x-herald-signature"] ?? "").replace(/^v1=/, "");
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > toleranceSeconds) return false;
  const expected = createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex");
  return expected.length === signature.length && timingSafeEqual(Buffer.from(expected), Buffer.from(signature));
}

describe("signed webhooks", () => {
  let server: EmbeddedServer;
  let fakes: FakeProviders;
  let receiver: Server;
  let app: EmbeddedApp;
  let deadLetters: Subscription;
  const received: Received[] = [];
  const dead: events.WebhookDelivery[] = [];
  // Path → the statuses to answer in turn (then 200).
  const script = new Map<string, number[]>([["/flaky", [503]], ["/down", [500, 500, 500, 500]], ["/refuses", [400]]]);

  before(async () => {
    receiver = createServer((req, res) => {
      let body = "";
      req.on("data", (d) => (body += d));
      req.on("end", () => {
        received.push({ path: req.url!, headers: req.headers, body, json: JSON.parse(body) });
        // /hangs never answers: the worker's timeout must give up on it.
        if (req.url === "/hangs") return;
        const status = script.get(req.url!)?.shift() ?? 200;
        res.writeHead(status, status === 503 ? { "retry-after": "0" } : {}).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    const base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    const dir = mkdtempSync(join(tmpdir(), "herald-webhooks-"));
    writeFileSync(
      join(dir, "hooks.pushapp.yaml"),
      JSON.stringify({
        apiVersion: "herald.dev/v1alpha1",
        kind: "PushApp",
        metadata: { name: "hooks" },
        spec: {
          providers: { apns: { environment: "sandbox", bundleId: "com.herald.hooks", auth: { token: { keyId: "ABC123DEFG", teamId: "DEF123GHIJ", keySecretRef: { name: "s", key: "k" } } } }, fcm: { projectId: "hooks-project", serviceAccountSecretRef: { name: "s", key: "k" } }, webpush: { subject: "mailto:ops@example.com", vapidKeysSecretRef: { name: "s", key: "k" } } },
          webhooks: [
            { url: `${base}/all` },
            { url: `${base}/completed-only`, events: ["publish.completed"] },
            { url: `${base}/flaky`, events: ["device.opened"] },
            { url: `${base}/down`, events: ["device.acknowledged"] },
            { url: `${base}/refuses`, events: ["device.acknowledged"] },
            { url: `${base}/hangs`, events: ["device.acknowledged"] },
            { url: `${base}/pusher`, events: ["publish.completed", "device.opened"], format: "pusher" },
          ],
        },
      }),
    );
    fakes = await startFakeProviders(createLogger({ service: "t", level: "silent" }), { record: true });
    server = await startEmbedded({ port: 0, appsDir: dir, devFile: false, providerFor: fakes.providerFor, tokenRules: fakes.tokenRules, webhooks: { maxAttempts: 3, retryInitialMs: 20, retryMaxMs: 100, timeoutMs: 1500 }, logger: createLogger({ service: "t", level: "silent" }) });
    app = server.apps.find((a) => a.id === "hooks")!;
    deadLetters = await server.bus.subscribe({ group: "test-webhook-deadletters", topics: [BusTopics.webhookDeadLetter], handler: async (m) => void dead.push(events.WebhookDelivery.decode(m.value)) });
  });
  after(async () => {
    await deadLetters?.stop();
    await server?.stop();
    await fakes?.close();
    receiver?.closeAllConnections();
    await new Promise((r) => receiver?.close(r));
  });

  const clients = () => ({
    devices: createClient(registry.RegistryServiceService, registry, server.address, { apiKey: app.serverKey }),
    publishes: createClient(dispatch.DispatchServiceService, dispatch, server.address, { apiKey: app.serverKey }),
  });
  const at = (path: string, type?: string) => received.filter((r) => r.path === path && (!type || r.json.type === type));
  const done = async (publishes: ReturnType<typeof clients>["publishes"], id: string) => {
    for await (const u of publishes.watchPublish({ id })) if (u.publish && ["PUBLISH_STATE_DONE"].includes(dispatch.publishStateToJSON(u.publish.state))) return u.publish;
    throw new Error("the publish did not finish");
  };

  it("signs publish.completed with the app's secret, with a stable id, to every endpoint that wants it", async () => {
    const { devices, publishes } = clients();
    try {
      await devices.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken(), topics: ["launch"] });
      const { id } = await publishes.publish({ recipients: { target: { $case: "topics", value: { values: ["launch"] } } }, notification: { alert: { title: "Go" } } });
      await done(publishes, id);
      const [call] = await eventually(() => {
        const got = at("/all", "publish.completed").filter((r) => r.json.data.publishId === id);
        return got.length ? got : undefined;
      }, "publish.completed at /all");
      assert.ok(verify(app.userTokenSecret, call!.headers, call!.body), "the signature verifies with the app's secret");
      assert.equal(verify("someone-elses-secret", call!.headers, call!.body), false);
      assert.equal(verify(app.userTokenSecret, call!.headers, call!.body.replace("hooks", "other")), false, "a changed body does not verify");
      assert.equal(call!.headers["x-herald-event"], "publish.completed");
      assert.equal(call!.headers["x-herald-webhook-id"], `publish.completed:${id}`);
      assert.equal(call!.headers["content-type"], "application/json");
      assert.deepEqual(
        { type: call!.json.type, app: call!.json.app, state: call!.json.data.state, targeted: call!.json.data.counts.targeted, sent: call!.json.data.counts.sent },
        { type: "publish.completed", app: "hooks", state: "done", targeted: 1, sent: 1 },
      );
      await eventually(() => at("/completed-only", "publish.completed").some((r) => r.json.data.publishId === id), "publish.completed at /completed-only");
    } finally {
      devices.close();
      publishes.close();
    }
  });

  it("reports token.invalidated and delivery.failed from the providers' verdicts, and only where asked", async () => {
    const { devices, publishes } = clients();
    try {
      const dead = scenarioToken("unregistered");
      const refusing = fakes.webpush.subscribe({ scenario: { kind: "status", status: 400 } });
      await devices.registerDevice({ provider: Provider.PROVIDER_APNS, platform: Platform.PLATFORM_IOS, token: dead, topics: ["verdicts"] });
      await devices.registerDevice({ provider: Provider.PROVIDER_WEBPUSH, platform: Platform.PLATFORM_WEB, token: refusing.token, topics: ["verdicts"] });
      const { id } = await publishes.publish({ recipients: { target: { $case: "topics", value: { values: ["verdicts"] } } }, notification: { alert: { title: "x" } } });
      await done(publishes, id);
      const invalidated = await eventually(() => at("/all", "token.invalidated").find((r) => r.json.data.token === dead), "token.invalidated");
      assert.equal(invalidated.json.data.provider, "apns");
      assert.equal(invalidated.json.data.reason, "apns:Unregistered");
      assert.match(invalidated.json.data.invalidSince, /^\d{4}-/);
      const failed = await eventually(() => at("/all", "delivery.failed").find((r) => r.json.data.publishId === id), "delivery.failed");
      assert.equal(failed.json.data.provider, "webpush");
      assert.deepEqual(failed.json.data.failedByReason, { "webpush:400": 1 });
      assert.ok(verify(app.userTokenSecret, failed.headers, failed.body));
      assert.equal(at("/completed-only").filter((r) => r.json.type !== "publish.completed").length, 0, "an endpoint gets only its event types");
    } finally {
      devices.close();
      publishes.close();
    }
  });

  it("reports receipts, retries a failing endpoint with the same event id, and dead-letters after bounded attempts", async () => {
    const { devices, publishes } = clients();
    try {
      const { device } = await devices.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken(), topics: ["receipts"] });
      const { id } = await publishes.publish({ recipients: { target: { $case: "topics", value: { values: ["receipts"] } } }, notification: { alert: { title: "x" } } });
      await done(publishes, id);
      await publishes.reportReceipt({ publishId: id, deviceId: device!.id, status: dispatch.ReceiptStatus.RECEIPT_STATUS_DELIVERED });
      await publishes.reportReceipt({ publishId: id, deviceId: device!.id, status: dispatch.ReceiptStatus.RECEIPT_STATUS_OPENED });

      // /flaky answers 503 (Retry-After: 0) once: the same event comes again, attempt 2, and is delivered.
      const flaky = await eventually(() => (at("/flaky", "device.opened").length >= 2 ? at("/flaky", "device.opened") : undefined), "device.opened retried at /flaky");
      assert.deepEqual(flaky.map((r) => r.headers["x-herald-attempt"]), ["1", "2"]);
      assert.equal(flaky[0]!.headers["x-herald-webhook-id"], flaky[1]!.headers["x-herald-webhook-id"]);
      assert.equal(flaky[0]!.json.data.deviceId, device!.id);
      assert.ok(flaky.every((r) => verify(app.userTokenSecret, r.headers, r.body)), "each attempt is signed afresh");

      // /down fails every time: three attempts (maxAttempts 3), then the dead-letter topic.
      const down = await eventually(() => dead.find((d) => d.url.endsWith("/down")), "the /down call dead-lettered");
      assert.equal(down.attempt, 3);
      assert.equal(down.lastError, "HTTP 500");
      assert.equal(down.type, "device.acknowledged");
      assert.equal(at("/down").length, 3);
      // /refuses answers 400: retrying cannot fix that, so one attempt and the dead letters.
      const refused = await eventually(() => dead.find((d) => d.url.endsWith("/refuses")), "the /refuses call dead-lettered");
      assert.equal(refused.attempt, 1);
      assert.equal(at("/refuses").length, 1);
      // /hangs never answers: each attempt times out, and a timeout is retried like a 5xx.
      const hung = await eventually(() => dead.find((d) => d.url.endsWith("/hangs")), "the /hangs call dead-lettered");
      assert.equal(hung.attempt, 3);
      assert.equal(hung.lastError, "no answer within 1500 ms");
      assert.equal(at("/hangs").length, 3);
      assert.ok(at("/all", "device.acknowledged").some((r) => r.json.data.deviceId === device!.id));
      assert.ok(at("/all", "device.opened").some((r) => r.json.data.deviceId === device!.id));
    } finally {
      devices.close();
      publishes.close();
    }
  });

  // A receiver written for Pusher Channels checks calls with Pusher's own library (after the
  // receipts test, whose /flaky endpoint answers its first device.opened with 503).
  const validator = (key: string, secret: string) => new Pusher({ appId: key, key, secret, host: "127.0.0.1" });
  it("sends Pusher-format calls that Pusher's webhook validator accepts, to endpoints that ask for them", async () => {
    const { devices, publishes } = clients();
    try {
      const { device } = await devices.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken(), topics: ["pusher-hooks"] });
      const { id } = await publishes.publish({ recipients: { target: { $case: "topics", value: { values: ["pusher-hooks"] } } }, notification: { alert: { title: "Go" } } });
      await done(publishes, id);
      await publishes.reportReceipt({ publishId: id, deviceId: device!.id, status: dispatch.ReceiptStatus.RECEIPT_STATUS_OPENED });
      const pusher = validator("hooks", app.userTokenSecret);
      const completed = await eventually(() => at("/pusher").find((r) => r.json.events?.[0]?.publishId === id), "publish.completed at /pusher");
      const hook = pusher.webhook({ headers: completed.headers, rawBody: completed.body });
      assert.ok(hook.isValid(), "Pusher's validator accepts the call");
      const [event] = hook.getEvents() as Array<Record<string, any>>;
      assert.equal(event!.name, "publish.completed");
      assert.equal(event!.id, `publish.completed:${id}`);
      assert.equal(event!.state, "done");
      assert.ok(Math.abs(hook.getTime().getTime() - Date.now()) < 60_000, "time_ms is the event's time");
      assert.equal(completed.headers["x-herald-signature"], undefined, "no Herald signature on a Pusher-format call");
      assert.equal(completed.headers["x-herald-webhook-id"], `publish.completed:${id}`, "the dedupe id is still sent");

      const opened = await eventually(() => at("/pusher").find((r) => r.json.events?.[0]?.name === "device.opened" && r.json.events[0].deviceId === device!.id), "device.opened at /pusher");
      assert.ok(pusher.webhook({ headers: opened.headers, rawBody: opened.body }).isValid());
      // Another app's secret, or a changed body, does not validate.
      assert.equal(validator("hooks", "someone-elses-secret").webhook({ headers: opened.headers, rawBody: opened.body }).isValid(), false);
      assert.equal(pusher.webhook({ headers: opened.headers, rawBody: opened.body.replace("device.opened", "device.opened ") }).isValid(), false);
      assert.equal(validator("other", app.userTokenSecret).webhook({ headers: opened.headers, rawBody: opened.body }).isValid(), false, "X-Pusher-Key names the app");
      assert.equal(at("/pusher").filter((r) => r.json.events?.[0]?.name === "device.acknowledged").length, 0, "only the event types asked for");
    } finally {
      devices.close();
      publishes.close();
    }
  });
});

// The SSRF guard: denied networks are refused when an app is configured (IP literals) and when a
// call connects (names, checked on the resolved address), and such a call is dead-lettered at once.
describe("webhook network guard", () => {
  let server: EmbeddedServer;
  let fakes: FakeProviders;
  let receiver: Server;
  let deadLetters: Subscription;
  const hits: string[] = [];
  const dead: events.WebhookDelivery[] = [];
  let port = 0;

  before(async () => {
    receiver = createServer((req, res) => {
      hits.push(req.url!);
      req.resume();
      res.end();
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    port = (receiver.address() as AddressInfo).port;
    const dir = mkdtempSync(join(tmpdir(), "herald-webhook-guard-"));
    writeFileSync(
      join(dir, "guarded.pushapp.yaml"),
      JSON.stringify({
        apiVersion: "herald.dev/v1alpha1",
        kind: "PushApp",
        metadata: { name: "guarded" },
        // "localhost" passes configuration (a name) and is refused once it resolves to loopback.
        spec: { providers: { fcm: { projectId: "guarded-project", serviceAccountSecretRef: { name: "s", key: "k" } } }, webhooks: [{ url: `http://localhost:${port}/guarded` }] },
      }),
    );
    fakes = await startFakeProviders(createLogger({ service: "t", level: "silent" }));
    server = await startEmbedded({
      port: 0,
      appsDir: dir,
      devFile: false,
      providerFor: fakes.providerFor,
      tokenRules: fakes.tokenRules,
      webhooks: { maxAttempts: 3, retryInitialMs: 20, retryMaxMs: 100, timeoutMs: 2000, deniedNetworks: [...DEFAULT_DENIED_NETWORKS, "127.0.0.0/8", "::1/128"] },
      logger: createLogger({ service: "t", level: "silent" }),
    });
    deadLetters = await server.bus.subscribe({ group: "test-webhook-guard-deadletters", topics: [BusTopics.webhookDeadLetter], handler: async (m) => void dead.push(events.WebhookDelivery.decode(m.value)) });
  });
  after(async () => {
    await deadLetters?.stop();
    await server?.stop();
    await fakes?.close();
    await new Promise((r) => receiver?.close(r));
  });

  it("refuses webhook URLs whose IP literal is in a denied network, naming the field", async () => {
    const admin = createClient(apps.AppServiceService, apps, server.address, { apiKey: server.adminKey });
    try {
      for (const url of ["http://169.254.169.254/latest/meta-data/", `http://127.0.0.1:${port}/x`, `http://[::1]:${port}/x`, "http://[::ffff:169.254.169.254]/x"]) {
        const err = await expectError(admin.updateApp({ id: "guarded", webhooks: [{ url: `https://hooks.example.com/ok`, events: [] }, { url, events: [] }] }), Status.INVALID_ARGUMENT, "INVALID_WEBHOOK", "webhooks[1].url");
        assert.match(err.message, /denied network/, url);
      }
      const { app } = await admin.getApp({ id: "guarded" });
      assert.deepEqual(app!.webhooks.map((w) => w.url), [`http://localhost:${port}/guarded`], "a refused update changes nothing");
    } finally {
      admin.close();
    }
  });

  it("dead-letters a call whose name resolves into a denied network without connecting", async () => {
    const app = server.apps.find((a) => a.id === "guarded")!;
    const devices = createClient(registry.RegistryServiceService, registry, server.address, { apiKey: app.serverKey });
    const publishes = createClient(dispatch.DispatchServiceService, dispatch, server.address, { apiKey: app.serverKey });
    try {
      await devices.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken(), topics: ["guard"] });
      const { id } = await publishes.publish({ recipients: { target: { $case: "topics", value: { values: ["guard"] } } }, notification: { alert: { title: "x" } } });
      const call = await eventually(() => dead.find((d) => d.type === "publish.completed" && d.body.includes(id)), "the call dead-lettered");
      assert.equal(call.attempt, 1, "a denied address is not retried");
      assert.match(call.lastError, /^refused: localhost resolves to (127\.0\.0\.1|::1), which is in a denied network$/);
      assert.deepEqual(hits, [], "the receiver was never called");
    } finally {
      devices.close();
      publishes.close();
    }
  });
});

// Jaeger's query API, as much of it as the check below reads.
interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  references: Array<{ refType: string; spanID: string }>;
  tags: Array<{ key: string; value: unknown }>;
}
interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
}

// Each webhook attempt is a CLIENT span in the trace of what caused the event (here the publish
// call), exported over OTLP to the real Jaeger of test/infra and read back from its query API.
describe("webhook calls in Jaeger", () => {
  const jaeger = requireEnv("HERALD_JAEGER_QUERY_URL");
  const suffix = Math.random().toString(36).slice(2, 8);
  const appId = `traced-${suffix}`;
  // Its own service name, so the search finds this run's spans only.
  const service = `herald-webhooks-test-${suffix}`;
  const pod = `herald-registry-${suffix}-x7k2p`;
  let tracing: Tracing;
  let server: EmbeddedServer;
  let fakes: FakeProviders;
  let receiver: Server;
  const answers = new Map<string, number[]>([["/flaky", [503]]]);

  before(async () => {
    // Export within a fraction of a second instead of the SDK's 5 s; the pod name as the chart
    // passes it (OTEL_RESOURCE_ATTRIBUTES), for README's "one pod's spans" recipe.
    process.env.OTEL_BSP_SCHEDULE_DELAY = "100";
    process.env.OTEL_RESOURCE_ATTRIBUTES = `k8s.pod.name=${pod},k8s.namespace.name=herald`;
    tracing = startTracing({ serviceName: service, otlpEndpoint: requireEnv("HERALD_OTLP_TRACES_URL") });
    delete process.env.OTEL_RESOURCE_ATTRIBUTES;
    receiver = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        const path = req.url!.split("?")[0]!;
        const status = answers.get(path)?.shift() ?? 200;
        res.writeHead(status, status === 503 ? { "retry-after": "0" } : {}).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    const base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    const dir = mkdtempSync(join(tmpdir(), "herald-webhook-traces-"));
    writeFileSync(
      join(dir, `${appId}.pushapp.yaml`),
      JSON.stringify({
        apiVersion: "herald.dev/v1alpha1",
        kind: "PushApp",
        metadata: { name: appId },
        spec: {
          providers: { fcm: { projectId: "traced-project", serviceAccountSecretRef: { name: "s", key: "k" } } },
          webhooks: [
            // The query is the receiver's secret: it must not reach the trace.
            { url: `${base}/ok?token=query-secret-${suffix}`, events: ["publish.completed"] },
            { url: `${base}/flaky`, events: ["publish.completed"] },
          ],
        },
      }),
    );
    fakes = await startFakeProviders(createLogger({ service: "t", level: "silent" }));
    server = await startEmbedded({ port: 0, appsDir: dir, devFile: false, providerFor: fakes.providerFor, tokenRules: fakes.tokenRules, webhooks: { maxAttempts: 3, retryInitialMs: 20, retryMaxMs: 100, timeoutMs: 2000 }, logger: createLogger({ service: "t", level: "silent" }) });
  });
  after(async () => {
    await server?.stop();
    await fakes?.close();
    await tracing?.shutdown();
    delete process.env.OTEL_BSP_SCHEDULE_DELAY;
    receiver?.closeAllConnections();
    await new Promise((r) => receiver?.close(r));
  });

  it("traces every attempt as a CLIENT span under the publish: method, URL without its query, status, app, event; failures marked", async () => {
    const app = server.apps.find((a) => a.id === appId)!;
    const devices = createClient(registry.RegistryServiceService, registry, server.address, { apiKey: app.serverKey });
    const publishes = createClient(dispatch.DispatchServiceService, dispatch, server.address, { apiKey: app.serverKey });
    let id: string;
    try {
      await devices.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken(), topics: ["traced"] });
      ({ id } = await publishes.publish({ recipients: { target: { $case: "topics", value: { values: ["traced"] } } }, notification: { alert: { title: "x" } } }));
    } finally {
      devices.close();
      publishes.close();
    }

    const tag = (s: JaegerSpan, key: string) => s.tags.find((t) => t.key === key)?.value;
    // Three attempts: /ok once, /flaky twice (503, then 200); then the whole trace they are in.
    const sends = await eventually(async () => {
      const query = new URLSearchParams({ service, operation: "webhook send", tags: JSON.stringify({ "herald.app": appId }), lookback: "1h", limit: "20" });
      const res = await fetch(`${jaeger}/api/traces?${query}`);
      if (res.status !== 200) return undefined;
      const found = (((await res.json()) as { data: JaegerTrace[] | null }).data ?? []).flatMap((t) => t.spans.filter((s) => s.operationName === "webhook send"));
      return found.length >= 3 ? found : undefined;
    }, "three webhook send spans in Jaeger");
    assert.equal(sends.length, 3);
    assert.equal(new Set(sends.map((s) => s.traceID)).size, 1, "every attempt is in one trace");
    const trace = await eventually(async () => {
      const res = await fetch(`${jaeger}/api/traces/${sends[0]!.traceID}`);
      const [t] = res.status === 200 ? (((await res.json()) as { data: JaegerTrace[] }).data ?? []) : [];
      return t?.spans.some((s) => s.operationName === "herald.dispatch.v1.DispatchService/Publish") ? t : undefined;
    }, "the publish call in the webhooks' trace");

    const byId = new Map(trace.spans.map((s) => [s.spanID, s]));
    const ancestry = (s: JaegerSpan) => {
      const chain: string[] = [];
      for (let p = byId.get(s.references.find((r) => r.refType === "CHILD_OF")?.spanID ?? ""); p; p = byId.get(p.references.find((r) => r.refType === "CHILD_OF")?.spanID ?? "")) chain.push(p.operationName);
      return chain;
    };
    const root = trace.spans.find((s) => s.operationName === "herald.dispatch.v1.DispatchService/Publish")!;
    assert.equal(tag(root, "herald.publish_id"), id);

    const attempts = sends.map((s) => ({ path: String(tag(s, "url.full")).replace(/^http:\/\/127\.0\.0\.1:\d+/, ""), attempt: Number(tag(s, "herald.attempt")), status: Number(tag(s, "http.response.status_code")), error: tag(s, "error") === true }));
    attempts.sort((a, b) => a.path.localeCompare(b.path) || a.attempt - b.attempt);
    assert.deepEqual(attempts, [
      { path: "/flaky", attempt: 1, status: 503, error: true },
      { path: "/flaky", attempt: 2, status: 200, error: false },
      { path: "/ok", attempt: 1, status: 200, error: false },
    ]);
    for (const s of sends) {
      assert.equal(tag(s, "span.kind"), "client");
      assert.equal(tag(s, "http.request.method"), "POST");
      assert.equal(tag(s, "herald.app"), appId);
      assert.equal(tag(s, "herald.webhook.event"), "publish.completed");
      assert.equal(tag(s, "herald.webhook.id"), `publish.completed:${id}`);
      assert.equal(tag(s, "server.address"), "127.0.0.1");
      const chain = ancestry(s);
      assert.ok(chain.includes("herald.dispatch.v1.DispatchService/Publish"), `under the publish call; got:\n${chain.join("\n")}`);
      assert.ok(chain.includes("herald.webhooks process") || chain.includes("herald.webhook-retries process"), chain.join("\n"));
    }
    const failed = sends.find((s) => tag(s, "error") === true)!;
    assert.equal(tag(failed, "otel.status_code"), "ERROR");
    assert.equal(tag(failed, "error.type"), "503");
    // The retry is a child of the failed attempt's bus message, not a new trace.
    const retry = sends.find((s) => Number(tag(s, "herald.attempt")) === 2)!;
    assert.ok(ancestry(retry).includes("herald.webhook-retries process"), ancestry(retry).join("\n"));
    assert.ok(!JSON.stringify(trace).includes(`query-secret-${suffix}`), "the URL's query is not in the trace");
  });

  it("finds one pod's spans by its k8s.pod.name process tag, as README's recipe does", async () => {
    const search = async (tags: Record<string, string>) => {
      const query = new URLSearchParams({ service, operation: "webhook send", tags: JSON.stringify(tags), lookback: "1h", limit: "20" });
      const res = await fetch(`${jaeger}/api/traces?${query}`);
      assert.equal(res.status, 200);
      return (((await res.json()) as { data: Array<JaegerTrace & { processes: Record<string, { tags: Array<{ key: string; value: unknown }> }> }> | null }).data ?? []);
    };
    const traces = await eventually(async () => {
      const found = await search({ "k8s.pod.name": pod });
      return found.length > 0 ? found : undefined;
    }, `traces of pod ${pod}`);
    for (const t of traces) assert.ok(Object.values(t.processes).some((p) => p.tags.some((x) => x.key === "k8s.pod.name" && x.value === pod)));
    assert.deepEqual(await search({ "k8s.pod.name": `${pod}-other` }), [], "another pod's name finds nothing");
  });
});
