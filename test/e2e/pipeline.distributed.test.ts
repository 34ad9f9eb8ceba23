import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { createClient } from "@herald/platform";
import { apps, dispatch, registry } from "@herald/proto";
import { failureOf, freePort, requireEnv, spawnService, type ServiceProcess } from "@herald/testing";
import { Platform, Provider, webPushToken } from "../integration/fixtures.js";

const root = fileURLToPath(new URL("../../", import.meta.url));

// Every service in its own process on real FerretDB and Kafka, with a dry-run Web Push sender
// (the provider fakes replace it as the real providers land).
describe("distributed pipeline", () => {
  const adminKey = randomBytes(24).toString("base64url");
  const appId = `e2e-${randomUUID().slice(0, 6)}`;
  const common = {
    HERALD_MONGO_URL: `${requireEnv("HERALD_MONGO_URL").replace(/\/$/, "")}/herald_e2e_${randomUUID().slice(0, 8)}`,
    HERALD_KAFKA_BROKERS: requireEnv("HERALD_KAFKA_BROKERS"),
    HERALD_ADMIN_KEY: adminKey,
    HERALD_LOG_LEVEL: "warn",
  };
  const procs: ServiceProcess[] = [];
  let sender: ServiceProcess;
  let serverKey = "";
  let addresses: Record<string, string> = {};

  const startSender = async () => {
    const health = await freePort();
    const p = spawnService(`${root}services/sender/src/main.ts`, { ...common, HERALD_APP: appId, HERALD_PROVIDER: "webpush", HERALD_DRY_RUN: "true", HERALD_DRY_RUN_LATENCY_MS: "300", HERALD_HEALTH_PORT: String(health), HERALD_LOG_LEVEL: "info" }, "");
    const deadline = Date.now() + 60_000;
    while (!p.output().includes("sender running")) {
      if (p.child.exitCode !== null || Date.now() > deadline) throw new Error(`sender did not start: ${failureOf(p.output())}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return p;
  };

  before(async () => {
    addresses = { registry: `127.0.0.1:${await freePort()}`, topic: `127.0.0.1:${await freePort()}`, dispatcher: `127.0.0.1:${await freePort()}` };
    procs.push(spawnService(`${root}services/registry/src/main.ts`, { ...common, HERALD_GRPC_ADDRESS: addresses.registry!, HERALD_SECRET: randomBytes(24).toString("base64url") }, addresses.registry!));
    procs.push(spawnService(`${root}services/topic/src/main.ts`, { ...common, HERALD_GRPC_ADDRESS: addresses.topic! }, addresses.topic!));
    procs.push(spawnService(`${root}services/dispatcher/src/main.ts`, { ...common, HERALD_GRPC_ADDRESS: addresses.dispatcher!, HERALD_TOPIC_ADDRESS: addresses.topic! }, addresses.dispatcher!));
    await Promise.all(procs.map((p) => p.waitHealthy(60_000)));
    const admin = createClient(apps.AppServiceService, apps, addresses.registry!, { apiKey: adminKey });
    await admin.createApp({ id: appId });
    serverKey = (await admin.createApiKey({ appId, role: apps.ApiKeyRole.API_KEY_ROLE_SERVER })).secret;
    admin.close();
    sender = await startSender();
  });
  after(async () => {
    for (const p of [...procs, sender]) await p?.stop("SIGKILL");
  });

  const watchToEnd = async (pub: ReturnType<typeof createClient<typeof dispatch.DispatchServiceService>>, id: string) => {
    let last: dispatch.Publish | undefined;
    for await (const u of pub.watchPublish({ id }, { deadlineMs: 120_000 })) last = u.publish;
    return last!;
  };

  it("delivers a topic publish through Kafka and loses nothing when the sender is killed mid-broadcast", async () => {
    const reg = createClient(registry.RegistryServiceService, registry, addresses.registry!, { apiKey: serverKey });
    for (let i = 0; i < 300; i++) await reg.registerDevice({ provider: Provider.PROVIDER_WEBPUSH, platform: Platform.PLATFORM_WEB, token: webPushToken(), topics: ["all-fans"] });
    reg.close();
    const pub = createClient(dispatch.DispatchServiceService, dispatch, addresses.dispatcher!, { apiKey: serverKey });
    const { id } = await pub.publish({ uid: "e2e-1", recipients: { target: { $case: "topics", value: { values: ["all-fans"] } } }, notification: { alert: { title: "Goal", body: "1-0" } } });

    // Kill the sender as soon as the first job's results are in, then start a new one.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const p = (await pub.getPublish({ id })).publish!;
      if ((p.counts?.sent ?? 0) > 0) break;
      if (Date.now() > deadline) assert.fail(`no delivery within 60 s:\n${sender.output()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await sender.stop("SIGKILL");
    sender = await startSender();

    const done = await watchToEnd(pub, id);
    pub.close();
    assert.equal(dispatch.publishStateToJSON(done.state), "PUBLISH_STATE_DONE");
    assert.equal(done.counts?.targeted, 300);
    assert.equal(done.counts?.sent, 300, "every device received it at least once");
    assert.ok((done.counts?.duplicates ?? 0) >= 0);
  });
});
