import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { apps, registry, topic } from "@herald/proto";
import { startTestStack, type Clients, type TestApp, type TestStack } from "@herald/testing";
import { expectError, fcmToken, nowSeconds, Platform, Provider, signUserToken, Status } from "./fixtures.js";

// A key of app B can neither read nor change anything of app A, through any RPC. The tables
// below must name every method of every service, so a new RPC cannot skip this check.
describe("tenancy matrix (mongo store)", () => {
  let stack: TestStack;
  let a: TestApp;
  let b: TestApp;
  let A: Clients;
  let B: Clients;
  let device: registry.RegisterDeviceResponse["device"] & {};

  before(async () => {
    stack = await startTestStack({ store: "mongo" });
    a = await stack.createApp();
    b = await stack.createApp();
    A = stack.clients(a.serverKey);
    B = stack.clients(b.serverKey);
    await A.topic.updateUserTopics({ user: "alice", op: topic.TopicOp.TOPIC_OP_SET, topics: ["alice-feed"] });
    device = (await A.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken(), user: "alice", topics: ["a-news"], meta: { m: "1" } })).device!;
  });
  after(() => stack.stop());

  // A's state, read with A's key, must be exactly as set up after each of B's attempts.
  const assertAIntact = async () => {
    const got = (await A.registry.getDevice({ id: device.id })).device!;
    assert.equal(got.user, "alice");
    assert.deepEqual(got.topics, ["a-news", "alice-feed"]);
    assert.deepEqual(got.meta, { m: "1" });
    assert.equal((await A.registry.listDevices({})).devices.length, 1);
    assert.deepEqual((await A.topic.listUserTopics({ users: ["alice"] })).items, [{ user: "alice", topic: "alice-feed" }]);
  };
  const recipients = async (req: Partial<topic.StreamRecipientsRequest>) => {
    const out: string[] = [];
    for await (const r of B.topic.streamRecipients(req)) out.push(...r.recipients.map((x) => x.deviceId));
    return out;
  };

  const registryCases: Record<keyof typeof registry.RegistryServiceService, () => Promise<unknown>> = {
    registerDevice: async () => {
      const mine = await B.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: device.token, user: "mallory" });
      assert.notEqual(mine.device?.id, device.id, "the same token in another app is another device");
      await B.registry.removeDevices({ filter: { ids: [mine.device!.id] } });
    },
    getDevice: () => expectError(B.registry.getDevice({ id: device.id }), Status.NOT_FOUND),
    updateDevices: async () => {
      assert.equal((await B.registry.updateDevices({ filter: { ids: [device.id] }, userUpdate: { user: "mallory" }, metaUpdate: { meta: { m: "x" } } })).matched, 0);
      assert.equal((await B.registry.updateDevices({ filter: { users: ["alice"] }, topicsUpdate: { topics: [] } })).matched, 0);
      assert.equal((await B.registry.updateDevices({ filter: { providerTokens: [{ provider: Provider.PROVIDER_FCM, token: device.token }] }, tagsUpdate: { tags: { x: "y" } } })).matched, 0);
    },
    removeDevices: async () => {
      assert.equal((await B.registry.removeDevices({ filter: { ids: [device.id] } })).removed, 0);
      assert.equal((await B.registry.removeDevices({ filter: { users: ["alice"] } })).removed, 0);
    },
    listDevices: async () => {
      assert.deepEqual((await B.registry.listDevices({})).devices, []);
      assert.deepEqual((await B.registry.listDevices({ filter: { topics: ["a-news"] } })).devices, []);
    },
    bindUser: async () => {
      const token = signUserToken(b.userTokenSecret, { sub: "mallory", iss: `herald:${b.id}`, exp: nowSeconds() + 60 });
      await expectError(B.registry.bindUser({ deviceId: device.id, userToken: token }), Status.NOT_FOUND);
    },
    unbindUser: () => expectError(B.registry.unbindUser({ deviceId: device.id }), Status.NOT_FOUND),
    deleteUser: async () => assert.deepEqual(await B.registry.deleteUser({ user: "alice" }), { devicesRemoved: 0, userTopicsRemoved: 0 }),
    createUserToken: async () => {
      const minted = await B.registry.createUserToken({ user: "alice" });
      await expectError(A.registry.bindUser({ deviceId: device.id, userToken: minted.token }), Status.UNAUTHENTICATED, "BAD_USER_TOKEN_SIGNATURE");
    },
    listTokenFeedback: async () => {
      await stack.store.tokenFeedback.add([{ app: a.id, provider: "fcm", token: "a-dead-token", reason: "fcm:UNREGISTERED", at: new Date() }]);
      assert.equal((await A.registry.listTokenFeedback({})).entries.length, 1);
      assert.deepEqual((await B.registry.listTokenFeedback({})).entries, []);
    },
  };

  const topicCases: Record<keyof typeof topic.TopicServiceService, () => Promise<unknown>> = {
    updateDeviceTopics: () => expectError(B.topic.updateDeviceTopics({ deviceId: device.id, op: topic.TopicOp.TOPIC_OP_SET, topics: [] }), Status.NOT_FOUND),
    listDeviceTopics: async () => assert.deepEqual((await B.topic.listDeviceTopics({ deviceIds: [device.id] })).items, []),
    updateUserTopics: async () => assert.equal((await B.topic.updateUserTopics({ user: "alice", op: topic.TopicOp.TOPIC_OP_SET, topics: ["b-only"] })).devicesUpdated, 0),
    listUserTopics: async () => assert.ok((await B.topic.listUserTopics({ users: ["alice"] })).items.every((i) => i.topic === "b-only")),
    getTopicStats: async () => assert.equal((await B.topic.getTopicStats({ topics: ["a-news"] })).stats[0]?.deviceCount ?? 0, 0),
    listTopics: async () => assert.ok((await B.topic.listTopics({})).topics.every((t) => !t.topic.startsWith("a"))),
    listTopicUsers: async () => assert.deepEqual((await B.topic.listTopicUsers({ topic: "a-news" })).users, []),
    streamRecipients: async () => {
      assert.deepEqual(await recipients({ target: { $case: "topics", value: { values: ["a-news", "alice-feed"] } } }), []);
      assert.deepEqual(await recipients({ target: { $case: "deviceIds", value: { values: [device.id] } } }), []);
      assert.deepEqual(await recipients({ target: { $case: "users", value: { values: ["alice"] } } }), []);
      assert.deepEqual(await recipients({ target: { $case: "all", value: {} } }), []);
    },
  };

  const appCalls: Record<keyof typeof apps.AppServiceService, () => Promise<unknown>> = {
    createApp: () => B.apps.createApp({ id: "stolen" }),
    getApp: () => B.apps.getApp({ id: a.id }),
    listApps: () => B.apps.listApps({}),
    updateApp: () => B.apps.updateApp({ id: a.id, name: "pwned" }),
    deleteApp: () => B.apps.deleteApp({ id: a.id, purgeData: true }),
    createApiKey: () => B.apps.createApiKey({ appId: a.id, role: apps.ApiKeyRole.API_KEY_ROLE_SERVER }),
    listApiKeys: () => B.apps.listApiKeys({ appId: a.id }),
    revokeApiKey: () => B.apps.revokeApiKey({ appId: a.id, keyId: "x" }),
    rotateUserTokenSecret: () => B.apps.rotateUserTokenSecret({ appId: a.id }),
    getUserTokenSecret: () => B.apps.getUserTokenSecret({ appId: a.id }),
    verifyAppSecret: () => B.apps.verifyAppSecret({ appId: a.id, secret: a.userTokenSecret }),
    verifyRequestSignature: () => B.apps.verifyRequestSignature({ appId: a.id, stringToSign: "x", signature: "00", timestamp: 0 }),
    verifyUserToken: () => B.apps.verifyUserToken({ appId: a.id, userToken: "x.y.z" }),
  };

  it("covers every RPC", () => {
    assert.deepEqual(Object.keys(registryCases).sort(), Object.keys(registry.RegistryServiceService).sort());
    assert.deepEqual(Object.keys(topicCases).sort(), Object.keys(topic.TopicServiceService).sort());
    assert.deepEqual(Object.keys(appCalls).sort(), Object.keys(apps.AppServiceService).sort());
  });

  for (const [name, attempt] of Object.entries({ ...registryCases, ...topicCases })) {
    it(`${name}: app B cannot reach app A`, async () => {
      await attempt();
      await assertAIntact();
    });
  }

  for (const [name, attempt] of Object.entries(appCalls)) {
    it(`${name}: needs the admin key`, async () => {
      await expectError(attempt(), Status.PERMISSION_DENIED, "ADMIN_KEY_REQUIRED");
      await assertAIntact();
    });
  }

  it("an app key naming another app in x-herald-app is refused", async () => {
    const spoof = stack.clients(b.serverKey, a.id);
    await expectError(spoof.registry.getDevice({ id: device.id }), Status.PERMISSION_DENIED, "WRONG_APP");
  });

  it("the admin key reaches app data only when it names the app", async () => {
    await expectError(stack.clients(stack.adminKey).registry.listDevices({}), Status.PERMISSION_DENIED, "APP_REQUIRED");
    const admin = stack.clients(stack.adminKey, a.id);
    assert.equal((await admin.registry.getDevice({ id: device.id })).device?.id, device.id);
  });
});
