import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { apps, events } from "@herald/proto";
import { startTestStack, type StoreKind, type TestApp, type TestStack } from "@herald/testing";
import { apnsToken, expectError, fcmToken, nowSeconds, Platform, Provider, signUserToken, Status, webPushToken } from "./fixtures.js";

const DAY = 24 * 3600 * 1000;

for (const kind of ["memory", "mongo"] as StoreKind[]) {
  describe(`registry (${kind} store)`, () => {
    let stack: TestStack;
    // The services' clock: real time plus what the tests fast-forward.
    let clock = 0;
    before(async () => {
      stack = await startTestStack({ store: kind, now: () => new Date(Date.now() + clock) });
    });
    after(() => stack.stop());

    const server = async (limits?: Partial<apps.AppLimits>) => {
      const app = await stack.createApp(limits);
      return { app, c: stack.clients(app.serverKey) };
    };
    const userToken = (app: TestApp, user: string, extra: Record<string, unknown> = {}) =>
      // Valid for ten minutes of the services' clock (some cases move it forward).
      signUserToken(app.userTokenSecret, { sub: user, iss: `herald:${app.id}`, exp: nowSeconds() + Math.ceil(clock / 1000) + 600, ...extra });

    it("registers a device once per token and updates it in place", async () => {
      const { c } = await server();
      const token = apnsToken();
      const first = await c.registry.registerDevice({
        provider: Provider.PROVIDER_APNS, platform: Platform.PLATFORM_IOS, token: token.toUpperCase(),
        topics: ["news", "sport"], tags: { team: "red" }, meta: { name: "Ada" }, locale: "en-gb", timezone: "Europe/Paris",
      });
      assert.equal(first.created, true);
      assert.equal(first.device?.token, token, "APNs tokens are stored in canonical lowercase");
      assert.equal(first.device?.locale, "en-GB");
      assert.deepEqual(first.device?.topics, ["news", "sport"]);
      const again = await c.registry.registerDevice({ provider: Provider.PROVIDER_APNS, platform: Platform.PLATFORM_IOS, token, topics: ["weather"], tags: { team: "blue" } });
      assert.equal(again.created, false);
      assert.equal(again.device?.id, first.device?.id);
      assert.deepEqual(again.device?.topics, ["weather"], "registration is a full-state write");
      assert.deepEqual(again.device?.tags, { team: "blue" });
      assert.deepEqual(again.device?.meta, {});
      const listed = await c.registry.listDevices({});
      assert.equal(listed.devices.length, 1);
    });

    it("takes map keys in any script, stored in NFC", async () => {
      const { c } = await server();
      const d = (await c.registry.registerDevice({
        provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken(),
        // "e" + combining acute: the same key as "é" once normalised.
        tags: { "équipe": "rouge", "campagne-e\u0301te\u0301": "oui" }, meta: { prénom: "Ada", "名前": "エイダ" },
      })).device!;
      assert.deepEqual(d.tags, { "équipe": "rouge", "campagne-été": "oui" });
      assert.deepEqual(d.meta, { prénom: "Ada", "名前": "エイダ" });
      const found = await c.registry.listDevices({ filter: { tags: { all: [{ key: "campagne-été", values: ["oui"] }] } } });
      assert.deepEqual(found.devices.map((x) => x.id), [d.id]);
    });

    it("moves a device to a refreshed token when given its id", async () => {
      const { c } = await server();
      const d = (await c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken(), topics: ["a"] })).device!;
      const fresh = fcmToken();
      const moved = await c.registry.registerDevice({ id: d.id, provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fresh, topics: ["a"] });
      assert.equal(moved.device?.id, d.id);
      assert.equal(moved.device?.token, fresh);
      assert.equal((await c.registry.listDevices({})).devices.length, 1);
    });

    it("refuses every malformed field with INVALID_ARGUMENT naming it", async () => {
      const { c } = await server();
      const base = { provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken() };
      const cases: Array<[Record<string, unknown>, string, string]> = [
        [{ provider: Provider.PROVIDER_UNSPECIFIED }, "provider", "INVALID_PROVIDER"],
        [{ platform: Platform.PLATFORM_UNSPECIFIED }, "platform", "INVALID_PLATFORM"],
        [{ provider: Provider.PROVIDER_APNS, platform: Platform.PLATFORM_ANDROID, token: apnsToken() }, "platform", "PLATFORM_MISMATCH"],
        [{ provider: Provider.PROVIDER_APNS, platform: Platform.PLATFORM_IOS, token: "abc" }, "token", "INVALID_TOKEN"],
        [{ provider: Provider.PROVIDER_APNS, platform: Platform.PLATFORM_IOS, token: "g".repeat(64) }, "token", "INVALID_TOKEN"],
        [{ token: "" }, "token", "INVALID_TOKEN"],
        [{ token: "has space" }, "token", "INVALID_TOKEN"],
        [{ token: "x".repeat(4097) }, "token", "INVALID_TOKEN"],
        [{ provider: Provider.PROVIDER_WEBPUSH, platform: Platform.PLATFORM_WEB, token: "not json" }, "token", "INVALID_TOKEN"],
        [{ provider: Provider.PROVIDER_WEBPUSH, platform: Platform.PLATFORM_WEB, token: webPushToken("evil.example.com") }, "token.endpoint", "ENDPOINT_NOT_ALLOWED"],
        [{ provider: Provider.PROVIDER_WEBPUSH, platform: Platform.PLATFORM_WEB, token: webPushToken().replace("https://", "http://") }, "token.endpoint", "INVALID_ENDPOINT"],
        [{ provider: Provider.PROVIDER_WEBPUSH, platform: Platform.PLATFORM_WEB, token: JSON.stringify({ ...JSON.parse(webPushToken()), keys: { p256dh: "AAAA", auth: "AAAAAAAAAAAAAAAAAAAAAA" } }) }, "token.keys.p256dh", "INVALID_TOKEN"],
        [{ provider: Provider.PROVIDER_WEBPUSH, platform: Platform.PLATFORM_WEB, token: JSON.stringify({ ...JSON.parse(webPushToken()), keys: { ...JSON.parse(webPushToken()).keys, auth: "short" } }) }, "token.keys.auth", "INVALID_TOKEN"],
        [{ topics: ["ok", "bad topic"] }, "topics[1]", "INVALID_TOPIC"],
        [{ topics: ["x".repeat(165)] }, "topics[0]", "INVALID_TOPIC"],
        [{ user: "u".repeat(165) }, "user", "INVALID_USER"],
        [{ tags: { "bad key": "v" } }, "tags.bad key", "INVALID_KEY"],
        [{ tags: { "a\u0000b": "v" } }, "tags.a\u0000b", "INVALID_KEY"],
        [{ meta: { "nom\u200ecomplet": "v" } }, "meta.nom\u200ecomplet", "INVALID_KEY"],
        [{ meta: { ["k".repeat(65)]: "v" } }, `meta.${"k".repeat(40)}`, "INVALID_KEY"],
        [{ meta: { k: "v".repeat(1025) } }, "meta.k", "VALUE_TOO_LONG"],
        [{ locale: "not a locale!" }, "locale", "INVALID_LOCALE"],
        [{ timezone: "Mars/Olympus" }, "timezone", "INVALID_TIMEZONE"],
      ];
      for (const [patch, field, reason] of cases) {
        await expectError(c.registry.registerDevice({ ...base, ...patch }), Status.INVALID_ARGUMENT, reason, field);
      }
      await c.registry.registerDevice({ ...base, topics: ["x".repeat(164), "A-z_0-9=@,.;"] });
      assert.equal((await c.registry.listDevices({})).devices.length, 1, "only the valid registration was stored");
    });

    it("refuses devices of a provider the app has no credentials for, naming the provider", async () => {
      const admin = stack.clients(stack.adminKey);
      const id = `apns-only-${Math.random().toString(36).slice(2, 8)}`;
      await admin.apps.createApp({ id, providers: [Provider.PROVIDER_APNS] });
      const { secret } = await admin.apps.createApiKey({ appId: id, role: apps.ApiKeyRole.API_KEY_ROLE_SERVER });
      const c = stack.clients(secret);
      await expectError(c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken() }), Status.FAILED_PRECONDITION, "PROVIDER_NOT_CONFIGURED", "provider");
      await c.registry.registerDevice({ provider: Provider.PROVIDER_APNS, platform: Platform.PLATFORM_IOS, token: apnsToken() });
      assert.equal((await c.registry.listDevices({})).devices.length, 1);
    });

    it("keeps the user bound with BindUser when the app re-registers its token with a CLIENT key", async () => {
      const app = await stack.createApp();
      const client = stack.clients(app.clientKey);
      const reg = { provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken(), topics: ["a"] };
      const d = (await client.registry.registerDevice(reg)).device!;
      await client.registry.bindUser({ deviceId: d.id, userToken: userToken(app, "alice") });
      const again = await client.registry.registerDevice({ ...reg, topics: ["b"] });
      assert.equal(again.device?.id, d.id);
      assert.equal(again.device?.user, "alice", "an app start does not log the user out");
      assert.deepEqual(again.device?.topics, ["b"]);
      // A SERVER key's registration is a full-state write: no user given, no user.
      const server = stack.clients(app.serverKey);
      assert.equal((await server.registry.registerDevice(reg)).device?.user, "");
    });

    it("lets CLIENT keys register and bind only with a user token", async () => {
      const app = await stack.createApp();
      const client = stack.clients(app.clientKey);
      const reg = { provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken() };
      await expectError(client.registry.registerDevice({ ...reg, user: "alice" }), Status.PERMISSION_DENIED, "USER_TOKEN_REQUIRED");
      await expectError(client.registry.registerDevice({ ...reg, topics: ["private-admins"] }), Status.PERMISSION_DENIED, "PRIVATE_TOPIC");
      const d = (await client.registry.registerDevice(reg)).device!;
      await expectError(client.registry.listDevices({}), Status.PERMISSION_DENIED, "SERVER_KEY_REQUIRED");
      await expectError(client.registry.deleteUser({ user: "alice" }), Status.PERMISSION_DENIED, "SERVER_KEY_REQUIRED");
      const bound = await client.registry.bindUser({ deviceId: d.id, userToken: userToken(app, "alice") });
      assert.equal(bound.device?.user, "alice");
    });

    it("verifies user tokens: forged, expired, wrong issuer and malformed are refused", async () => {
      const { app, c } = await server();
      const other = await stack.createApp();
      const d = (await c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken() })).device!;
      const bind = (userToken: string) => c.registry.bindUser({ deviceId: d.id, userToken });
      await expectError(bind(signUserToken("not-the-secret", { sub: "alice", iss: `herald:${app.id}`, exp: nowSeconds() + 60 })), Status.UNAUTHENTICATED, "BAD_USER_TOKEN_SIGNATURE");
      await expectError(bind(userToken(other, "alice")), Status.UNAUTHENTICATED, "BAD_USER_TOKEN_SIGNATURE");
      await expectError(bind(userToken(app, "alice", { iss: `herald:${other.id}` })), Status.UNAUTHENTICATED, "WRONG_USER_TOKEN_ISSUER");
      await expectError(bind(userToken(app, "alice", { exp: nowSeconds() - 1 })), Status.UNAUTHENTICATED, "EXPIRED_USER_TOKEN");
      await expectError(bind(userToken(app, "alice", { exp: undefined })), Status.UNAUTHENTICATED, "MALFORMED_USER_TOKEN");
      await expectError(bind(signUserToken(app.userTokenSecret, { sub: "alice", iss: `herald:${app.id}`, exp: nowSeconds() + 60 }, "none")), Status.UNAUTHENTICATED, "MALFORMED_USER_TOKEN");
      await expectError(bind("a.b"), Status.UNAUTHENTICATED, "MALFORMED_USER_TOKEN");
      await expectError(bind(""), Status.INVALID_ARGUMENT, "USER_TOKEN_REQUIRED", "user_token");
      assert.equal((await c.registry.getDevice({ id: d.id })).device?.user, "", "nothing was bound");
      const minted = await c.registry.createUserToken({ user: "alice" });
      assert.ok(minted.expiresAt && minted.expiresAt.getTime() > Date.now() + 23 * 3600_000, "default lifetime is 24 h");
      assert.equal((await bind(minted.token)).device?.user, "alice");
    });

    it("rotating the user token secret invalidates older tokens", async () => {
      const { app, c } = await server();
      const admin = stack.clients(stack.adminKey);
      const d = (await c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken() })).device!;
      const old = userToken(app, "bob");
      assert.deepEqual(await admin.apps.getUserTokenSecret({ appId: app.id }), { userTokenSecret: app.userTokenSecret, version: 1 }, "reading the secret does not rotate it");
      const rotated = await admin.apps.rotateUserTokenSecret({ appId: app.id });
      assert.equal(rotated.version, 2);
      assert.deepEqual(await admin.apps.getUserTokenSecret({ appId: app.id }), { userTokenSecret: rotated.userTokenSecret, version: 2 });
      await expectError(admin.apps.getUserTokenSecret({ appId: "no-such-app" }), Status.NOT_FOUND);
      await expectError(c.registry.bindUser({ deviceId: d.id, userToken: old }), Status.UNAUTHENTICATED, "BAD_USER_TOKEN_SIGNATURE");
      const fresh = signUserToken(rotated.userTokenSecret, { sub: "bob", iss: `herald:${app.id}`, exp: nowSeconds() + 60 });
      assert.equal((await c.registry.bindUser({ deviceId: d.id, userToken: fresh })).device?.user, "bob");
    });

    it("logout clears the user and the user's topics but keeps device topics", async () => {
      const { app, c } = await server();
      await c.topic.updateUserTopics({ user: "carol", op: 1, topics: ["carol-inbox", "shared"] });
      const d = (await c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken(), topics: ["news", "shared"] })).device!;
      const bound = await c.registry.bindUser({ deviceId: d.id, userToken: userToken(app, "carol") });
      assert.deepEqual(bound.device?.topics, ["carol-inbox", "news", "shared"]);
      const out = await c.registry.unbindUser({ deviceId: d.id });
      assert.equal(out.device?.user, "");
      assert.deepEqual(out.device?.topics, ["news", "shared"], "a topic held by the device itself survives logout");
    });

    it("evicts the least recently seen device over the per-user cap (default policy)", async () => {
      const { c } = await server({ maxDevicesPerUser: 2 });
      const reg = async () => {
        clock += 1000;
        return (await c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken(), user: "dave" })).device!;
      };
      const d1 = await reg();
      const d2 = await reg();
      clock += 1000;
      await c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: d1.token, user: "dave" });
      const ios = (await c.registry.registerDevice({ provider: Provider.PROVIDER_APNS, platform: Platform.PLATFORM_IOS, token: apnsToken(), user: "dave" })).device!;
      clock += 1000;
      const third = await c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken(), user: "dave" });
      assert.deepEqual(third.evictedDeviceIds, [d2.id], "d2 was seen least recently (d1 re-registered later)");
      const left = (await c.registry.listDevices({ filter: { users: ["dave"] } })).devices.map((d) => d.id).sort();
      assert.deepEqual(left, [d1.id, ios.id, third.device!.id].sort(), "the cap is per platform");
    });

    it("refuses a device over the cap with RESOURCE_EXHAUSTED under the reject policy", async () => {
      const { c } = await server({ maxDevicesPerUser: 1, deviceOverflowPolicy: apps.DeviceOverflowPolicy.DEVICE_OVERFLOW_POLICY_REJECT });
      const first = await c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken(), user: "erin" });
      await expectError(
        c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken(), user: "erin" }),
        Status.RESOURCE_EXHAUSTED, "TOO_MANY_DEVICES", "user",
      );
      const again = await c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: first.device!.token, user: "erin" });
      assert.equal(again.created, false, "re-registering the same device is not a new device");
      assert.equal((await c.registry.listDevices({})).devices.length, 1);
    });

    it("deletes a user's devices and topics for GDPR requests and emits events", async () => {
      const { app, c } = await server();
      await c.topic.updateUserTopics({ user: "frank", op: 1, topics: ["t1"] });
      for (let i = 0; i < 3; i++) await c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken(), user: "frank" });
      const keep = (await c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken(), user: "grace" })).device!;
      const res = await c.registry.deleteUser({ user: "frank" });
      assert.deepEqual(res, { devicesRemoved: 3, userTopicsRemoved: 1 });
      assert.deepEqual((await c.registry.listDevices({})).devices.map((d) => d.id), [keep.id]);
      assert.deepEqual((await c.topic.listUserTopics({ users: ["frank"] })).items, []);
      const removed = stack.published
        .filter((m) => m.topic === "herald.devices")
        .map((m) => events.DeviceEvent.decode(m.value))
        .filter((e) => e.app === app.id && e.kind === events.DeviceEventKind.DEVICE_EVENT_KIND_REMOVED);
      assert.equal(removed.length, 3);
      assert.ok(removed.every((e) => e.reason === "user_deleted" && e.user === "frank"));
    });

    it("emits registered, updated and user-changed events", async () => {
      const { app, c } = await server();
      const token = fcmToken();
      await c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token });
      await c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token, user: "hank" });
      const kinds = stack.published
        .filter((m) => m.topic === "herald.devices")
        .map((m) => events.DeviceEvent.decode(m.value))
        .filter((e) => e.app === app.id)
        .map((e) => [events.deviceEventKindToJSON(e.kind), e.user, e.previousUser]);
      assert.deepEqual(kinds, [
        ["DEVICE_EVENT_KIND_REGISTERED", "", ""],
        ["DEVICE_EVENT_KIND_UPDATED", "hank", ""],
        ["DEVICE_EVENT_KIND_USER_CHANGED", "hank", ""],
      ]);
    });

    it("sweeps devices not seen for max_inactive_days", async () => {
      const { app, c } = await server({ maxInactiveDays: 30 });
      const stale = (await c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken(), topics: ["x"] })).device!;
      const fresh = (await c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken() })).device!;
      clock += 31 * DAY;
      await c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fresh.token });
      const removed = await stack.registry.sweeper.sweepOnce();
      assert.ok(removed >= 1);
      const ids = (await c.registry.listDevices({})).devices.map((d) => d.id);
      assert.deepEqual(ids, [fresh.id]);
      assert.equal((await c.topic.getTopicStats({ topics: ["x"] })).stats[0]?.deviceCount, 0, "the swept device's subscriptions went too");
      assert.ok(app.id);
    });

    it("lists with every filter, include flags and cursor pagination", async () => {
      const { c } = await server();
      const made: Array<{ id: string; token: string }> = [];
      for (let i = 0; i < 7; i++) {
        made.push((await c.registry.registerDevice({
          provider: i % 2 ? Provider.PROVIDER_APNS : Provider.PROVIDER_FCM,
          platform: i % 2 ? Platform.PLATFORM_IOS : Platform.PLATFORM_ANDROID,
          token: i % 2 ? apnsToken() : fcmToken(),
          user: i < 3 ? "ivy" : "",
          topics: i < 4 ? ["alpha"] : ["beta"],
          tags: { tier: i < 2 ? "gold" : "free" },
          meta: { n: String(i) },
        })).device!);
      }
      const ids = async (filter: Record<string, unknown>) => (await c.registry.listDevices({ filter })).devices.map((d) => d.id).sort();
      const pick = (f: (i: number) => boolean) => made.filter((_, i) => f(i)).map((d) => d.id).sort();
      assert.deepEqual(await ids({ users: ["ivy"] }), pick((i) => i < 3));
      assert.deepEqual(await ids({ providers: [Provider.PROVIDER_APNS] }), pick((i) => i % 2 === 1));
      assert.deepEqual(await ids({ platforms: [Platform.PLATFORM_ANDROID] }), pick((i) => i % 2 === 0));
      assert.deepEqual(await ids({ topics: ["alpha"] }), pick((i) => i < 4));
      assert.deepEqual(await ids({ topics: ["beta"], providers: [Provider.PROVIDER_FCM] }), pick((i) => i >= 4 && i % 2 === 0));
      assert.deepEqual(await ids({ tags: { all: [{ key: "tier", values: ["gold"] }] } }), pick((i) => i < 2));
      assert.deepEqual(await ids({ ids: [made[0]!.id, made[5]!.id] }), [made[0]!.id, made[5]!.id].sort());
      assert.deepEqual(await ids({ providerTokens: [{ provider: Provider.PROVIDER_APNS, token: made[1]!.token.toUpperCase() }] }), [made[1]!.id]);
      const seen: string[] = [];
      let cursor = "";
      for (let pages = 0; pages < 10; pages++) {
        const page = await c.registry.listDevices({ page: { cursor, limit: 3 }, includeTopics: true, includeMeta: true });
        assert.ok(page.devices.length <= 3);
        for (const d of page.devices) {
          assert.equal(d.topics.length, 1);
          assert.ok(d.meta.n);
          assert.deepEqual(d.tags, {}, "tags only with include_tags");
        }
        seen.push(...page.devices.map((d) => d.id));
        if (!page.hasMore) break;
        cursor = page.nextCursor;
      }
      assert.deepEqual(seen.sort(), made.map((d) => d.id).sort());
      let topicSeen: string[] = [];
      cursor = "";
      for (;;) {
        const page = await c.registry.listDevices({ filter: { topics: ["alpha", "beta"] }, page: { cursor, limit: 2 } });
        topicSeen = topicSeen.concat(page.devices.map((d) => d.id));
        if (!page.hasMore) break;
        cursor = page.nextCursor;
      }
      assert.deepEqual(topicSeen.sort(), made.map((d) => d.id).sort(), "topic-filtered pages cover every device once");
      await expectError(c.registry.listDevices({ page: { limit: 1001 } }), Status.INVALID_ARGUMENT, "INVALID_PAGE", "page.limit");
    });

    it("updates and removes devices by filter, and refuses an empty filter", async () => {
      const { c } = await server();
      const a = (await c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken(), user: "jack" })).device!;
      const b = (await c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken(), user: "jack" })).device!;
      const other = (await c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken() })).device!;
      await expectError(c.registry.updateDevices({ filter: {}, metaUpdate: { meta: { a: "1" } } }), Status.INVALID_ARGUMENT, "FILTER_REQUIRED", "filter");
      await expectError(c.registry.removeDevices({}), Status.INVALID_ARGUMENT, "FILTER_REQUIRED", "filter");
      const upd = await c.registry.updateDevices({ filter: { users: ["jack"] }, metaUpdate: { meta: { plan: "pro" } }, tagsUpdate: { tags: { vip: "yes" } }, topicsUpdate: { topics: ["vip"] } });
      assert.equal(upd.matched, 2);
      const got = await c.registry.getDevice({ id: a.id });
      assert.deepEqual(got.device?.meta, { plan: "pro" });
      assert.deepEqual(got.device?.tags, { vip: "yes" });
      assert.deepEqual(got.device?.topics, ["vip"]);
      await c.registry.updateDevices({ filter: { ids: [b.id] }, userUpdate: { user: "" } });
      assert.equal((await c.registry.getDevice({ id: b.id })).device?.user, "");
      const rm = await c.registry.removeDevices({ filter: { users: ["jack"] } });
      assert.equal(rm.removed, 1);
      await expectError(c.registry.getDevice({ id: a.id }), Status.NOT_FOUND, "DEVICE_NOT_FOUND");
      assert.ok((await c.registry.getDevice({ id: other.id })).device);
    });

    it("refuses revoked and unknown keys", async () => {
      const { app, c } = await server();
      const admin = stack.clients(stack.adminKey);
      await c.registry.listDevices({});
      const keys = await admin.apps.listApiKeys({ appId: app.id });
      const serverKey = keys.keys.find((k) => k.role === apps.ApiKeyRole.API_KEY_ROLE_SERVER)!;
      assert.ok(app.serverKey.startsWith(serverKey.prefix));
      assert.ok(!JSON.stringify(keys).includes(app.serverKey), "listing never shows a key");
      await admin.apps.revokeApiKey({ appId: app.id, keyId: serverKey.id });
      await expectError(c.registry.listDevices({}), Status.UNAUTHENTICATED, "REVOKED_API_KEY");
      await expectError(stack.clients("hk_s_nope_xxxxxxxx").registry.listDevices({}), Status.UNAUTHENTICATED, "UNKNOWN_API_KEY");
      await expectError(stack.clients("").registry.listDevices({}), Status.UNAUTHENTICATED, "MISSING_API_KEY");
      // Key calls name their own field when the app is missing.
      await expectError(admin.apps.listApiKeys({}), Status.INVALID_ARGUMENT, undefined, "app_id");
      await expectError(admin.apps.createApiKey({ role: apps.ApiKeyRole.API_KEY_ROLE_SERVER }), Status.INVALID_ARGUMENT, undefined, "app_id");
      await expectError(admin.apps.revokeApiKey({ appId: app.id }), Status.INVALID_ARGUMENT, undefined, "key_id");
      await expectError(admin.apps.rotateUserTokenSecret({}), Status.INVALID_ARGUMENT, undefined, "app_id");
    });

    it("updates and deletes an owned app only for its owner", async () => {
      const admin = stack.clients(stack.adminKey);
      const id = `owned-${Date.now().toString(36)}${Math.floor(Math.random() * 1e6)}`;
      const owner = "pushapp:team-a/shop";
      const created = await admin.apps.createApp({ id, name: "Shop", owner });
      assert.equal(created.app?.owner, owner);
      assert.equal((await admin.apps.getApp({ id })).app?.owner, owner);
      // Another namespace's PushApp of the same name: refused, and nothing changes.
      const err = await expectError(admin.apps.updateApp({ id, name: "Taken over", owner: "pushapp:team-b/shop" }), Status.FAILED_PRECONDITION, "APP_OWNED_ELSEWHERE");
      assert.match(err.message, /managed by "pushapp:team-a\/shop", not by "pushapp:team-b\/shop"/);
      await expectError(admin.apps.deleteApp({ id, owner: "pushapp:team-b/shop", purgeData: true }), Status.FAILED_PRECONDITION, "APP_OWNED_ELSEWHERE");
      assert.equal((await admin.apps.getApp({ id })).app?.name, "Shop");
      // The owner, and the admin without naming an owner, may.
      assert.equal((await admin.apps.updateApp({ id, name: "Shop 2", owner })).app?.name, "Shop 2");
      // An app created through the API is adopted by no PushApp.
      const plain = `${id}-api`;
      await admin.apps.createApp({ id: plain });
      await expectError(admin.apps.updateApp({ id: plain, owner }), Status.FAILED_PRECONDITION, "APP_OWNED_ELSEWHERE");
      await admin.apps.deleteApp({ id: plain });
      await admin.apps.deleteApp({ id, owner });
      await expectError(admin.apps.getApp({ id }), Status.NOT_FOUND, "APP_NOT_FOUND");
    });

    it("keeps an app's urgent_max_targets (0: the default) and refuses a negative one naming the field", async () => {
      const admin = stack.clients(stack.adminKey);
      const id = `lanes-${kind}`;
      const created = await admin.apps.createApp({ id, limits: { urgentMaxTargets: 7 } });
      assert.equal(created.app?.limits?.urgentMaxTargets, 7);
      assert.equal((await admin.apps.getApp({ id })).app?.limits?.urgentMaxTargets, 7);
      await expectError(admin.apps.updateApp({ id, limits: { urgentMaxTargets: -1 } }), Status.INVALID_ARGUMENT, undefined, "limits.urgent_max_targets");
      assert.equal((await admin.apps.updateApp({ id, limits: {} })).app?.limits?.urgentMaxTargets, 0);
      await admin.apps.deleteApp({ id });
    });

    it("verifies the app secret (the Beams secret key) and accepts Beams tokens signed with it", async () => {
      const { app, c } = await server();
      const admin = stack.clients(stack.adminKey);
      assert.equal((await admin.apps.verifyAppSecret({ appId: app.id, secret: app.userTokenSecret })).valid, true);
      assert.equal((await admin.apps.verifyAppSecret({ appId: app.id, secret: `${app.userTokenSecret}x` })).valid, false);
      assert.equal((await admin.apps.verifyAppSecret({ appId: "no-such-app", secret: app.userTokenSecret })).valid, false);
      // What a Beams server SDK signs: iss https://<instance>.pushnotifications.pusher.com.
      const { device } = await c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken() });
      const beamsToken = userToken(app, "grace", { iss: `https://${app.id}.pushnotifications.pusher.com` });
      assert.equal((await c.registry.bindUser({ deviceId: device!.id, userToken: beamsToken })).device?.user, "grace");
      const otherInstance = userToken(app, "grace", { iss: "https://someone-else.pushnotifications.pusher.com" });
      await expectError(c.registry.bindUser({ deviceId: device!.id, userToken: otherInstance }), Status.UNAUTHENTICATED, "WRONG_USER_TOKEN_ISSUER");
      // Rotation replaces the secret.
      const rotated = await admin.apps.rotateUserTokenSecret({ appId: app.id });
      assert.equal((await admin.apps.verifyAppSecret({ appId: app.id, secret: app.userTokenSecret })).valid, false);
      assert.equal((await admin.apps.verifyAppSecret({ appId: app.id, secret: rotated.userTokenSecret })).valid, true);
      await expectError(c.registry.bindUser({ deviceId: device!.id, userToken: beamsToken }), Status.UNAUTHENTICATED, "BAD_USER_TOKEN_SIGNATURE");
    });

    it("lets a device join the private topics its user token carries, until the user is unbound", async () => {
      const { app, c } = await server();
      const client = stack.clients(app.clientKey);
      const { device } = await client.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken(), topics: ["public"] });
      await expectError(client.topic.updateDeviceTopics({ deviceId: device!.id, op: 1, topics: ["private-team-7"] }), Status.PERMISSION_DENIED);
      const token = userToken(app, "ivy", { topics: ["private-team-7"] });
      await client.registry.bindUser({ deviceId: device!.id, userToken: token });
      assert.deepEqual((await c.registry.getDevice({ id: device!.id })).device?.topics, ["private-team-7", "public"]);
      assert.deepEqual((await c.topic.listTopicUsers({ topic: "private-team-7" })).users, ["ivy"], "presence: who is on the topic");
      await client.registry.unbindUser({ deviceId: device!.id });
      assert.deepEqual((await c.registry.getDevice({ id: device!.id })).device?.topics, ["public"]);
      await expectError(client.registry.bindUser({ deviceId: device!.id, userToken: userToken(app, "ivy", { topics: "private-x" }) }), Status.UNAUTHENTICATED, "MALFORMED_USER_TOKEN");
      await expectError(client.registry.bindUser({ deviceId: device!.id, userToken: userToken(app, "ivy", { topics: ["bad topic!"] }) }), Status.INVALID_ARGUMENT);
    });

    it("stores API keys only as hashes", async () => {
      const { app } = await server();
      const stored = await stack.store.apiKeys.list(app.id);
      assert.equal(stored.length, 2);
      for (const k of stored) {
        assert.match(k.hash, /^[0-9a-f]{64}$/);
        assert.ok(!JSON.stringify(k).includes(app.serverKey) && !JSON.stringify(k).includes(app.clientKey));
      }
    });
  });
}
