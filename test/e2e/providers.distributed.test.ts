import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { dispatch } from "@herald/proto";
import {
  fcmScenarioToken,
  generateApnsKey,
  hmsScenarioToken,
  randomDeviceToken,
  randomFcmToken,
  randomHmsToken,
  scenarioToken,
  startFakeApns,
  startFakeFcm,
  startFakeHms,
  startFakeWebPush,
  type FakeApns,
  type FakeFcm,
  type FakeHms,
  type FakeWebPush,
} from "@herald/testing";
import { Platform as DevicePlatform, Provider } from "../integration/fixtures.js";
import { ALLOW_FAKES, importDevices, registerMany, startPlatform, testCaFile, watchToEnd, webPushSender, type Clients, type Platform } from "./platform.fixture.js";

const BUNDLE = "com.herald.e2e";
const state = (p: dispatch.Publish) => dispatch.publishStateToJSON(p.state);

// The whole pipeline against the fake providers: every service and every sender in its own
// process, real Kafka and FerretDB, the production provider code pointed at the fakes by
// configuration (endpoint URL and an extra CA), credentials mounted as files.
describe("delivery through the providers (distributed)", () => {
  let platform: Platform;
  let apns: FakeApns;
  let webpushFake: FakeWebPush;
  let fcm: FakeFcm;
  let hms: FakeHms;
  let app: Clients;
  let badApp: Clients;
  const appId = `prov-${randomUUID().slice(0, 6)}`;
  const badAppId = `bad-${randomUUID().slice(0, 6)}`;

  before(async () => {
    const caFile = testCaFile();
    const key = generateApnsKey();
    apns = await startFakeApns({ keys: [{ ...key, bundleId: BUNDLE }] });
    webpushFake = await startFakeWebPush();
    fcm = await startFakeFcm();
    hms = await startFakeHms();
    platform = await startPlatform(ALLOW_FAKES);
    app = await platform.createApp(appId);
    badApp = await platform.createApp(badAppId);

    const fast = { HERALD_PROVIDER_CA_FILE: caFile, HERALD_RETRY_INITIAL_MS: "200", HERALD_RETRY_MAX_MS: "2000", HERALD_MAX_ATTEMPTS: "4", HERALD_CREDENTIAL_COOLDOWN_MS: "500", ...ALLOW_FAKES };
    const apnsEnv = { ...fast, HERALD_PROVIDER_URL: apns.url, HERALD_APNS_BUNDLE_ID: BUNDLE, HERALD_APNS_KEY_ID: key.keyId, HERALD_APNS_TEAM_ID: key.teamId };
    const web = webPushSender(caFile, fast);
    await Promise.all([
      platform.startSender(appId, "apns", apnsEnv, { "apns-key.p8": key.privateKeyPem }),
      platform.startSender(appId, "webpush", web.env, web.credentials),
      platform.startSender(appId, "fcm", { ...fast, HERALD_PROVIDER_URL: fcm.url }, { "fcm-service-account.json": fcm.serviceAccount("herald-e2e").json }),
      (() => {
        const hmsApp = hms.app();
        return platform.startSender(appId, "hms", { ...fast, HERALD_PROVIDER_URL: hms.pushUrl, HERALD_HMS_TOKEN_URL: hms.tokenUrl, HERALD_HMS_APP_ID: hmsApp.appId }, { "hms-client-secret": hmsApp.clientSecret });
      })(),
      // A key APNs has never heard of: every request is refused with 403 InvalidProviderToken.
      platform.startSender(badAppId, "apns", { ...apnsEnv, HERALD_MAX_ATTEMPTS: "2" }, { "apns-key.p8": generateApnsKey({ keyId: key.keyId, teamId: key.teamId }).privateKeyPem }),
    ]);
  });
  after(async () => {
    await platform?.stop();
    await apns?.close();
    await webpushFake?.close();
    await fcm?.close();
    await hms?.close();
  });

  it("delivers byte-exact raw payloads to one device of each provider", async () => {
    const apnsTokenValue = randomDeviceToken();
    const sub = webpushFake.subscribe();
    const fcmTokenValue = randomFcmToken();
    const hmsTokenValue = randomHmsToken();
    const ids = await registerMany(app, [
      { provider: Provider.PROVIDER_APNS, platform: DevicePlatform.PLATFORM_IOS, token: apnsTokenValue },
      { provider: Provider.PROVIDER_WEBPUSH, platform: DevicePlatform.PLATFORM_WEB, token: sub.token },
      { provider: Provider.PROVIDER_FCM, platform: DevicePlatform.PLATFORM_ANDROID, token: fcmTokenValue },
      { provider: Provider.PROVIDER_HMS, platform: DevicePlatform.PLATFORM_ANDROID, token: hmsTokenValue },
    ]);
    const apnsPayload = { aps: { alert: { title: "Kick-off", body: "Herald FC – Fakes United" }, "mutable-content": 1 }, match: "42" };
    const webPayload = { title: "Kick-off", body: "Herald FC – Fakes United", data: { match: "42" } };
    const fcmMessage = { notification: { title: "Kick-off", body: "Herald FC – Fakes United" }, data: { match: "42" }, android: { priority: "HIGH" } };
    const hmsMessage = { android: { notification: { title: "Kick-off", body: "Herald FC – Fakes United", click_action: { type: 3 } } } };
    const { id } = await app.dispatch.publish({
      recipients: { target: { $case: "deviceIds", value: { values: ids } } },
      notification: {
        apns: { headers: { "apns-push-type": "alert", "apns-collapse-id": "match-42" }, payload: apnsPayload },
        webpush: { headers: { Urgency: "high" }, payload: webPayload },
        fcm: { message: fcmMessage },
        hms: { message: hmsMessage },
      },
    });
    const done = await watchToEnd(app, id);
    assert.equal(state(done), "PUBLISH_STATE_DONE");
    assert.equal(done.counts?.sent, 4);

    const [toApple] = apns.delivered(apnsTokenValue);
    assert.ok(toApple, "APNs received the notification");
    assert.equal(toApple.rawBody.toString(), JSON.stringify(apnsPayload));
    assert.equal(toApple.headers["apns-topic"], BUNDLE);
    assert.equal(toApple.headers["apns-collapse-id"], "match-42");
    assert.equal(toApple.auth, "token");
    const [toBrowser] = webpushFake.delivered(sub.id);
    assert.ok(toBrowser, "the push service received the notification");
    assert.equal(toBrowser.plaintext?.toString(), JSON.stringify(webPayload), "decrypted by the fake exactly as sent");
    assert.equal(toBrowser.headers.urgency, "high");
    assert.equal(toBrowser.headers.contentEncoding, "aes128gcm");
    const [toGoogle] = fcm.delivered(fcmTokenValue);
    assert.equal(toGoogle?.rawBody.toString(), JSON.stringify({ message: { token: fcmTokenValue, ...fcmMessage } }));
    const toHuawei = hms.records.find((r) => r.tokens.includes(hmsTokenValue));
    assert.equal(toHuawei?.rawBody.toString(), JSON.stringify({ validate_only: false, message: { token: [hmsTokenValue], ...hmsMessage } }));
  });

  it("reaches a topic of a thousand devices across providers, a user, a tag filter and raw tokens", async () => {
    const subs = Array.from({ length: 250 }, () => webpushFake.subscribe());
    const apnsTokens = Array.from({ length: 500 }, () => randomDeviceToken());
    const fcmTokens = Array.from({ length: 150 }, () => randomFcmToken());
    const hmsTokens = Array.from({ length: 100 }, () => randomHmsToken());
    // Ada's two devices through RegisterDevice (the user binding as an app does it); the crowd
    // written in bulk, as a thousand RegisterDevice calls take most of the suite's time on FerretDB.
    await registerMany(app, [
      { provider: Provider.PROVIDER_APNS, platform: DevicePlatform.PLATFORM_IOS, token: apnsTokens[0]!, topics: ["crowd"], tags: { tier: "silver" }, user: "ada" },
      { provider: Provider.PROVIDER_WEBPUSH, platform: DevicePlatform.PLATFORM_WEB, token: subs[0]!.token, topics: ["crowd"], user: "ada" },
    ]);
    const crowd = (provider: "apns" | "webpush" | "fcm" | "hms", token: string, tags: Record<string, string> = {}) => ({ provider, platform: provider === "apns" ? ("ios" as const) : provider === "webpush" ? ("web" as const) : ("android" as const), token, user: "", tags, meta: {}, locale: "", timezone: "", topics: ["crowd"] });
    await importDevices(platform, appId, [
      ...apnsTokens.slice(1).map((token, i) => crowd("apns", token, { tier: (i + 1) % 2 ? "gold" : "silver" })),
      ...subs.slice(1).map((s) => crowd("webpush", s.token)),
      ...fcmTokens.map((token) => crowd("fcm", token)),
      ...hmsTokens.map((token) => crowd("hms", token)),
    ]);
    const alert = { title: "Full time", body: "2-1" };
    const topicPub = await watchToEnd(app, (await app.dispatch.publish({ recipients: { target: { $case: "topics", value: { values: ["crowd"] } } }, notification: { alert } })).id);
    assert.equal(state(topicPub), "PUBLISH_STATE_DONE");
    assert.equal(topicPub.counts?.targeted, 1000);
    assert.equal(topicPub.counts?.sent, 1000);
    for (const t of apnsTokens) assert.equal(apns.delivered(t).length >= 1, true, `APNs device ${t} reached`);
    for (const s of subs) assert.ok(webpushFake.delivered(s.id).length >= 1, `Web Push subscription ${s.id} reached`);
    for (const t of fcmTokens) assert.ok(fcm.delivered(t).length >= 1, `FCM device ${t} reached`);
    for (const t of hmsTokens) assert.ok(hms.delivered(t).length >= 1, `HMS device ${t} reached`);

    const userPub = await watchToEnd(app, (await app.dispatch.publish({ recipients: { target: { $case: "users", value: { values: ["ada"] } } }, notification: { alert: { title: "For Ada" } } })).id);
    assert.equal(userPub.counts?.sent, 2, "both of ada's devices");

    const gold = await watchToEnd(app, (await app.dispatch.publish({ recipients: { target: { $case: "tags", value: { all: [{ key: "tier", values: ["gold"] }] } } }, notification: { alert: { title: "Gold only" } } })).id);
    assert.equal(gold.counts?.targeted, 250);
    assert.equal(gold.counts?.sent, 250);

    // The stateless use: tokens nobody registered, straight to the provider.
    const raw = [randomDeviceToken(), randomDeviceToken()];
    const rawPub = await watchToEnd(app, (await app.dispatch.publish({ recipients: { target: { $case: "tokens", value: { provider: Provider.PROVIDER_APNS, tokens: raw } } }, notification: { alert: { title: "Raw" } } })).id);
    assert.equal(rawPub.counts?.sent, 2);
    for (const t of raw) assert.equal(apns.delivered(t).length, 1);
  });

  it("removes devices whose tokens the providers declare dead, and keeps the rest", async () => {
    const dead = scenarioToken("unregistered");
    const gone = webpushFake.subscribe({ scenario: "gone" });
    const alive = randomDeviceToken();
    // Apple says this token died a day ago, but the device registered it again since: kept.
    const reRegistered = scenarioToken("unregistered", 24);
    const fcmDead = fcmScenarioToken("unregistered");
    const hmsDead = hmsScenarioToken("illegal");
    const ids = await registerMany(app, [
      { provider: Provider.PROVIDER_APNS, platform: DevicePlatform.PLATFORM_IOS, token: dead, topics: ["cleanup"] },
      { provider: Provider.PROVIDER_WEBPUSH, platform: DevicePlatform.PLATFORM_WEB, token: gone.token, topics: ["cleanup"] },
      { provider: Provider.PROVIDER_APNS, platform: DevicePlatform.PLATFORM_IOS, token: alive, topics: ["cleanup"] },
      { provider: Provider.PROVIDER_APNS, platform: DevicePlatform.PLATFORM_IOS, token: reRegistered, topics: ["cleanup"] },
      { provider: Provider.PROVIDER_FCM, platform: DevicePlatform.PLATFORM_ANDROID, token: fcmDead, topics: ["cleanup"] },
      { provider: Provider.PROVIDER_HMS, platform: DevicePlatform.PLATFORM_ANDROID, token: hmsDead, topics: ["cleanup"] },
    ]);
    const done = await watchToEnd(app, (await app.dispatch.publish({ recipients: { target: { $case: "topics", value: { values: ["cleanup"] } } }, notification: { alert: { title: "Anyone there?" } } })).id);
    assert.equal(done.counts?.sent, 1);
    assert.equal(done.counts?.invalidTokens, 5);
    assert.equal(done.counts?.failedByReason?.["apns:Unregistered"], 2);
    assert.equal(done.counts?.failedByReason?.["fcm:UNREGISTERED"], 1);
    assert.equal(done.counts?.failedByReason?.["hms:80300007"], 1);
    assert.equal(done.counts?.failedByReason?.["webpush:410"], 1);
    // The registry consumes token feedback asynchronously: poll with a deadline.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const { devices } = await app.registry.listDevices({ filter: { ids } });
      const left = devices.map((d) => d.id).sort();
      if (left.length === 2) {
        assert.deepEqual(left, [ids[2], ids[3]].sort());
        break;
      }
      if (Date.now() > deadline) assert.fail(`dead devices still registered: ${left.join(", ")}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  it("retries 429 and 503 until delivered, honouring Retry-After", async () => {
    const flakyApns = scenarioToken("flaky-2");
    const throttled = webpushFake.subscribe({ scenario: { kind: "flaky", failures: 1, status: 429 } });
    const unavailable = webpushFake.subscribe({ scenario: "flaky-2" });
    const fcmFlaky = fcmScenarioToken("flaky-2");
    const hmsFlaky = hmsScenarioToken("flaky-1");
    const ids = await registerMany(app, [
      { provider: Provider.PROVIDER_APNS, platform: DevicePlatform.PLATFORM_IOS, token: flakyApns },
      { provider: Provider.PROVIDER_WEBPUSH, platform: DevicePlatform.PLATFORM_WEB, token: throttled.token },
      { provider: Provider.PROVIDER_WEBPUSH, platform: DevicePlatform.PLATFORM_WEB, token: unavailable.token },
      { provider: Provider.PROVIDER_FCM, platform: DevicePlatform.PLATFORM_ANDROID, token: fcmFlaky },
      { provider: Provider.PROVIDER_HMS, platform: DevicePlatform.PLATFORM_ANDROID, token: hmsFlaky },
    ]);
    const done = await watchToEnd(app, (await app.dispatch.publish({ recipients: { target: { $case: "deviceIds", value: { values: ids } } }, notification: { alert: { title: "Eventually" } } })).id);
    assert.equal(state(done), "PUBLISH_STATE_DONE");
    assert.equal(done.counts?.sent, 5);
    assert.ok((done.counts?.retries ?? 0) >= 8, `retries counted: ${done.counts?.retries}`);
    assert.equal(fcm.delivered(fcmFlaky).length, 1);
    assert.equal(hms.delivered(hmsFlaky).length, 1);
    assert.equal(apns.delivered(flakyApns).length, 1);
    assert.equal(webpushFake.delivered(throttled.id).length, 1);
    assert.equal(webpushFake.delivered(unavailable.id).length, 1);
    const { devices } = await app.registry.listDevices({ filter: { ids } });
    assert.equal(devices.length, 5, "transient failures never remove devices");
  });

  it("does not send what expired while it waited for a retry", async () => {
    // Retry-After: 30 s, but the notification expires in 5: Herald gives up instead of sending late.
    const slowLane = webpushFake.subscribe({ scenario: { kind: "too-many", retryAfter: "30" } });
    const [id] = await registerMany(app, [{ provider: Provider.PROVIDER_WEBPUSH, platform: DevicePlatform.PLATFORM_WEB, token: slowLane.token }]);
    const done = await watchToEnd(app, (await app.dispatch.publish({ recipients: { target: { $case: "deviceIds", value: { values: [id!] } } }, notification: { alert: { title: "Now or never" } }, expireAt: new Date(Date.now() + 5_000) })).id);
    assert.equal(done.counts?.sent, 0);
    assert.equal((done.counts?.expired ?? 0) + (done.counts?.deadLettered ?? 0), 1);
    assert.equal(webpushFake.delivered(slowLane.id).length, 0);
  });

  it("never deletes devices when the provider refuses the credentials", async () => {
    const tokens = [randomDeviceToken(), randomDeviceToken()];
    const ids = await registerMany(badApp, tokens.map((token) => ({ provider: Provider.PROVIDER_APNS, platform: DevicePlatform.PLATFORM_IOS, token })));
    const done = await watchToEnd(badApp, (await badApp.dispatch.publish({ recipients: { target: { $case: "deviceIds", value: { values: ids } } }, notification: { alert: { title: "Denied" } } })).id);
    assert.equal(done.counts?.sent, 0);
    assert.equal(done.counts?.invalidTokens, 0);
    assert.equal(done.counts?.deadLettered, 2, "given up after the bounded attempts, on the dead-letter topic");
    for (const t of tokens) assert.equal(apns.delivered(t).length, 0);
    assert.ok((apns.stats.byReason["InvalidProviderToken"] ?? 0) >= 1, "APNs refused the provider token");
    const { devices } = await badApp.registry.listDevices({ filter: { ids } });
    assert.equal(devices.length, 2);
  });

  it("accepts a uid once and cancels a scheduled publish", async () => {
    const token = randomDeviceToken();
    const [id] = await registerMany(app, [{ provider: Provider.PROVIDER_APNS, platform: DevicePlatform.PLATFORM_IOS, token }]);
    const request = { uid: `order-${randomUUID()}`, recipients: { target: { $case: "deviceIds" as const, value: { values: [id!] } } }, notification: { alert: { title: "Once" } } };
    const first = await app.dispatch.publish(request);
    const second = await app.dispatch.publish(request);
    assert.equal(second.id, first.id);
    assert.equal(second.duplicate, true);
    await watchToEnd(app, first.id);

    const later = await app.dispatch.publish({ recipients: request.recipients, notification: { alert: { title: "Never" } }, sendAt: new Date(Date.now() + 60_000) });
    await app.dispatch.cancelPublish({ id: later.id });
    const cancelled = await watchToEnd(app, later.id);
    assert.equal(state(cancelled), "PUBLISH_STATE_CANCELLED");
    assert.equal(apns.delivered(token).length, 1, "the uid delivered once; the cancelled publish never");
  });
});
