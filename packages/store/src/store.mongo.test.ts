import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import { MongoClient, type Db } from "mongodb";
import { storeContract } from "./store.contract.js";
import { COLLECTIONS, createMongoStore } from "./store.mongo.js";
import type { Store } from "./store.types.js";

// The store contract against a real MongoDB-wire server (FerretDB v1 in `npm test`), each run in
// a fresh database that is dropped at the end. A missing server is a failure, never a skip.

const url = process.env.HERALD_MONGO_URL;
const MISSING =
  "HERALD_MONGO_URL is not set: run `npm test` (it starts FerretDB via test/infra/up.sh), or `bash test/infra/up.sh` and export the variables it prints";

async function openDb(): Promise<{ client: MongoClient; db: Db }> {
  const client = new MongoClient(url!, { serverSelectionTimeoutMS: 10_000 });
  await client.connect();
  return { client, db: client.db(`herald_test_${randomUUID().replaceAll("-", "").slice(0, 12)}`) };
}

// A store whose close() drops its database and closes the client.
async function makeStore(): Promise<Store> {
  const { client, db } = await openDb();
  const store = await createMongoStore(db);
  return {
    ...store,
    async close() {
      try {
        await db.dropDatabase();
      } finally {
        await client.close();
      }
    },
  };
}

