import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { startEmbedded, type EmbeddedApp, type EmbeddedServer } from "@herald/cli";
import { createDispatcherModule, storeRecipients } from "@herald/dispatcher";
import type { ServiceError } from "@grpc/grpc-js";
import { createClient, createLogger, MemoryBus } from "@herald/platform";
import { apps, dispatch } from "@herald/proto";
import { createMongoPublishRepository, createMongoStore, DEFAULT_LIMITS, DEFAULT_WEBPUSH_HOSTS, type Store } from "@herald/store";
import { requireEnv } from "@herald/testing";
import { MongoClient } from "mongodb";
import { expectError, Status } from "./fixtures.js";

const samples = fileURLToPath(new URL("../../deploy/samples", import.meta.url));
const silent = () => createLogger({ service: "t", level: "silent" });
const publishRequest = (): dispatch.PublishRequest =>
  dispatch.PublishRequest.fromPartial({ recipients: { target: { $case: "topics", value: { values: ["news"] } } }, notification: { alert: { title: "Hi" } } });

// retry_after_ms of the google.rpc.ErrorInfo in grpc-status-details-bin (key, then value tag 0x12,
// its length and the digits).
const errorInfoRetryAfter = (err: unknown) => {
  const bin = (err as ServiceError).metadata.get("grpc-status-details-bin")[0] as Buffer;
  return /retry_after_ms\x12.(\d+)/s.exec(bin.toString("latin1"))?.[1];
};

