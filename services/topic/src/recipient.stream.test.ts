import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import { MongoClient } from "mongodb";
import { common, topic } from "@herald/proto";
import { COLLECTIONS, createMongoStore, type DeviceWrite, type Store } from "@herald/store";
import { streamRecipients } from "./recipient.stream.js";

// A topic broadcast reads the subscription rows alone; rows written before they carried the
// device's provider, platform and token still deliver, through the device. Against the real
// MongoDB-wire server of `npm test`: a missing server is a failure, never a skip.

const url = process.env.HERALD_MONGO_URL;
const APP = "app1";
const T0 = new Date("2030-01-01T00:00:00Z");

const write = (provider: DeviceWrite["provider"], token: string, extra: Partial<DeviceWrite> = {}): DeviceWrite => ({
  app: APP, provider, platform: provider === "apns" ? "ios" : "android", token, user: "", tags: {}, meta: {}, locale: "", timezone: "", now: T0, ...extra,
});

async function stream(store: Store, request: Partial<topic.StreamRecipientsRequest>): Promise<topic.Recipient[][]> {
  const batches: topic.Recipient[][] = [];
  const req = topic.StreamRecipientsRequest.fromPartial({ target: { $case: "topics", value: { values: ["news"] } }, ...request });
  await streamRecipients(store, req, { app: APP, signal: new AbortController().signal }, async (r) => void batches.push(r.recipients));
  return batches;
}

describe("the topic recipient stream on MongoDB", () => {
  it("delivers from the rows, and takes older rows' provider, platform and token from their device", async () => {
    assert.ok(url, "HERALD_MONGO_URL is not set: run `npm test`, or `bash test/infra/up.sh` and export the variables it prints");
    const client = new MongoClient(url, { serverSelectionTimeoutMS: 10_000 });
    await client.connect();
    const db = client.db(`herald_test_${randomUUID().replaceAll("-", "").slice(0, 12)}`);
    try {
      const store = await createMongoStore(db);
      const { device: a } = await store.devices.write(write("fcm", "fcm-a", { user: "alice", meta: { k: "v" } }));
      const { device: b } = await store.devices.write(write("apns", "apns-b"));
      const { device: c } = await store.devices.write(write("apns", "apns-c", { locale: "fr" }));
      await store.subscriptions.add(APP, a.id, a, ["news"], "device");
      await store.subscriptions.add(APP, b.id, b, ["news", "sport"], "device");
      // Rows as an earlier Herald wrote them: no provider, platform or token; one of a gone device.
      const rows = db.collection(COLLECTIONS.deviceTopics);
      await rows.insertMany([
        { app: APP, deviceId: c.id, topic: "news", user: "", fromDevice: true, fromUser: false },
        { app: APP, deviceId: randomUUID(), topic: "news", user: "", fromDevice: true, fromUser: false },
      ]);
      // The rows say what the device said when they were written; the device itself is not read.
      await db.collection(COLLECTIONS.devices).updateOne({ _id: a.id as never }, { $set: { token: "not-read" } });
      const recipient = (id: string, provider: common.Provider, platform: common.Platform, token: string, user = "") => ({ deviceId: id, provider, platform, token, user, meta: {}, locale: "", timezone: "" });
      const want = [
        recipient(a.id, common.Provider.PROVIDER_FCM, common.Platform.PLATFORM_ANDROID, "fcm-a", "alice"),
        recipient(b.id, common.Provider.PROVIDER_APNS, common.Platform.PLATFORM_IOS, "apns-b"),
        recipient(c.id, common.Provider.PROVIDER_APNS, common.Platform.PLATFORM_IOS, "apns-c"),
      ].sort((x, y) => (x.deviceId < y.deviceId ? -1 : 1));
      assert.deepEqual((await stream(store, {})).flat(), want);
      assert.deepEqual((await stream(store, { batchSize: 2 })).map((batch) => batch.length), [2, 1]);
      assert.deepEqual((await stream(store, { providers: [common.Provider.PROVIDER_APNS] })).flat(), want.filter((r) => r.provider === common.Provider.PROVIDER_APNS));
      assert.deepEqual((await stream(store, { excludeDeviceIds: [c.id], platforms: [common.Platform.PLATFORM_IOS] })).flat(), want.filter((r) => r.deviceId === b.id));
      assert.deepEqual((await stream(store, { afterDeviceId: want[0]!.deviceId })).flat(), want.slice(1));
      // Templates need meta and locale: those come from the devices.
      const joined = (await stream(store, { includeMeta: true })).flat();
      assert.deepEqual(joined.map((r) => [r.deviceId, r.token, r.meta, r.locale]).sort(), [
        [a.id, "not-read", { k: "v" }, ""],
        [b.id, "apns-b", {}, ""],
        [c.id, "apns-c", {}, "fr"],
      ].sort());
    } finally {
      await db.dropDatabase();
      await client.close();
    }
  });
});
