import assert from "node:assert/strict";
import { createHmac, timingSafeEqual } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { startEmbedded, startFakeProviders, type EmbeddedApp, type EmbeddedServer, type FakeProviders } from "@herald/cli";
import { createClient, createLogger, DEFAULT_DENIED_NETWORKS, type Subscription } from "@herald/platform";
import { apps, BusTopics, dispatch, events, Platform, Provider, registry } from "@herald/proto";
import { eventually, scenarioToken } from "@herald/testing";
import { expectError, fcmToken, Status } from "./fixtures.js";

// Signed webhooks, end to end on the embedded server: real publishes through the fake providers
// produce publish.completed, delivery.failed and token.invalidated, ReportReceipt produces
// device.acknowledged and device.opened; a receiver checks each signature the way the README's
// recipe does; failures are retried with backoff and dead-lettered after bounded attempts.

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  json: { id: string; type: string; app: string; createdAt: string; data: Record<string, any> };
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
