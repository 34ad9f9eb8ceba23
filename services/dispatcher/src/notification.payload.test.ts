import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { DeepPartial } from "@herald/platform";
import { dispatch } from "@herald/proto";
import { buildPayload, checkNotification, MAX_PAYLOAD_DEPTH } from "./notification.payload.js";
import { hasPlaceholders, renderTemplate } from "./notification.template.js";

const { Priority } = dispatch;
const notification = (n: DeepPartial<dispatch.Notification>) => dispatch.Notification.fromPartial(n as dispatch.Notification);
const alert = { title: "Goal!", body: "2-1", data: { match: "42" }, badge: 3, sound: "default", deepLink: "app://match/42", collapseKey: "match-42", image: "https://img/x.png" };

describe("notification payloads", () => {
  it("maps the portable alert to each provider's own format", () => {
    const n = notification({ alert });
    assert.deepEqual(buildPayload("apns", n, Priority.PRIORITY_HIGH), {
      body: { aps: { alert: { title: "Goal!", body: "2-1" }, badge: 3, sound: "default", "mutable-content": 1 }, match: "42", image: "https://img/x.png", deep_link: "app://match/42" },
      headers: { "apns-push-type": "alert", "apns-priority": "10", "apns-collapse-id": "match-42" },
    });
    assert.deepEqual(buildPayload("fcm", n, Priority.PRIORITY_NORMAL)?.body, {
      notification: { title: "Goal!", body: "2-1", image: "https://img/x.png" },
      data: { match: "42", deep_link: "app://match/42" },
      android: { priority: "NORMAL", collapse_key: "match-42", notification: { sound: "default", tag: "match-42", notification_count: 3 } },
    });
    const hms = buildPayload("hms", n, Priority.PRIORITY_HIGH)?.body as { data: string; android: { urgency: string; notification: { click_action: unknown } } };
    assert.deepEqual(JSON.parse(hms.data), { match: "42", deep_link: "app://match/42" });
    assert.equal(hms.android.urgency, "HIGH");
    assert.deepEqual(hms.android.notification.click_action, { type: 1, intent: "app://match/42" });
    assert.deepEqual(buildPayload("webpush", n, Priority.PRIORITY_LOW), {
      body: { title: "Goal!", body: "2-1", image: "https://img/x.png", badge: 3, tag: "match-42", url: "app://match/42", data: { match: "42" } },
      headers: { Urgency: "low" },
    });
  });

  it("sends raw provider payloads exactly as given, ahead of the alert", () => {
    const raw = { aps: { "content-available": 1 }, custom: { nested: [1, 2] } };
    const n = notification({ alert, apns: { headers: { "apns-push-type": "background", "apns-priority": "5" }, payload: raw }, webpush: { headers: { ttl: "60" }, payload: { hello: "web" } } });
    assert.deepEqual(buildPayload("apns", n, Priority.PRIORITY_HIGH), { body: raw, headers: { "apns-push-type": "background", "apns-priority": "5" } });
    assert.deepEqual(buildPayload("webpush", n, Priority.PRIORITY_NORMAL), { body: { hello: "web" }, headers: { Urgency: "normal", TTL: "60" } });
    assert.equal(buildPayload("hms", notification({ fcm: { message: {} } }), Priority.PRIORITY_NORMAL), undefined);
  });

  it("refuses missing, oversized and self-targeted payloads, naming the field", () => {
    assert.throws(() => checkNotification(undefined, ["fcm"], Priority.PRIORITY_NORMAL), { field: "notification" });
    assert.throws(() => checkNotification(notification({ hms: { message: { data: "x" } } }), ["fcm", "apns"], Priority.PRIORITY_NORMAL), { reason: "PAYLOAD_REQUIRED" });
    assert.throws(() => checkNotification(notification({ fcm: { message: { token: "abc" } } }), ["fcm"], Priority.PRIORITY_NORMAL), { field: "notification.fcm.message.token" });
    const big = "x".repeat(4100);
    assert.throws(() => checkNotification(notification({ alert: { body: big } }), ["fcm"], Priority.PRIORITY_NORMAL), { field: "notification.alert", reason: "PAYLOAD_TOO_LARGE" });
    assert.throws(() => checkNotification(notification({ apns: { headers: {}, payload: { aps: {}, b: big } } }), ["apns"], Priority.PRIORITY_NORMAL), { field: "notification.apns" });
    const voip = notification({ apns: { headers: { "apns-push-type": "voip" }, payload: { aps: {}, b: "x".repeat(5000) } } });
    checkNotification(voip, ["apns"], Priority.PRIORITY_NORMAL);
    const web = (n: number) => notification({ webpush: { headers: {}, payload: { b: "x".repeat(n - 8) } } });
    checkNotification(web(3993), ["webpush"], Priority.PRIORITY_NORMAL);
    assert.throws(() => checkNotification(web(3994), ["webpush"], Priority.PRIORITY_NORMAL), { reason: "PAYLOAD_TOO_LARGE" });
  });

  it("refuses raw payloads nested deeper than the limit, naming the field, without recursing", () => {
    // `levels` objects and arrays, the payload itself the first.
    const nested = (levels: number, leaf: unknown = 1) => {
      let v: unknown = leaf;
      for (let i = 1; i < levels; i++) v = i % 2 ? { a: v } : [v];
      return { aps: {}, deep: v } as Record<string, unknown>;
    };
    checkNotification(notification({ apns: { headers: {}, payload: nested(MAX_PAYLOAD_DEPTH - 1, {}) } }), ["apns"], Priority.PRIORITY_NORMAL);
    for (const [provider, n] of [
      ["apns", notification({ apns: { headers: {}, payload: nested(MAX_PAYLOAD_DEPTH, {}) } })],
      ["fcm", notification({ fcm: { message: nested(MAX_PAYLOAD_DEPTH, {}) } })],
      ["hms", notification({ hms: { message: nested(MAX_PAYLOAD_DEPTH, {}) } })],
      ["webpush", notification({ webpush: { headers: {}, payload: nested(MAX_PAYLOAD_DEPTH, {}) } })],
    ] as const) {
      const field = provider === "apns" || provider === "webpush" ? `notification.${provider}.payload` : `notification.${provider}.message`;
      assert.throws(() => checkNotification(n, [provider], Priority.PRIORITY_NORMAL), { field, reason: "PAYLOAD_TOO_DEEP" });
    }
    // Far past any stack: refused by the check, not by a RangeError.
    const deep: Record<string, unknown> = {};
    let at = deep;
    for (let i = 0; i < 100_000; i++) at = (at.a = {}) as Record<string, unknown>;
    assert.throws(() => checkNotification(notification({ webpush: { headers: {}, payload: deep } }), ["webpush"], Priority.PRIORITY_NORMAL), { reason: "PAYLOAD_TOO_DEEP" });
  });

  it("keeps the limit within what every reader of a stored publish decodes", () => {
    // The deepest carrier of a payload: a publish read back (GetPublish / WatchPublish).
    let v: Record<string, unknown> = { leaf: 1 };
    for (let i = 1; i < MAX_PAYLOAD_DEPTH; i++) v = { a: v };
    const request = dispatch.PublishRequest.fromPartial({ notification: { apns: { headers: {}, payload: v } } });
    const bytes = dispatch.GetPublishResponse.encode({ publish: dispatch.Publish.fromPartial({ id: "p", request }) }).finish();
    assert.deepEqual(dispatch.GetPublishResponse.decode(bytes).publish?.request?.notification?.apns?.payload, v);
  });
});

describe("templates", () => {
  const ctx = { deviceId: "d1", user: "ada", locale: "en-GB", timezone: "Europe/Paris", meta: { name: "Ada", team: "Reds" } };

  it("renders placeholders from device data inside every string value", () => {
    const body = { aps: { alert: { body: "{{meta.name}}, the {{ meta.team }} just won!" } }, who: ["{{user}}", 7], "{{meta.name}}": "{{locale}} {{missing}}" };
    assert.ok(hasPlaceholders(body));
    assert.deepEqual(renderTemplate(body, ctx), { aps: { alert: { body: "Ada, the Reds just won!" } }, who: ["ada", 7], "{{meta.name}}": "en-GB " });
    assert.ok(!hasPlaceholders({ a: "plain", b: [1] }));
  });

  it("cannot break out of a JSON string", () => {
    const rendered = renderTemplate({ t: "Hi {{meta.name}}" }, { ...ctx, meta: { name: '"}, "evil": {"x' } });
    assert.deepEqual(Object.keys(rendered), ["t"]);
    assert.equal(rendered.t, 'Hi "}, "evil": {"x');
  });
});