// AppLimits.max_publish_rate through the embedded server: gRPC RESOURCE_EXHAUSTED with a retry
// hint, HTTP 429 with Retry-After on the native and the Beams routes. The dispatcher's clock is
// stepped by the test, one window at a time: nothing here waits for time to pass.
describe("publish rate limit (embedded server)", () => {
  let server: EmbeddedServer;
  let demo: EmbeddedApp;
  // 100 ms into a one-second window, well ahead of the wall clock.
  let clock = (Math.floor(Date.now() / 1000) + 3600) * 1000 + 100;
  const nextWindow = () => {
    clock = (Math.floor(clock / 1000) + 1) * 1000 + 100;
  };

  before(async () => {
    server = await startEmbedded({ port: 0, httpPort: 0, appsDir: samples, devFile: false, logger: silent(), now: () => new Date(clock) });
    demo = server.apps.find((a) => a.id === "demo")!;
    // The sample says 100 per second; the admin key lowers it to 2 (UpdateApp replaces providers
    // and webhooks, so the current ones go along).
    const admin = createClient(apps.AppServiceService, apps, server.address, { apiKey: server.adminKey });
    try {
      const { app } = await admin.getApp({ id: "demo" });
      const { app: updated } = await admin.updateApp({ id: "demo", limits: { ...app!.limits!, maxPublishRate: 2 }, providers: app!.providers, webhooks: app!.webhooks });
      assert.equal(updated!.limits!.maxPublishRate, 2);
    } finally {
      admin.close();
    }
  });
  after(() => server?.stop());

  it("answers gRPC RESOURCE_EXHAUSTED PUBLISH_RATE_EXCEEDED with retry_after_ms and a retry-after trailer, then accepts in the next window", async () => {
    nextWindow();
    const client = createClient(dispatch.DispatchServiceService, dispatch, server.address, { apiKey: demo.serverKey });
    try {
      await client.publish(publishRequest());
      await client.publish({ ...publishRequest(), validateOnly: true });
      await client.publish(publishRequest());
      const err = await expectError(client.publish(publishRequest()), Status.RESOURCE_EXHAUSTED, "PUBLISH_RATE_EXCEEDED");
      assert.match(err.message, /at most 2 publishes per second; retry in 900 ms/);
      assert.equal(errorInfoRetryAfter(err), "900");
      assert.deepEqual((err as ServiceError).metadata.get("retry-after"), ["1"]);
      // A batch counts every entry.
      nextWindow();
      const batch = await client.publishBatch({ requests: [publishRequest(), publishRequest(), publishRequest()] });
      assert.deepEqual(batch.results.map((r) => (r.result?.$case === "error" ? r.result.value.reason : r.result?.$case)), ["accepted", "accepted", "PUBLISH_RATE_EXCEEDED"]);
      nextWindow();
      assert.ok((await client.publish(publishRequest())).id, "the next window accepts again");
    } finally {
      client.close();
    }
  });

  it("answers HTTP 429 with Retry-After and the reason on the native route", async () => {
    nextWindow();
    const post = () =>
      fetch(`${server.httpUrl}/v1/herald.dispatch.v1.DispatchService/Publish`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${demo.serverKey}` },
        body: JSON.stringify({ recipients: { topics: { values: ["news"] } }, notification: { alert: { title: "Hi" } } }),
      });
    assert.equal((await post()).status, 200);
    assert.equal((await post()).status, 200);
    const refused = await post();
    assert.equal(refused.status, 429);
    assert.equal(refused.headers.get("retry-after"), "1");
    const body = (await refused.json()) as { error: string; description: string };
    assert.equal(body.error, "PUBLISH_RATE_EXCEEDED");
    assert.match(body.description, /at most 2 publishes per second; retry in 900 ms/);
    nextWindow();
    assert.equal((await post()).status, 200);
  });

  it("answers Beams' publish routes with 429 in Beams' error shape", async () => {
    nextWindow();
    const post = (target: "interests" | "users", names: string[]) =>
      fetch(`${server.httpUrl}/publish_api/v1/instances/demo/publishes/${target}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${demo.userTokenSecret}` },
        body: JSON.stringify({ [target]: names, fcm: { notification: { title: "Hi" } } }),
      });
    assert.equal((await post("interests", ["news"])).status, 200);
    assert.equal((await post("users", ["ada"])).status, 200);
    for (const [target, names] of [["interests", ["news"]], ["users", ["ada"]]] as const) {
      const refused = await post(target, [...names]);
      assert.equal(refused.status, 429, target);
      assert.equal(refused.headers.get("retry-after"), "1");
      const body = (await refused.json()) as { error: string; description: string };
      assert.equal(body.error, "Too Many Requests");
      assert.match(body.description, /at most 2 publishes per second/);
    }
  });
});

// Two dispatchers ("replicas") over one MongoDB database, each with its own client, store and
// publish repository, as two processes would have: the limit is the app's, not each replica's.
describe("publish rate limit across dispatcher replicas (FerretDB)", { timeout: 60_000 }, () => {
  const url = requireEnv("HERALD_MONGO_URL");
  const dbName = `herald_rate_${randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const clients: MongoClient[] = [];
  const replicas: Array<ReturnType<typeof createDispatcherModule>["publishService"]> = [];
  let store: Store;
  let clock = (Math.floor(Date.now() / 1000) + 3600) * 1000 + 250;
  const nextWindow = () => {
    clock = (Math.floor(clock / 1000) + 1) * 1000 + 250;
  };

  before(async () => {
    for (let i = 0; i < 2; i++) {
      const client = new MongoClient(url, { serverSelectionTimeoutMS: 10_000 });
      await client.connect();
      clients.push(client);
      const db = client.db(dbName);
      const replicaStore = await createMongoStore(db);
      store ??= replicaStore;
      const module = createDispatcherModule({
        publishes: await createMongoPublishRepository(db),
        directory: replicaStore,
        bus: new MemoryBus(),
        recipients: storeRecipients(replicaStore),
        tokenRules: { webPushHosts: DEFAULT_WEBPUSH_HOSTS, webPushAllowInsecure: false },
        logger: silent(),
        now: () => new Date(clock),
      });
      replicas.push(module.publishService);
    }
    const t = new Date(clock);
    await store.apps.create({ id: "shared", name: "shared", limits: { ...DEFAULT_LIMITS, maxPublishRate: 3 }, providers: ["fcm"], secretVersion: 1, owner: "", vapidPublicKey: "", webhooks: [], createdAt: t, updatedAt: t });
  });
  after(async () => {
    await clients[0]?.db(dbName).dropDatabase();
    await Promise.all(clients.map((c) => c.close()));
  });

  const outcome = (p: Promise<dispatch.PublishResponse>) =>
    p.then(
      () => "accepted",
      (err: { reason?: string; metadata?: Record<string, string> }) => `${err.reason}:${err.metadata?.retry_after_ms}`,
    );

  it("admits the app's limit once across both replicas, concurrent or not, and again in the next window", async () => {
    nextWindow();
    const concurrent = await Promise.all(Array.from({ length: 12 }, (_, i) => outcome(replicas[i % 2]!.publish(publishRequest(), "shared", ""))));
    assert.equal(concurrent.filter((o) => o === "accepted").length, 3, concurrent.join());
    assert.deepEqual(new Set(concurrent.filter((o) => o !== "accepted")), new Set(["PUBLISH_RATE_EXCEEDED:750"]));

    // One replica fills most of a window; the other, which has not seen it, gets only the rest.
    nextWindow();
    assert.equal(await outcome(replicas[0]!.publish(publishRequest(), "shared", "")), "accepted");
    assert.equal(await outcome(replicas[0]!.publish(publishRequest(), "shared", "")), "accepted");
    assert.equal(await outcome(replicas[1]!.publish(publishRequest(), "shared", "")), "accepted");
    assert.equal(await outcome(replicas[1]!.publish(publishRequest(), "shared", "")), "PUBLISH_RATE_EXCEEDED:750");
    assert.equal(await outcome(replicas[0]!.publish(publishRequest(), "shared", "")), "PUBLISH_RATE_EXCEEDED:750");
    const stored = await clients[0]!.db(dbName).collection("publishes").countDocuments({ app: "shared" });
    assert.equal(stored, 6, "only admitted publishes were stored");
  });
});
