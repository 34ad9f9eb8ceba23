import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { dispatch, Platform, Provider, registry, topic } from "@herald/proto";
import {
  cancelRequest,
  centrifugoErrorOf,
  CentrifugoError,
  deviceTopicListRequest,
  deviceTopicListResult,
  listRequest,
  publishRequest,
  receiptRequest,
  registerRequest,
  removeRequest,
  updateRequest,
  userTopicListRequest,
} from "./centrifugo.mapping.js";
import { HttpError } from "./http.errors.js";

const code = (fn: () => unknown): number => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof CentrifugoError, `not a CentrifugoError: ${String(err)}`);
    return err.code;
  }
  assert.fail("accepted");
};

describe("Centrifugo mapping", () => {
  it("maps device_register with every field", () => {
    const r = registerRequest({ id: "d1", provider: "apns", token: "t", platform: "ios", user: "u", timezone: "Europe/Paris", locale: "fr", meta: { a: "b" }, tags: { t: "1" }, topics: ["x"] });
    assert.deepEqual(r, registry.RegisterDeviceRequest.fromPartial({ id: "d1", provider: Provider.PROVIDER_APNS, platform: Platform.PLATFORM_IOS, token: "t", user: "u", timezone: "Europe/Paris", locale: "fr", meta: { a: "b" }, tags: { t: "1" }, topics: ["x"] }));
  });

  it("maps device_update's updates, topics op included (no op: set, as the seed's DeviceChannelsUpdate)", () => {
    const r = updateRequest({ ids: ["d"], provider_tokens: [{ provider: "fcm", tokens: ["a", "b"] }], user_update: { user: "" }, locale_update: { locale: "de" }, timezone_update: { timezone: "UTC" }, meta_update: { meta: {} }, topics_update: { op: "remove", topics: ["x"] } });
    assert.deepEqual(r.filter?.providerTokens, [{ provider: Provider.PROVIDER_FCM, token: "a" }, { provider: Provider.PROVIDER_FCM, token: "b" }]);
    assert.deepEqual(r.userUpdate, { user: "" }, "an empty user detaches it");
    assert.deepEqual(r.localeUpdate, { locale: "de" });
    assert.deepEqual(r.timezoneUpdate, { timezone: "UTC" });
    assert.deepEqual(r.metaUpdate, { meta: {} });
    assert.deepEqual(r.topicsUpdate, { topics: ["x"], op: registry.TopicsUpdateOp.TOPICS_UPDATE_OP_REMOVE });
    assert.equal(updateRequest({ users: ["u"], topics_update: { topics: [] } }).topicsUpdate?.op, registry.TopicsUpdateOp.TOPICS_UPDATE_OP_SET);
    assert.equal(updateRequest({ users: ["u"], topics_update: { op: "add", topics: [] } }).topicsUpdate?.op, registry.TopicsUpdateOp.TOPICS_UPDATE_OP_ADD);
    assert.equal(updateRequest({ users: ["u"] }).topicsUpdate, undefined, "absent updates stay absent");
  });

  it("reads cent's filter object and the seed's flat list fields", () => {
    const cent = listRequest({ filter: { ids: ["a"], users: ["u"], topics: ["t"], providers: ["hms"], platforms: ["web"] }, include_total_count: true, include_meta: true, include_topics: true, cursor: "c", limit: 5000 });
    assert.deepEqual(cent.filter?.providers, [Provider.PROVIDER_HMS]);
    assert.deepEqual(cent.filter?.platforms, [Platform.PLATFORM_WEB]);
    assert.deepEqual(cent.page, { cursor: "c", limit: 1000 }, "a limit over Herald's page size is served as 1000");
    assert.equal(cent.includeTotalCount, true);
    const seed = listRequest({ ids: ["a"], since: "s", include_tags: true });
    assert.deepEqual(seed.filter?.ids, ["a"]);
    assert.equal(seed.page?.cursor, "s");
    assert.equal(seed.includeTags, true);
    const topics = deviceTopicListRequest({ filter: { device_ids: ["d"], device_users: ["u"], device_providers: ["fcm"], device_platforms: ["android"], topics: ["t"], topic_prefix: "p" }, include_device: true });
    assert.deepEqual(topics.deviceFilter?.users, ["u"]);
    assert.deepEqual(topics.deviceFilter?.providers, [Provider.PROVIDER_FCM]);
    assert.equal(topics.topicPrefix, "p");
    assert.equal(deviceTopicListRequest({ filter: { device_ids: ["d"] } }).deviceFilter, undefined, "ids alone need no device lookup");
    assert.deepEqual(userTopicListRequest({ filter: { users: ["u"], topic_prefix: "p" }, include_total_count: true }).users, ["u"]);
  });

  it("gives every subscription a device, as cent's DeviceTopic requires", () => {
    const r = deviceTopicListResult({ items: [{ deviceId: "d", topic: "t", fromDevice: true, fromUser: false }], nextCursor: "", hasMore: false });
    assert.deepEqual(r.items, [{ id: "d:t", device_id: "d", topic: "t", device: { id: "d" } }]);
    assert.equal("total_count" in r, false);
  });

  it("maps each recipient kind, and refuses none or two", () => {
    const n = { fcm: { message: { notification: { title: "x" } } } };
    const target = (recipient: Record<string, unknown>) => publishRequest({ recipient, notification: n }).recipients;
    assert.deepEqual(target({ filter: { topics: ["a"], platforms: ["ios"] } }), dispatch.Recipients.fromPartial({ target: { $case: "topics", value: { values: ["a"] } }, platforms: [Platform.PLATFORM_IOS] }));
    assert.equal(target({ filter: { ids: ["d"] } })?.target?.$case, "deviceIds");
    assert.equal(target({ filter: { users: ["u"] } })?.target?.$case, "users");
    assert.equal(target({ filter: {} })?.target?.$case, "all");
    assert.equal(target({ device_ids: ["d"] })?.target?.$case, "deviceIds");
    assert.equal(target({ topics: ["t"] })?.target?.$case, "topics");
    assert.deepEqual(target({ fcm_tokens: ["a"] })?.target, { $case: "tokens", value: { provider: Provider.PROVIDER_FCM, tokens: ["a"] } });
    assert.deepEqual(target({ hms_tokens: ["a"] })?.target, { $case: "tokens", value: { provider: Provider.PROVIDER_HMS, tokens: ["a"] } });
    assert.deepEqual(target({ apns_tokens: ["a"] })?.target, { $case: "tokens", value: { provider: Provider.PROVIDER_APNS, tokens: ["a"] } });
    assert.deepEqual(target({ fcm_topic: "x" })?.target, { $case: "native", value: { provider: Provider.PROVIDER_FCM, target: { $case: "topic", value: "x" } } });
    assert.deepEqual(target({ fcm_condition: "c" })?.target, { $case: "native", value: { provider: Provider.PROVIDER_FCM, target: { $case: "condition", value: "c" } } });
    assert.deepEqual(target({ hms_topic: "x" })?.target, { $case: "native", value: { provider: Provider.PROVIDER_HMS, target: { $case: "topic", value: "x" } } });
    assert.deepEqual(target({ hms_condition: "c" })?.target, { $case: "native", value: { provider: Provider.PROVIDER_HMS, target: { $case: "condition", value: "c" } } });
    assert.equal(code(() => target({})), 107);
    assert.equal(code(() => target({ fcm_tokens: ["a"], apns_tokens: ["b"] })), 107);
    assert.equal(code(() => target({ filter: { ids: ["a"], users: ["b"] } })), 108);
  });

  it("passes the provider payloads through and maps uid, expire_at and send_at", () => {
    const p = publishRequest({
      recipient: { fcm_tokens: ["a"] },
      notification: { fcm: { message: { data: { a: "1" } } }, hms: { message: { data: "{}" } }, apns: { headers: { "apns-priority": "5" }, payload: { aps: {} } }, expire_at: 2_000_000_000 },
      uid: "u1",
      send_at: 1_900_000_000,
      use_templating: true,
    });
    assert.deepEqual(p.notification, dispatch.Notification.fromPartial({ fcm: { message: { data: { a: "1" } } }, hms: { message: { data: "{}" } }, apns: { headers: { "apns-priority": "5" }, payload: { aps: {} } }, templated: true }));
    assert.equal(p.uid, "u1");
    assert.equal(p.expireAt?.getTime(), 2_000_000_000_000);
    assert.equal(p.sendAt?.getTime(), 1_900_000_000_000);
    assert.equal(publishRequest({ recipient: { fcm_tokens: ["a"] }, notification: { uid: "seed", fcm: { message: {} } } }).uid, "seed", "the seed's notification.uid");
    assert.match(publishRequest({ recipient: { fcm_tokens: ["a"] }, notification: { fcm: { message: {} } } }).uid, /^[0-9a-f-]{36}$/);
    assert.deepEqual(publishRequest({ recipient: { fcm_tokens: ["a"] }, notification: { fcm: { message: {} } }, analytics_uid: "an" }).labels, { source: "centrifugo", analytics_uid: "an" });
  });

  it("maps cancel_push and update_push_status", () => {
    assert.deepEqual(cancelRequest({ uid: "u" }), { id: "", uid: "u" });
    assert.deepEqual(receiptRequest({ analytics_uid: "u", status: "interacted", device_id: "d" }).request, { publishId: "", publishUid: "u", deviceId: "d", status: dispatch.ReceiptStatus.RECEIPT_STATUS_OPENED });
    assert.equal(receiptRequest({ uid: "seed", status: "delivered", device_id: "d" }).request.status, dispatch.ReceiptStatus.RECEIPT_STATUS_DELIVERED);
    assert.equal(code(() => cancelRequest({})), 107);
    assert.equal(code(() => receiptRequest({ analytics_uid: "u", status: "read", device_id: "d" })), 107);
  });

  it("refuses hostile params with 107 (or 108 for what Herald lacks), never another throw", () => {
    const deep: Record<string, unknown> = {};
    let cur = deep;
    for (let i = 0; i < 40; i++) cur = (cur.x = {}) as Record<string, unknown>;
    const cases: Array<[string, () => unknown, number]> = [
      ["provider not a string", () => registerRequest({ provider: 1, token: "t", platform: "ios" }), 107],
      ["unknown provider", () => registerRequest({ provider: "__proto__", token: "t", platform: "ios" }), 107],
      ["unknown platform", () => registerRequest({ provider: "fcm", token: "t", platform: "constructor" }), 107],
      ["missing token", () => registerRequest({ provider: "fcm", platform: "android" }), 107],
      ["meta value not a string", () => registerRequest({ provider: "fcm", token: "t", platform: "android", meta: { "\u0000\ud800": 5 } }), 107],
      ["meta an array", () => registerRequest({ provider: "fcm", token: "t", platform: "android", meta: ["a"] }), 107],
      ["topics with a number", () => registerRequest({ provider: "fcm", token: "t", platform: "android", topics: ["a", 1] }), 107],
      ["update without target", () => updateRequest({ user_update: { user: "x" } }), 107],
      ["user_update a string", () => updateRequest({ ids: ["a"], user_update: "x" }), 107],
      ["provider_tokens an object", () => removeRequest({ provider_tokens: { fcm: "a" } }), 107],
      ["provider_tokens tokens not strings", () => removeRequest({ provider_tokens: [{ provider: "fcm", tokens: [null, {}] }] }), 107],
      ["limit negative", () => listRequest({ limit: -1 }), 107],
      ["limit fractional", () => listRequest({ limit: 1.5 }), 107],
      ["limit a string", () => listRequest({ limit: "10" }), 107],
      ["include flag a string", () => listRequest({ include_meta: "true" }), 107],
      ["filter an array", () => listRequest({ filter: [] }), 107],
      ["device_provider_tokens", () => deviceTopicListRequest({ filter: { device_provider_tokens: [{ provider: "fcm", tokens: ["a"] }] } }), 108],
      ["payload too deep", () => publishRequest({ recipient: { fcm_tokens: ["a"] }, notification: { fcm: { message: deep } } }), 107],
      ["payload not an object", () => publishRequest({ recipient: { fcm_tokens: ["a"] }, notification: { fcm: { message: [1] } } }), 107],
      ["no payload", () => publishRequest({ recipient: { fcm_tokens: ["a"] }, notification: {} }), 107],
      ["apns headers not strings", () => publishRequest({ recipient: { apns_tokens: ["a"] }, notification: { apns: { headers: { a: 1 }, payload: {} } } }), 107],
      ["send_at a string", () => publishRequest({ recipient: { fcm_tokens: ["a"] }, notification: { fcm: { message: {} } }, send_at: "now" }), 107],
      ["expire_at beyond year 9999", () => publishRequest({ recipient: { fcm_tokens: ["a"] }, notification: { fcm: { message: {} }, expire_at: 1e20 } }), 107],
      ["localizations", () => publishRequest({ recipient: { fcm_tokens: ["a"] }, notification: { fcm: { message: {} } }, localizations: {} }), 108],
      ["limit_strategy", () => publishRequest({ recipient: { fcm_tokens: ["a"] }, notification: { fcm: { message: {} } }, limit_strategy: {} }), 108],
      ["fcm_topic empty", () => publishRequest({ recipient: { fcm_topic: "" }, notification: { fcm: { message: {} } } }), 107],
      ["op unknown", () => userTopicListRequest({ filter: { users: "u" } }), 107],
    ];
    for (const [what, fn, want] of cases) assert.equal(code(fn), want, what);
  });

  it("maps Herald's refusals to Centrifugo's codes", () => {
    assert.equal(centrifugoErrorOf(new HttpError(400, "INVALID_TOKEN", "bad", "token")).code, 107);
    assert.match(centrifugoErrorOf(new HttpError(400, "INVALID_TOKEN", "bad", "token")).message, /INVALID_TOKEN: token: bad/);
    assert.equal(centrifugoErrorOf(new HttpError(404, "NOT_FOUND", "no device")).code, 107);
    assert.equal(centrifugoErrorOf(new HttpError(403, "PRIVATE_TOPIC", "no")).code, 103);
    assert.equal(centrifugoErrorOf(new HttpError(401, "UNAUTHENTICATED", "no")).code, 101);
    assert.equal(centrifugoErrorOf(new HttpError(429, "TOO_MANY_TOPICS", "no")).code, 106);
    assert.equal(centrifugoErrorOf(new HttpError(429, "PUBLISH_RATE_EXCEEDED", "no")).code, 111);
    assert.equal(centrifugoErrorOf(new HttpError(503, "UNAVAILABLE", "down")).code, 108);
    assert.deepEqual({ ...centrifugoErrorOf(new HttpError(500, "INTERNAL", "secret detail")) }, { code: 100 });
    assert.equal(centrifugoErrorOf(new HttpError(500, "INTERNAL", "secret detail")).message, "internal server error");
    assert.equal(topic.TopicOp.TOPIC_OP_ADD, 1);
  });
});
