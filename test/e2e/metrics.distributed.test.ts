import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { dispatch } from "@herald/proto";
import { eventually, sample, scrape, seriesCount, startFakeWebPush, type FakeWebPush } from "@herald/testing";
import { Platform as DevicePlatform, Provider } from "../integration/fixtures.js";
import { ALLOW_FAKES, registerMany, startPlatform, testCaFile, watchToEnd, webPushSender, type Clients, type Platform } from "./platform.fixture.js";

// After a known workload through the distributed stack, every service's /metrics reports it.
describe("metrics of the distributed services", () => {
  const appId = `met-${randomUUID().slice(0, 6)}`;
  let platform: Platform;
  let app: Clients;
  let fake: FakeWebPush;
  let senderOps: string;

  before(async () => {
    fake = await startFakeWebPush();
    // Sizes recounted every second instead of every minute, so the test sees them move.
    platform = await startPlatform({ ...ALLOW_FAKES, HERALD_SIZE_METRICS_INTERVAL_SECONDS: "1" });
    app = await platform.createApp(appId);
    const web = webPushSender(testCaFile());
    senderOps = (await platform.startSender(appId, "webpush", web.env, web.credentials)).opsUrl;
  });
  after(async () => {
    await platform?.stop();
    await fake?.close();
  });

  it("count deliveries by result and reason, provider requests, publishes, fan-outs and RPCs", async () => {
    const ok = Array.from({ length: 5 }, () => fake.subscribe());
    const gone = Array.from({ length: 2 }, () => fake.subscribe({ scenario: "gone" }));
    await registerMany(app, [...ok, ...gone].map((s) => ({ provider: Provider.PROVIDER_WEBPUSH, platform: DevicePlatform.PLATFORM_WEB, token: s.token, topics: ["news"] })));
    const { id } = await app.dispatch.publish({ recipients: { target: { $case: "topics", value: { values: ["news"] } } }, notification: { alert: { title: "Hi", body: "there" } } });
    const done = await watchToEnd(app, id);
    assert.equal(dispatch.publishStateToJSON(done.state), "PUBLISH_STATE_DONE");

    const sender = await scrape(senderOps);
    const mine = { app: appId, provider: "webpush" };
    assert.equal(sample(sender, "herald_deliveries_total", { ...mine, result: "sent" }), 5);
    assert.equal(sample(sender, "herald_deliveries_total", { ...mine, result: "invalid_token", reason: "webpush:410" }), 2);
    assert.equal(sample(sender, "herald_provider_request_duration_seconds_count", { ...mine, status: "201" }), 5);
    assert.equal(sample(sender, "herald_provider_request_duration_seconds_count", { ...mine, status: "410" }), 2);
    assert.equal(sample(sender, "herald_sender_inflight_jobs", mine), 0);
    assert.ok(sample(sender, "process_resident_memory_bytes") > 0, "process metrics are exported");

    const dispatcher = await scrape(platform.metrics.dispatcher);
    assert.equal(sample(dispatcher, "herald_publishes_accepted_total", { app: appId, scheduled: "false" }), 1);
    assert.equal(sample(dispatcher, "herald_fanout_duration_seconds_count", { app: appId }), 1);
    assert.equal(sample(dispatcher, "herald_fanout_targets_total", { app: appId, provider: "webpush" }), 7);
    assert.equal(sample(dispatcher, "herald_grpc_server_duration_seconds_count", { method: "herald.dispatch.v1.DispatchService/Publish", code: "OK" }), 1);

    const registry = await scrape(platform.metrics.registry);
    assert.equal(sample(registry, "herald_grpc_server_duration_seconds_count", { method: "herald.registry.v1.RegistryService/RegisterDevice", code: "OK" }), 7);
    // A refused call is counted with its code.
    await assert.rejects(app.registry.registerDevice({ provider: Provider.PROVIDER_WEBPUSH, platform: DevicePlatform.PLATFORM_WEB, token: "not a subscription" }));
    const after = await scrape(platform.metrics.registry);
    assert.equal(sample(after, "herald_grpc_server_duration_seconds_count", { method: "herald.registry.v1.RegistryService/RegisterDevice", code: "INVALID_ARGUMENT" }), 1);

    // Kafka lag of every consumer group, per partition; nothing left once the publish is done.
    const lag = { group: `herald-sender-${appId}-webpush`, topic: `herald.deliveries.${appId}.webpush` };
    assert.equal(seriesCount(sender, "herald_consumer_lag", lag), 8, "one series per partition");
    await eventually(async () => sample(await scrape(senderOps), "herald_consumer_lag", lag) === 0, "the sender's lag back to 0");
    assert.equal(seriesCount(sender, "herald_consumer_lag", { group: `herald-sender-${appId}-webpush-retries` }), 8);
    assert.equal(seriesCount(dispatcher, "herald_consumer_lag", { group: "herald-fanout", topic: "herald.publishes" }), 8);
    assert.equal(seriesCount(dispatcher, "herald_consumer_lag", { group: "herald-results", topic: "herald.results" }), 8);
    assert.equal(seriesCount(registry, "herald_consumer_lag", { group: "herald-registry-token-feedback", topic: "herald.token-feedback" }), 8);

    // Sizes and device events: 7 registered, the 2 gone subscriptions removed on the provider's 410.
    await eventually(async () => {
      const now = await scrape(platform.metrics.registry);
      return sample(now, "herald_registry_device_events_total", { app: appId, kind: "removed", reason: "token_invalid" }) === 2 && sample(now, "herald_registry_devices", { app: appId, provider: "webpush" }) === 5;
    }, "invalid tokens removed and counted, 5 devices left");
    assert.equal(sample(await scrape(platform.metrics.registry), "herald_registry_device_events_total", { app: appId, kind: "registered" }), 7);
    await eventually(async () => {
      const now = await scrape(platform.metrics.topic);
      return sample(now, "herald_topic_subscriptions", { app: appId }) === 5 && sample(now, "herald_topic_topics", { app: appId }) === 1;
    }, "5 subscriptions to 1 topic");

    const topic = await scrape(platform.metrics.topic);
    assert.ok(sample(topic, "herald_grpc_server_duration_seconds_count", { method: "herald.topic.v1.TopicService/StreamRecipients", code: "OK" }) >= 1);
    const missing = await fetch(`${platform.metrics.topic}/nope`);
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { error: string }).error, "not_found");
  });
});
