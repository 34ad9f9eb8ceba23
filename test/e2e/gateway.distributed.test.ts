import assert from "node:assert/strict";
import { createHmac, randomUUID } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { createClient } from "@herald/platform";
import { apps, Provider } from "@herald/proto";
import { eventually, startFakeWebPush, type FakeWebPush } from "@herald/testing";
import { ALLOW_FAKES, startPlatform, testCaFile, webPushSender, type Platform } from "./platform.fixture.js";

// The gateway as its own process in front of the distributed services (FerretDB, Kafka): a
// backend that speaks only HTTP registers browsers, publishes to a topic, follows the publish as
// NDJSON, and the fake push service receives the notification; the registry calls the app's
// webhook when the publish completes.
describe("HTTP gateway (distributed)", () => {
  const appId = `http-${randomUUID().slice(0, 6)}`;
  let platform: Platform;
  let fake: FakeWebPush;
  let url: string;
  let serverKey: string;
  let appSecret: string;
  let receiver: Server;
  const hooks: Array<{ headers: IncomingHttpHeaders; body: string }> = [];

  before(async () => {
    fake = await startFakeWebPush();
    // The app's backend: a webhook endpoint.
    receiver = createServer((req, res) => {
      let body = "";
      req.on("data", (d) => (body += d));
      req.on("end", () => {
        hooks.push({ headers: req.headers, body });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    platform = await startPlatform(ALLOW_FAKES);
    const admin = createClient(apps.AppServiceService, apps, platform.addresses.registry, { apiKey: platform.adminKey });
    try {
      appSecret = (await admin.createApp({ id: appId, providers: [Provider.PROVIDER_WEBPUSH], webhooks: [{ url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/herald`, events: ["publish.completed"] }] })).userTokenSecret;
      serverKey = (await admin.createApiKey({ appId, role: apps.ApiKeyRole.API_KEY_ROLE_SERVER })).secret;
    } finally {
      admin.close();
    }
    const web = webPushSender(testCaFile());
    await platform.startSender(appId, "webpush", web.env, web.credentials);
    url = (await platform.startGateway()).url;
  });
  after(async () => {
    await platform?.stop();
    await fake?.close();
    await new Promise((r) => receiver?.close(r));
  });

  const post = async (method: string, body: unknown) => {
    const res = await fetch(`${url}/v1/${method}`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${serverKey}` }, body: JSON.stringify(body) });
    return { status: res.status, text: await res.text() };
  };

  it("registers, publishes and watches over HTTP; the browser receives the notification", async () => {
    const subs = [fake.subscribe(), fake.subscribe()];
    for (const s of subs) {
      const r = await post("herald.registry.v1.RegistryService/RegisterDevice", { provider: "PROVIDER_WEBPUSH", platform: "PLATFORM_WEB", token: s.token, topics: ["launch"] });
      assert.equal(r.status, 200, r.text);
    }
    const stats = await post("herald.topic.v1.TopicService/GetTopicStats", { topics: ["launch"] });
    assert.equal((JSON.parse(stats.text) as { stats: Array<{ deviceCount: string }> }).stats[0]?.deviceCount, "2");

    // 503 means "retry" (UNAVAILABLE): a dispatcher just started may not reach its Kafka
    // partition leaders yet on a loaded machine (seen once in CI). The uid makes a retry safe.
    const publish = () => post("herald.dispatch.v1.DispatchService/Publish", { recipients: { topics: { values: ["launch"] } }, notification: { alert: { title: "Launch", body: "T-0" } }, uid: `launch-${appId}` });
    let published = await publish();
    for (let attempt = 1; published.status === 503 && attempt < 20; attempt++) {
      await new Promise((r) => setTimeout(r, 250));
      published = await publish();
    }
    assert.equal(published.status, 200, published.text);
    const { id } = JSON.parse(published.text) as { id: string };
    const watched = await post("herald.dispatch.v1.DispatchService/WatchPublish", { id });
    assert.equal(watched.status, 200);
    const last = JSON.parse(watched.text.trim().split("\n").at(-1)!) as { publish: { state: string; counts: { sent: string; targeted: string } } };
    assert.equal(last.publish.state, "PUBLISH_STATE_DONE", watched.text);
    assert.equal(last.publish.counts.sent, "2");
    for (const s of subs) {
      const [got] = fake.delivered(s.id);
      assert.ok(got, "delivered");
      assert.deepEqual(JSON.parse(got.plaintext!.toString()), { title: "Launch", body: "T-0" });
    }
    // The registry process, on Kafka, told the backend, signed with the app's secret.
    const hook = await eventually(() => hooks.find((h) => h.headers["x-herald-webhook-id"] === `publish.completed:${id}`), "the publish.completed webhook");
    const expected = createHmac("sha256", appSecret).update(`${hook.headers["x-herald-timestamp"]}.${hook.body}`).digest("hex");
    assert.equal(hook.headers["x-herald-signature"], `v1=${expected}`);
    assert.equal((JSON.parse(hook.body) as { data: { counts: { sent: number } } }).data.counts.sent, 2);

    // The same uid over HTTP returns the same publish (idempotent retries from HTTP clients).
    const retried = await post("herald.dispatch.v1.DispatchService/Publish", { recipients: { topics: { values: ["launch"] } }, notification: { alert: { title: "Launch", body: "T-0" } }, uid: `launch-${appId}` });
    assert.equal((JSON.parse(retried.text) as { id: string }).id, id);
  });
});
