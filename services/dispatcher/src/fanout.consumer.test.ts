import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { beforeEach, describe, it } from "node:test";
import { createLogger, MemoryBus, type BusMessage, type DeepPartial } from "@herald/platform";
import { BusTopics, dispatch, events, Provider, type Lane } from "@herald/proto";
import { createMemoryPublishRepository, createMemoryStore, DEFAULT_LIMITS, DEFAULT_WEBPUSH_HOSTS, type ProviderName, type PublishRepository, type Store } from "@herald/store";
import { FanoutWorker } from "./fanout.consumer.js";
import { laneOf } from "./publish.lane.js";
import { PublishScheduler } from "./publish.scheduler.js";
import { PublishService } from "./publish.service.js";
import { storeRecipients } from "./recipient.source.js";
import { ResultAggregator } from "./results.consumer.js";

const logger = createLogger({ service: "t", level: "silent" });
const APP = "app1";
const req = (r: DeepPartial<dispatch.PublishRequest>) => dispatch.PublishRequest.fromPartial(r as dispatch.PublishRequest);

describe("fan-out and results", () => {
  let store: Store;
  let publishes: PublishRepository;
  let bus: MemoryBus;
  let service: PublishService;
  let fanout: FanoutWorker;
  let now: Date;

  beforeEach(async () => {
    store = createMemoryStore();
    publishes = createMemoryPublishRepository();
    bus = new MemoryBus();
    now = new Date();
    await store.apps.create({ id: APP, name: APP, limits: DEFAULT_LIMITS, providers: ["apns", "fcm", "hms", "webpush"], secretVersion: 1, owner: "", vapidPublicKey: "", webhooks: [], createdAt: now, updatedAt: now });
    service = new PublishService({ publishes, directory: store, recipients: storeRecipients(store), bus, tokenRules: { webPushHosts: DEFAULT_WEBPUSH_HOSTS, webPushAllowInsecure: false }, logger, now: () => now });
    fanout = new FanoutWorker({ publishes, directory: store, bus, recipients: storeRecipients(store), logger, now: () => now });
  });

  const device = async (provider: ProviderName, topics: string[], meta: Record<string, string> = {}) => {
    const token = provider === "apns" ? randomBytes(32).toString("hex") : `tok-${randomBytes(8).toString("hex")}`;
    const platform = provider === "apns" ? "ios" : provider === "webpush" ? "web" : "android";
    const { device: d } = await store.devices.write({ app: APP, provider, platform, token, user: "", tags: {}, meta, locale: "", timezone: "", now });
    await store.subscriptions.add(APP, d.id, d, topics, "device");
    return d;
  };
  const jobsOn = async (provider: ProviderName, lane: Lane = "bulk") => {
    const got: events.DeliveryJob[] = [];
    await bus.subscribe({ group: `g-${provider}-${Math.random()}`, topics: [BusTopics.deliveries(APP, provider, lane)], handler: async (m: BusMessage) => void got.push(events.DeliveryJob.decode(m.value)) });
    return got;
  };
  const publishAndFanOut = async (r: DeepPartial<dispatch.PublishRequest>) => {
    const { id } = await service.publish(req(r), APP, "");
    // the lane the publish service put it on (the app keeps the default rule)
    await fanout.run(APP, id, laneOf(req(r)));
    return id;
  };
  const settle = async (jobs: () => number, expected: number) => {
    const deadline = Date.now() + 5000;
    while (jobs() < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  };

  it("cuts every subscribed device into one job per provider batch, each device once", async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 1200; i++) ids.add((await device(i % 3 === 0 ? "apns" : "fcm", i % 2 ? ["a", "b"] : ["a"])).id);
    const apns = await jobsOn("apns");
    const fcm = await jobsOn("fcm");
    const id = await publishAndFanOut({ recipients: { target: { $case: "topics", value: { values: ["a", "b"] } } }, notification: { alert: { title: "t", body: "b" } } });
    // however the fan-out cuts the batches, every target must arrive
    const targets = () => [...apns, ...fcm].flatMap((j) => j.targets.map((t) => t.deviceId));
    await settle(() => targets().length, 1200);
    assert.equal(targets().length, 1200);
    assert.deepEqual(new Set(targets()), ids);
    assert.ok([...apns, ...fcm].every((j) => j.targets.length <= 500 && j.publishId === id));
    assert.deepEqual(JSON.parse(Buffer.from(apns[0]!.payload).toString()).aps.alert, { title: "t", body: "b" });
    const p = await publishes.get(APP, id);
    assert.equal(p?.counts.targeted, 1200);
    assert.equal(p?.fanoutDone, true);
    assert.equal(p?.state, "sending");
  });

  it("renders templates per device and skips providers without a payload", async () => {
    const a = await device("fcm", ["t"], { name: "Ada", team: "Reds" });
    await device("apns", ["t"]);
    const fcm = await jobsOn("fcm");
    const id = await publishAndFanOut({
      recipients: { target: { $case: "topics", value: { values: ["t"] } } },
      notification: { templated: true, fcm: { message: { notification: { body: "{{meta.name}}, the {{meta.team}} just won!" } } } },
    });
    await settle(() => fcm.length, 1);
    const target = fcm[0]!.targets[0]!;
    assert.equal(target.deviceId, a.id);
    assert.deepEqual(JSON.parse(Buffer.from(target.payload).toString()), { notification: { body: "Ada, the Reds just won!" } });
    assert.equal((await publishes.get(APP, id))?.counts.targeted, 1, "the APNs device had no payload and was not targeted");
  });

  it("sends raw tokens without the registry and native targets as one job", async () => {
    const hms = await jobsOn("hms");
    // A native target is one provider request: the urgent lane.
    const fcm = await jobsOn("fcm", "urgent");
    await publishAndFanOut({ recipients: { target: { $case: "tokens", value: { provider: Provider.PROVIDER_HMS, tokens: Array.from({ length: 1000 }, (_, i) => `h${i}`) } } }, notification: { alert: { body: "x" } } });
    await publishAndFanOut({ recipients: { target: { $case: "native", value: { provider: Provider.PROVIDER_FCM, target: { $case: "condition", value: "'a' in topics" } } } }, notification: { alert: { body: "x" } } });
    await settle(() => hms.length + fcm.length, 2);
    assert.deepEqual(hms.map((j) => j.targets.length), [1000]);
    assert.equal(fcm[0]?.nativeCondition, "'a' in topics");
    assert.equal(fcm[0]?.targets.length, 0);
  });

  it("resumes after the last device handed on", async () => {
    const all = [];
    for (let i = 0; i < 20; i++) all.push((await device("fcm", ["r"])).id);
    all.sort();
    const { id } = await service.publish(req({ recipients: { target: { $case: "topics", value: { values: ["r"] } } }, notification: { alert: { body: "x" } } }), APP, "");
    await publishes.transition(APP, id, ["queued"], "fanning_out", { now });
    await publishes.saveFanout(APP, id, { cursor: all[11]!, targetedDelta: 12, done: false, now });
    const fcm = await jobsOn("fcm");
    await fanout.run(APP, id, "bulk");
    await settle(() => fcm.length, 1);
    assert.deepEqual(fcm.flatMap((j) => j.targets.map((t) => t.deviceId)), all.slice(12));
    assert.equal((await publishes.get(APP, id))?.counts.targeted, 20);
  });

  it("stops after a saved batch when the bus asks it to yield, and the next run goes on from there: each device once", async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 1100; i++) ids.add((await device("fcm", ["y"])).id);
    const fcm = await jobsOn("fcm");
    const { id } = await service.publish(req({ recipients: { target: { $case: "topics", value: { values: ["y"] } } }, notification: { alert: { body: "x" } } }), APP, "");
    const runs: unknown[] = [];
    for (let i = 0; i < 10; i++) {
      const outcome = await fanout.run(APP, id, "bulk", () => true);
      runs.push(outcome);
      if (outcome !== "yielded") break;
      assert.equal((await publishes.get(APP, id))?.state, "fanning_out");
    }
    // 1100 devices in batches of 500: yielded after the first and the second, done in the third
    assert.deepEqual(runs, ["yielded", "yielded", undefined]);
    const targets = () => fcm.flatMap((j) => j.targets.map((t) => t.deviceId));
    await settle(() => targets().length, 1100);
    assert.equal(targets().length, 1100);
    assert.deepEqual(new Set(targets()), ids);
    const p = await publishes.get(APP, id);
    assert.equal(p?.counts.targeted, 1100);
    assert.equal(p?.state, "sending");
  });

  it("hands a pooled app's jobs to the pooled senders' topics, and a dedicated app's to its own; a move applies to the next fan-out", async () => {
    await device("apns", ["m"]);
    const dedicated = await jobsOn("apns");
    const pooled: events.DeliveryJob[] = [];
    await bus.subscribe({ group: "pool", topics: [BusTopics.pooled(APP, "apns")], handler: async (m: BusMessage) => void pooled.push(events.DeliveryJob.decode(m.value)) });
    const broadcast = { recipients: { target: { $case: "topics" as const, value: { values: ["m"] } } }, notification: { alert: { body: "x" } }, priority: dispatch.Priority.PRIORITY_LOW };
    await store.apps.update(APP, { senders: "pooled", now });
    const first = await publishAndFanOut(broadcast);
    await settle(() => pooled.length, 1);
    await store.apps.update(APP, { senders: "dedicated", now });
    const second = await publishAndFanOut(broadcast);
    await settle(() => dedicated.length, 1);
    assert.deepEqual(pooled.map((j) => j.publishId), [first]);
    assert.deepEqual(dedicated.map((j) => j.publishId), [second]);
  });

  it("does nothing for cancelled, expired or already handled publishes", async () => {
    await device("fcm", ["c"]);
    const fcm = await jobsOn("fcm");
    const { id } = await service.publish(req({ recipients: { target: { $case: "topics", value: { values: ["c"] } } }, notification: { alert: { body: "x" } }, expireAt: new Date(now.getTime() + 1000) }), APP, "");
    const later = new Date(now.getTime() + 2000);
    const expiring = new FanoutWorker({ publishes, directory: store, bus, recipients: storeRecipients(store), logger, now: () => later });
    await expiring.run(APP, id, "bulk");
    assert.equal((await publishes.get(APP, id))?.state, "expired");
    const second = await publishAndFanOut({ recipients: { target: { $case: "topics", value: { values: ["c"] } } }, notification: { alert: { body: "x" } } });
    await fanout.run(APP, second, "bulk");
    await settle(() => fcm.length, 1);
    assert.equal(fcm.length, 1, "a redelivered publish message hands nothing on twice");
  });

  it("aggregates results, counts repeated job results as duplicates and finishes the publish", async () => {
    for (let i = 0; i < 3; i++) await device("fcm", ["d"]);
    const id = await publishAndFanOut({ recipients: { target: { $case: "topics", value: { values: ["d"] } } }, notification: { alert: { body: "x" } } });
    const results = new ResultAggregator(publishes, bus, () => now);
    const result = (attempt: number, r: Partial<events.DeliveryResult>) => events.DeliveryResult.fromPartial({ app: APP, publishId: id, jobId: "j1", attempt, ...r });
    const first = result(0, { sent: 1, retrying: 1, invalidTokens: 1, failedByReason: { "fcm:UNREGISTERED": 1 }, runId: "run-a" });
    const at = (offset: number) => ({ partition: 3, offset: String(offset) });
    await results.handle(first, at(10));
    assert.equal((await publishes.get(APP, id))?.state, "sending", "one delivery is still retrying");
    // The same result read again (the aggregator restarted before committing): nothing changes.
    await results.handle(first, at(10));
    // The same attempt run again by a restarted sender: its send reached the device twice.
    await results.handle(result(0, { sent: 1, retrying: 1, invalidTokens: 1, runId: "run-b" }), at(11));
    // Both read again after a restart of the aggregator: nothing changes.
    await results.handle(first, at(10));
    await results.handle(result(0, { sent: 1, retrying: 1, invalidTokens: 1, runId: "run-b" }), at(11));
    await results.handle(result(1, { sent: 1, runId: "run-c" }), at(12));
    const done = await publishes.get(APP, id);
    assert.equal(done?.state, "done");
    assert.deepEqual([done?.counts.sent, done?.counts.invalidTokens, done?.counts.retries, done?.counts.duplicates], [2, 1, 1, 1]);
    assert.deepEqual(done?.counts.failedByReason, { "fcm:UNREGISTERED": 1 });
  });

  it("reports a publish that expired before its fan-out with every recipient targeted and expired", async () => {
    for (let i = 0; i < 3; i++) await device("fcm", ["late"]);
    const { id } = await service.publish(req({ recipients: { target: { $case: "topics", value: { values: ["late"] } } }, notification: { alert: { body: "x" } }, expireAt: new Date(now.getTime() + 1000) }), APP, "");
    const later = new Date(now.getTime() + 2000);
    await new FanoutWorker({ publishes, directory: store, bus, recipients: storeRecipients(store), logger, now: () => later }).run(APP, id, "bulk");
    const p = await publishes.get(APP, id);
    assert.deepEqual([p?.state, p?.counts.targeted, p?.counts.expired], ["expired", 3, 3]);
  });

  it("fails the devices of a provider the app no longer has, with a reason, and still finishes", async () => {
    await device("hms", ["mixed"]);
    await device("hms", ["mixed"]);
    const fcm = await device("fcm", ["mixed"]);
    const hmsJobs = await jobsOn("hms");
    const fcmJobs = await jobsOn("fcm");
    await store.apps.update(APP, { providers: ["fcm"], now });
    const id = await publishAndFanOut({ recipients: { target: { $case: "topics", value: { values: ["mixed"] } } }, notification: { alert: { body: "x" } } });
    await settle(() => fcmJobs.length, 1);
    assert.equal(hmsJobs.length, 0, "no job for a provider without senders");
    assert.deepEqual(fcmJobs[0]!.targets.map((t) => t.deviceId), [fcm.id]);
    const p = await publishes.get(APP, id);
    assert.deepEqual([p?.counts.targeted, p?.counts.failed, p?.counts.failedByReason], [3, 2, { "hms:PROVIDER_NOT_CONFIGURED": 2 }]);
    await new ResultAggregator(publishes, bus, () => now).handle(events.DeliveryResult.fromPartial({ app: APP, publishId: id, jobId: fcmJobs[0]!.jobId, sent: 1, runId: "r" }), { partition: 0, offset: "0" });
    assert.equal((await publishes.get(APP, id))?.state, "done");
  });

  it("refuses raw tokens of a provider the app does not have, naming the provider", async () => {
    await store.apps.update(APP, { providers: ["apns"], now });
    await assert.rejects(
      service.publish(req({ recipients: { target: { $case: "tokens", value: { provider: Provider.PROVIDER_FCM, tokens: ["t1"] } } }, notification: { alert: { body: "x" } } }), APP, ""),
      { code: 9, reason: "PROVIDER_NOT_CONFIGURED", field: "recipients.tokens.provider" },
    );
  });

  it("counts the recipients of a validate_only publish without sending", async () => {
    for (let i = 0; i < 4; i++) await device("fcm", ["v"]);
    await device("apns", ["v"]);
    const seen = await jobsOn("fcm");
    const res = await service.publish(req({ recipients: { target: { $case: "topics", value: { values: ["v"] } } }, notification: { fcm: { message: { notification: { title: "t" } } } }, validateOnly: true }), APP, "");
    assert.equal(res.id, "");
    assert.equal(res.publish?.counts?.targeted, 4, "only the devices the notification has a payload for");
    assert.deepEqual(await publishes.list(APP, {}, { limit: 10 }), [], "nothing stored");
    assert.equal(seen.length, 0);
  });

  it("finishes a publish that reached nobody", async () => {
    const id = await publishAndFanOut({ recipients: { target: { $case: "topics", value: { values: ["empty"] } } }, notification: { alert: { body: "x" } } });
    assert.equal((await publishes.get(APP, id))?.state, "done");
  });

  it("carries a small or high-priority publish and its jobs on the urgent lane, a broadcast on bulk", async () => {
    const one = await device("fcm", ["news"]);
    for (let i = 0; i < 3; i++) await device("fcm", ["news"]);
    const accepted = { bulk: [] as string[], urgent: [] as string[] };
    for (const lane of ["bulk", "urgent"] as const) {
      await bus.subscribe({ group: `accepted-${lane}`, topics: [BusTopics.publishesOf(lane)], handler: async (m) => void accepted[lane].push(events.PublishAccepted.decode(m.value).publishId) });
    }
    const bulk = await jobsOn("fcm", "bulk");
    const urgent = await jobsOn("fcm", "urgent");
    // The subscriptions of both lanes, as the dispatcher runs them.
    const running = await fanout.start();
    try {
      const notification = { alert: { body: "x" } };
      const broadcast = (await service.publish(req({ recipients: { target: { $case: "topics", value: { values: ["news"] } } }, notification }), APP, "")).id;
      const single = (await service.publish(req({ recipients: { target: { $case: "deviceIds", value: { values: [one.id] } } }, notification }), APP, "")).id;
      const loud = (await service.publish(req({ recipients: { target: { $case: "topics", value: { values: ["news"] } } }, notification, priority: dispatch.Priority.PRIORITY_HIGH }), APP, "")).id;
      await settle(() => bulk.length + urgent.length, 3);
      assert.deepEqual(accepted, { bulk: [broadcast], urgent: [single, loud] });
      assert.deepEqual(bulk.map((j) => [j.publishId, j.targets.length]), [[broadcast, 4]]);
      assert.deepEqual(urgent.map((j) => [j.publishId, j.targets.length]).sort(), [[loud, 4], [single, 1]].sort());
      for (const id of [broadcast, single, loud]) assert.equal((await publishes.get(APP, id))?.state, "sending");

      // The app's own rule: with urgent_max_targets 1, two named devices are bulk, one urgent.
      const app = (await store.apps.get(APP))!;
      await store.apps.update(APP, { limits: { ...app.limits, urgentMaxTargets: 1 }, now });
      // The publish path reads an app's limits at most every 5 s; the clock moves past that.
      now = new Date(now.getTime() + 5_000);
      const [a, b] = [one.id, (await device("fcm", [])).id];
      const pair = (await service.publish(req({ recipients: { target: { $case: "deviceIds", value: { values: [a, b] } } }, notification }), APP, "")).id;
      const lone = (await service.publish(req({ recipients: { target: { $case: "deviceIds", value: { values: [a] } } }, notification }), APP, "")).id;
      await settle(() => bulk.length + urgent.length, 5);
      assert.deepEqual(accepted, { bulk: [broadcast, pair], urgent: [single, loud, lone] });
      assert.deepEqual(bulk.map((j) => [j.publishId, j.targets.length]), [[broadcast, 4], [pair, 2]]);
      assert.ok(urgent.some((j) => j.publishId === lone));
    } finally {
      await running.stop();
    }
  });

  it("hands on due scheduled publishes and re-hands stale queued ones", async () => {
    const scheduler = new PublishScheduler(publishes, service, logger, () => now, 1000, 60_000);
    const seen: string[] = [];
    await bus.subscribe({ group: "s", topics: ["herald.publishes"], handler: async (m) => void seen.push(events.PublishAccepted.decode(m.value).publishId) });
    const { id } = await service.publish(req({ recipients: { target: { $case: "all", value: {} } }, notification: { alert: { body: "x" } }, sendAt: new Date(now.getTime() + 30_000) }), APP, "");
    assert.equal(await scheduler.tick(), 0);
    now = new Date(now.getTime() + 31_000);
    assert.equal(await scheduler.tick(), 1);
    assert.equal((await publishes.get(APP, id))?.state, "queued");
    now = new Date(now.getTime() + 61_000);
    assert.equal(await scheduler.tick(), 1, "still queued a minute later: handed on again");
    await settle(() => seen.length, 2);
    assert.deepEqual(seen, [id, id]);
  });
});
