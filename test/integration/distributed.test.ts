import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { createClient, KafkaBus, namespacedBus, type BusMessage } from "@herald/platform";
import { apps, BusTopics, events, registry, topic } from "@herald/proto";
import { ALL_PROVIDER_ENUMS } from "@herald/store";
import { freePort, requireEnv, spawnService, type ServiceProcess } from "@herald/testing";
import { fcmToken, Platform, Provider } from "./fixtures.js";

const root = fileURLToPath(new URL("../../", import.meta.url));

// Registry and topic as separate processes on real FerretDB and Kafka, as in production.
describe("distributed services on FerretDB and Kafka", () => {
  const adminKey = randomBytes(24).toString("base64url");
  const mongoUrl = `${requireEnv("HERALD_MONGO_URL").replace(/\/$/, "")}/herald_dist_${randomUUID().slice(0, 8)}`;
  const brokers = requireEnv("HERALD_KAFKA_BROKERS");
  // Its own Kafka namespace: suites running at the same time never consume each other's messages.
  const namespace = `dist-${randomUUID().slice(0, 8)}.`;
  let registryProc: ServiceProcess;
  let topicProc: ServiceProcess;

  before(async () => {
    const common = { HERALD_MONGO_URL: mongoUrl, HERALD_KAFKA_BROKERS: brokers, HERALD_ADMIN_KEY: adminKey, HERALD_LOG_LEVEL: "warn", HERALD_KAFKA_NAMESPACE: namespace };
    const rAddr = `127.0.0.1:${await freePort()}`;
    const tAddr = `127.0.0.1:${await freePort()}`;
    registryProc = spawnService(`${root}services/registry/src/main.ts`, { ...common, HERALD_GRPC_ADDRESS: rAddr, HERALD_SECRET: randomBytes(24).toString("base64url") }, rAddr);
    topicProc = spawnService(`${root}services/topic/src/main.ts`, { ...common, HERALD_GRPC_ADDRESS: tAddr }, tAddr);
    await Promise.all([registryProc.waitHealthy(60_000), topicProc.waitHealthy(60_000)]);
  });
  after(async () => {
    await registryProc?.stop("SIGKILL");
    await topicProc?.stop("SIGKILL");
  });

  it("registers through one process, streams through the other and emits device events on Kafka", async () => {
    const admin = createClient(apps.AppServiceService, apps, registryProc.address, { apiKey: adminKey });
    const appId = `dist-${randomUUID().slice(0, 6)}`;
    await admin.createApp({ id: appId, providers: ALL_PROVIDER_ENUMS });
    const { secret } = await admin.createApiKey({ appId, role: apps.ApiKeyRole.API_KEY_ROLE_SERVER });
    admin.close();

    const bus = namespacedBus(new KafkaBus({ brokers: brokers.split(","), clientId: "dist-test" }), namespace);
    const seen: events.DeviceEvent[] = [];
    const sub = await bus.subscribe({
      group: `dist-test-${randomUUID()}`,
      topics: [BusTopics.devices],
      fromBeginning: true,
      handler: async (m: BusMessage) => {
        const e = events.DeviceEvent.decode(m.value);
        if (e.app === appId) seen.push(e);
      },
    });

    const reg = createClient(registry.RegistryServiceService, registry, registryProc.address, { apiKey: secret });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push((await reg.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: fcmToken(), topics: ["dist"] })).device!.id);
    }
    reg.close();
    const top = createClient(topic.TopicServiceService, topic, topicProc.address, { apiKey: secret });
    const streamed: string[] = [];
    for await (const batch of top.streamRecipients({ target: { $case: "topics", value: { values: ["dist"] } }, batchSize: 2 })) {
      streamed.push(...batch.recipients.map((r) => r.deviceId));
    }
    top.close();
    assert.deepEqual(streamed, [...ids].sort());

    const deadline = Date.now() + 30_000;
    while (seen.length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    await sub.stop();
    await bus.close();
    assert.deepEqual(seen.map((e) => e.deviceId).sort(), [...ids].sort());
    assert.ok(seen.every((e) => e.kind === events.DeviceEventKind.DEVICE_EVENT_KIND_REGISTERED));
  });

  it("drains and exits 0 on SIGTERM", async () => {
    assert.equal(await topicProc.stop("SIGTERM"), 0);
    assert.equal(await registryProc.stop("SIGTERM"), 0);
  });

  it("refuses to start with a bad variable and names it", async () => {
    const addr = `127.0.0.1:${await freePort()}`;
    const bad = spawnService(`${root}services/topic/src/main.ts`, { HERALD_MONGO_URL: "postgres://nope", HERALD_GRPC_ADDRESS: addr, HERALD_KAFKA_BROKERS: "" }, addr);
    const code = await new Promise<number | null>((resolve) => bad.child.once("exit", resolve));
    assert.notEqual(code, 0);
    assert.match(bad.output(), /HERALD_MONGO_URL \("postgres:\/\/nope"\): must be a mongodb:\/\/ URL/);
  });
});
