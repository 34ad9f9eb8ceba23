import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { createClient, KafkaBus, namespacedBus, type Bus } from "@herald/platform";
import { apps, BusTopics, dispatch, events, pooledTopicsOf, Provider } from "@herald/proto";
import { failureOf, freePort, generateApnsKey, randomDeviceToken, requireEnv, spawnService, startFakeApns, type ApnsTestKey, type FakeApns, type ServiceProcess } from "@herald/testing";
import { importDevices, registerMany, startPlatform, testCaFile, watchToEnd, type Platform } from "./platform.fixture.js";
import { Platform as DevicePlatform } from "../integration/fixtures.js";
import { poolFileName } from "@herald/sender";

const root = fileURLToPath(new URL("../../", import.meta.url));

// One pooled APNs sender process for several apps, beside the registry, topic and dispatcher
// processes on the real Kafka and FerretDB of test/infra, and the fake APNs: a pooled app's
// publish goes through the dispatcher to it, each app sends with its own key and bundle id, an
// app added or fixed later is picked up without a restart, and one app's refused credentials do
// not hold up the others.
describe("pooled sender", { timeout: 420_000 }, () => {
  const suffix = randomUUID().slice(0, 6);
  const ids = { a: `pa-${suffix}`, b: `pb-${suffix}`, c: `pc-${suffix}`, late: `pd-${suffix}`, api: `pe-${suffix}`, move: `pf-${suffix}` };
  let platform: Platform;
  const keys: Record<string, ApnsTestKey> = {};
  const bundle = (app: string) => `com.example.${app.replace(/-/g, "")}`;
  let apns: FakeApns;
  let bus: Bus;
  let sender: ServiceProcess;
  let pool: string;
  let opsUrl: string;
  const results: events.DeliveryResult[] = [];

  const writeApp = (app: string, key: ApnsTestKey) => {
    // As the operator's credential shards reach a pool: <app>.<file>, each file replaced whole by a rename.
    const files = { "apns-key.p8": key.privateKeyPem, "settings.json": JSON.stringify({ HERALD_APNS_BUNDLE_ID: bundle(app), HERALD_APNS_KEY_ID: key.keyId, HERALD_APNS_TEAM_ID: key.teamId }) };
    for (const [file, content] of Object.entries(files)) {
      const staged = join(pool, `..${poolFileName(app, file)}.tmp`);
      writeFileSync(staged, content, { mode: 0o600 });
      renameSync(staged, join(pool, poolFileName(app, file)));
    }
  };
  const job = (app: string, publishId: string, tokens: string[]) =>
    events.DeliveryJob.fromPartial({
      jobId: `${publishId}:apns:0`,
      app,
      publishId,
      provider: Provider.PROVIDER_APNS,
      targets: tokens.map((token, i) => ({ deviceId: `d${i}`, token })),
      payload: Buffer.from(JSON.stringify({ aps: { alert: { body: `for ${app}` } } })),
    });
  const send = (app: string, publishId: string, tokens: string[], lane: "bulk" | "urgent" = "bulk") =>
    bus.publish(BusTopics.pooled(app, "apns", lane), [{ key: publishId, value: events.DeliveryJob.encode(job(app, publishId, tokens)).finish() }]);
  const resultOf = async (publishId: string, deadlineMs = 30_000) => {
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      const r = results.find((x) => x.publishId === publishId && x.retrying === 0);
      if (r) return r;
      if (Date.now() > deadline) assert.fail(`no final result for ${publishId}; results: ${JSON.stringify(results.map((x) => [x.publishId, x.sent, x.retrying]))}\n${failureOf(sender.output())}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  before(async () => {
    for (const app of Object.values(ids)) keys[app] = generateApnsKey();
    // Apple knows every app's key; app b is first given a key Apple does not know.
    apns = await startFakeApns({ keys: Object.values(ids).map((app) => ({ ...keys[app]!, bundleId: bundle(app) })), record: true });
    pool = mkdtempSync(join(tmpdir(), "herald-pool-"));
    writeApp(ids.a, keys[ids.a]!);
    writeApp(ids.b, generateApnsKey({ keyId: keys[ids.b]!.keyId, teamId: keys[ids.b]!.teamId }));
    writeApp(ids.c, keys[ids.c]!);
    writeApp(ids.api, keys[ids.api]!);
    writeApp(ids.move, keys[ids.move]!);
    platform = await startPlatform();
    const namespace = platform.env.HERALD_KAFKA_NAMESPACE!;
    const brokers = requireEnv("HERALD_KAFKA_BROKERS");
    bus = namespacedBus(new KafkaBus({ brokers: brokers.split(","), clientId: "pool-test" }), namespace);
    // What the operator does for a pooled app: its topics, one partition each.
    await bus.ensureTopics([...[ids.a, ids.b, ids.c, ids.api, ids.move].flatMap((app) => pooledTopicsOf(app, "apns")), BusTopics.results].map((name) => ({ name, partitions: name === BusTopics.results ? 8 : 1 })));
    await bus.subscribe({ group: `pool-test-results-${suffix}`, topics: [BusTopics.results], handler: async (m) => void results.push(events.DeliveryResult.decode(m.value)) });
    const health = await freePort();
    opsUrl = `http://127.0.0.1:${health}`;
    sender = spawnService(
      `${root}services/sender/src/main.ts`,
      {
        HERALD_KAFKA_BROKERS: brokers,
        HERALD_KAFKA_NAMESPACE: namespace,
        HERALD_POOL: "true",
        HERALD_POOL_DIR: pool,
        HERALD_POOL_RESCAN_MS: "200",
        HERALD_PROVIDER: "apns",
        HERALD_PROVIDER_URL: apns.url,
        HERALD_PROVIDER_CA_FILE: testCaFile(),
        HERALD_HEALTH_PORT: String(health),
        HERALD_LOG_LEVEL: "info",
        HERALD_CREDENTIAL_COOLDOWN_MS: "3000",
        HERALD_RETRY_INITIAL_MS: "200",
        HERALD_RETRY_MAX_MS: "1000",
      },
      "",
    );
    const deadline = Date.now() + 90_000;
    while (!sender.output().includes("sender running")) {
      if (sender.child.exitCode !== null || Date.now() > deadline) throw new Error(`pooled sender did not start: ${failureOf(sender.output())}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  after(async () => {
    await sender?.stop("SIGTERM");
    await bus?.close();
    await platform?.stop();
    await apns?.close();
    if (pool) rmSync(pool, { recursive: true, force: true });
  });

  it("a pooled app's publish goes from the dispatcher to the pooled sender and completes", async () => {
    const clients = await platform.createApp(ids.api, { senders: apps.SenderMode.SENDER_MODE_POOLED });
    const token = randomDeviceToken();
    const devices = await registerMany(clients, [{ provider: Provider.PROVIDER_APNS, platform: DevicePlatform.PLATFORM_IOS, token }]);
    const { id } = await clients.dispatch.publish({ recipients: { target: { $case: "deviceIds", value: { values: devices } } }, notification: { alert: { title: "pooled", body: "hello" } } });
    const done = await watchToEnd(clients, id, 60_000);
    assert.equal(done.state, dispatch.PublishState.PUBLISH_STATE_DONE, JSON.stringify(done));
    assert.equal(done.counts?.sent, 1);
    assert.equal(apns.delivered(token)[0]?.headers["apns-topic"], bundle(ids.api));
  });

  // A move is an UpdateApp (the operator's edit of a PushApp): fan-outs that start after it hand
  // their jobs to the other mode's topics, while the jobs already handed on are delivered by the
  // senders they were handed to (both run during a move). Each job is on exactly one topic, so a
  // broadcast moved midway reaches every device once.
  it("moves an app between dedicated and pooled senders mid-broadcast: every device reached once, later broadcasts on the new mode's topics", async () => {
    const DEVICES = 1500;
    const app = ids.move;
    const clients = await platform.createApp(app);
    const admin = createClient(apps.AppServiceService, apps, platform.addresses.registry, { apiKey: platform.adminKey });
    const key = keys[app]!;
    const tokens = Array.from({ length: DEVICES }, () => randomDeviceToken());
    await Promise.all([
      platform.startSender(app, "apns", { HERALD_PROVIDER_URL: apns.url, HERALD_PROVIDER_CA_FILE: testCaFile(), HERALD_APNS_BUNDLE_ID: bundle(app), HERALD_APNS_KEY_ID: key.keyId, HERALD_APNS_TEAM_ID: key.teamId }, { "apns-key.p8": key.privateKeyPem }),
      importDevices(platform, app, tokens.map((token) => ({ provider: "apns", platform: "ios", token, user: "", tags: {}, meta: {}, locale: "", timezone: "", topics: ["everyone"] }))),
    ]);
    const topics = { dedicated: BusTopics.deliveries(app, "apns"), pooled: BusTopics.pooled(app, "apns") };
    const ends = async () => {
      const lag = await bus.lag(`pool-test-probe-${suffix}`, [topics.dedicated, topics.pooled]);
      const end = (topic: string) => lag.filter((p) => p.topic === topic).reduce((sum, p) => sum + p.end, 0);
      return { dedicated: end(topics.dedicated), pooled: end(topics.pooled) };
    };
    // UpdateApp replaces the lists it is given (providers, webhooks): read, change, write.
    const move = async (senders: apps.SenderMode) => {
      const current = (await admin.getApp({ id: app })).app!;
      await admin.updateApp({ id: app, name: current.name, limits: current.limits, providers: current.providers, webhooks: current.webhooks, senders });
    };
    // Publishes to every device, moves the app once the first deliveries are in, follows the
    // publish to its end; every device must have received exactly `round` notifications by then.
    const broadcastMovingTo = async (round: number, to: apps.SenderMode | undefined) => {
      const { id } = await clients.dispatch.publish({ recipients: { target: { $case: "topics", value: { values: ["everyone"] } } }, notification: { alert: { body: `round ${round}` } }, priority: dispatch.Priority.PRIORITY_LOW });
      if (to !== undefined) {
        const deadline = Date.now() + 60_000;
        while (((await clients.dispatch.getPublish({ id })).publish?.counts?.sent ?? 0) === 0) {
          if (Date.now() > deadline) assert.fail(`round ${round}: nothing delivered in 60 s; jobs so far ${JSON.stringify(await ends())}; ${JSON.stringify((await clients.dispatch.getPublish({ id })).publish?.counts)}\n${failureOf(sender.output())}`);
          await new Promise((r) => setTimeout(r, 20));
        }
        await move(to);
      }
      const done = await watchToEnd(clients, id, 180_000);
      assert.equal(done.state, dispatch.PublishState.PUBLISH_STATE_DONE, JSON.stringify(done));
      assert.equal(done.counts?.sent, DEVICES, `round ${round}: ${JSON.stringify(done.counts)}`);
      const wrong = tokens.filter((t) => apns.delivered(t).length !== round);
      assert.equal(wrong.length, 0, `round ${round}: ${wrong.length} devices did not get exactly ${round} notifications (e.g. ${apns.delivered(wrong[0] ?? "").length})`);
    };

    const start = await ends();
    await broadcastMovingTo(1, apps.SenderMode.SENDER_MODE_POOLED);
    assert.equal((await admin.getApp({ id: app })).app?.senders, apps.SenderMode.SENDER_MODE_POOLED);
    const afterFirst = await ends();
    assert.ok(afterFirst.dedicated > start.dedicated, "the first broadcast started on the dedicated senders' topic");

    await broadcastMovingTo(2, apps.SenderMode.SENDER_MODE_DEDICATED);
    const afterSecond = await ends();
    assert.ok(afterSecond.pooled > afterFirst.pooled, "a broadcast started after the move to pooled goes to the pool's topic");

    await broadcastMovingTo(3, undefined);
    const afterThird = await ends();
    assert.ok(afterThird.dedicated > afterSecond.dedicated, "after the move back, the dedicated senders' topic");
    assert.equal(afterThird.pooled, afterSecond.pooled, "and nothing more on the pool's");
  });

  it("sends each app's jobs with that app's own key and bundle id, and reports them per app", async () => {
    const tokens = { a: [randomDeviceToken(), randomDeviceToken()], c: [randomDeviceToken()] };
    await send(ids.a, `p-a1-${suffix}`, tokens.a);
    await send(ids.c, `p-c1-${suffix}`, tokens.c, "urgent");
    assert.equal((await resultOf(`p-a1-${suffix}`)).sent, 2);
    assert.equal((await resultOf(`p-c1-${suffix}`)).sent, 1);
    for (const t of tokens.a) {
      const [got] = apns.delivered(t);
      assert.equal(got?.headers["apns-topic"], bundle(ids.a));
      assert.equal(got?.auth, "token");
      assert.deepEqual(got?.payload, { aps: { alert: { body: `for ${ids.a}` } } });
    }
    assert.equal(apns.delivered(tokens.c[0]!)[0]?.headers["apns-topic"], bundle(ids.c));
    const r = results.find((x) => x.publishId === `p-a1-${suffix}`)!;
    assert.equal(r.app, ids.a);
  });

  it("one app's refused credentials pause that app alone; fixed credentials are picked up without a restart and its jobs go out", async () => {
    const bToken = randomDeviceToken();
    await send(ids.b, `p-b1-${suffix}`, [bToken]);
    // Apple refuses b's key: b is degraded and its job waits (retrying), never reported dead.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const health = (await (await fetch(`${opsUrl}/healthz`)).json()) as { degraded?: Array<{ app: string }> };
      if (health.degraded?.some((d) => d.app === ids.b)) break;
      if (Date.now() > deadline) assert.fail(`app b never degraded: ${JSON.stringify(health)}\n${failureOf(sender.output())}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    // Meanwhile another app's job goes out at once, not after b's cooldown.
    const aToken = randomDeviceToken();
    const sentAt = Date.now();
    await send(ids.a, `p-a2-${suffix}`, [aToken]);
    assert.equal((await resultOf(`p-a2-${suffix}`)).sent, 1);
    assert.ok(Date.now() - sentAt < 3000, `app a's job waited ${Date.now() - sentAt} ms, b's cooldown is 3000 ms`);
    assert.equal(apns.delivered(bToken).length, 0);
    // b's operator fixes the key: the pool rebuilds b's provider, b's retried job goes out.
    writeApp(ids.b, keys[ids.b]!);
    const fixed = await resultOf(`p-b1-${suffix}`, 60_000);
    assert.equal(fixed.sent, 1);
    assert.equal(apns.delivered(bToken).length, 1);
    assert.equal(apns.delivered(bToken)[0]?.headers["apns-topic"], bundle(ids.b));
    assert.ok(results.filter((x) => x.publishId === `p-b1-${suffix}`).every((x) => x.invalidTokens === 0 && x.failed === 0), "refused credentials never count a token as invalid");
  });

  it("serves an app added after it started, from the app's directory and topics alone", async () => {
    writeApp(ids.late, keys[ids.late]!);
    await bus.ensureTopics(pooledTopicsOf(ids.late, "apns").map((name) => ({ name, partitions: 1 })));
    const token = randomDeviceToken();
    await send(ids.late, `p-d1-${suffix}`, [token]);
    assert.equal((await resultOf(`p-d1-${suffix}`, 60_000)).sent, 1);
    assert.equal(apns.delivered(token)[0]?.headers["apns-topic"], bundle(ids.late));
  });
});
