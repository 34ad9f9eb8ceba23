import assert from "node:assert/strict";
import { createECDH, randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { checkEndpoint, checkTopics, DEFAULT_WEBPUSH_HOSTS, hostAllowed, normalizeToken } from "./domain.rules.js";

const rules = { webPushHosts: DEFAULT_WEBPUSH_HOSTS, webPushAllowInsecure: false };

describe("domain rules", () => {
  it("matches push-service hosts exactly or by subdomain wildcard", () => {
    assert.ok(hostAllowed("fcm.googleapis.com", DEFAULT_WEBPUSH_HOSTS));
    assert.ok(hostAllowed("updates.push.services.mozilla.com", DEFAULT_WEBPUSH_HOSTS));
    assert.ok(hostAllowed("WNS2-BY3P.notify.windows.com", DEFAULT_WEBPUSH_HOSTS));
    assert.ok(!hostAllowed("push.services.mozilla.com.evil.com", DEFAULT_WEBPUSH_HOSTS));
    assert.ok(!hostAllowed("evilpush.services.mozilla.com", DEFAULT_WEBPUSH_HOSTS));
    assert.ok(!hostAllowed("fcm.googleapis.com.evil.com", DEFAULT_WEBPUSH_HOSTS));
    assert.ok(!hostAllowed("127.0.0.1", DEFAULT_WEBPUSH_HOSTS));
  });

  it("guards Web Push endpoints against SSRF", () => {
    assert.throws(() => checkEndpoint("https://169.254.169.254/latest", rules), /not an allowed push service/);
    assert.throws(() => checkEndpoint("https://user:pw@fcm.googleapis.com/x", rules), /credentials/);
    assert.throws(() => checkEndpoint("http://fcm.googleapis.com/x", rules), /https/);
    assert.ok(checkEndpoint("http://127.0.0.1:9999/push", { webPushHosts: ["127.0.0.1"], webPushAllowInsecure: true }));
  });

  it("canonicalises tokens so one device has one spelling", () => {
    const hex = randomBytes(32).toString("hex");
    assert.equal(normalizeToken("apns", hex.toUpperCase(), rules), hex);
    const ecdh = createECDH("prime256v1");
    ecdh.generateKeys();
    const keys = { p256dh: ecdh.getPublicKey().toString("base64"), auth: randomBytes(16).toString("base64url") + "==" };
    const a = normalizeToken("webpush", JSON.stringify({ endpoint: "https://fcm.googleapis.com/fcm/send/x", expirationTime: null, keys }), rules);
    const b = normalizeToken("webpush", JSON.stringify({ keys: { auth: keys.auth, p256dh: keys.p256dh }, endpoint: "https://fcm.googleapis.com/fcm/send/x" }), rules);
    assert.equal(a, b);
    assert.deepEqual(Object.keys(JSON.parse(a)), ["endpoint", "keys"]);
  });

  it("de-duplicates topics and names the offending index", () => {
    assert.deepEqual(checkTopics(["a", "b", "a"], "topics"), ["a", "b"]);
    assert.throws(() => checkTopics(["a", "é"], "topics"), /topics\[1\]/);
  });
});
