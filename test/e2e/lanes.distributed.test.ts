import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { BusGroups, BusTopics, dispatch } from "@herald/proto";
import { eventually, randomFcmToken, scrape, seriesCount, startFakeFcm, type FakeFcm, type FcmRecord } from "@herald/testing";
import { importDevices, startPlatform, testCaFile, type Clients, type Platform } from "./platform.fixture.js";

// Priority lanes end to end, every service its own process on the real FerretDB and Kafka. A
// broadcast to BROADCAST FCM devices sends through a slow fake FCM (LATENCY_MS per answer); once
// it is sending, the fake stops answering the broadcast's requests at all (a provider stuck on a
// big send), so the sender's bulk lane is stuck in the middle of a job with the rest of the
// broadcast's jobs queued behind it on herald.deliveries.<app>.fcm. A publish to one device id
// (the urgent lane: publish.lane.ts) must still reach its device and end DONE; then the fake
// answers again and the broadcast must end DONE with every device reached once. Without lanes the
// single device's job would wait behind the stuck one and the test would fail at its deadline;
// the outcome does not depend on how fast the machine is.
const BROADCAST = Number(process.env.HERALD_E2E_LANES_BROADCAST ?? 3000);
const LATENCY_MS = 100;
const { PUBLISH_STATE_DONE: DONE, PUBLISH_STATE_SENDING: SENDING, PUBLISH_STATE_FANNING_OUT: FANNING_OUT, PUBLISH_STATE_QUEUED: QUEUED } = dispatch.PublishState;
const bodyOf = (r: FcmRecord) => (r.message?.notification as { body?: string } | undefined)?.body;

