import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { dispatch } from "@herald/proto";
import type { ServiceProcess } from "@herald/testing";
import { Platform as DevicePlatform, Provider, webPushToken } from "../integration/fixtures.js";
import { registerMany, startPlatform, watchToEnd, type Clients, type Platform } from "./platform.fixture.js";

// At-least-once across a crash: every service in its own process on real FerretDB and Kafka, a
// dry-run Web Push sender (300 ms per job, so the broadcast is still running) SIGKILLed after the
// first results and started again.
describe("distributed pipeline", () => {
  const appId = `e2e-${randomUUID().slice(0, 6)}`;
  let platform: Platform;
  let app: Clients;
  let sender: ServiceProcess;
  const startSender = () => platform.startSender(appId, "webpush", { HERALD_DRY_RUN: "true", HERALD_DRY_RUN_LATENCY_MS: "300" });

  before(async () => {
    platform = await startPlatform();
    app = await platform.createApp(appId);
    sender = await startSender();
  });
  after(() => platform?.stop());

  it("delivers a topic publish through Kafka and loses nothing when the sender is killed mid-broadcast", async () => {
    await registerMany(app, Array.from({ length: 300 }, () => ({ provider: Provider.PROVIDER_WEBPUSH, platform: DevicePlatform.PLATFORM_WEB, token: webPushToken(), topics: ["all-fans"] })));
    const { id } = await app.dispatch.publish({ uid: "e2e-1", recipients: { target: { $case: "topics", value: { values: ["all-fans"] } } }, notification: { alert: { title: "Goal", body: "1-0" } } });

    // Kill the sender as soon as the first job's results are in, then start a new one.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const p = (await app.dispatch.getPublish({ id })).publish!;
      if ((p.counts?.sent ?? 0) > 0) break;
      if (Date.now() > deadline) assert.fail(`no delivery within 60 s:\n${sender.output()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await sender.stop("SIGKILL");
    sender = await startSender();

    const done = await watchToEnd(app, id);
    assert.equal(dispatch.publishStateToJSON(done.state), "PUBLISH_STATE_DONE");
    assert.equal(done.counts?.targeted, 300);
    assert.equal(done.counts?.sent, 300, "every device received it at least once");
  });
});
