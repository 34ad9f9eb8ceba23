import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { MongoClient, type Db } from "mongodb";
import { publishContract } from "./publish.contract.js";
import { createMongoPublishRepository, PUBLISH_COLLECTIONS } from "./publish.repository.mongo.js";

// The publish repository contract against a real MongoDB-wire server (FerretDB v1 in `npm test`),
// in a fresh database per run that is dropped at the end. A missing server is a failure, never a
// skip.

const url = process.env.HERALD_MONGO_URL;
const MISSING =
  "HERALD_MONGO_URL is not set: run `npm test` (it starts FerretDB via test/infra/up.sh), or `bash test/infra/up.sh` and export the variables it prints";

if (!url) {
  describe("mongo publish repository", () => {
    it("needs a MongoDB-wire server", () => {
      throw new Error(MISSING);
    });
  });
} else {
  let client: MongoClient;
  let db: Db;
  before(async () => {
    client = new MongoClient(url, { serverSelectionTimeoutMS: 10_000 });
    await client.connect();
    db = client.db(`herald_test_${randomUUID().replaceAll("-", "").slice(0, 12)}`);
  });
  after(async () => {
    try {
      await db?.dropDatabase();
    } finally {
      await client?.close();
    }
  });

  // Every case gets its own repository (as every process would) over the run's database.
  publishContract("mongo", () => createMongoPublishRepository(db));

  describe("mongo publish repository specifics", { timeout: 60_000 }, () => {
    it("creates its indexes idempotently", async () => {
      await createMongoPublishRepository(db);
      await createMongoPublishRepository(db);
      const names = async (c: string) => (await db.collection(c).listIndexes().toArray()).map((i) => String(i.name)).sort();
      assert.deepEqual(await names(PUBLISH_COLLECTIONS.publishes), ["_id_", "app_id", "app_state", "app_uidKey", "state_sendAt", "state_updatedAt"]);
      assert.deepEqual(await names(PUBLISH_COLLECTIONS.results), ["_id_", "app"]);
    });

    it("two repositories of one process over one database do not lose concurrent increments or transitions", async () => {
      // FerretDB 1.24 applies updates as read, modify, write back: the repositories of a process
      // share one per-publish queue so that their writes to one publish never interleave.
      const [one, two] = [await createMongoPublishRepository(db), await createMongoPublishRepository(db)];
      const app = `t-${randomUUID().slice(0, 8)}`;
      const id = `${Date.now().toString(36).padStart(9, "0")}-two`;
      await one.create({
        id, app, uid: "", state: "queued", request: new Uint8Array([1]), labels: {},
        counts: { targeted: 0, sent: 0, failed: 0, invalidTokens: 0, expired: 0, cancelled: 0, deadLettered: 0, duplicates: 0, retries: 0, deliveredReceipts: 0, openedReceipts: 0, failedByReason: {} },
        fanoutCursor: "", fanoutDone: false, sendAt: null, expireAt: null, createdAt: new Date(0), updatedAt: new Date(0), startedAt: null, finishedAt: null, error: "",
      });
      const counted = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? one : two).addCounts(app, id, { sent: 1 }, new Date(1))));
      assert.equal(new Set(counted.map((p) => p?.counts.sent)).size, 40);
      const moved = await Promise.all(Array.from({ length: 6 }, (_, i) => (i % 2 ? one : two).transition(app, id, ["queued"], i % 3 ? "cancelled" : "fanning_out", { now: new Date(2) })));
      assert.equal(moved.filter((p) => p !== null).length, 1);
      assert.equal((await two.get(app, id))?.counts.sent, 40);
      await one.removeApp(app);
    });

    it("stores the request as BSON binary, labels as pairs and reasons as escaped field names", async () => {
      const repo = await createMongoPublishRepository(db);
      const app = `t-${randomUUID().slice(0, 8)}`;
      const id = `${Date.now().toString(36).padStart(9, "0")}-spec`;
      const { created } = await repo.create({
        id, app, uid: "", state: "queued", request: new Uint8Array([1, 2, 3]), labels: { "a.b": "c" },
        counts: { targeted: 0, sent: 0, failed: 0, invalidTokens: 0, expired: 0, cancelled: 0, deadLettered: 0, duplicates: 0, retries: 0, deliveredReceipts: 0, openedReceipts: 0, failedByReason: {} },
        fanoutCursor: "", fanoutDone: false, sendAt: null, expireAt: null, createdAt: new Date(0), updatedAt: new Date(0), startedAt: null, finishedAt: null, error: "",
      });
      assert.equal(created, true);
      await repo.addCounts(app, id, { failedByReason: { "apns:Bad.Token": 2, $x: 1 } }, new Date(1));
      const doc = await db.collection(PUBLISH_COLLECTIONS.publishes).findOne({ _id: id as never });
      assert.ok(doc);
      assert.equal(doc.request?._bsontype, "Binary");
      assert.deepEqual(doc.labelPairs, ["a.b=c"]);
      assert.equal(doc.labels, undefined);
      assert.deepEqual(doc.counts.failedByReason, { "apns:Bad%2EToken": 2, "%24x": 1 });
      assert.equal(doc.uidKey, `i:${id}`);
      await repo.removeApp(app);
    });
  });
}
