import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { startEmbedded, startFakeProviders, type EmbeddedOptions, type FakeProviders } from "@herald/cli";
import { createClient, createLogger } from "@herald/platform";
import { dispatch, registry } from "@herald/proto";
import { apnsToken, fcmToken, Platform, Provider, webPushToken } from "./fixtures.js";

const samples = fileURLToPath(new URL("../../deploy/samples", import.meta.url));

// The embedded server with the sample apps, and clients with the demo app's server key.
async function startDemo(options: Partial<EmbeddedOptions> = {}) {
  const server = await startEmbedded({ port: 0, appsDir: samples, devFile: false, logger: createLogger({ service: "t", level: "silent" }), ...options });
  const demo = server.apps.find((a) => a.id === "demo")!;
  const reg = createClient(registry.RegistryServiceService, registry, server.address, { apiKey: demo.serverKey });
  const pub = createClient(dispatch.DispatchServiceService, dispatch, server.address, { apiKey: demo.serverKey });
  return {
    server,
    reg,
    pub,
    async stop() {
      reg.close();
      pub.close();
      await server.stop();
    },
  };
}

// The whole pipeline in one process (npm start): publish → fan-out → dry-run senders → results.
describe("embedded pipeline", () => {
  let demo: Awaited<ReturnType<typeof startDemo>>;
  let reg: typeof demo.reg;
  let pub: typeof demo.pub;

  before(async () => {
    demo = await startDemo();
    ({ reg, pub } = demo);
  });
  after(() => demo.stop());

  const finalState = async (id: string) => {
    let last: dispatch.Publish | undefined;
    for await (const update of pub.watchPublish({ id }, { deadlineMs: 20_000 })) last = update.publish;
    return last!;
  };

  it("delivers a topic publish to every subscribed device and finishes it", async () => {
    const devices = [
      { provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken() },
      { provider: Provider.PROVIDER_APNS, platform: Platform.PLATFORM_IOS, token: apnsToken() },
      { provider: Provider.PROVIDER_WEBPUSH, platform: Platform.PLATFORM_WEB, token: webPushToken() },
      { provider: Provider.PROVIDER_HMS, platform: Platform.PLATFORM_ANDROID, token: "hms-token-1" },
    ];
    for (const d of devices) await reg.registerDevice({ ...d, topics: ["goals"] });
    await reg.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken(), topics: ["other"] });
    const { id } = await pub.publish({ uid: "goal-1", recipients: { target: { $case: "topics", value: { values: ["goals"] } } }, notification: { alert: { title: "Goal!", body: "2-1" } } });
    const done = await finalState(id);
    assert.equal(dispatch.publishStateToJSON(done.state), "PUBLISH_STATE_DONE");
    assert.equal(done.counts?.targeted, 4);
    assert.equal(done.counts?.sent, 4);
    const again = await pub.publish({ uid: "goal-1", recipients: { target: { $case: "topics", value: { values: ["goals"] } } }, notification: { alert: { body: "x" } } });
    assert.deepEqual([again.id, again.duplicate], [id, true]);
  });

  it("sends to raw tokens without registering them", async () => {
    const before = (await reg.listDevices({})).devices.length;
    const { id } = await pub.publish({ recipients: { target: { $case: "tokens", value: { provider: Provider.PROVIDER_FCM, tokens: ["raw-1", "raw-2"] } } }, notification: { fcm: { message: { data: { k: "v" } } } } });
    const done = await finalState(id);
    assert.equal(done.counts?.sent, 2);
    assert.equal((await reg.listDevices({})).devices.length, before);
  });

  it("refuses a bad publish with the field named", async () => {
    await assert.rejects(pub.publish({ recipients: { target: { $case: "topics", value: { values: ["bad topic"] } } }, notification: { alert: { body: "x" } } }), /recipients\.topics\[0\]/);
  });
});

// npm start -- --fakes: the same single process, delivering through the fake APNs and Web Push
// services with the real provider code.
describe("embedded pipeline through the fake providers", () => {
  let fakes: FakeProviders;
  let demo: Awaited<ReturnType<typeof startDemo>>;
  let reg: typeof demo.reg;
  let pub: typeof demo.pub;

  before(async () => {
    fakes = await startFakeProviders(createLogger({ service: "t", level: "silent" }));
    demo = await startDemo({ providerFor: fakes.providerFor, tokenRules: fakes.tokenRules });
    ({ reg, pub } = demo);
  });
  after(async () => {
    await demo.stop();
    await fakes.close();
  });

  it("delivers over TLS to the fake APNs, FCM, HMS and Web Push services", async () => {
    const sub = fakes.subscribe();
    await reg.registerDevice({ provider: Provider.PROVIDER_APNS, platform: Platform.PLATFORM_IOS, token: apnsToken(), topics: ["kickoff"] });
    await reg.registerDevice({ provider: Provider.PROVIDER_WEBPUSH, platform: Platform.PLATFORM_WEB, token: sub.token, topics: ["kickoff"] });
    await reg.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken(), topics: ["kickoff"] });
    const hmsToken = "IQAAAACy0kickoff";
    await reg.registerDevice({ provider: Provider.PROVIDER_HMS, platform: Platform.PLATFORM_ANDROID, token: hmsToken, topics: ["kickoff"] });
    const { id } = await pub.publish({ recipients: { target: { $case: "topics", value: { values: ["kickoff"] } } }, notification: { alert: { title: "Kick-off", body: "Now" } } });
    let done: dispatch.Publish | undefined;
    for await (const update of pub.watchPublish({ id }, { deadlineMs: 20_000 })) done = update.publish;
    assert.equal(done?.counts?.sent, 4);
    assert.equal(fakes.apns.stats.byStatus[200], 1);
    assert.equal(fakes.fcm.stats.byStatus[200], 1);
    assert.deepEqual(fakes.hms.delivered(), [hmsToken]);
    const [received] = fakes.webpush.delivered(sub.id);
    assert.equal(JSON.parse(received!.plaintext!.toString()).title, "Kick-off");
  });
});
