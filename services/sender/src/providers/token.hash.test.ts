import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import webPush from "web-push";
import { tokenHash } from "@herald/platform";
import { generateApnsKey, randomDeviceToken, randomFcmToken, randomHmsToken, startFakeApns, startFakeFcm, startFakeHms, startFakeWebPush, testTls, type FakeApns, type FakeFcm, type FakeHms, type FakeWebPush } from "@herald/testing";
import type { PushProvider } from "../provider.types.js";
import { ApnsProvider } from "./apns.provider.js";
import { parseServiceAccount } from "./fcm.auth.js";
import { FcmProvider } from "./fcm.provider.js";
import { HmsProvider } from "./hms.provider.js";
import { sendRequest, targetOf } from "./provider.testkit.js";
import { WebPushProvider } from "./webpush.provider.js";

// One definition of herald.token_hash for every provider: tokenHash(the token the sender was
// given), so `herald.token_hash=<tokenHash(token)>` finds a device's requests in Jaeger whatever
// its provider. (Web Push used to hash the subscription's endpoint instead.)
describe("herald.token_hash on every provider's spans", () => {
  const tls = testTls();
  const exporter = new InMemorySpanExporter();
  const tracing = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const tracer = tracing.getTracer("herald.sender");
  const apnsKey = generateApnsKey();
  let apns: FakeApns;
  let fcm: FakeFcm;
  let hms: FakeHms;
  let webpush: FakeWebPush;
  const providers: PushProvider[] = [];

  before(async () => {
    [apns, fcm, hms, webpush] = await Promise.all([startFakeApns({ keys: [{ ...apnsKey, bundleId: "com.example.app" }] }), startFakeFcm(), startFakeHms(), startFakeWebPush()]);
  });
  after(async () => {
    await Promise.all(providers.map((p) => p.close()));
    await Promise.all([apns, fcm, hms, webpush].map((f) => f?.close()));
    await tracing.shutdown();
  });

  const hashesOf = async (provider: PushProvider, tokens: string[]) => {
    providers.push(provider);
    exporter.reset();
    const results = await provider.send(sendRequest(tokens.map((t) => targetOf(t))));
    assert.deepEqual(results.map((r) => r.outcome.kind), tokens.map(() => "sent"), `${provider.name} delivered`);
    const spans = exporter.getFinishedSpans();
    assert.ok(spans.length > 0, `${provider.name} traced its requests`);
    for (const s of spans) assert.ok(!JSON.stringify(s.attributes).includes(tokens[0]!), `${provider.name}: no token in the span`);
    return spans;
  };

  it("tokenHash is the first 16 hex digits of the token's SHA-256", () => {
    assert.equal(tokenHash("abc"), "ba7816bf8f01cfea");
    assert.match(tokenHash(randomDeviceToken()), /^[0-9a-f]{16}$/);
  });

  it("APNs", async () => {
    const tokens = [randomDeviceToken(), randomDeviceToken()];
    const p = new ApnsProvider({ url: apns.url, servername: "api.push.apple.com", bundleId: "com.example.app", auth: { kind: "token", keyId: apnsKey.keyId, teamId: apnsKey.teamId, privateKeyPem: apnsKey.privateKeyPem }, ca: tls.ca, tracer });
    const spans = await hashesOf(p, tokens);
    assert.deepEqual(spans.map((s) => s.attributes["herald.token_hash"]).sort(), tokens.map(tokenHash).sort());
  });

  it("FCM", async () => {
    const tokens = [randomFcmToken(), randomFcmToken()];
    const p = new FcmProvider({ serviceAccount: parseServiceAccount(fcm.serviceAccount("herald-test").json), url: fcm.url, ca: tls.ca, tracer });
    const spans = await hashesOf(p, tokens);
    assert.deepEqual(spans.map((s) => s.attributes["herald.token_hash"]).sort(), tokens.map(tokenHash).sort());
  });

  it("HMS: herald.token_hash for a one-token request, herald.token_hashes for a shared one", async () => {
    const p = new HmsProvider({ ...hms.app(), pushUrl: hms.pushUrl, tokenUrl: hms.tokenUrl, ca: tls.ca, tracer });
    const one = randomHmsToken();
    const [single] = await hashesOf(p, [one]);
    assert.equal(single!.attributes["herald.token_hash"], tokenHash(one));
    const tokens = [randomHmsToken(), randomHmsToken(), randomHmsToken()];
    const [shared] = await hashesOf(p, tokens);
    assert.deepEqual(shared!.attributes["herald.token_hashes"], tokens.map(tokenHash));
  });

  it("Web Push: the hash of the subscription token, not of its endpoint", async () => {
    const subs = [webpush.subscribe(), webpush.subscribe()];
    const p = new WebPushProvider({ vapid: { subject: "mailto:ops@herald.test", ...webPush.generateVAPIDKeys() }, tokenRules: { webPushHosts: ["127.0.0.1", "localhost"], webPushAllowInsecure: false }, ca: tls.ca, tracer });
    const spans = await hashesOf(p, subs.map((s) => s.token));
    assert.deepEqual(spans.map((s) => s.attributes["herald.token_hash"]).sort(), subs.map((s) => tokenHash(s.token)).sort());
    for (const s of spans) assert.ok(!JSON.stringify(s.attributes).includes(subs[0]!.endpoint) && !JSON.stringify(s.attributes).includes(subs[1]!.endpoint), "no endpoint in the span");
  });
});
