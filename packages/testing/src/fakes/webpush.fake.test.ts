import assert from "node:assert/strict";
import { createECDH, createPrivateKey, sign } from "node:crypto";
import https from "node:https";
import { after, before, beforeEach, describe, it } from "node:test";
import webPush from "web-push";
import { testTls } from "./tls.fixture.js";
import { decryptAes128gcm, DecryptError } from "./webpush.ece.js";
import { startFakeWebPush, type FakeSubscription, type FakeWebPush } from "./webpush.fake.js";

// The fake is only as good as its checks: each test shows one thing a real push service refuses.

describe("RFC 8291 decryption", () => {
  it("decrypts the Appendix A example", () => {
    const ecdh = createECDH("prime256v1");
    ecdh.setPrivateKey(Buffer.from("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94", "base64url"));
    const keys = { ecdh, publicKey: ecdh.getPublicKey(), auth: Buffer.from("BTBZMqHH6r4Tts7J_aSIgg", "base64url") };
    assert.equal(keys.publicKey.toString("base64url"), "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4");
    const body = Buffer.from(
      "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN",
      "base64url",
    );
    const out = decryptAes128gcm(body, keys);
    assert.equal(out.plaintext.toString("utf8"), "When I grow up, I want to be a watermelon");
    assert.equal(out.recordSize, 4096);
    assert.equal(out.senderKey, "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8");

    const tampered = Buffer.from(body);
    tampered[tampered.length - 20]! ^= 1;
    assert.throws(() => decryptAes128gcm(tampered, keys), DecryptError);
  });
});