describe("priority lanes, distributed", () => {
  const appId = `lanes-${randomUUID().slice(0, 6)}`;
  const broadcastBody = `sale-${randomUUID().slice(0, 8)}`;
  let platform: Platform;
  let app: Clients;
  let fcm: FakeFcm;
  let senderOps: string;
  let lone: { id: string; token: string };
  // While set, the fake answers none of the broadcast's requests until it resolves.
  let gate: { held: Promise<void>; release: () => void; waiting: number } | undefined;

  before(async () => {
    fcm = await startFakeFcm({
      latencyMs: LATENCY_MS,
      hold: (r) => {
        if (!gate || bodyOf(r) !== broadcastBody) return undefined;
        gate.waiting++;
        return gate.held;
      },
    });
    platform = await startPlatform();
    app = await platform.createApp(appId);
    const loneToken = randomFcmToken();
    const [sender, ids] = await Promise.all([
      // A request held by the fake must not time out and be sent again while the test looks.
      platform.startSender(appId, "fcm", { HERALD_PROVIDER_CA_FILE: testCaFile(), HERALD_PROVIDER_URL: fcm.url, HERALD_PROVIDER_TIMEOUT_MS: "600000" }, { "fcm-service-account.json": fcm.serviceAccount("herald-lanes").json }),
      importDevices(platform, appId, [
        { provider: "fcm", platform: "android", token: loneToken, user: "", tags: {}, meta: {}, locale: "", timezone: "", topics: [] },
        ...Array.from({ length: BROADCAST }, () => ({ provider: "fcm" as const, platform: "android" as const, token: randomFcmToken(), user: "", tags: {}, meta: {}, locale: "", timezone: "", topics: ["everyone"] })),
      ]),
    ]);
    senderOps = sender.opsUrl;
    lone = { id: ids[0]!, token: loneToken };
  });
  after(async () => {
    gate?.release();
    await platform?.stop();
    await fcm?.close();
  });

  const get = async (id: string) => (await app.dispatch.getPublish({ id }, { deadlineMs: 10_000 }).catch(() => undefined))?.publish;
  const show = (p: dispatch.Publish | undefined) => JSON.stringify(p && dispatch.Publish.toJSON({ ...p, request: undefined }));
  const reached = (body: string) => fcm.records.filter((r) => r.status === 200 && bodyOf(r) === body);
  const running = (p: dispatch.Publish | undefined, what: string) => {
    if (p && p.state !== SENDING && p.state !== FANNING_OUT && p.state !== QUEUED && p.state !== DONE) assert.fail(`${what} ended ${show(p)}`);
  };

  it("delivers a single-device publish and ends it DONE while a broadcast is stuck sending", async () => {
    const { id: broadcast } = await app.dispatch.publish({ recipients: { target: { $case: "topics", value: { values: ["everyone"] } } }, notification: { alert: { title: "Sale", body: broadcastBody } } });
    await eventually(async () => {
      const p = await get(broadcast);
      running(p, "the broadcast");
      return reached(broadcastBody).length >= 50 && p?.state === SENDING;
    }, "the broadcast sending", { timeoutMs: 300_000, pollMs: 50 });
    let release!: () => void;
    gate = { held: new Promise<void>((r) => (release = r)), release: () => release(), waiting: 0 };
    // The bulk lane is stuck: a step of the broadcast waits for the fake's answers.
    await eventually(() => gate!.waiting > 0, "a held broadcast request", { timeoutMs: 120_000, pollMs: 20 });

    const loneBody = `reset-${randomUUID().slice(0, 8)}`;
    const publishedAt = Date.now();
    const { id: single } = await app.dispatch.publish({ recipients: { target: { $case: "deviceIds", value: { values: [lone.id] } } }, notification: { alert: { title: "Your code", body: loneBody } } });
    const done = await eventually(async () => {
      const p = await get(single);
      running(p, "the single-device publish");
      return p?.state === DONE && p;
    }, "the single-device publish DONE while the broadcast is stuck", { timeoutMs: 180_000, pollMs: 50 });
    const took = Date.now() - publishedAt;
    const broadcastThen = await get(broadcast);
    const reachedThen = reached(broadcastBody).length;

    assert.equal(done.counts?.sent, 1, show(done));
    assert.deepEqual(fcm.delivered(lone.token).map(bodyOf), [loneBody], "the device got it, once");
    assert.equal(broadcastThen?.state, SENDING, show(broadcastThen));
    assert.ok(reachedThen < BROADCAST, `${reachedThen} of ${BROADCAST}`);
    console.log(`[lanes] single-device publish DONE ${took} ms after its Publish call (polled every 50 ms), the broadcast stuck at ${reachedThen} of ${BROADCAST} requests (${gate.waiting} held)`);

    // Lag is visible per lane: the sender reports each lane's group on its own topic, a series
    // per partition (the operator scales on their sum).
    const metrics = await scrape(senderOps);
    for (const lane of ["bulk", "urgent"] as const) {
      const labels = { group: BusGroups.sender(appId, "fcm", lane), topic: BusTopics.deliveries(appId, "fcm", lane) };
      assert.equal(seriesCount(metrics, "herald_consumer_lag", labels), 8, `herald_consumer_lag ${JSON.stringify(labels)}\n${metrics.split("\n").filter((l) => l.startsWith("herald_consumer_lag")).join("\n")}`);
    }

    // The fake answers again: the broadcast completes, every device reached once.
    const releasedAt = Date.now();
    gate.release();
    const finished = await eventually(async () => {
      const p = await get(broadcast);
      running(p, "the broadcast");
      return p?.state === DONE && p;
    }, "the broadcast DONE", { timeoutMs: 600_000, pollMs: 200 });
    assert.equal(finished.counts?.sent, BROADCAST, show(finished));
    const tokens = reached(broadcastBody).map((r) => r.target);
    assert.equal(tokens.length, BROADCAST, "one request per device");
    assert.equal(new Set(tokens).size, BROADCAST, "every device reached");
    console.log(`[lanes] broadcast of ${BROADCAST} DONE ${Date.now() - releasedAt} ms after the fake answered again`);
  });
});
