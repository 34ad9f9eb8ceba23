import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { topic } from "@herald/proto";
import { startTestStack, type StoreKind, type TestStack } from "@herald/testing";
import { expectError, fcmToken, apnsToken, nowSeconds, Platform, Provider, signUserToken, Status } from "./fixtures.js";

const { TopicOp } = topic;

for (const kind of ["memory", "mongo"] as StoreKind[]) {
  describe(`topics (${kind} store)`, () => {
    let stack: TestStack;
    before(async () => {
      stack = await startTestStack({ store: kind });
    });
    after(() => stack.stop());

    const setup = async (limits?: { maxTopicsPerDevice?: number }) => {
      const app = await stack.createApp(limits);
      const c = stack.clients(app.serverKey);
      const register = async (extra: Record<string, unknown> = {}) =>
        (await c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken(), ...extra })).device!;
      return { app, c, register };
    };

    it("adds, removes and sets device topics within name and count limits", async () => {
      const { c, register } = await setup({ maxTopicsPerDevice: 3 });
      const d = await register();
      assert.deepEqual((await c.topic.updateDeviceTopics({ deviceId: d.id, op: TopicOp.TOPIC_OP_ADD, topics: ["b", "a"] })).topics, ["a", "b"]);
      assert.deepEqual((await c.topic.updateDeviceTopics({ deviceId: d.id, op: TopicOp.TOPIC_OP_REMOVE, topics: ["a"] })).topics, ["b"]);
      assert.deepEqual((await c.topic.updateDeviceTopics({ deviceId: d.id, op: TopicOp.TOPIC_OP_SET, topics: ["x", "y"] })).topics, ["x", "y"]);
      await expectError(c.topic.updateDeviceTopics({ deviceId: d.id, op: TopicOp.TOPIC_OP_ADD, topics: ["p", "q"] }), Status.RESOURCE_EXHAUSTED, "TOO_MANY_TOPICS", "topics");
      await expectError(c.topic.updateDeviceTopics({ deviceId: d.id, op: TopicOp.TOPIC_OP_SET, topics: ["1", "2", "3", "4"] }), Status.RESOURCE_EXHAUSTED, "TOO_MANY_TOPICS");
      await expectError(c.topic.updateDeviceTopics({ deviceId: d.id, op: TopicOp.TOPIC_OP_ADD, topics: ["ok", "no/slash"] }), Status.INVALID_ARGUMENT, "INVALID_TOPIC", "topics[1]");
      await expectError(c.topic.updateDeviceTopics({ deviceId: d.id, op: TopicOp.TOPIC_OP_UNSPECIFIED, topics: ["a"] }), Status.INVALID_ARGUMENT, "INVALID_OP", "op");
      await expectError(c.topic.updateDeviceTopics({ deviceId: "missing", op: TopicOp.TOPIC_OP_ADD, topics: ["a"] }), Status.NOT_FOUND, "DEVICE_NOT_FOUND");
      assert.deepEqual((await c.registry.getDevice({ id: d.id })).device?.topics, ["x", "y"], "refused updates changed nothing");
    });

    it("allows 5000 topics per device by default and refuses the 5001st", async () => {
      // A database of its own: 5000 rows would slow every later query of this suite on FerretDB.
      const own = await startTestStack({ store: kind });
      try {
        const app = await own.createApp();
        const c = own.clients(app.serverKey);
        const d = (await c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken() })).device!;
        const topics = Array.from({ length: 5000 }, (_, i) => `t${i}`);
        assert.equal((await c.topic.updateDeviceTopics({ deviceId: d.id, op: TopicOp.TOPIC_OP_SET, topics })).topics.length, 5000);
        await expectError(c.topic.updateDeviceTopics({ deviceId: d.id, op: TopicOp.TOPIC_OP_ADD, topics: ["one-more"] }), Status.RESOURCE_EXHAUSTED, "TOO_MANY_TOPICS");
        assert.equal((await c.topic.getTopicStats({ topics: ["t4999"] })).stats[0]?.deviceCount, 1);
      } finally {
        await own.stop();
      }
    });

    it("applies user topics to the user's devices now and later, and removes them on logout", async () => {
      const { app, c, register } = await setup();
      const existing = await register({ user: "kim" });
      const res = await c.topic.updateUserTopics({ user: "kim", op: TopicOp.TOPIC_OP_ADD, topics: ["kim-feed", "promo"] });
      assert.deepEqual(res, { topics: ["kim-feed", "promo"], devicesUpdated: 1 });
      assert.deepEqual((await c.registry.getDevice({ id: existing.id })).device?.topics, ["kim-feed", "promo"]);
      const later = await register();
      const token = signUserToken(app.userTokenSecret, { sub: "kim", iss: `herald:${app.id}`, exp: nowSeconds() + 60 });
      assert.deepEqual((await c.registry.bindUser({ deviceId: later.id, userToken: token })).device?.topics, ["kim-feed", "promo"]);
      await c.topic.updateUserTopics({ user: "kim", op: TopicOp.TOPIC_OP_REMOVE, topics: ["promo"] });
      assert.deepEqual((await c.registry.getDevice({ id: later.id })).device?.topics, ["kim-feed"]);
      await c.registry.unbindUser({ deviceId: later.id });
      assert.deepEqual((await c.registry.getDevice({ id: later.id })).device?.topics, []);
      assert.deepEqual((await c.registry.getDevice({ id: existing.id })).device?.topics, ["kim-feed"]);
      const listed = await c.topic.listDeviceTopics({ deviceIds: [existing.id], includeDevice: true });
      assert.equal(listed.items[0]?.fromUser, true);
      assert.equal(listed.items[0]?.fromDevice, false);
      assert.equal(listed.items[0]?.device?.id, existing.id);
    });

    it("reports topic stats, topic lists and the users of a topic", async () => {
      const { c, register } = await setup();
      await register({ topics: ["news", "sport"], user: "u1" });
      await register({ topics: ["news"], user: "u1" });
      await register({ topics: ["news"], user: "u2" });
      await register({ topics: ["news"] });
      await c.topic.updateUserTopics({ user: "u3", op: TopicOp.TOPIC_OP_SET, topics: ["news"] });
      const stats = await c.topic.getTopicStats({ topics: ["news", "sport", "none"] });
      const by = Object.fromEntries(stats.stats.map((s) => [s.topic, s]));
      assert.deepEqual(by.news, { topic: "news", deviceCount: 4, userCount: 2, userTopicCount: 1 });
      assert.deepEqual(by.sport, { topic: "sport", deviceCount: 1, userCount: 1, userTopicCount: 0 });
      assert.equal(by.none?.deviceCount ?? 0, 0);
      // The limit counts the list as sent, as the OpenAPI document says: 101 repeats are refused.
      await expectError(c.topic.getTopicStats({ topics: Array(101).fill("news") }), Status.INVALID_ARGUMENT, undefined, "topics");
      const first = await c.topic.listTopics({ page: { limit: 1 } });
      assert.equal(first.topics[0]?.topic, "news");
      assert.equal(first.hasMore, true);
      const second = await c.topic.listTopics({ page: { limit: 1, cursor: first.nextCursor } });
      assert.deepEqual(second.topics.map((t) => t.topic), ["sport"]);
      assert.deepEqual((await c.topic.listTopics({ prefix: "sp" })).topics.map((t) => t.topic), ["sport"]);
      assert.deepEqual((await c.topic.listTopicUsers({ topic: "news" })).users, ["u1", "u2"]);
      const userTopics = await c.topic.listUserTopics({ topicPrefix: "ne" });
      assert.deepEqual(userTopics.items, [{ user: "u3", topic: "news" }]);
    });

    it("streams the recipients of overlapping topics once each, in order, in bounded batches", async () => {
      const { c } = await setup();
      const ids: string[] = [];
      const make = async (topics: string[], provider = Provider.PROVIDER_FCM) => {
        const token = provider === Provider.PROVIDER_APNS ? apnsToken() : fcmToken();
        const platform = provider === Provider.PROVIDER_APNS ? Platform.PLATFORM_IOS : Platform.PLATFORM_ANDROID;
        const d = (await c.registry.registerDevice({ provider, platform, token, topics, meta: { name: "n" } })).device!;
        ids.push(d.id);
        return d;
      };
      for (let i = 0; i < 300; i++) await make(i % 3 === 0 ? ["a", "b"] : i % 3 === 1 ? ["a"] : ["b"], i % 10 === 0 ? Provider.PROVIDER_APNS : Provider.PROVIDER_FCM);
      await make(["c"]);
      const collect = async (req: Record<string, unknown>) => {
        const got: topic.Recipient[] = [];
        for await (const batch of c.topic.streamRecipients(req)) {
          assert.ok(batch.recipients.length <= ((req.batchSize as number) || 500));
          got.push(...batch.recipients);
        }
        return got;
      };
      const all = await collect({ target: { $case: "topics", value: { values: ["a", "b"] } }, batchSize: 64, includeMeta: true });
      assert.equal(all.length, 300);
      assert.deepEqual(all.map((r) => r.deviceId), [...ids.slice(0, 300)].sort(), "each device once, ascending");
      assert.equal(all[0]?.meta.name, "n");
      const apnsOnly = await collect({ target: { $case: "topics", value: { values: ["a", "b"] } }, providers: [Provider.PROVIDER_APNS] });
      assert.equal(apnsOnly.length, 30);
      const excluded = await collect({ target: { $case: "topics", value: { values: ["a"] } }, excludeDeviceIds: [ids[0], ids[1]] });
      assert.equal(excluded.length, 198);
      const sorted = all.map((r) => r.deviceId);
      const resumed = await collect({ target: { $case: "topics", value: { values: ["a", "b"] } }, afterDeviceId: sorted[99] });
      assert.deepEqual(resumed.map((r) => r.deviceId), sorted.slice(100));
      const everyone = await collect({ target: { $case: "all", value: {} } });
      assert.equal(everyone.length, 301);
      const byIds = await collect({ target: { $case: "deviceIds", value: { values: [ids[5], ids[300], "missing"] } } });
      assert.deepEqual(byIds.map((r) => r.deviceId).sort(), [ids[5], ids[300]].sort());
      await expectError(collect({ target: { $case: "topics", value: { values: [] } } }), Status.INVALID_ARGUMENT, undefined, "topics");
      await expectError(collect({ target: { $case: "all", value: {} }, batchSize: 5000 }), Status.INVALID_ARGUMENT, undefined, "batch_size");
    });

    it("streams recipients by users and by tag filter", async () => {
      const { c, register } = await setup();
      const a = await register({ user: "lee", tags: { lang: "fr", tier: "gold" } });
      const b = await register({ user: "lee", tags: { lang: "en", tier: "gold" } });
      await register({ user: "max", tags: { lang: "fr" } });
      const ids = async (req: Record<string, unknown>) => {
        const out: string[] = [];
        for await (const batch of c.topic.streamRecipients(req)) out.push(...batch.recipients.map((r) => r.deviceId));
        return out.sort();
      };
      assert.deepEqual(await ids({ target: { $case: "users", value: { values: ["lee"] } } }), [a.id, b.id].sort());
      assert.deepEqual(await ids({ target: { $case: "tags", value: { all: [{ key: "lang", values: ["fr"] }, { key: "tier", values: [] }] } } }), [a.id]);
    });

    it("keeps private topics for SERVER keys", async () => {
      const { app, c, register } = await setup();
      const d = await register();
      const client = stack.clients(app.clientKey);
      await expectError(client.topic.updateDeviceTopics({ deviceId: d.id, op: TopicOp.TOPIC_OP_ADD, topics: ["private-staff"] }), Status.PERMISSION_DENIED, "PRIVATE_TOPIC");
      await client.topic.updateDeviceTopics({ deviceId: d.id, op: TopicOp.TOPIC_OP_ADD, topics: ["public"] });
      await c.topic.updateDeviceTopics({ deviceId: d.id, op: TopicOp.TOPIC_OP_ADD, topics: ["private-staff"] });
      assert.deepEqual((await client.topic.updateDeviceTopics({ deviceId: d.id, op: TopicOp.TOPIC_OP_REMOVE, topics: ["private-staff"] })).topics, ["public"], "leaving is always allowed");
      await expectError(client.topic.listTopics({}), Status.PERMISSION_DENIED, "SERVER_KEY_REQUIRED");
    });
  });
}
