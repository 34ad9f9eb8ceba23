import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { after, before, beforeEach, describe, it } from "node:test";
import { fcmScenarioToken, randomFcmToken, startFakeFcm, testTls, type FakeFcm } from "@herald/testing";
import { parseServiceAccount } from "./fcm.auth.js";
import { FcmProvider, messageBody, type FcmProviderConfig } from "./fcm.provider.js";
import { sendRequest, targetOf, utf8 } from "./provider.testkit.js";

const tls = testTls();
const MESSAGE = '{"notification":{"title":"Goal","body":"2-1"},"data":{"match":"42"},"android":{"priority":"HIGH"}}';

describe("FcmProvider against the fake FCM over TLS + HTTP/2", () => {
  let fake: FakeFcm;
  let clock = Date.now();
  const providers: FcmProvider[] = [];
  const provider = (config: Partial<FcmProviderConfig> = {}) => {
    const p = new FcmProvider({ serviceAccount: parseServiceAccount(fake.serviceAccount("herald-test").json), url: fake.url, ca: tls.ca, now: () => new Date(clock), ...config });
    providers.push(p);
    return p;
  };
  const sendOne = async (p: FcmProvider, token: string) => (await p.send(sendRequest([targetOf(token)], { payload: utf8(MESSAGE) })))[0]!.outcome;

  before(async () => {
    fake = await startFakeFcm({ now: () => clock, retryAfter: "7" });
  });
  after(async () => {
    await Promise.all(providers.map((p) => p.close()));
    await fake.close();
  });
  beforeEach(() => fake.reset());

  it("sends one request per token over HTTP/2, the job's message byte-exact after the target", async () => {
    const p = provider();
    const tokens = Array.from({ length: 40 }, randomFcmToken);
    const results = await p.send(sendRequest(tokens.map((t) => targetOf(t)), { payload: utf8(MESSAGE) }));
    assert.deepEqual(results.map((r) => r.outcome.kind), tokens.map(() => "sent"));
    assert.match(results[0]!.outcome.kind === "sent" ? (results[0]!.outcome.id ?? "") : "", /^projects\/herald-test\/messages\//);
    for (const t of tokens) {
      const [r] = fake.delivered(t);
      assert.equal(r?.rawBody.toString(), `{"message":{"token":${JSON.stringify(t)},${MESSAGE.slice(1)}}`);
      assert.equal(r?.httpVersion, "2.0");
    }
    assert.equal(p.tokenFetches, 1, "one access token for all concurrent requests");
  });

  it("addresses native topics and conditions", async () => {
    const p = provider();
    const [topic] = await p.send(sendRequest([], { nativeTopic: "news", payload: utf8(MESSAGE) }));
    const [condition] = await p.send(sendRequest([], { nativeCondition: "'a' in topics && 'b' in topics", payload: utf8("{}") }));
    assert.equal(topic?.outcome.kind, "sent");
    assert.equal(condition?.outcome.kind, "sent");
    assert.equal(fake.delivered("news")[0]?.message?.topic, "news");
    assert.equal(fake.delivered("'a' in topics && 'b' in topics").length, 1);
  });

  it("maps every error class to its outcome", async () => {
    const p = provider();
    const cases: Array<[string, object]> = [
      [fcmScenarioToken("unregistered"), { kind: "invalid_token", reason: "fcm:UNREGISTERED" }],
      [fcmScenarioToken("invalid-token"), { kind: "invalid_token", reason: "fcm:INVALID_ARGUMENT" }],
      [fcmScenarioToken("bad-message"), { kind: "failed", reason: "fcm:INVALID_ARGUMENT" }],
      [fcmScenarioToken("quota"), { kind: "retry", reason: "fcm:QUOTA_EXCEEDED", retryAfterMs: 7000 }],
      [fcmScenarioToken("unavailable"), { kind: "retry", reason: "fcm:UNAVAILABLE", retryAfterMs: 7000 }],
      [fcmScenarioToken("internal"), { kind: "retry", reason: "fcm:INTERNAL" }],
      [fcmScenarioToken("sender-mismatch"), { kind: "credentials", reason: "fcm:SENDER_ID_MISMATCH" }],
      [fcmScenarioToken("third-party-auth"), { kind: "credentials", reason: "fcm:THIRD_PARTY_AUTH_ERROR" }],
    ];
    for (const [token, expected] of cases) assert.deepEqual(await sendOne(p, token), expected, token);
    const flaky = fcmScenarioToken("flaky-2");
    assert.equal((await sendOne(p, flaky)).kind, "retry");
    assert.equal((await sendOne(p, flaky)).kind, "retry");
    assert.equal((await sendOne(p, flaky)).kind, "sent");
  });

  it("renews the access token before it expires, and at once when FCM stops accepting it", async () => {
    const p = provider();
    await sendOne(p, randomFcmToken());
    clock += 30 * 60_000;
    await sendOne(p, randomFcmToken());
    assert.equal(p.tokenFetches, 1, "still valid for half an hour");
    clock += 26 * 60_000;
    await sendOne(p, randomFcmToken());
    assert.equal(p.tokenFetches, 2, "renewed within five minutes of its expiry");
    clock += 10 * 60_000;
    fake.revokeTokens();
    assert.deepEqual(await sendOne(p, randomFcmToken()), { kind: "retry", reason: "fcm:UNAUTHENTICATED" });
    assert.equal((await sendOne(p, randomFcmToken())).kind, "sent");
    assert.equal(p.tokenFetches, 3);
  });

  it("reports refused credentials and never touches tokens for them", async () => {
    const stranger = parseServiceAccount(fake.serviceAccount("other").json);
    // A key the fake never issued: the token endpoint refuses the assertion.
    const forged = { ...stranger, private_key: generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" }).toString() };
    const refused = provider({ serviceAccount: forged });
    assert.deepEqual(await sendOne(refused, randomFcmToken()), { kind: "credentials", reason: "fcm:oauth:invalid_grant" });
    // A valid account of another project sending for this one.
    const wrongProject = provider({ serviceAccount: stranger, projectId: "herald-test" });
    assert.deepEqual(await sendOne(wrongProject, randomFcmToken()), { kind: "credentials", reason: "fcm:PERMISSION_DENIED" });
    assert.equal(fake.delivered().length, 0);
  });

  it("sends nothing once the job expired", async () => {
    const p = provider();
    const [r] = await p.send(sendRequest([targetOf(randomFcmToken())], { expireAt: new Date(clock - 1) }));
    assert.deepEqual(r?.outcome, { kind: "failed", reason: "expired" });
    assert.equal(fake.stats.requests, 0);
  });
});

describe("FCM message bodies and service accounts", () => {
  it("puts the target first and keeps the job's bytes", () => {
    assert.equal(messageBody(utf8("{}"), "token", "t").toString(), '{"message":{"token":"t"}}');
    assert.equal(messageBody(utf8('{"data":{"k":"v"}}'), "topic", "news").toString(), '{"message":{"topic":"news","data":{"k":"v"}}}');
  });

  it("refuses a service account without its key, naming the field", () => {
    assert.throws(() => parseServiceAccount('{"project_id":"p","client_email":"e"}'), /no private_key/);
    assert.throws(() => parseServiceAccount("not json"), /not JSON/);
  });
});
