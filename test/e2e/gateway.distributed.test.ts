import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { createClient } from "@herald/platform";
import { apps, Provider } from "@herald/proto";
import { startFakeWebPush, type FakeWebPush } from "@herald/testing";
import { ALLOW_FAKES, startPlatform, testCaFile, webPushSender, type Platform } from "./platform.fixture.js";

// The gateway as its own process in front of the distributed services (FerretDB, Kafka): a
// backend that speaks only HTTP registers browsers, publishes to a topic, follows the publish as
// NDJSON, and the fake push service receives the notification.
describe("HTTP gateway (distributed)", () => {
  const appId = `http-${randomUUID().slice(0, 6)}`;
  let platform: Platform;
  let fake: FakeWebPush;
  let url: string;
  let serverKey: string;

  before(async () => {
    fake = await startFakeWebPush();
    platform = await startPlatform(ALLOW_FAKES);
    const admin = createClient(apps.AppServiceService, apps, platform.addresses.registry, { apiKey: platform.adminKey });
    try {
      await admin.createApp({ id: appId, providers: [Provider.PROVIDER_WEBPUSH] });
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

    const published = await post("herald.dispatch.v1.DispatchService/Publish", { recipients: { topics: { values: ["launch"] } }, notification: { alert: { title: "Launch", body: "T-0" } }, uid: `launch-${appId}` });
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
    // The same uid over HTTP returns the same publish (idempotent retries from HTTP clients).
    const retried = await post("herald.dispatch.v1.DispatchService/Publish", { recipients: { topics: { values: ["launch"] } }, notification: { alert: { title: "Launch", body: "T-0" } }, uid: `launch-${appId}` });
    assert.equal((JSON.parse(retried.text) as { id: string }).id, id);
  });
});
