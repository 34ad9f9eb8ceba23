import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";
import { createLogger, MemoryBus, Status, type Bus, type BusMessage, type CallContext, type DeepPartial } from "@herald/platform";
import { BusTopics, dispatch, events, Provider } from "@herald/proto";
import { createMemoryPublishRepository, createMemoryStore, DEFAULT_LIMITS, DEFAULT_WEBPUSH_HOSTS, type PublishRepository, type Store } from "@herald/store";
import { PublishService } from "./publish.service.js";
import { storeRecipients } from "./recipient.source.js";

const rules = { webPushHosts: DEFAULT_WEBPUSH_HOSTS, webPushAllowInsecure: false };
const alert = { title: "Hi", body: "there" };
const req = (r: DeepPartial<dispatch.PublishRequest>) => dispatch.PublishRequest.fromPartial(r as dispatch.PublishRequest);
const topics = (...values: string[]) => ({ target: { $case: "topics" as const, value: { values } } });

describe("PublishService", () => {
  let publishes: PublishRepository;
  let store: Store;
  let bus: Bus;
  let service: PublishService;
  let now: Date;
  const ctx = (app = "app1"): CallContext => ({ app, method: "m", principal: null, metadata: undefined as never, signal: new AbortController().signal, deadline: new Date(Date.now() + 10_000), logger: createLogger({ service: "t", level: "silent" }) });
  const onBus = async (topic: string) => {
    const got: BusMessage[] = [];
    await bus.subscribe({ group: `g-${Math.random()}`, topics: [topic], handler: async (m) => void got.push(m) });
    return got;
  };
  const until = async (cond: () => boolean) => {
    const deadline = Date.now() + 5000;
    while (!cond()) {
      if (Date.now() > deadline) assert.fail("condition not met within 5 s");
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const refused = async (p: Promise<unknown>, field: string, reason?: string) => {
    await assert.rejects(p, (err: { code: number; field?: string; reason: string }) => {
      assert.equal(err.code, Status.INVALID_ARGUMENT);
      assert.equal(err.field, field);
      if (reason) assert.equal(err.reason, reason);
      return true;
    });
  };

  beforeEach(async () => {
    publishes = createMemoryPublishRepository();
    store = createMemoryStore();
    bus = new MemoryBus();
    now = new Date();
    for (const id of ["app1", "app2"]) {
      await store.apps.create({ id, name: id, limits: DEFAULT_LIMITS, providers: ["apns", "fcm", "hms", "webpush"], secretVersion: 1, owner: "", vapidPublicKey: "", webhooks: [], createdAt: now, updatedAt: now });
    }
    service = new PublishService({ publishes, directory: store, recipients: storeRecipients(store), bus, tokenRules: rules, logger: createLogger({ service: "t", level: "silent" }), now: () => now, watchIntervalMs: 10 });
  });

  it("stores a publish, hands it to the bus and answers with its id", async () => {
    const seen = await onBus(BusTopics.publishes);
    const res = await service.publish(req({ recipients: topics("news"), notification: { alert }, labels: { campaign: "c1" } }), "app1", "");
    assert.ok(res.id);
    assert.equal(res.publish?.state, dispatch.PublishState.PUBLISH_STATE_QUEUED);
    assert.equal((await publishes.get("app1", res.id))?.state, "queued");
    await until(() => seen.length === 1);
    const accepted = events.PublishAccepted.decode(seen[0]!.value);
    assert.equal(accepted.publishId, res.id);
    assert.equal(seen[0]!.key, res.id);
    assert.deepEqual(accepted.request?.recipients?.target, { $case: "topics", value: { values: ["news"] } });
  });

  it("returns the first publish for a repeated uid and never hands it on twice", async () => {
    const seen = await onBus(BusTopics.publishes);
    const a = await service.publish(req({ uid: "u-1", recipients: topics("news"), notification: { alert } }), "app1", "");
    const b = await service.publish(req({ uid: "u-1", recipients: topics("other"), notification: { alert } }), "app1", "");
    const c = await service.publish(req({ uid: "u-1", recipients: topics("news"), notification: { alert } }), "app2", "");
    assert.equal(b.id, a.id);
    assert.equal(b.duplicate, true);
    assert.notEqual(c.id, a.id, "uids are per app");
    await until(() => seen.length === 2);
  });

  it("refuses bad requests with the field named", async () => {
    const p = (r: DeepPartial<dispatch.PublishRequest>) => service.publish(req({ notification: { alert }, ...r }), "app1", "");
    await refused(p({}), "recipients", "RECIPIENTS_REQUIRED");
    await refused(p({ recipients: { target: { $case: "users", value: { values: Array.from({ length: 1001 }, (_, i) => `u${i}`) } } } }), "recipients.users", "TOO_MANY_RECIPIENTS");
    await refused(p({ recipients: topics(...Array.from({ length: 101 }, (_, i) => `t${i}`)) }), "recipients.topics", "TOO_MANY_RECIPIENTS");
    await refused(p({ recipients: topics("ok", "not ok") }), "recipients.topics[1]", "INVALID_TOPIC");
    await refused(p({ recipients: { target: { $case: "tokens", value: { provider: Provider.PROVIDER_APNS, tokens: ["abc"] } } } }), "recipients.tokens.tokens[0]", "INVALID_TOKEN");
    await refused(p({ recipients: { target: { $case: "native", value: { provider: Provider.PROVIDER_APNS, target: { $case: "topic", value: "x" } } } } }), "recipients.native.provider");
    await refused(p({ recipients: topics("a"), expireAt: new Date(now.getTime() - 1000) }), "expire_at", "EXPIRED");
    await refused(p({ recipients: topics("a"), sendAt: new Date(now.getTime() + 5000), expireAt: new Date(now.getTime() + 4000) }), "send_at");
    await refused(p({ recipients: topics("a"), notification: { alert: { body: "x".repeat(5000) } } }), "notification.alert", "PAYLOAD_TOO_LARGE");
    await refused(
      service.publish(req({ recipients: { target: { $case: "tokens", value: { provider: Provider.PROVIDER_FCM, tokens: ["t1"] } } }, notification: { apns: { payload: { aps: {} } } } }), "app1", ""),
      "notification", "PAYLOAD_REQUIRED",
    );
    assert.deepEqual(await publishes.list("app1", {}, { limit: 10 }), [], "nothing refused was stored");
  });

  it("validates without storing when asked", async () => {
    const res = await service.publish(req({ recipients: topics("a"), notification: { alert }, validateOnly: true }), "app1", "");
    assert.equal(res.id, "");
    assert.deepEqual(await publishes.list("app1", {}, { limit: 10 }), []);
  });

  it("schedules a publish with send_at and does not hand it on yet", async () => {
    const seen = await onBus(BusTopics.publishes);
    const res = await service.publish(req({ recipients: topics("a"), notification: { alert }, sendAt: new Date(now.getTime() + 60_000) }), "app1", "");
    assert.equal(res.publish?.state, dispatch.PublishState.PUBLISH_STATE_SCHEDULED);
    assert.deepEqual((await publishes.listDue(new Date(now.getTime() + 61_000), 10)).map((p) => p.id), [res.id]);
    await service.publish(req({ recipients: topics("b"), notification: { alert } }), "app1", "");
    await until(() => seen.length === 1);
    assert.notEqual(events.PublishAccepted.decode(seen[0]!.value).publishId, res.id);
  });

  it("marks the publish failed and answers UNAVAILABLE when the bus refuses it", async () => {
    const broken: Bus = { ...bus, publish: async () => { throw new Error("broker down"); } } as Bus;
    service = new PublishService({ publishes, directory: store, recipients: storeRecipients(store), bus: broken, tokenRules: rules, logger: createLogger({ service: "t", level: "silent" }), now: () => now });
    await assert.rejects(service.publish(req({ uid: "x", recipients: topics("a"), notification: { alert } }), "app1", ""), { code: Status.UNAVAILABLE, reason: "BUS_UNAVAILABLE" });
    const [stored] = await publishes.list("app1", {}, { limit: 10 });
    assert.equal(stored?.state, "failed");
  });

  it("accepts and refuses batch entries one by one", async () => {
    const res = await service.publishBatch(dispatch.PublishBatchRequest.fromPartial({ requests: [
      req({ recipients: topics("a"), notification: { alert } }),
      req({ recipients: topics("bad topic"), notification: { alert } }),
    ] }), ctx());
    assert.equal(res.results[0]?.result?.$case, "accepted");
    const error = res.results[1]?.result;
    assert.equal(error?.$case, "error");
    assert.equal(error?.$case === "error" && error.value.field, "requests[1].recipients.topics[0]");
  });

  it("cancels a queued publish once, counts its recipients as cancelled and tells the pipeline", async () => {
    for (let i = 0; i < 3; i++) {
      const { device } = await store.devices.write({ app: "app1", provider: "fcm", platform: "android", token: `c-${i}`, user: "", tags: {}, meta: {}, locale: "", timezone: "", now });
      await store.subscriptions.add("app1", device.id, device, ["a"], "device");
    }
    const control = await onBus(BusTopics.control);
    const { id } = await service.publish(req({ recipients: topics("a"), notification: { alert } }), "app1", "");
    const res = await service.cancel({ id }, ctx());
    assert.equal(res.publish?.state, dispatch.PublishState.PUBLISH_STATE_CANCELLED);
    assert.deepEqual([res.publish?.counts?.targeted, res.publish?.counts?.cancelled], [3, 3]);
    await until(() => control.length === 1);
    assert.deepEqual(events.PublishControl.decode(control[0]!.value), { app: "app1", publishId: id, cancelled: true });
    assert.equal((await service.cancel({ id }, ctx())).publish?.counts?.cancelled, 3, "a repeated cancel counts nothing twice");
    await assert.rejects(service.cancel({ id }, ctx("app2")), { code: Status.NOT_FOUND });
  });

  it("lists newest first with state filters and cursors", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      now = new Date(now.getTime() + 1000);
      ids.push((await service.publish(req({ recipients: topics("a"), notification: { alert } }), "app1", "")).id);
    }
    await service.cancel({ id: ids[0]! }, ctx());
    const first = await service.list(dispatch.ListPublishesRequest.fromPartial({ page: { limit: 2 } }), ctx());
    assert.deepEqual(first.publishes.map((p) => p.id), [ids[4], ids[3]]);
    const second = await service.list(dispatch.ListPublishesRequest.fromPartial({ page: { limit: 10, cursor: first.nextCursor } }), ctx());
    assert.deepEqual(second.publishes.map((p) => p.id), [ids[2], ids[1], ids[0]]);
    const cancelled = await service.list(dispatch.ListPublishesRequest.fromPartial({ states: [dispatch.PublishState.PUBLISH_STATE_CANCELLED] }), ctx());
    assert.deepEqual(cancelled.publishes.map((p) => p.id), [ids[0]]);
  });

  it("streams a publish's progress until it is final", async () => {
    const { id } = await service.publish(req({ recipients: topics("a"), notification: { alert } }), "app1", "");
    const states: string[] = [];
    const watching = service.watch({ id }, ctx(), async (r) => void states.push(`${dispatch.publishStateToJSON(r.publish!.state)}:${r.publish!.counts?.sent}`));
    await until(() => states.length === 1);
    await publishes.transition("app1", id, ["queued"], "sending", { now });
    await until(() => states.length === 2);
    await publishes.addCounts("app1", id, { targeted: 2, sent: 2 }, now);
    await until(() => states.length === 3);
    await publishes.transition("app1", id, ["sending"], "done", { now, finishedAt: now });
    await watching;
    assert.deepEqual(states, ["PUBLISH_STATE_QUEUED:0", "PUBLISH_STATE_SENDING:0", "PUBLISH_STATE_SENDING:2", "PUBLISH_STATE_DONE:2"]);
  });

  it("counts one delivered and one opened receipt per recipient device, and refuses the rest", async () => {
    const device = async (app: string, topics: string[]) => {
      const { device: d } = await store.devices.write({ app, provider: "fcm", platform: "android", token: `t-${Math.random()}`, user: "", tags: {}, meta: {}, locale: "", timezone: "", now });
      await store.subscriptions.add(app, d.id, d, topics, "device");
      return d.id;
    };
    const [d1, d2, outsider, elsewhere] = [await device("app1", ["a"]), await device("app1", ["a", "b"]), await device("app1", ["b"]), await device("app2", ["a"])];
    const { id } = await service.publish(req({ recipients: topics("a"), notification: { alert } }), "app1", "");
    const r = (status: dispatch.ReceiptStatus, deviceId = d1) => service.receipt({ publishId: id, deviceId, status }, ctx());
    await r(dispatch.ReceiptStatus.RECEIPT_STATUS_DELIVERED);
    await r(dispatch.ReceiptStatus.RECEIPT_STATUS_DELIVERED);
    await r(dispatch.ReceiptStatus.RECEIPT_STATUS_OPENED);
    await r(dispatch.ReceiptStatus.RECEIPT_STATUS_DELIVERED, d2);
    // Invented ids, devices the publish did not target and other apps' devices count nothing.
    await assert.rejects(r(dispatch.ReceiptStatus.RECEIPT_STATUS_OPENED, "invented"), { code: Status.NOT_FOUND });
    await assert.rejects(r(dispatch.ReceiptStatus.RECEIPT_STATUS_OPENED, outsider), { code: Status.FAILED_PRECONDITION, reason: "NOT_A_RECIPIENT" });
    await assert.rejects(r(dispatch.ReceiptStatus.RECEIPT_STATUS_OPENED, elsewhere), { code: Status.NOT_FOUND });
    await assert.rejects(r(dispatch.ReceiptStatus.RECEIPT_STATUS_OPENED, "x".repeat(500_000)), { code: Status.INVALID_ARGUMENT, field: "device_id" });
    const counts = (await publishes.get("app1", id))!.counts;
    assert.equal(counts.deliveredReceipts, 2);
    assert.equal(counts.openedReceipts, 1);
    await assert.rejects(r(dispatch.ReceiptStatus.RECEIPT_STATUS_UNSPECIFIED), { field: "status" });
  });

  describe("max_publish_rate", () => {
    // 200 ms into a one-second window: 800 ms are left of it.
    const windowStart = (Math.floor(Date.now() / 1000) + 10) * 1000;
    const limit = async (app: string, maxPublishRate: number) => {
      await store.apps.update(app, { limits: { ...DEFAULT_LIMITS, maxPublishRate }, now });
    };
    const one = (extra: DeepPartial<dispatch.PublishRequest> = {}, app = "app1") => service.publish(req({ recipients: topics("a"), notification: { alert }, ...extra }), app, "");
    const overLimit = (retryAfterMs: number, max = 2) => (err: { code: number; reason: string; metadata: Record<string, string>; message: string }) => {
      assert.equal(err.code, Status.RESOURCE_EXHAUSTED);
      assert.equal(err.reason, "PUBLISH_RATE_EXCEEDED");
      assert.deepEqual(err.metadata, { retry_after_ms: String(retryAfterMs), limit: String(max) });
      assert.match(err.message, new RegExp(`at most ${max} publishes per second; retry in ${retryAfterMs} ms`));
      return true;
    };

    beforeEach(() => {
      now = new Date(windowStart + 200);
    });

    it("refuses publishes over the limit with RESOURCE_EXHAUSTED and a retry hint, and accepts again in the next window", async () => {
      await limit("app1", 2);
      // validate_only publishes take no slot.
      for (let i = 0; i < 3; i++) await one({ validateOnly: true });
      await one();
      now = new Date(windowStart + 700);
      await one();
      await assert.rejects(one(), overLimit(300));
      await assert.rejects(one({ sendAt: new Date(windowStart + 60_000) }), overLimit(300), "scheduled publishes count when they are accepted");
      // Refused input takes no slot either, and is refused for what it is.
      await assert.rejects(one({ recipients: topics("bad topic") }), { code: Status.INVALID_ARGUMENT });
      await one({}, "app2");
      await one({}, "app2");
      await one({}, "app2");
      assert.equal((await publishes.list("app1", {}, { limit: 10 })).length, 2, "nothing refused was stored");
      now = new Date(windowStart + 999);
      await assert.rejects(one(), overLimit(1));
      now = new Date(windowStart + 1000);
      await one();
      await one();
      await assert.rejects(one(), overLimit(1000));
    });

    it("counts every batch entry and refuses the ones over the limit one by one", async () => {
      await limit("app1", 2);
      const res = await service.publishBatch(dispatch.PublishBatchRequest.fromPartial({ requests: [
        req({ recipients: topics("a"), notification: { alert } }),
        req({ recipients: topics("bad topic"), notification: { alert } }),
        req({ recipients: topics("b"), notification: { alert } }),
        req({ recipients: topics("c"), notification: { alert } }),
      ] }), ctx());
      assert.deepEqual(res.results.map((r) => r.result?.$case), ["accepted", "error", "accepted", "error"]);
      const refused = res.results[3]?.result;
      assert.ok(refused?.$case === "error");
      assert.deepEqual([refused.value.code, refused.value.reason, refused.value.field], [Status.RESOURCE_EXHAUSTED, "PUBLISH_RATE_EXCEEDED", ""]);
      assert.match(refused.value.message, /retry in 800 ms/);
    });

    it("answers a repeated uid over the limit with the existing publish, never refuses it", async () => {
      await limit("app1", 1);
      const first = await one({ uid: "order-42" });
      const again = await one({ uid: "order-42" });
      assert.deepEqual([again.id, again.duplicate], [first.id, true]);
      await assert.rejects(one({ uid: "order-43" }), overLimit(800, 1), "a new uid is refused");
    });

    it("applies the installation default to apps without a limit of their own, and follows a changed limit within seconds", async () => {
      service = new PublishService({ publishes, directory: store, recipients: storeRecipients(store), bus, tokenRules: rules, logger: createLogger({ service: "t", level: "silent" }), now: () => now, defaultPublishRate: 1 });
      await one({}, "app2");
      await assert.rejects(one({}, "app2"), overLimit(800, 1));
      await limit("app2", 3);
      now = new Date(windowStart + 1200);
      await one({}, "app2");
      await assert.rejects(one({}, "app2"), overLimit(800, 1), "the limit read is cached for a few seconds");
      now = new Date(windowStart + 6200);
      for (let i = 0; i < 3; i++) await one({}, "app2");
      await assert.rejects(one({}, "app2"), overLimit(800, 3));
    });
  });
});
