import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { dispatch } from "@herald/proto";
import { sample, scrape, startFakeWebPush, type FakeWebPush } from "@herald/testing";
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
    platform = await startPlatform(ALLOW_FAKES);
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

    const topic = await scrape(platform.metrics.topic);
    assert.ok(sample(topic, "herald_grpc_server_duration_seconds_count", { method: "herald.topic.v1.TopicService/StreamRecipients", code: "OK" }) >= 1);
    const missing = await fetch(`${platform.metrics.topic}/nope`);
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { error: string }).error, "not_found");
  });
});