if (!url) {
  describe("mongo store", () => {
    it("needs a MongoDB-wire server", () => {
      throw new Error(MISSING);
    });
  });
} else {
  storeContract("mongo", makeStore);

  describe("mongo store specifics", { timeout: 60_000 }, () => {
    it("creates its indexes idempotently; close() closes the client it was given", async () => {
      const { client, db } = await openDb();
      try {
        await createMongoStore(db);
        await createMongoStore(db);
        const names = async (c: string) => (await db.collection(c).listIndexes().toArray()).map((i) => String(i.name)).sort();
        assert.deepEqual(await names(COLLECTIONS.devices), ["_id_", "app_id", "app_lastSeenAt", "app_provider_token", "app_tagPairs", "app_user_platform"]);
        assert.deepEqual(await names(COLLECTIONS.deviceTopics), ["_id_", "app_deviceId_topic", "app_topic_deviceId", "app_topic_user"]);
        assert.deepEqual(await names(COLLECTIONS.userTopics), ["_id_", "app_topic", "app_user_topic"]);
        assert.deepEqual(await names(COLLECTIONS.apiKeys), ["_id_", "app", "hash"]);
      } finally {
        await db.dropDatabase();
        await client.close();
      }
      let closed = 0;
      const owned = { close: async () => void closed++ } as unknown as MongoClient;
      const { client: other, db: otherDb } = await openDb();
      try {
        const store = await createMongoStore(otherDb, { client: owned });
        await store.close();
        assert.equal(closed, 1);
      } finally {
        await otherDb.dropDatabase();
        await other.close();
      }
    });

    it("stores a device with _id = id, tags as key=value pairs and no user-chosen field names", async () => {
      const { client, db } = await openDb();
      try {
        const store = await createMongoStore(db);
        const { device } = await store.devices.write({
          app: "a1", provider: "fcm", platform: "android", token: "tok", user: "u",
          tags: { "x.y": "1", tier: "gold" }, meta: { "app.version": "2" }, locale: "", timezone: "", now: new Date(0),
        });
        const doc = await db.collection(COLLECTIONS.devices).findOne({ _id: device.id as never });
        assert.ok(doc);
        assert.deepEqual([...doc.tagPairs].sort(), ["tier=gold", "x.y=1"]);
        assert.deepEqual(doc.meta, [{ k: "app.version", v: "2" }]);
        assert.equal(doc.tags, undefined);
      } finally {
        await db.dropDatabase();
        await client.close();
      }
    });

    it("scans read from a server-side cursor, batchSize documents per round trip", async () => {
      const client = new MongoClient(url, { serverSelectionTimeoutMS: 10_000, monitorCommands: true });
      await client.connect();
      const db = client.db(`herald_test_${randomUUID().replaceAll("-", "").slice(0, 12)}`);
      try {
        const store = await createMongoStore(db);
        for (let i = 0; i < 23; i++) {
          const { device } = await store.devices.write({
            app: "a1", provider: "fcm", platform: "android", token: `tok-${i}`, user: "", tags: {}, meta: {}, locale: "", timezone: "", now: new Date(0),
          });
          await store.subscriptions.add("a1", device.id, device, ["t1", "t2"], "device");
        }
        const seen: Array<{ name: string; batchSize: unknown }> = [];
        client.on("commandStarted", (e) => {
          if (e.commandName === "find" || e.commandName === "getMore") seen.push({ name: e.commandName, batchSize: e.command.batchSize });
        });
        const sizes: number[] = [];
        for await (const batch of store.devices.scan("a1", {}, { batchSize: 5 })) sizes.push(batch.length);
        assert.deepEqual(sizes, [5, 5, 5, 5, 3]);
        assert.deepEqual(seen[0], { name: "find", batchSize: 5 });
        assert.ok(seen.filter((c) => c.name === "getMore").length >= 4, JSON.stringify(seen));
        seen.length = 0;
        const idBatches: number[] = [];
        for await (const ids of store.subscriptions.scanDeviceIds("a1", ["t1", "t2"], { batchSize: 4 })) idBatches.push(ids.length);
        assert.deepEqual(idBatches, [4, 4, 4, 4, 4, 3]);
        assert.deepEqual(seen[0], { name: "find", batchSize: 4 });
        assert.ok(seen.filter((c) => c.name === "getMore").length >= 10, JSON.stringify(seen));
      } finally {
        await db.dropDatabase();
        await client.close();
      }
    });

    it("join on FerretDB merges by default (reads by _id for a handful), and lookup and merge give the same devices", async () => {
      const client = new MongoClient(url, { serverSelectionTimeoutMS: 10_000, monitorCommands: true });
      await client.connect();
      const db = client.db(`herald_test_${randomUUID().replaceAll("-", "").slice(0, 12)}`);
      try {
        const merge = await createMongoStore(db);
        const lookup = await createMongoStore(db, { join: "lookup" });
        const ids: string[] = [];
        for (let i = 0; i < 30; i++) {
          const { device } = await merge.devices.write({
            app: "a1", provider: "fcm", platform: i % 2 ? "android" : "ios", token: `tok-${i}`, user: "", tags: {}, meta: {}, locale: "", timezone: "", now: new Date(0),
          });
          if (i % 3) ids.push(device.id);
        }
        ids.sort();
        async function* batches() {
          for (let i = 0; i < ids.length; i += 4) yield ids.slice(i, i + 4);
        }
        const finds: unknown[] = [];
        client.on("commandStarted", (e) => {
          if (e.commandName === "find") finds.push(e.command.filter);
        });
        const joinedBy = async (store: typeof merge) => {
          const out: string[] = [];
          for await (const batch of store.devices.join("a1", batches(), { platforms: ["android"] }, {})) out.push(...batch.map((d) => d.id));
          return out;
        };
        const merged = await joinedBy(merge);
        assert.equal(finds.length, 1, "one cursor for the whole join");
        finds.length = 0;
        const looked = await joinedBy(lookup);
        assert.equal(finds.length, Math.ceil(ids.length / 4), "one query per batch");
        assert.deepEqual(looked, merged);
        assert.equal(merged.length, 10);
        // A handful of ids in one batch: a read by _id each (FerretDB's only pushed-down filter).
        finds.length = 0;
        const few: string[] = [];
        for await (const batch of merge.devices.join("a1", (async function* () { yield ids.slice(0, 3); })(), {}, {})) few.push(...batch.map((d) => d.id));
        assert.deepEqual(few, ids.slice(0, 3));
        // Sent concurrently, so in no particular order.
        assert.deepEqual(finds.map((f) => (f as { _id: string })._id).sort(), ids.slice(0, 3));
        assert.ok(finds.every((f) => Object.keys(f as object).join() === "_id"), JSON.stringify(finds));
      } finally {
        await db.dropDatabase();
        await client.close();
      }
    });

    it("rows left without a source by an interrupted removal are invisible and swept by the next change", async () => {
      const { client, db } = await openDb();
      try {
        const store = await createMongoStore(db);
        const subs = store.subscriptions;
        const alice = { user: "alice", provider: "fcm", platform: "android", token: "t-alice" } as const;
        await subs.add("a1", "d1", alice, ["live"], "device");
        // What a crash between "clear the flag" and "delete sourceless rows" leaves behind.
        await db.collection(COLLECTIONS.deviceTopics).insertOne({ app: "a1", deviceId: "d1", topic: "dead", fromDevice: false, fromUser: false, user: "alice" });
        assert.deepEqual((await subs.topicsOf("a1", ["d1"])).get("d1"), ["live"]);
        assert.equal(await subs.countForDevice("a1", "d1"), 1);
        assert.deepEqual((await subs.list("a1", {}, { limit: 10 })).map((r) => r.topic), ["live"]);
        assert.deepEqual(await subs.stats("a1", ["dead"]), [{ topic: "dead", deviceCount: 0, userCount: 0, userTopicCount: 0 }]);
        assert.deepEqual((await subs.listTopics("a1", "", { limit: 10 })).map((t) => t.topic), ["live"]);
        assert.deepEqual(await subs.listTopicUsers("a1", "dead", { limit: 10 }), []);
        const scanned: string[][] = [];
        for await (const ids of subs.scanDeviceIds("a1", ["dead"], { batchSize: 10 })) scanned.push(ids);
        assert.deepEqual(scanned, []);
        // The retry (or any later removal/set on the device) deletes it.
        await subs.removeSource("a1", "d1", ["dead"], "device");
        assert.equal(await db.collection(COLLECTIONS.deviceTopics).countDocuments({ topic: "dead" }), 0);
        // Adding the topic again simply revives a row.
        await db.collection(COLLECTIONS.deviceTopics).insertOne({ app: "a1", deviceId: "d1", topic: "dead", fromDevice: false, fromUser: false, user: "" });
        await subs.add("a1", "d1", alice, ["dead"], "user");
        assert.deepEqual((await subs.list("a1", { topics: ["dead"] }, { limit: 10 })).map((r) => [r.fromDevice, r.fromUser, r.user]), [[false, true, "alice"]]);
      } finally {
        await db.dropDatabase();
        await client.close();
      }
    });
  });
}
