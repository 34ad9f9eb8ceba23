import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { test } from "node:test";
import { channelsStringToSign } from "./channels.signature.js";
import { eventNotification, topicOf } from "./channels.routes.js";

test("the string to sign of Channels' worked example gives its documented signature", () => {
  // The HTTP API reference's example: app 3, key 278d425bdf160c739803, secret 7ad3773142a6692b25b8.
  const query = new URLSearchParams("auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f&auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_signature=x");
  const signed = channelsStringToSign("post", "/apps/3/events", query);
  assert.equal(signed, "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f");
  assert.equal(createHmac("sha256", "7ad3773142a6692b25b8").update(signed).digest("hex"), "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c");
  // Keys lowercased and sorted, values as sent (not escaped).
  assert.equal(channelsStringToSign("GET", "/apps/3/channels", new URLSearchParams("info=user_count,subscription_count&Filter_By_Prefix=presence-&auth_key=k")), "GET\n/apps/3/channels\nauth_key=k&filter_by_prefix=presence-&info=user_count,subscription_count");
});

test("channel names longer than a topic map to distinct topics that keep their prefix", () => {
  assert.equal(topicOf("presence-room"), "presence-room");
  const a = `private-${"a".repeat(192)}`;
  const b = `private-${"a".repeat(191)}b`;
  assert.equal(topicOf("x".repeat(164)), "x".repeat(164));
  for (const name of [a, b]) {
    assert.equal(topicOf(name).length, 164);
    assert.ok(topicOf(name).startsWith("private-"));
    assert.match(topicOf(name), /^[A-Za-z0-9_\-=@,.;]+$/);
    assert.equal(topicOf(name), topicOf(name), "deterministic");
  }
  assert.notEqual(topicOf(a), topicOf(b));
});

test("an event is a data message unless its data has a title or body", () => {
  const silent = eventNotification("typing", ["chat"], JSON.stringify({ user: "ada" }));
  assert.deepEqual(silent.alert?.data, { event: "typing", channel: "chat", data: '{"user":"ada"}' });
  assert.equal(silent.alert?.title, "");
  assert.equal(silent.apns?.headers["apns-push-type"], "background");
  const shown = eventNotification("order", ["a", "b"], JSON.stringify({ message: "Your order shipped" }));
  assert.equal(shown.alert?.body, "Your order shipped");
  assert.equal(shown.alert?.data.channels, '["a","b"]');
  assert.equal(shown.apns, undefined, "the portable alert for every provider");
  assert.equal(eventNotification("e", ["c"], "not json").apns?.payload?.data, "not json");
});
