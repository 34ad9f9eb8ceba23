import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { dispatch } from "@herald/proto";
import { startFakeWebPush, type FakeSubscription, type FakeWebPush, type ServiceProcess } from "@herald/testing";
import { Platform as DevicePlatform, Provider } from "../integration/fixtures.js";
import { ALLOW_FAKES, registerMany, startPlatform, testCaFile, watchToEnd, webPushSender, type Clients, type Platform } from "./platform.fixture.js";

// At-least-once across a crash: every service in its own process on real FerretDB and Kafka, a
// Web Push sender delivering to the fake push service (each answer held 200 ms, so the broadcast
// is still running) SIGKILLed after the first results and started again.
describe("distributed pipeline", () => {
  const appId = `e2e-${randomUUID().slice(0, 6)}`;
  let platform: Platform;
  let app: Clients;
  let fake: FakeWebPush;
  let sender: ServiceProcess;
  let startSender: () => Promise<ServiceProcess>;

  before(async () => {
    fake = await startFakeWebPush();
    platform = await startPlatform(ALLOW_FAKES);
    app = await platform.createApp(appId);
    const web = webPushSender(testCaFile(), { HERALD_WEBPUSH_MAX_SOCKETS: "16" });
    startSender = () => platform.startSender(appId, "webpush", web.env, web.credentials);
    sender = await startSender();
  });
  after(async () => {
    await platform?.stop();
    await fake?.close();
  });

  it("delivers a topic publish through Kafka and loses nothing when the sender is killed mid-broadcast", async () => {
    const subs: FakeSubscription[] = Array.from({ length: 300 }, () => fake.subscribe({ scenario: { kind: "slow", delayMs: 200 } }));
    await registerMany(app, subs.map((s) => ({ provider: Provider.PROVIDER_WEBPUSH, platform: DevicePlatform.PLATFORM_WEB, token: s.token, topics: ["all-fans"] })));
    const { id } = await app.dispatch.publish({ recipients: { target: { $case: "topics", value: { values: ["all-fans"] } } }, notification: { alert: { title: "Goal", body: "1-0" } } });

    // Kill the sender as soon as the first job's results are in, then start a new one.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const p = (await app.dispatch.getPublish({ id })).publish!;
      if ((p.counts?.sent ?? 0) > 0) break;
      if (Date.now() > deadline) assert.fail(`no delivery within 60 s:\n${sender.output()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    await sender.stop("SIGKILL");
    const beforeRestart = fake.delivered().length;
    assert.ok(beforeRestart < 300, `the broadcast was still running when the sender died (${beforeRestart} delivered)`);
    sender = await startSender();

    const done = await watchToEnd(app, id);
    assert.equal(dispatch.publishStateToJSON(done.state), "PUBLISH_STATE_DONE");
    assert.equal(done.counts?.targeted, 300);
    assert.equal(done.counts?.sent, 300);
    for (const s of subs) assert.ok(fake.delivered(s.id).length >= 1, `subscription ${s.id} received the notification`);
    // Jobs delivered but not committed when the sender died go out again: bounded by what was in
    // flight, and those whose results had reached Kafka are counted as duplicates.
    const extra = fake.delivered().length - 300;
    assert.ok(extra <= 300, `duplicates bounded: ${extra}`);
    assert.ok((done.counts?.duplicates ?? 0) <= extra, `counted duplicates (${done.counts?.duplicates}) were really delivered twice (${extra})`);
  });
});