describe("fake Web Push service", () => {
  const tls = testTls();
  const vapid = webPush.generateVAPIDKeys();
  const subject = "mailto:ops@herald.test";
  let fake: FakeWebPush;
  let agent: https.Agent;

  before(async () => {
    fake = await startFakeWebPush();
    agent = new https.Agent({ keepAlive: true, ca: tls.ca });
  });
  after(async () => {
    agent.destroy();
    await fake.close();
  });
  beforeEach(() => fake.reset());

  // web-push as an independent client: what it encrypts, the fake must decrypt.
  const push = (sub: FakeSubscription | { endpoint: string; keys: { p256dh: string; auth: string } }, payload: string | Buffer, extra: webPush.RequestOptions = {}) =>
    webPush.sendNotification(sub, payload, { vapidDetails: { subject, ...vapid }, agent, contentEncoding: "aes128gcm", ...extra }).then(
      (r) => r.statusCode,
      (e: webPush.WebPushError) => e.statusCode,
    );

  const raw = (path: string, headers: Record<string, string | number>, body: Buffer = Buffer.alloc(0)) =>
    new Promise<number>((resolve, reject) => {
      const req = https.request(`${fake.url}${path}`, { method: "POST", agent, headers: { "content-length": body.length, ...headers } }, (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      });
      req.on("error", reject);
      req.end(body);
    });

  const jwt = (claims: object, key = vapid.privateKey) => {
    const d = Buffer.from(key, "base64url");
    const pub = Buffer.from(vapid.publicKey, "base64url");
    const pk = createPrivateKey({
      key: { kty: "EC", crv: "P-256", d: d.toString("base64url"), x: pub.subarray(1, 33).toString("base64url"), y: pub.subarray(33).toString("base64url") },
      format: "jwk",
    });
    const input = `${Buffer.from(JSON.stringify({ typ: "JWT", alg: "ES256" })).toString("base64url")}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}`;
    return `${input}.${sign("sha256", Buffer.from(input), { key: pk, dsaEncoding: "ieee-p1363" }).toString("base64url")}`;
  };

  it("decrypts and records what a sender encrypted, with the VAPID claims", async () => {
    const sub = fake.subscribe("alice");
    assert.equal(sub.endpoint, `${fake.origin}/push/alice`);
    assert.deepEqual(JSON.parse(sub.token), JSON.parse(JSON.stringify(sub)));
    assert.equal(Buffer.from(sub.keys.p256dh, "base64url").length, 65);
    assert.equal(Buffer.from(sub.keys.auth, "base64url").length, 16);

    assert.equal(await push(sub, "hello ✓", { TTL: 60, urgency: "high", topic: "news" }), 201);
    const [rec] = fake.delivered("alice");
    assert.equal(rec?.plaintext?.toString("utf8"), "hello ✓");
    assert.deepEqual(rec?.headers, { ttl: 60, urgency: "high", topic: "news", contentEncoding: "aes128gcm" });
    assert.equal(rec?.vapid?.aud, fake.origin);
    assert.equal(rec?.vapid?.sub, subject);
    assert.equal(rec?.vapid?.publicKey, vapid.publicKey);
    assert.equal(fake.requests, 1);
  });

  it("refuses protocol errors the way push services do", async () => {
    const sub = fake.subscribe();
    const path = new URL(sub.endpoint).pathname;
    const auth = (claims: object) => `vapid t=${jwt(claims)}, k=${vapid.publicKey}`;
    const good = { aud: fake.origin, exp: Math.floor(Date.now() / 1000) + 3600, sub: subject };

    assert.equal(await raw(path, { authorization: auth(good) }), 400, "TTL is required");
    assert.equal(await raw(path, { ttl: 0, "content-encoding": "aesgcm", authorization: auth(good) }, Buffer.alloc(100)), 415);
    assert.equal(await raw(path, { ttl: 0 }), 401, "no VAPID");
    assert.equal(await raw(path, { ttl: 0, authorization: auth({ ...good, aud: "https://fcm.googleapis.com" }) }), 401, "aud of another service");
    assert.equal(await raw(path, { ttl: 0, authorization: auth({ ...good, exp: good.exp + 2 * 86400 }) }), 401, "exp beyond 24 h");
    assert.equal(await raw(path, { ttl: 0, authorization: auth({ ...good, exp: good.exp - 7200 }) }), 401, "expired");
    assert.equal(await raw(path, { ttl: 0, authorization: auth({ ...good, sub: "ops@herald.test" }) }), 401, "sub without a scheme");
    const other = webPush.generateVAPIDKeys();
    assert.equal(await raw(path, { ttl: 0, authorization: `vapid t=${jwt(good)}, k=${other.publicKey}` }), 401, "signature by another key");
    assert.equal(await raw(path, { ttl: 0, authorization: auth(good) }), 201, "no payload is a valid push");
    assert.equal(await raw(path, { ttl: 0, urgency: "urgent", authorization: auth(good) }), 400);
    assert.equal(await raw(path, { ttl: 0, topic: "x".repeat(33), authorization: auth(good) }), 400);
    assert.equal(await raw(path, { ttl: 0, "content-encoding": "aes128gcm", authorization: auth(good) }, Buffer.alloc(4097)), 413);
    assert.equal(await raw(path, { ttl: 0, "content-encoding": "aes128gcm", authorization: auth(good) }, Buffer.alloc(200, 1)), 400, "garbage ciphertext");
    assert.equal(await raw("/push/nobody", { ttl: 0, authorization: auth(good) }), 404);
    assert.deepEqual(fake.records.map((r) => r.status), [400, 415, 401, 401, 401, 401, 401, 401, 201, 400, 400, 413, 400, 404]);
    assert.match(fake.records[4]?.error ?? "", /24 hours/);
  });

  it("accepts only the subscription's applicationServerKey and the allowed keys", async () => {
    const other = webPush.generateVAPIDKeys();
    const pinned = fake.subscribe({ applicationServerKey: other.publicKey });
    assert.equal(await push(pinned, "x"), 403);
    assert.equal(await push(pinned, "x", { vapidDetails: { subject, ...other } }), 201);

    const strict = await startFakeWebPush({ vapidPublicKeys: [other.publicKey] });
    try {
      const sub = strict.subscribe();
      assert.equal(await push(sub, "x"), 403);
      assert.equal(strict.records[0]?.error, "VAPID key not allowed");
    } finally {
      await strict.close();
    }
  });

  it("plays scenarios per subscription", async () => {
    const gone = fake.subscribe({ scenario: "gone" });
    const missing = fake.subscribe({ scenario: "not-found" });
    const busy = fake.subscribe({ scenario: "too-many" });
    const broken = fake.subscribe({ scenario: "server-error" });
    const flaky = fake.subscribe({ scenario: "flaky-2" });
    assert.equal(await push(gone, "x"), 410);
    assert.equal(await push(missing, "x"), 404);
    assert.equal(await push(busy, "x"), 429);
    assert.equal(await push(broken, "x"), 500);
    assert.deepEqual([await push(flaky, "x"), await push(flaky, "x"), await push(flaky, "x")], [503, 503, 201]);
    fake.setScenario(gone.id, "ok");
    assert.equal(await push(gone, "back"), 201);
    // Refused messages were still decrypted: tests can see what was attempted.
    assert.equal(fake.records[0]?.plaintext?.toString(), "x");
  });

  it("answers slowly without holding up others, and waitFor sees requests from elsewhere", async () => {
    const slow = fake.subscribe({ scenario: { kind: "slow", delayMs: 150 } });
    const quick = fake.subscribe();
    const started = Date.now();
    const slowStatus = push(slow, "late");
    assert.equal(await push(quick, "now"), 201);
    assert.equal(fake.records.length, 1);
    const records = await fake.waitFor(2);
    assert.equal(records[1]?.plaintext?.toString(), "late");
    assert.equal(await slowStatus, 201);
    assert.ok(Date.now() - started >= 140);
  });

  it("serves plain http when insecure", async () => {
    const plain = await startFakeWebPush({ insecure: true });
    try {
      assert.match(plain.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      const sub = plain.subscribe();
      // web-push always speaks https, so check the route with a bare request.
      const status = await fetch(sub.endpoint, { method: "POST", headers: { ttl: "0" } }).then((r) => r.status);
      assert.equal(status, 401);
      assert.equal(plain.records[0]?.error, "missing Authorization");
    } finally {
      await plain.close();
    }
  });
});
