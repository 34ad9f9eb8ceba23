import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { HeraldError, Status } from "@herald/platform";
import { compareStrings, tokenFeedbackCursor } from "./store.query.js";
import type {
  ApiKeyRecord,
  AppRecord,
  DeviceImport,
  DeviceQuery,
  DeviceRecord,
  DeviceWrite,
  Store,
  Subscriber,
  SubscriptionRecord,
} from "./store.types.js";

// The behaviour every Store implementation must have (DESIGN §7: memory and real adapters pass
// the same contract tests). One store serves the whole suite; every case works in its own random
// app ids, so runs against a shared, long-lived database never see each other's data, and every
// case also checks that another app sees and can touch none of it.

const T0 = Date.parse("2030-01-01T00:00:00.000Z");
const at = (minutes: number) => new Date(T0 + minutes * 60_000);
const newApp = () => `t-${randomUUID().slice(0, 8)}`;
// Rows of made-up device ids carry a made-up subscriber.
const sub = (user: string): Subscriber => ({ user, provider: "fcm", platform: "android", token: `tok-${user}` });
const sortStrings = (xs: Iterable<string>) => [...xs].sort(compareStrings);
const idsOf = (records: Array<{ id: string }>) => records.map((r) => r.id);

async function collect<T>(iterable: AsyncIterable<T[]>): Promise<T[][]> {
  const batches: T[][] = [];
  for await (const batch of iterable) batches.push(batch);
  return batches;
}

function deviceInput(app: string, token: string, extra: Partial<DeviceWrite> = {}): DeviceWrite {
  return {
    app,
    provider: "fcm",
    platform: "android",
    token,
    user: "",
    tags: {},
    meta: {},
    locale: "",
    timezone: "",
    now: at(0),
    ...extra,
  };
}

function appRecord(id: string, extra: Partial<AppRecord> = {}): AppRecord {
  return {
    id,
    name: `App ${id}`,
    limits: { maxDevicesPerUser: 10, deviceOverflowPolicy: "evict", maxInactiveDays: 30, maxTopicsPerDevice: 100, maxPublishRate: 0, urgentMaxTargets: 0 },
    providers: ["fcm", "apns"],
    secretVersion: 1,
    owner: "",
    vapidPublicKey: "",
    webhooks: [],
    createdAt: at(0),
    updatedAt: at(0),
    ...extra,
  };
}

function keyRecord(app: string, extra: Partial<ApiKeyRecord> = {}): ApiKeyRecord {
  const id = randomUUID();
  return {
    id,
    app,
    role: "server",
    name: `key ${id.slice(0, 4)}`,
    prefix: `hk_${id.slice(0, 6)}`,
    hash: randomBytes(32).toString("hex"),
    createdAt: at(0),
    revokedAt: null,
    ...extra,
  };
}

const rowKey = (s: Pick<SubscriptionRecord, "deviceId" | "topic">) => `${s.deviceId}\n${s.topic}`;
const flags = (rows: SubscriptionRecord[]) => Object.fromEntries(rows.map((r) => [r.topic, `${r.fromDevice ? "D" : ""}${r.fromUser ? "U" : ""}`]));

export function storeContract(name: string, makeStore: () => Promise<Store>): void {
  describe(`${name} store contract`, { timeout: 120_000 }, () => {
    let store: Store;
    before(async () => {
      store = await makeStore();
    });
    after(async () => {
      await store?.close();
    });

    // Writes one device per entry and returns name → record.
    async function seed(app: string, specs: Record<string, Partial<DeviceWrite>>): Promise<Record<string, DeviceRecord>> {
      const out: Record<string, DeviceRecord> = {};
      for (const [label, spec] of Object.entries(specs)) {
        out[label] = (await store.devices.write(deviceInput(app, `tok-${label}-${randomUUID()}`, spec))).device;
      }
      return out;
    }

    async function seedMany(app: string, n: number, extra: (i: number) => Partial<DeviceWrite> = () => ({})): Promise<DeviceRecord[]> {
      const out: DeviceRecord[] = [];
      for (let i = 0; i < n; i++) out.push((await store.devices.write(deviceInput(app, `tok-${i}-${randomUUID()}`, extra(i)))).device);
      return out;
    }

    // ---------------------------------------------------------------------------------------
    describe("devices", () => {
      it("write creates a device, then the same token updates it", async () => {
        const app = newApp();
        const first = await store.devices.write(
          deviceInput(app, "token-1", {
            provider: "apns",
            platform: "ios",
            user: "alice",
            tags: { tier: "gold", "a.b": "dotted", "k=1": "x=y" },
            meta: { "app.version": "1.2.3", $odd: "dollar" },
            locale: "de-DE",
            timezone: "Europe/Berlin",
            now: at(1),
          }),
        );
        assert.equal(first.created, true);
        assert.equal(first.previousUser, "");
        assert.equal(first.replacedDeviceId, undefined);
        const d = first.device;
        assert.equal(typeof d.id, "string");
        assert.ok(d.id.length > 0);
        assert.deepEqual(
          { ...d, id: "" },
          {
            id: "",
            app,
            provider: "apns",
            platform: "ios",
            token: "token-1",
            user: "alice",
            tags: { tier: "gold", "a.b": "dotted", "k=1": "x=y" },
            meta: { "app.version": "1.2.3", $odd: "dollar" },
            locale: "de-DE",
            timezone: "Europe/Berlin",
            createdAt: at(1),
            updatedAt: at(1),
            lastSeenAt: at(1),
          },
        );
        assert.deepEqual(await store.devices.get(app, d.id), d);
        // Tag keys with "." or "=" are matched exactly, never as patterns or prefixes.
        assert.equal(await store.devices.count(app, { tags: [{ key: "a.b", values: [] }] }), 1);
        assert.equal(await store.devices.count(app, { tags: [{ key: "a.b", values: ["dotted"] }] }), 1);
        assert.equal(await store.devices.count(app, { tags: [{ key: "aXb", values: [] }] }), 0);
        assert.equal(await store.devices.count(app, { tags: [{ key: "k=1", values: ["x=y"] }] }), 1);
        assert.equal(await store.devices.count(app, { tags: [{ key: "k", values: [] }] }), 0);
        assert.equal(await store.devices.count(app, { tags: [{ key: "k", values: ["1=x=y"] }] }), 0);

        const second = await store.devices.write(
          deviceInput(app, "token-1", { provider: "apns", platform: "ios", user: "bob", tags: { tier: "silver" }, meta: {}, locale: "en", now: at(2) }),
        );
        assert.equal(second.created, false);
        assert.equal(second.previousUser, "alice");
        assert.equal(second.device.id, d.id);
        assert.equal(second.device.user, "bob");
        assert.deepEqual(second.device.tags, { tier: "silver" });
        assert.deepEqual(second.device.meta, {});
        assert.equal(second.device.locale, "en");
        assert.equal(second.device.timezone, "");
        assert.deepEqual(second.device.createdAt, at(1));
        assert.deepEqual(second.device.updatedAt, at(2));
        assert.deepEqual(second.device.lastSeenAt, at(2));
        assert.deepEqual(await store.devices.get(app, d.id), second.device);

        const third = await store.devices.write(deviceInput(app, "token-1", { provider: "apns", platform: "ios", user: "", now: at(3) }));
        assert.equal(third.previousUser, "bob");
        // Same token under another provider is another device.
        const fcm = await store.devices.write(deviceInput(app, "token-1", { provider: "fcm" }));
        assert.equal(fcm.created, true);
        assert.notEqual(fcm.device.id, d.id);
        assert.equal(await store.devices.count(app, {}), 2);
      });

      it("hands out copies: mutating inputs or results never changes stored state", async () => {
        const app = newApp();
        const tags = { tier: "gold" };
        const input = deviceInput(app, "tok", { tags, meta: { m: "1" } });
        const { device } = await store.devices.write(input);
        tags.tier = "changed";
        input.meta.m = "changed";
        device.tags.tier = "mutated";
        device.meta.extra = "x";
        device.createdAt.setTime(0);
        const got = await store.devices.get(app, device.id);
        assert.deepEqual(got?.tags, { tier: "gold" });
        assert.deepEqual(got?.meta, { m: "1" });
        assert.deepEqual(got?.createdAt, at(0));
        Object.assign(got!.tags, { other: "y" });
        const [listed] = await store.devices.list(app, {}, { limit: 10 });
        assert.deepEqual(listed?.tags, { tier: "gold" });
        for await (const batch of store.devices.scan(app, {}, { batchSize: 10 })) batch[0]!.user = "mallory";
        assert.equal((await store.devices.get(app, device.id))?.user, "");
      });

      it("token refresh by id moves the token to that device", async () => {
        const app = newApp();
        const { device: a } = await store.devices.write(deviceInput(app, "old", { user: "alice", now: at(1) }));
        const refreshed = await store.devices.write(deviceInput(app, "new", { id: a.id, user: "alice", tags: { v: "2" }, now: at(2) }));
        assert.equal(refreshed.created, false);
        assert.equal(refreshed.device.id, a.id);
        assert.equal(refreshed.device.token, "new");
        assert.equal(refreshed.previousUser, "alice");
        assert.equal(refreshed.replacedDeviceId, undefined);
        assert.deepEqual(refreshed.device.createdAt, at(1));
        assert.deepEqual(refreshed.device.updatedAt, at(2));
        assert.deepEqual(await store.devices.get(app, a.id), refreshed.device);
        assert.equal(await store.devices.count(app, { tokens: [{ provider: "fcm", token: "old" }] }), 0);
        assert.deepEqual(idsOf(await store.devices.list(app, { tokens: [{ provider: "fcm", token: "new" }] }, { limit: 10 })), [a.id]);
        // The old token is free again: writing it makes a new device.
        const again = await store.devices.write(deviceInput(app, "old"));
        assert.equal(again.created, true);
        assert.notEqual(again.device.id, a.id);
        // Same id, same token: a plain update that reports the user it had.
        const same = await store.devices.write(deviceInput(app, "new", { id: a.id, user: "bob" }));
        assert.equal(same.device.id, a.id);
        assert.equal(same.previousUser, "alice");
        assert.equal(same.replacedDeviceId, undefined);
      });

      it("token refresh onto a token another device holds removes and reports that device", async () => {
        const app = newApp();
        const { device: a } = await store.devices.write(deviceInput(app, "t-a", { user: "alice" }));
        const { device: b } = await store.devices.write(deviceInput(app, "t-b", { user: "bob" }));
        const result = await store.devices.write(deviceInput(app, "t-b", { id: a.id, user: "carol", now: at(5) }));
        assert.equal(result.created, false);
        assert.equal(result.device.id, a.id);
        assert.equal(result.device.token, "t-b");
        assert.equal(result.device.user, "carol");
        assert.equal(result.replacedDeviceId, b.id);
        assert.equal(result.previousUser, "alice");
        assert.equal(await store.devices.get(app, b.id), null);
        assert.equal(await store.devices.count(app, {}), 1);
        assert.equal(await store.devices.count(app, { tokens: [{ provider: "fcm", token: "t-b" }] }), 1);
      });

      it("a token takeover removes the replaced device's topic rows with it", async () => {
        const app = newApp();
        const { device: a } = await store.devices.write(deviceInput(app, "t-a"));
        const { device: b } = await store.devices.write(deviceInput(app, "t-b"));
        await store.subscriptions.add(app, a.id, a, ["news"], "device");
        await store.subscriptions.add(app, b.id, b, ["news", "sport"], "device");
        const result = await store.devices.write(deviceInput(app, "t-b", { id: a.id }));
        assert.equal(result.replacedDeviceId, b.id);
        assert.equal(await store.subscriptions.countForDevice(app, b.id), 0);
        assert.deepEqual((await collect(store.subscriptions.scanDeviceIds(app, ["news", "sport"], { batchSize: 10 }))).flat(), [a.id]);
      });

      it("an id that does not exist in the app falls back to the token", async () => {
        const app = newApp();
        const other = newApp();
        const { device: foreign } = await store.devices.write(deviceInput(other, "foreign-token", { user: "zed" }));
        const unknown = await store.devices.write(deviceInput(app, "t1", { id: "no-such-device" }));
        assert.equal(unknown.created, true);
        assert.notEqual(unknown.device.id, "no-such-device");
        // Another app's device id is unknown here: never touched, never taken over.
        const cross = await store.devices.write(deviceInput(app, "t2", { id: foreign.id, user: "eve" }));
        assert.equal(cross.created, true);
        assert.notEqual(cross.device.id, foreign.id);
        assert.equal(cross.replacedDeviceId, undefined);
        assert.deepEqual(await store.devices.get(other, foreign.id), foreign);
        // An existing token with an unknown id updates the token's device.
        const byToken = await store.devices.write(deviceInput(app, "t1", { id: "still-unknown", user: "u" }));
        assert.equal(byToken.created, false);
        assert.equal(byToken.device.id, unknown.device.id);
      });

      it("concurrent writes of one token make exactly one device", async () => {
        const app = newApp();
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) => store.devices.write(deviceInput(app, "contended", { user: `u${i}`, now: at(i) }))),
        );
        assert.equal(results.filter((r) => r.created).length, 1);
        assert.equal(new Set(results.map((r) => r.device.id)).size, 1);
        assert.equal(await store.devices.count(app, {}), 1);
        const users = new Set(results.map((r) => r.device.user));
        const stored = await store.devices.get(app, results[0]!.device.id);
        assert.ok(stored && users.has(stored.user));
        // Every update saw the user of some earlier write ("" only for the creator).
        assert.equal(results.filter((r) => r.previousUser === "").length, 1);
      });

      it("list, count and scan honour every query field, alone and combined", async () => {
        const app = newApp();
        const other = newApp();
        const d = await seed(app, {
          d1: { provider: "apns", platform: "ios", user: "alice", tags: { tier: "gold", lang: "en" } },
          d2: { provider: "fcm", platform: "android", user: "alice", tags: { tier: "silver" } },
          d3: { provider: "fcm", platform: "ios", user: "bob", tags: { lang: "de" } },
          d4: { provider: "hms", platform: "android", tags: { tier: "gold" } },
          d5: { provider: "webpush", platform: "web", user: "carol" },
          d6: { provider: "fcm", platform: "web", tags: { beta: "" } },
        });
        await seed(other, { o1: { provider: "fcm", platform: "android", user: "alice", tags: { tier: "gold" } } });
        const id = (label: string) => d[label]!.id;
        const cases: Array<[string, DeviceQuery, string[]]> = [
          ["empty query", {}, ["d1", "d2", "d3", "d4", "d5", "d6"]],
          ["empty lists are no condition", { ids: [], users: [], tags: [], providers: [] }, ["d1", "d2", "d3", "d4", "d5", "d6"]],
          ["ids", { ids: [id("d1"), id("d3"), "missing"] }, ["d1", "d3"]],
          ["users (one)", { users: ["alice"] }, ["d1", "d2"]],
          ["users (several)", { users: ["alice", "bob"] }, ["d1", "d2", "d3"]],
          ["tokens", { tokens: [{ provider: "apns", token: d.d1!.token }, { provider: "fcm", token: d.d3!.token }] }, ["d1", "d3"]],
          ["tokens need the provider", { tokens: [{ provider: "fcm", token: d.d1!.token }] }, []],
          ["providers", { providers: ["fcm"] }, ["d2", "d3", "d6"]],
          ["providers (several)", { providers: ["apns", "hms"] }, ["d1", "d4"]],
          ["platforms", { platforms: ["ios", "web"] }, ["d1", "d3", "d5", "d6"]],
          ["tag value", { tags: [{ key: "tier", values: ["gold"] }] }, ["d1", "d4"]],
          ["tag values", { tags: [{ key: "tier", values: ["gold", "silver"] }] }, ["d1", "d2", "d4"]],
          ["tag exists", { tags: [{ key: "tier", values: [] }] }, ["d1", "d2", "d4"]],
          ["tag exists with an empty value", { tags: [{ key: "beta", values: [] }] }, ["d6"]],
          ["tag empty value", { tags: [{ key: "beta", values: [""] }] }, ["d6"]],
          ["tag key is not a prefix match", { tags: [{ key: "tie", values: [] }] }, []],
          ["two tag conditions", { tags: [{ key: "lang", values: [] }, { key: "tier", values: ["gold"] }] }, ["d1"]],
          ["excludeIds", { excludeIds: [id("d1"), id("d2")] }, ["d3", "d4", "d5", "d6"]],
          ["hasUser", { hasUser: true }, ["d1", "d2", "d3", "d5"]],
          ["hasUser false is no condition", { hasUser: false }, ["d1", "d2", "d3", "d4", "d5", "d6"]],
          ["providers + hasUser", { providers: ["fcm"], hasUser: true }, ["d2", "d3"]],
          ["users + platforms", { users: ["alice"], platforms: ["ios"] }, ["d1"]],
          ["ids + excludeIds + tag", { ids: [id("d1"), id("d2"), id("d4")], excludeIds: [id("d2")], tags: [{ key: "tier", values: [] }] }, ["d1", "d4"]],
          ["providers + tag + excludeIds", { providers: ["fcm"], tags: [{ key: "tier", values: [] }], excludeIds: [id("d3")] }, ["d2"]],
          ["tokens + users", { tokens: [{ provider: "apns", token: d.d1!.token }, { provider: "fcm", token: d.d2!.token }], users: ["alice"], platforms: ["android"] }, ["d2"]],
          ["nothing matches", { platforms: ["android"], tags: [{ key: "lang", values: [] }] }, []],
        ];
        for (const [title, query, labels] of cases) {
          const want = sortStrings(labels.map(id));
          assert.deepEqual(idsOf(await store.devices.list(app, query, { limit: 100 })), want, `list: ${title}`);
          assert.equal(await store.devices.count(app, query), want.length, `count: ${title}`);
          assert.deepEqual(idsOf((await collect(store.devices.scan(app, query, { batchSize: 2 }))).flat()), want, `scan: ${title}`);
        }
        // The other app's alice is never part of this app's results, and the reverse.
        assert.equal(await store.devices.count(other, {}), 1);
        assert.equal(await store.devices.count(other, { ids: Object.values(d).map((x) => x.id) }), 0);
        assert.deepEqual(await store.devices.list(other, { users: ["bob"] }, { limit: 100 }), []);
      });

      it("get and getMany see only the app's devices", async () => {
        const app = newApp();
        const other = newApp();
        const d = await seed(app, { a: {}, b: {}, c: {} });
        const o = await seed(other, { x: {} });
        assert.deepEqual(await store.devices.get(app, d.a!.id), d.a);
        assert.equal(await store.devices.get(app, "missing"), null);
        assert.equal(await store.devices.get(app, o.x!.id), null);
        assert.equal(await store.devices.get(other, d.a!.id), null);
        const many = await store.devices.getMany(app, [d.c!.id, d.a!.id, "missing", o.x!.id, d.a!.id]);
        assert.deepEqual(sortStrings(idsOf(many)), sortStrings([d.a!.id, d.c!.id]));
        assert.deepEqual(many.find((x) => x.id === d.c!.id), d.c);
        assert.deepEqual(await store.devices.getMany(app, []), []);
        assert.deepEqual(await store.devices.getMany(other, [d.a!.id, d.b!.id]), []);
      });

      it("keyset pagination walks every device exactly once", async () => {
        const app = newApp();
        const devices = await seedMany(app, 25, (i) => ({ user: i % 3 === 0 ? "" : `u${i}` }));
        const walk = async (query: DeviceQuery, limit: number) => {
          const seen: string[] = [];
          let cursor: string | undefined;
          for (let pages = 0; pages < 100; pages++) {
            const page = await store.devices.list(app, query, { ...(cursor !== undefined ? { after: cursor } : {}), limit });
            assert.ok(page.length <= limit);
            seen.push(...idsOf(page));
            if (page.length < limit) return seen;
            cursor = page.at(-1)!.id;
          }
          assert.fail("pagination did not end");
        };
        assert.deepEqual(await walk({}, 7), sortStrings(idsOf(devices)));
        assert.deepEqual(await walk({}, 25), sortStrings(idsOf(devices)));
        assert.deepEqual(await walk({ hasUser: true }, 4), sortStrings(idsOf(devices.filter((d) => d.user !== ""))));
        assert.deepEqual(await store.devices.list(app, {}, { limit: 0 }), []);
        const sorted = sortStrings(idsOf(devices));
        assert.deepEqual(idsOf(await store.devices.list(app, {}, { after: sorted[23]!, limit: 10 })), [sorted[24]]);
        assert.deepEqual(await store.devices.list(app, {}, { after: sorted[24]!, limit: 10 }), []);
      });

      it("scan streams every match once, in id order, in batches of the asked size, and resumes after a cursor", async () => {
        const app = newApp();
        const devices = await seedMany(app, 23, (i) => ({ platform: i % 4 === 0 ? "ios" : "android" }));
        const sorted = sortStrings(idsOf(devices));
        const batches = await collect(store.devices.scan(app, {}, { batchSize: 5 }));
        assert.deepEqual(
          batches.map((b) => b.length),
          [5, 5, 5, 5, 3],
        );
        assert.deepEqual(idsOf(batches.flat()), sorted);
        const resumed = await collect(store.devices.scan(app, {}, { after: sorted[9]!, batchSize: 5 }));
        assert.deepEqual(
          resumed.map((b) => b.length),
          [5, 5, 3],
        );
        assert.deepEqual(idsOf(resumed.flat()), sorted.slice(10));
        const exact = await collect(store.devices.scan(app, {}, { batchSize: 23 }));
        assert.deepEqual(
          exact.map((b) => b.length),
          [23],
        );
        const ios = await collect(store.devices.scan(app, { platforms: ["ios"] }, { batchSize: 2 }));
        assert.deepEqual(idsOf(ios.flat()), sortStrings(idsOf(devices.filter((d) => d.platform === "ios"))));
        assert.ok(ios.slice(0, -1).every((b) => b.length === 2));
        assert.deepEqual(await collect(store.devices.scan(app, { users: ["nobody"] }, { batchSize: 5 })), []);
        assert.deepEqual(await collect(store.devices.scan(app, {}, { after: sorted[22]!, batchSize: 5 })), []);
        assert.deepEqual(await collect(store.devices.scan(newApp(), {}, { batchSize: 5 })), []);
        // Stopping early releases the scan; the store keeps working.
        for await (const batch of store.devices.scan(app, {}, { batchSize: 3 })) {
          assert.equal(batch.length, 3);
          break;
        }
        assert.equal(await store.devices.count(app, {}), 23);
      });

      it("join gives the devices of ascending id batches that match, in order, skipping unknown and foreign ids", async () => {
        const app = newApp();
        const other = newApp();
        const devices = await seedMany(app, 12, (i) => ({ platform: i % 3 === 0 ? "ios" : "android" }));
        const [foreign] = await seedMany(other, 1);
        const wanted = sortStrings(idsOf(devices).filter((_, i) => i !== 4));
        const ids = sortStrings([...wanted, foreign!.id, "0-missing", "zz-missing"]);
        async function* batchesOf(list: string[], size: number) {
          for (let i = 0; i < list.length; i += size) yield list.slice(i, i + size);
        }
        const joined = await collect(store.devices.join(app, batchesOf(ids, 5), {}, {}));
        assert.deepEqual(idsOf(joined.flat()), wanted);
        assert.deepEqual(idsOf((await collect(store.devices.join(app, batchesOf(ids, 100), {}, {}))).flat()), wanted, "one batch");
        assert.deepEqual(joined.flat(), (await store.devices.getMany(app, wanted)), "whole records");
        assert.ok(joined.length <= Math.ceil(ids.length / 5) && joined.every((b) => b.length > 0));
        const ios = await collect(store.devices.join(app, batchesOf(ids, 4), { platforms: ["ios"] }, {}));
        assert.deepEqual(idsOf(ios.flat()), sortStrings(idsOf(devices.filter((d, i) => i !== 4 && d.platform === "ios"))));
        const resumed = await collect(store.devices.join(app, batchesOf(wanted.slice(6), 3), {}, { after: wanted[5]! }));
        assert.deepEqual(idsOf(resumed.flat()), wanted.slice(6));
        const few = await collect(store.devices.join(app, batchesOf([foreign!.id, ...wanted.slice(0, 3)], 10), { excludeIds: [wanted[1]!] }, { after: wanted[0]! }));
        assert.deepEqual(idsOf(few.flat()), [wanted[2]]);
        assert.deepEqual(await collect(store.devices.join(other, batchesOf(wanted, 5), {}, {})), []);
        assert.deepEqual(await collect(store.devices.join(app, batchesOf([], 5), {}, {})), []);
        // Stopping early releases the join; the store keeps working.
        for await (const batch of store.devices.join(app, batchesOf(wanted, 2), {}, {})) {
          assert.equal(batch.length, 2);
          break;
        }
        assert.equal(await store.devices.count(app, {}), 12);
      });

      it("update applies a patch to the listed devices and returns how many exist", async () => {
        const app = newApp();
        const other = newApp();
        const d = await seed(app, {
          a: { user: "alice", tags: { tier: "gold" }, meta: { m: "1" }, locale: "en", now: at(1) },
          b: { user: "bob", tags: { tier: "silver" }, now: at(1) },
          c: { now: at(1) },
        });
        const o = await seed(other, { x: { user: "xavier", now: at(1) } });
        const n = await store.devices.update(app, [d.a!.id, d.b!.id, "missing", o.x!.id], {
          user: "carol",
          tags: { tier: "bronze", new: "yes" },
          meta: { m: "2" },
          lastSeenAt: at(7),
          now: at(8),
        });
        assert.equal(n, 2);
        const a = await store.devices.get(app, d.a!.id);
        assert.deepEqual(a, { ...d.a!, user: "carol", tags: { tier: "bronze", new: "yes" }, meta: { m: "2" }, lastSeenAt: at(7), updatedAt: at(8) });
        assert.equal((await store.devices.get(app, d.b!.id))?.user, "carol");
        assert.deepEqual(await store.devices.get(app, d.c!.id), d.c);
        assert.deepEqual(await store.devices.get(other, o.x!.id), o.x);
        // Tag queries follow the new tags.
        assert.equal(await store.devices.count(app, { tags: [{ key: "tier", values: ["gold", "silver"] }] }), 0);
        assert.equal(await store.devices.count(app, { tags: [{ key: "new", values: [] }] }), 2);
        // A partial patch leaves the other fields alone.
        assert.equal(await store.devices.update(app, [d.c!.id], { lastSeenAt: at(9), now: at(9) }), 1);
        assert.deepEqual(await store.devices.get(app, d.c!.id), { ...d.c!, lastSeenAt: at(9), updatedAt: at(9) });
        assert.equal(await store.devices.update(app, [d.c!.id], { user: "", now: at(10) }), 1);
        assert.deepEqual(await store.devices.get(app, d.c!.id), { ...d.c!, lastSeenAt: at(9), updatedAt: at(10) });
        assert.equal(await store.devices.update(app, [], { user: "z", now: at(11) }), 0);
        assert.equal(await store.devices.update(other, [d.a!.id], { user: "mallory", now: at(11) }), 0);
        assert.equal((await store.devices.get(app, d.a!.id))?.user, "carol");
        // Locale and time zone are patched alone, and "" clears them.
        assert.equal(await store.devices.update(app, [d.a!.id], { locale: "fr-FR", timezone: "Europe/Paris", now: at(12) }), 1);
        assert.deepEqual(await store.devices.get(app, d.a!.id), { ...d.a!, user: "carol", tags: { tier: "bronze", new: "yes" }, meta: { m: "2" }, locale: "fr-FR", timezone: "Europe/Paris", lastSeenAt: at(7), updatedAt: at(12) });
        assert.equal(await store.devices.update(app, [d.a!.id], { locale: "", now: at(13) }), 1);
        const cleared = await store.devices.get(app, d.a!.id);
        assert.equal(cleared?.locale, "");
        assert.equal(cleared?.timezone, "Europe/Paris");
      });

      it("remove deletes the listed devices of the app only and frees their tokens", async () => {
        const app = newApp();
        const other = newApp();
        const d = await seed(app, { a: {}, b: {}, c: {} });
        const o = await seed(other, { x: {} });
        assert.equal(await store.devices.remove(other, [d.a!.id]), 0);
        assert.equal(await store.devices.remove(app, [d.a!.id, d.b!.id, "missing", o.x!.id]), 2);
        assert.equal(await store.devices.get(app, d.a!.id), null);
        assert.deepEqual(idsOf(await store.devices.list(app, {}, { limit: 10 })), [d.c!.id]);
        assert.deepEqual(await store.devices.get(other, o.x!.id), o.x);
        assert.equal(await store.devices.remove(app, [d.a!.id]), 0);
        assert.equal(await store.devices.remove(app, []), 0);
        const again = await store.devices.write(deviceInput(app, d.a!.token));
        assert.equal(again.created, true);
      });

      it("listForUser gives the user's devices on one platform, least recently seen first", async () => {
        const app = newApp();
        const other = newApp();
        const d = await seed(app, {
          a: { user: "alice", platform: "ios", provider: "apns", now: at(5) },
          b: { user: "alice", platform: "ios", provider: "apns", now: at(1) },
          c: { user: "alice", platform: "ios", provider: "fcm", now: at(3) },
          d: { user: "alice", platform: "android", now: at(0) },
          e: { user: "bob", platform: "ios", provider: "apns", now: at(0) },
        });
        await seed(other, { x: { user: "alice", platform: "ios", provider: "apns", now: at(0) } });
        assert.deepEqual(idsOf(await store.devices.listForUser(app, "alice", "ios")), [d.b!.id, d.c!.id, d.a!.id]);
        await store.devices.update(app, [d.b!.id], { lastSeenAt: at(9), now: at(9) });
        assert.deepEqual(idsOf(await store.devices.listForUser(app, "alice", "ios")), [d.c!.id, d.a!.id, d.b!.id]);
        assert.deepEqual(idsOf(await store.devices.listForUser(app, "alice", "android")), [d.d!.id]);
        assert.deepEqual(await store.devices.listForUser(app, "alice", "web"), []);
        assert.deepEqual(await store.devices.listForUser(app, "nobody", "ios"), []);
        assert.deepEqual(idsOf(await store.devices.listForUser(other, "alice", "ios")).length, 1);
      });

      it("listInactive gives devices last seen before the cutoff, by id, at most limit", async () => {
        const app = newApp();
        const other = newApp();
        const devices = await seedMany(app, 8, (i) => ({ now: at(i * 10) }));
        await seedMany(other, 3, () => ({ now: at(0) }));
        const stale = sortStrings(idsOf(devices.filter((d) => d.lastSeenAt < at(45))));
        assert.equal(stale.length, 5);
        assert.deepEqual(idsOf(await store.devices.listInactive(app, at(45), 100)), stale);
        assert.deepEqual(idsOf(await store.devices.listInactive(app, at(45), 2)), stale.slice(0, 2));
        assert.deepEqual(idsOf(await store.devices.listInactive(app, at(40), 100)).length, 4);
        assert.deepEqual(await store.devices.listInactive(app, at(0), 100), []);
        await store.devices.update(app, stale, { lastSeenAt: at(100), now: at(100) });
        assert.deepEqual(await store.devices.listInactive(app, at(45), 100), []);
      });

      it("removeApp removes that app's devices only", async () => {
        const app = newApp();
        const other = newApp();
        await seedMany(app, 4);
        const kept = await seedMany(other, 2);
        assert.equal(await store.devices.removeApp(app), 4);
        assert.equal(await store.devices.count(app, {}), 0);
        assert.equal(await store.devices.count(other, {}), 2);
        assert.deepEqual(await store.devices.get(other, kept[0]!.id), kept[0]);
        assert.equal(await store.devices.removeApp(app), 0);
      });

      it("importMany creates the new devices with their device topics and skips tokens already held", async () => {
        const app = newApp();
        const other = newApp();
        const held = (await store.devices.write(deviceInput(app, "held", { user: "old" }))).device;
        const otherHeld = (await store.devices.write(deviceInput(other, "x-1"))).device;
        const imported = (token: string, extra: Partial<DeviceImport> = {}): DeviceImport => ({
          provider: "apns",
          platform: "ios",
          token,
          user: "",
          tags: {},
          meta: {},
          locale: "",
          timezone: "",
          topics: ["news"],
          ...extra,
        });
        // More than one database batch, a token the app holds, a repeated token, no topics.
        const inputs = [
          imported("x-1", { user: "alice", tags: { tier: "gold", "a.b": "dotted" }, meta: { "app.version": "2" }, locale: "fr-FR", timezone: "Europe/Paris", topics: ["news", "sport", "news"] }),
          imported("held", { provider: "fcm", platform: "android" }),
          imported("x-2", { topics: [] }),
          imported("x-1", { topics: ["other"] }),
          ...Array.from({ length: 1200 }, (_, i) => imported(`bulk-${i}`)),
        ];
        const ids = await store.devices.importMany(app, inputs, at(3));
        assert.equal(ids.length, inputs.length);
        assert.equal(ids[1], null, "the token the app already held");
        assert.equal(ids[3], null, "the repeated token");
        const created = ids.filter((id): id is string => id !== null);
        assert.equal(created.length, 1202);
        assert.equal(new Set(created).size, 1202);

        assert.deepEqual(await store.devices.get(app, ids[0]!), {
          id: ids[0],
          app,
          provider: "apns",
          platform: "ios",
          token: "x-1",
          user: "alice",
          tags: { tier: "gold", "a.b": "dotted" },
          meta: { "app.version": "2" },
          locale: "fr-FR",
          timezone: "Europe/Paris",
          createdAt: at(3),
          updatedAt: at(3),
          lastSeenAt: at(3),
        });
        assert.deepEqual(await store.devices.get(app, held.id), held, "a held token's device is left as it is");
        assert.equal(await store.devices.count(app, {}), 1203);
        assert.equal(await store.devices.count(app, { tags: [{ key: "tier", values: ["gold"] }] }), 1);
        // Registration keeps working on imported tokens: the same device is updated.
        const again = await store.devices.write(deviceInput(app, "bulk-0", { provider: "apns", platform: "ios" }));
        assert.deepEqual([again.created, again.device.id], [false, ids[4]]);

        const topics = await store.subscriptions.topicsOf(app, [ids[0]!, ids[2]!, ids[4]!, held.id]);
        assert.deepEqual(Object.fromEntries(topics), { [ids[0]!]: ["news", "sport"], [ids[4]!]: ["news"] });
        const rows = await store.subscriptions.list(app, { deviceIds: [ids[0]!] }, { limit: 10 });
        assert.deepEqual(
          rows.map((r) => [r.topic, r.fromDevice, r.fromUser, r.user]),
          [
            ["news", true, false, "alice"],
            ["sport", true, false, "alice"],
          ],
        );
        assert.deepEqual(
          (await store.subscriptions.stats(app, ["news", "sport", "other"])).map((c) => [c.topic, c.deviceCount, c.userCount]),
          [
            ["news", 1201, 1],
            ["sport", 1, 1],
            ["other", 0, 0],
          ],
        );
        assert.equal((await collect(store.subscriptions.scanDeviceIds(app, ["news"], { batchSize: 500 }))).flat().length, 1201);

        // Tokens are per app and per provider; importing the same inputs again creates nothing.
        assert.deepEqual(await store.devices.get(other, otherHeld.id), otherHeld);
        const elsewhere = await store.devices.importMany(other, [imported("x-1"), imported("x-1", { provider: "fcm", platform: "android" })], at(4));
        assert.equal(typeof elsewhere[0], "string", "apns x-1 is new in the other app");
        assert.equal(elsewhere[1], null, "fcm x-1 is held there");
        assert.equal(await store.devices.count(other, {}), 2);
        assert.ok((await store.devices.importMany(app, inputs.slice(0, 10), at(5))).every((id) => id === null));
        assert.deepEqual(await store.devices.importMany(app, [], at(5)), []);
        assert.equal(await store.devices.count(app, {}), 1203);
      });
    });

    // ---------------------------------------------------------------------------------------
    describe("subscriptions", () => {
      it("sizes counts devices per app and provider, and topics and subscriptions per app", async () => {
        const [a, b] = [newApp(), newApp()];
        const [a1, a2] = await seedMany(a, 2, () => ({ provider: "fcm", platform: "android" }));
        const [a3] = await seedMany(a, 1, () => ({ provider: "apns", platform: "ios" }));
        const [b1] = await seedMany(b, 1, () => ({ provider: "webpush", platform: "web" }));
        await store.subscriptions.add(a, a1!.id, a1!, ["news", "sport"], "device");
        await store.subscriptions.add(a, a2!.id, a2!, ["news"], "device");
        await store.subscriptions.add(a, a3!.id, sub("u"), ["news"], "user");
        await store.subscriptions.add(b, b1!.id, b1!, ["x"], "device");
        // A topic dropped by its only source is not counted.
        await store.subscriptions.add(b, b1!.id, b1!, ["gone"], "user");
        await store.subscriptions.removeSource(b, b1!.id, ["gone"], "user");
        const devices = (await store.devices.sizes()).filter((s) => s.app === a || s.app === b);
        assert.deepEqual(
          devices.sort((x, y) => compareStrings(`${x.app}/${x.provider}`, `${y.app}/${y.provider}`)),
          [
            { app: a, provider: "apns", devices: 1 },
            { app: a, provider: "fcm", devices: 2 },
            { app: b, provider: "webpush", devices: 1 },
          ].sort((x, y) => compareStrings(`${x.app}/${x.provider}`, `${y.app}/${y.provider}`)),
        );
        const topics = (await store.subscriptions.sizes()).filter((s) => s.app === a || s.app === b);
        assert.deepEqual(
          topics.sort((x, y) => compareStrings(x.app, y.app)),
          [
            { app: a, topics: 2, subscriptions: 4 },
            { app: b, topics: 1, subscriptions: 1 },
          ].sort((x, y) => compareStrings(x.app, y.app)),
        );
      });

      it("a topic held by both sources survives removing one of them", async () => {
        const app = newApp();
        const subs = store.subscriptions;
        await subs.add(app, "dev1", sub("alice"), ["a", "b"], "device");
        await subs.add(app, "dev1", sub("alice"), ["b", "c"], "user");
        assert.deepEqual((await subs.topicsOf(app, ["dev1"])).get("dev1"), ["a", "b", "c"]);
        assert.deepEqual(flags(await subs.list(app, { deviceIds: ["dev1"] }, { limit: 10 })), { a: "D", b: "DU", c: "U" });
        await subs.removeSource(app, "dev1", ["b"], "device");
        assert.deepEqual(flags(await subs.list(app, {}, { limit: 10 })), { a: "D", b: "U", c: "U" });
        await subs.removeSource(app, "dev1", ["a", "c", "missing"], "device");
        assert.deepEqual(flags(await subs.list(app, {}, { limit: 10 })), { b: "U", c: "U" });
        await subs.add(app, "dev1", sub("alice"), ["b"], "device");
        await subs.removeSource(app, "dev1", "all", "user");
        assert.deepEqual(flags(await subs.list(app, {}, { limit: 10 })), { b: "D" });
        // An empty list also means every topic.
        await subs.add(app, "dev1", sub("alice"), ["x", "y"], "device");
        await subs.removeSource(app, "dev1", [], "device");
        assert.deepEqual(await subs.list(app, {}, { limit: 10 }), []);
        assert.equal((await subs.topicsOf(app, ["dev1"])).has("dev1"), false);
        assert.equal(await subs.countForDevice(app, "dev1"), 0);
        // Adding twice is idempotent.
        await subs.add(app, "dev1", sub("alice"), ["a"], "device");
        await subs.add(app, "dev1", sub("alice"), ["a", "a"], "device");
        assert.equal(await subs.countForDevice(app, "dev1"), 1);
      });

      it("set makes a source hold exactly the given topics, leaving the other source alone", async () => {
        const app = newApp();
        const subs = store.subscriptions;
        await subs.set(app, "dev1", sub("u"), ["a", "b"], "device");
        await subs.set(app, "dev1", sub("u"), ["b", "c"], "user");
        assert.deepEqual(flags(await subs.list(app, {}, { limit: 10 })), { a: "D", b: "DU", c: "U" });
        await subs.set(app, "dev1", sub("u"), ["c", "d", "d"], "device");
        assert.deepEqual(flags(await subs.list(app, {}, { limit: 10 })), { b: "U", c: "DU", d: "D" });
        await subs.set(app, "dev1", sub("u"), [], "user");
        assert.deepEqual(flags(await subs.list(app, {}, { limit: 10 })), { c: "D", d: "D" });
        await subs.set(app, "dev1", sub("u"), ["c", "d"], "device");
        assert.deepEqual(flags(await subs.list(app, {}, { limit: 10 })), { c: "D", d: "D" });
        await subs.set(app, "dev1", sub("u"), [], "device");
        assert.equal(await subs.countForDevice(app, "dev1"), 0);
      });

      it("concurrent adds of the same topics leave one row per topic", async () => {
        const app = newApp();
        const subs = store.subscriptions;
        await Promise.all(
          Array.from({ length: 8 }, (_, i) => subs.add(app, "dev1", sub("alice"), ["a", "b", "c"], i % 2 ? "device" : "user")),
        );
        assert.deepEqual(flags(await subs.list(app, {}, { limit: 10 })), { a: "DU", b: "DU", c: "DU" });
        await Promise.all(Array.from({ length: 4 }, () => subs.addUserTopics(app, "alice", ["x", "y"])));
        assert.deepEqual(await subs.userTopicsOf(app, "alice"), ["x", "y"]);
      });

      it("topicsOf and countForDevice", async () => {
        const app = newApp();
        const subs = store.subscriptions;
        await subs.add(app, "d1", sub(""), ["zeta", "alpha", "mid"], "device");
        await subs.add(app, "d2", sub(""), ["only"], "user");
        const map = await subs.topicsOf(app, ["d1", "d2", "d3"]);
        assert.deepEqual([...map.entries()].sort(([a], [b]) => compareStrings(a, b)), [
          ["d1", ["alpha", "mid", "zeta"]],
          ["d2", ["only"]],
        ]);
        assert.equal(await subs.countForDevice(app, "d1"), 3);
        assert.equal(await subs.countForDevice(app, "d3"), 0);
        assert.equal((await subs.topicsOf(app, [])).size, 0);
      });

      it("list filters by device, topic and prefix and pages by (deviceId, topic)", async () => {
        const app = newApp();
        const subs = store.subscriptions;
        const plan: Record<string, string[]> = {
          "dev-a": ["news", "news.sport", "weather"],
          "dev-b": ["news.sport", "offers"],
          "dev-c": ["news", "weather", "offers", "news.tech"],
        };
        for (const [device, topics] of Object.entries(plan)) await subs.add(app, device, sub(`user-${device}`), topics, "device");
        const all = Object.entries(plan)
          .flatMap(([deviceId, topics]) => topics.map((topic) => ({ deviceId, topic })))
          .sort((x, y) => compareStrings(x.deviceId, y.deviceId) || compareStrings(x.topic, y.topic));
        const keys = (rows: SubscriptionRecord[]) => rows.map(rowKey);
        const listed = await subs.list(app, {}, { limit: 100 });
        assert.deepEqual(keys(listed), all.map(rowKey));
        assert.deepEqual(listed[0], { app, deviceId: "dev-a", topic: "news", fromDevice: true, fromUser: false, user: "user-dev-a" });
        assert.deepEqual(keys(await subs.list(app, { deviceIds: ["dev-b"] }, { limit: 100 })), ["dev-b\nnews.sport", "dev-b\noffers"]);
        assert.deepEqual(keys(await subs.list(app, { topics: ["weather", "offers"] }, { limit: 100 })), [
          "dev-a\nweather",
          "dev-b\noffers",
          "dev-c\noffers",
          "dev-c\nweather",
        ]);
        assert.deepEqual(keys(await subs.list(app, { prefix: "news." }, { limit: 100 })), ["dev-a\nnews.sport", "dev-b\nnews.sport", "dev-c\nnews.tech"]);
        assert.deepEqual(keys(await subs.list(app, { deviceIds: ["dev-a", "dev-c"], topics: ["news", "news.tech", "offers"], prefix: "news" }, { limit: 100 })), [
          "dev-a\nnews",
          "dev-c\nnews",
          "dev-c\nnews.tech",
        ]);
        assert.deepEqual(await subs.list(app, { prefix: "nothing" }, { limit: 100 }), []);
        // count reads the same rows as list, over every page.
        assert.equal(await subs.count(app, {}), all.length);
        assert.equal(await subs.count(app, { deviceIds: ["dev-b"] }), 2);
        assert.equal(await subs.count(app, { deviceIds: ["dev-a", "dev-c"], topics: ["news", "news.tech", "offers"], prefix: "news" }), 3);
        assert.equal(await subs.count(app, { prefix: "nothing" }), 0);
        assert.equal(await subs.count(newApp(), {}), 0);
        // Pages of 3 with the `${deviceId}\n${topic}` cursor.
        const seen: string[] = [];
        let cursor: string | undefined;
        for (;;) {
          const page = await subs.list(app, {}, { ...(cursor !== undefined ? { after: cursor } : {}), limit: 3 });
          seen.push(...keys(page));
          if (page.length < 3) break;
          cursor = rowKey(page.at(-1)!);
        }
        assert.deepEqual(seen, all.map(rowKey));
        const filteredPage = await subs.list(app, { prefix: "news" }, { after: "dev-a\nnews.sport", limit: 2 });
        assert.deepEqual(keys(filteredPage), ["dev-b\nnews.sport", "dev-c\nnews"]);
        // A bare device id as cursor starts after that device's empty topic, i.e. at its first row.
        assert.deepEqual(keys(await subs.list(app, {}, { after: "dev-b", limit: 1 })), ["dev-b\nnews.sport"]);
      });

      it("setUser is reflected in stats and listTopicUsers", async () => {
        const app = newApp();
        const subs = store.subscriptions;
        await subs.add(app, "d1", sub(""), ["t"], "device");
        await subs.add(app, "d2", sub(""), ["t", "u"], "device");
        assert.deepEqual(await subs.stats(app, ["t"]), [{ topic: "t", deviceCount: 2, userCount: 0, userTopicCount: 0 }]);
        assert.deepEqual(await subs.listTopicUsers(app, "t", { limit: 10 }), []);
        await subs.setSubscriber(app, "d1", sub("alice"));
        await subs.setSubscriber(app, "d2", sub("alice"));
        assert.deepEqual(await subs.stats(app, ["t", "u"]), [
          { topic: "t", deviceCount: 2, userCount: 1, userTopicCount: 0 },
          { topic: "u", deviceCount: 1, userCount: 1, userTopicCount: 0 },
        ]);
        await subs.setSubscriber(app, "d2", sub("bob"));
        assert.deepEqual(await subs.listTopicUsers(app, "t", { limit: 10 }), ["alice", "bob"]);
        assert.deepEqual((await subs.list(app, { deviceIds: ["d2"] }, { limit: 10 })).map((r) => r.user), ["bob", "bob"]);
        await subs.setSubscriber(app, "d1", sub(""));
        assert.deepEqual(await subs.listTopicUsers(app, "t", { limit: 10 }), ["bob"]);
        assert.deepEqual((await subs.stats(app, ["t"]))[0]?.userCount, 1);
      });

      it("removeDevices drops every row of those devices only", async () => {
        const app = newApp();
        const subs = store.subscriptions;
        await subs.add(app, "d1", sub(""), ["a", "b"], "device");
        await subs.add(app, "d1", sub(""), ["c"], "user");
        await subs.add(app, "d2", sub(""), ["a"], "device");
        await subs.add(app, "d3", sub(""), ["a"], "device");
        await subs.removeDevices(app, ["d1", "d3", "missing"]);
        assert.deepEqual([...(await subs.topicsOf(app, ["d1", "d2", "d3"])).keys()], ["d2"]);
        assert.deepEqual((await subs.stats(app, ["a"]))[0]?.deviceCount, 1);
        await subs.removeDevices(app, []);
        assert.equal(await subs.countForDevice(app, "d2"), 1);
      });

      it("scanDeviceIds gives each device of several topics once, ascending, in batches", async () => {
        const app = newApp();
        const other = newApp();
        const subs = store.subscriptions;
        const ids = Array.from({ length: 300 }, () => randomUUID());
        const expected = new Set<string>();
        for (const [i, id] of ids.entries()) {
          const topics = [i % 2 === 0 ? "t1" : "", i % 3 === 0 ? "t2" : "", i % 5 === 0 ? "t3" : "", i % 7 === 0 ? "t4" : ""].filter(Boolean);
          if (topics.length === 0) continue;
          await subs.add(app, id, sub(""), topics, i % 4 === 0 ? "user" : "device");
          if (topics.some((t) => t !== "t4")) expected.add(id);
        }
        await subs.add(other, ids[1]!, sub(""), ["t1"], "device");
        const want = sortStrings(expected);
        assert.equal(want.length, 220);
        const batches = await collect(subs.scanDeviceIds(app, ["t1", "t2", "t3", "t1"], { batchSize: 50 }));
        assert.deepEqual(
          batches.map((b) => b.length),
          [50, 50, 50, 50, 20],
        );
        assert.deepEqual(batches.flat(), want);
        const resumed = (await collect(subs.scanDeviceIds(app, ["t1", "t2", "t3"], { after: want[99]!, batchSize: 64 }))).flat();
        assert.deepEqual(resumed, want.slice(100));
        const small = await collect(subs.scanDeviceIds(app, ["t3", "missing"], { batchSize: 7 }));
        assert.deepEqual(small.flat(), sortStrings(ids.filter((_, i) => i % 5 === 0)));
        assert.ok(small.slice(0, -1).every((b) => b.length === 7));
        assert.deepEqual(await collect(subs.scanDeviceIds(app, [], { batchSize: 10 })), []);
        assert.deepEqual(await collect(subs.scanDeviceIds(app, ["missing"], { batchSize: 10 })), []);
        assert.deepEqual((await collect(subs.scanDeviceIds(other, ["t1", "t2", "t3"], { batchSize: 10 }))).flat(), [ids[1]]);
        for await (const batch of subs.scanDeviceIds(app, ["t1"], { batchSize: 10 })) {
          assert.equal(batch.length, 10);
          break;
        }
      });

      it("scanRecipients gives each device of the topics once with what its rows last copied from it", async () => {
        const app = newApp();
        const other = newApp();
        const subs = store.subscriptions;
        const ids = sortStrings(Array.from({ length: 7 }, () => randomUUID()));
        const of = (i: number, token = `tok-${i}`): Subscriber => ({ user: i % 2 ? `u${i}` : "", provider: i % 3 ? "fcm" : "apns", platform: i % 3 ? "android" : "ios", token });
        for (const [i, id] of ids.entries()) await subs.add(app, id, of(i), i % 2 ? ["a", "b"] : ["a"], "device");
        await subs.add(other, ids[0]!, { ...of(0), token: "foreign" }, ["a"], "device");
        const want = (i: number, s = of(i)) => ({ deviceId: ids[i]!, ...s });
        const all = await collect(subs.scanRecipients(app, ["b", "a", "missing"], { batchSize: 3 }));
        assert.deepEqual(all.map((b) => b.length), [3, 3, 1]);
        assert.deepEqual(all.flat(), ids.map((_, i) => want(i)));
        // A token refresh or a new user: every row of the device follows, whichever source holds it.
        await subs.add(app, ids[1]!, of(1), ["c"], "user");
        await subs.setSubscriber(app, ids[1]!, of(1, "refreshed"));
        await subs.add(app, ids[3]!, { ...of(3), user: "carol" }, ["a"], "device");
        await subs.set(app, ids[5]!, of(5, "t5-new"), [], "user");
        const changed = [want(0), want(1, of(1, "refreshed")), want(2), want(3, { ...of(3), user: "carol" }), want(4), want(5, of(5, "t5-new")), want(6)];
        assert.deepEqual((await collect(subs.scanRecipients(app, ["a"], { batchSize: 10 }))).flat(), changed);
        assert.deepEqual((await collect(subs.scanRecipients(app, ["c"], { batchSize: 10 }))).flat(), [changed[1]]);
        assert.deepEqual((await collect(subs.scanRecipients(app, ["a", "b"], { after: ids[4]!, batchSize: 10 }))).flat(), changed.slice(5));
        assert.deepEqual((await collect(subs.scanRecipients(other, ["a", "b"], { batchSize: 10 }))).flat(), [{ ...want(0), token: "foreign" }]);
        await subs.removeDevices(app, [ids[2]!]);
        await subs.removeSource(app, ids[4]!, "all", "device");
        assert.deepEqual((await collect(subs.scanRecipients(app, ["a"], { batchSize: 10 }))).flat().map((r) => r.deviceId), [0, 1, 3, 5, 6].map((i) => ids[i]));
        assert.deepEqual(await collect(subs.scanRecipients(app, [], { batchSize: 10 })), []);
      });

      it("stats counts devices, distinct users and user-topic holders, in the order asked", async () => {
        const app = newApp();
        const subs = store.subscriptions;
        await subs.add(app, "d1", sub("alice"), ["news", "sport"], "device");
        await subs.add(app, "d2", sub("alice"), ["news"], "user");
        await subs.add(app, "d3", sub("bob"), ["news"], "device");
        await subs.add(app, "d4", sub(""), ["news", "sport"], "device");
        await subs.addUserTopics(app, "alice", ["news"]);
        await subs.addUserTopics(app, "carol", ["news", "weather"]);
        assert.deepEqual(await subs.stats(app, ["weather", "news", "sport", "none", "news"]), [
          { topic: "weather", deviceCount: 0, userCount: 0, userTopicCount: 1 },
          { topic: "news", deviceCount: 4, userCount: 2, userTopicCount: 2 },
          { topic: "sport", deviceCount: 2, userCount: 1, userTopicCount: 0 },
          { topic: "none", deviceCount: 0, userCount: 0, userTopicCount: 0 },
        ]);
        assert.deepEqual(await subs.stats(app, []), []);
        assert.deepEqual(await subs.stats(newApp(), ["news"]), [{ topic: "news", deviceCount: 0, userCount: 0, userTopicCount: 0 }]);
      });

      it("listTopics lists device and user topics by name, with a prefix and pages", async () => {
        const app = newApp();
        const subs = store.subscriptions;
        await subs.add(app, "d1", sub("alice"), ["news.a", "news.b", "sport"], "device");
        await subs.add(app, "d2", sub(""), ["news.b", "news.d"], "device");
        await subs.addUserTopics(app, "carol", ["news.c", "news.b"]);
        const all = await subs.listTopics(app, "", { limit: 100 });
        assert.deepEqual(
          all.map((t) => t.topic),
          ["news.a", "news.b", "news.c", "news.d", "sport"],
        );
        assert.deepEqual(all[1], { topic: "news.b", deviceCount: 2, userCount: 1, userTopicCount: 1 });
        assert.deepEqual(all[2], { topic: "news.c", deviceCount: 0, userCount: 0, userTopicCount: 1 });
        const names: string[] = [];
        let cursor: string | undefined;
        for (;;) {
          const page = await subs.listTopics(app, "news.", { ...(cursor !== undefined ? { after: cursor } : {}), limit: 2 });
          names.push(...page.map((t) => t.topic));
          if (page.length < 2) break;
          cursor = page.at(-1)!.topic;
        }
        assert.deepEqual(names, ["news.a", "news.b", "news.c", "news.d"]);
        assert.deepEqual(await subs.listTopics(app, "sp", { limit: 10 }), [{ topic: "sport", deviceCount: 1, userCount: 1, userTopicCount: 0 }]);
        assert.deepEqual(await subs.listTopics(app, "zzz", { limit: 10 }), []);
        assert.deepEqual(await subs.listTopics(newApp(), "", { limit: 10 }), []);
      });

      it("prefixes are literal text, not patterns", async () => {
        const app = newApp();
        const subs = store.subscriptions;
        await subs.add(app, "d1", sub("u"), ["a-b.c", "a-bxc", "xa-b.c", "a-b.", "(a)+"], "device");
        await subs.addUserTopics(app, "u", ["a-b.c", "a-bxc", "(a)+"]);
        assert.deepEqual((await subs.list(app, { prefix: "a-b." }, { limit: 10 })).map((r) => r.topic), ["a-b.", "a-b.c"]);
        assert.deepEqual((await subs.listTopics(app, "a-b.", { limit: 10 })).map((t) => t.topic), ["a-b.", "a-b.c"]);
        assert.deepEqual((await subs.listTopics(app, "(a)", { limit: 10 })).map((t) => t.topic), ["(a)+"]);
        assert.deepEqual((await subs.listUserTopics(app, { prefix: "a-b." }, { limit: 10 })).map((t) => t.topic), ["a-b.c"]);
      });

      it("listTopicUsers pages through the distinct users of a topic", async () => {
        const app = newApp();
        const subs = store.subscriptions;
        const users = Array.from({ length: 9 }, (_, i) => `user-${i}`);
        for (const [i, user] of users.entries()) {
          await subs.add(app, `d${i}a`, sub(user), ["t"], "device");
          await subs.add(app, `d${i}b`, sub(user), ["t"], "user");
        }
        await subs.add(app, "anon", sub(""), ["t"], "device");
        await subs.add(app, "elsewhere", sub("zed"), ["other"], "device");
        const seen: string[] = [];
        let cursor: string | undefined;
        for (;;) {
          const page = await subs.listTopicUsers(app, "t", { ...(cursor !== undefined ? { after: cursor } : {}), limit: 4 });
          seen.push(...page);
          if (page.length < 4) break;
          cursor = page.at(-1);
        }
        assert.deepEqual(seen, users);
        assert.deepEqual(await subs.listTopicUsers(app, "missing", { limit: 4 }), []);
      });

      it("user topics: add, remove, userTopicsOf, listUserTopics and removeUser", async () => {
        const app = newApp();
        const subs = store.subscriptions;
        await subs.addUserTopics(app, "bob", ["news", "alerts", "news"]);
        await subs.addUserTopics(app, "bob", ["news"]);
        await subs.addUserTopics(app, "alice", ["news.sport", "weather", "news"]);
        await subs.addUserTopics(app, "carol", ["alerts"]);
        assert.deepEqual(await subs.userTopicsOf(app, "bob"), ["alerts", "news"]);
        assert.deepEqual(await subs.userTopicsOf(app, "nobody"), []);
        const key = (r: { user: string; topic: string }) => `${r.user}\n${r.topic}`;
        const all = await subs.listUserTopics(app, {}, { limit: 100 });
        assert.deepEqual(all.map(key), ["alice\nnews", "alice\nnews.sport", "alice\nweather", "bob\nalerts", "bob\nnews", "carol\nalerts"]);
        assert.deepEqual(all[0], { app, user: "alice", topic: "news" });
        assert.deepEqual((await subs.listUserTopics(app, { users: ["carol", "bob"] }, { limit: 100 })).map(key), ["bob\nalerts", "bob\nnews", "carol\nalerts"]);
        assert.deepEqual((await subs.listUserTopics(app, { topics: ["alerts"] }, { limit: 100 })).map(key), ["bob\nalerts", "carol\nalerts"]);
        assert.deepEqual((await subs.listUserTopics(app, { prefix: "news" }, { limit: 100 })).map(key), ["alice\nnews", "alice\nnews.sport", "bob\nnews"]);
        assert.deepEqual((await subs.listUserTopics(app, { users: ["alice"], topics: ["news", "news.sport", "alerts"], prefix: "news." }, { limit: 100 })).map(key), [
          "alice\nnews.sport",
        ]);
        const seen: string[] = [];
        let cursor: string | undefined;
        for (;;) {
          const page = await subs.listUserTopics(app, {}, { ...(cursor !== undefined ? { after: cursor } : {}), limit: 4 });
          seen.push(...page.map(key));
          if (page.length < 4) break;
          cursor = key(page.at(-1)!);
        }
        assert.deepEqual(seen, all.map(key));
        assert.equal(await subs.countUserTopics(app, {}), 6);
        assert.equal(await subs.countUserTopics(app, { users: ["carol", "bob"] }), 3);
        assert.equal(await subs.countUserTopics(app, { users: ["alice"], topics: ["news", "news.sport", "alerts"], prefix: "news." }), 1);
        assert.equal(await subs.countUserTopics(newApp(), {}), 0);
        await subs.removeUserTopics(app, "bob", ["news", "missing"]);
        assert.deepEqual(await subs.userTopicsOf(app, "bob"), ["alerts"]);
        await subs.removeUserTopics(app, "bob", []);
        assert.deepEqual(await subs.userTopicsOf(app, "bob"), ["alerts"]);
        assert.equal(await subs.removeUser(app, "alice"), 3);
        assert.deepEqual(await subs.userTopicsOf(app, "alice"), []);
        assert.equal(await subs.removeUser(app, "alice"), 0);
        assert.deepEqual((await subs.listUserTopics(app, {}, { limit: 100 })).map(key), ["bob\nalerts", "carol\nalerts"]);
      });

      it("removeApp removes that app's subscriptions and user topics only", async () => {
        const app = newApp();
        const other = newApp();
        const subs = store.subscriptions;
        for (const a of [app, other]) {
          await subs.add(a, "d1", sub("alice"), ["t"], "device");
          await subs.addUserTopics(a, "alice", ["t"]);
        }
        await subs.removeApp(app);
        assert.equal(await subs.countForDevice(app, "d1"), 0);
        assert.deepEqual(await subs.userTopicsOf(app, "alice"), []);
        assert.deepEqual(await subs.stats(other, ["t"]), [{ topic: "t", deviceCount: 1, userCount: 1, userTopicCount: 1 }]);
      });

      it("another app neither sees nor changes an app's subscriptions", async () => {
        const app = newApp();
        const other = newApp();
        const subs = store.subscriptions;
        await subs.add(app, "d1", sub("alice"), ["t", "u"], "device");
        await subs.add(app, "d1", sub("alice"), ["t"], "user");
        await subs.addUserTopics(app, "alice", ["t"]);
        const before = await subs.list(app, {}, { limit: 100 });
        // Reads from the other app see nothing.
        assert.equal((await subs.topicsOf(other, ["d1"])).size, 0);
        assert.equal(await subs.countForDevice(other, "d1"), 0);
        assert.deepEqual(await subs.list(other, { deviceIds: ["d1"] }, { limit: 100 }), []);
        assert.deepEqual(await collect(subs.scanDeviceIds(other, ["t", "u"], { batchSize: 10 })), []);
        assert.deepEqual(await subs.stats(other, ["t"]), [{ topic: "t", deviceCount: 0, userCount: 0, userTopicCount: 0 }]);
        assert.deepEqual(await subs.listTopics(other, "", { limit: 100 }), []);
        assert.deepEqual(await subs.listTopicUsers(other, "t", { limit: 100 }), []);
        assert.deepEqual(await subs.userTopicsOf(other, "alice"), []);
        assert.deepEqual(await subs.listUserTopics(other, {}, { limit: 100 }), []);
        // Writes from the other app leave this app's data alone.
        await subs.removeSource(other, "d1", "all", "device");
        await subs.removeSource(other, "d1", ["t"], "user");
        await subs.set(other, "d1", sub("mallory"), [], "device");
        await subs.setSubscriber(other, "d1", sub("mallory"));
        await subs.removeDevices(other, ["d1"]);
        await subs.removeUserTopics(other, "alice", ["t"]);
        assert.equal(await subs.removeUser(other, "alice"), 0);
        await subs.removeApp(other);
        assert.deepEqual(await subs.list(app, {}, { limit: 100 }), before);
        assert.deepEqual(await subs.userTopicsOf(app, "alice"), ["t"]);
        assert.deepEqual(await subs.listTopicUsers(app, "t", { limit: 10 }), ["alice"]);
      });
    });

    // ---------------------------------------------------------------------------------------
    describe("expiring records", () => {
      it("claims a nonce once per app, and forgets expired claims", async () => {
        const [a, b] = [newApp(), newApp()];
        const key = `sig-${randomUUID()}`;
        assert.equal(await store.nonces.claim(a, key, at(10)), true);
        assert.equal(await store.nonces.claim(a, key, at(10)), false, "a replay");
        assert.equal(await store.nonces.claim(b, key, at(10)), true, "another app's key space");
        assert.ok((await store.nonces.sweep(at(11))) >= 2);
        assert.equal(await store.nonces.claim(a, key, at(20)), true, "claimable again once swept");
      });

      it("keeps the latest verdict per token, lists it by time with a cursor, and sweeps old ones", async () => {
        const app = newApp();
        const feedback = (provider: "apns" | "fcm", token: string, t: number, reason = `${provider}:gone`) => ({ app, provider, token, reason, at: at(t) });
        await store.tokenFeedback.add([feedback("apns", "a1", 1), feedback("fcm", "f1", 2), feedback("apns", "a2", 2)]);
        await store.tokenFeedback.add([feedback("apns", "a1", 3, "apns:Unregistered")]);
        await store.tokenFeedback.add([{ ...feedback("apns", "x", 1), app: newApp() }]);
        const all = await store.tokenFeedback.list(app, {}, { limit: 10 });
        assert.deepEqual(all.map((r) => [r.provider, r.token, r.at.getTime()]), [["apns", "a2", at(2).getTime()], ["fcm", "f1", at(2).getTime()], ["apns", "a1", at(3).getTime()]]);
        assert.equal(all[2]!.reason, "apns:Unregistered", "the later verdict replaced the first");
        const first = await store.tokenFeedback.list(app, {}, { limit: 1 });
        const cursor = tokenFeedbackCursor(first[0]!);
        assert.deepEqual((await store.tokenFeedback.list(app, {}, { after: cursor, limit: 10 })).map((r) => r.token), ["f1", "a1"]);
        assert.deepEqual((await store.tokenFeedback.list(app, { provider: "apns", since: at(3) }, { limit: 10 })).map((r) => r.token), ["a1"]);
        await store.tokenFeedback.sweep(at(3));
        assert.deepEqual((await store.tokenFeedback.list(app, {}, { limit: 10 })).map((r) => r.token), ["a1"]);
      });
    });

    describe("publish rate windows", () => {
      const takes = (app: string, window: string, limit: number, n: number, expiresAt = at(10)) =>
        Promise.all(Array.from({ length: n }, () => store.rates.take(app, window, limit, expiresAt)));
      const count = (results: boolean[]) => results.filter(Boolean).length;

      it("admits at most `limit` takes per app and window; other windows and apps are separate", async () => {
        const [a, b] = [newApp(), newApp()];
        const one: boolean[] = [];
        for (let i = 0; i < 5; i++) one.push(await store.rates.take(a, "1000", 3, at(10)));
        assert.deepEqual(one, [true, true, true, false, false]);
        assert.equal(await store.rates.take(a, "2000", 3, at(10)), true, "the next window starts empty");
        assert.equal(await store.rates.take(b, "1000", 3, at(10)), true, "another app's windows");
        assert.equal(await store.rates.take(a, "1000", 0, at(10)), false, "no slots at limit 0");
        // Back to the first window (a late caller): still full.
        assert.equal(await store.rates.take(a, "1000", 3, at(10)), false);
      });

      it("a raised limit opens more slots in the same window, a lowered one closes them", async () => {
        const app = newApp();
        assert.equal(count(await takes(app, "w", 2, 4)), 2);
        assert.equal(count(await takes(app, "w", 5, 6)), 3, "slots 2..4 were still free");
        assert.equal(await store.rates.take(app, "w", 1, at(10)), false);
      });

      it("never admits more than the limit under concurrent callers", async () => {
        const app = newApp();
        assert.equal(count(await takes(app, "w1", 7, 25)), 7);
        assert.equal(count(await takes(app, "w1", 7, 5)), 0);
        // Two windows in flight at once (callers on both sides of a boundary).
        const [x, y] = await Promise.all([takes(app, "w2", 4, 10), takes(app, "w3", 6, 10)]);
        assert.deepEqual([count(x), count(y)], [4, 6]);
      });

      it("sweeps windows that expired, after which the window admits again", async () => {
        const app = newApp();
        assert.equal(count(await takes(app, "old", 2, 2, at(1))), 2);
        assert.equal(count(await takes(app, "new", 2, 1, at(5))), 1);
        assert.ok((await store.rates.sweep(at(2))) >= 2);
        assert.equal(await store.rates.take(app, "new", 2, at(5)), true, "unexpired windows are kept");
        assert.equal(await store.rates.take(app, "new", 2, at(5)), false);
        assert.equal(await store.rates.take(app, "old", 2, at(1)), true, "a swept window is empty");
      });
    });

    describe("apps", () => {
      it("create and get; a taken id is ALREADY_EXISTS", async () => {
        const id = newApp();
        const app = appRecord(id);
        await store.apps.create(app);
        assert.deepEqual(await store.apps.get(id), app);
        assert.equal(await store.apps.get(newApp()), null);
        await assert.rejects(store.apps.create(appRecord(id, { name: "again" })), (e: unknown) => {
          assert.ok(e instanceof HeraldError, `expected a HeraldError, got ${String(e)}`);
          assert.equal(e.code, Status.ALREADY_EXISTS);
          assert.equal(e.code, 6);
          return true;
        });
        assert.equal((await store.apps.get(id))?.name, app.name);
        // Copies in and out.
        app.limits.maxDevicesPerUser = 999;
        const got = await store.apps.get(id);
        assert.equal(got?.limits.maxDevicesPerUser, 10);
        got!.providers.push("hms");
        assert.deepEqual((await store.apps.get(id))?.providers, ["fcm", "apns"]);
      });

      it("keeps the app's owner", async () => {
        const id = newApp();
        await store.apps.create(appRecord(id, { owner: "pushapp:team-a/shop" }));
        assert.equal((await store.apps.get(id))?.owner, "pushapp:team-a/shop");
        assert.equal((await store.apps.update(id, { name: "Shop", now: at(1) }))?.owner, "pushapp:team-a/shop");
        assert.equal((await store.apps.update(id, { vapidPublicKey: "BPub", now: at(2) }))?.vapidPublicKey, "BPub");
        assert.equal((await store.apps.get(id))?.vapidPublicKey, "BPub");
        const webhooks = [{ url: "https://hooks.example.com/herald", events: ["publish.completed"] }, { url: "http://10.0.0.5/all", events: [] }];
        await store.apps.update(id, { webhooks, now: at(3) });
        assert.deepEqual((await store.apps.get(id))?.webhooks, webhooks);
      });

      it("keeps which senders deliver the app: absent means dedicated, an update moves it", async () => {
        const id = newApp();
        await store.apps.create(appRecord(id));
        assert.equal((await store.apps.get(id))?.senders ?? "dedicated", "dedicated");
        const pooled = newApp();
        await store.apps.create(appRecord(pooled, { senders: "pooled" }));
        assert.equal((await store.apps.get(pooled))?.senders, "pooled");
        assert.equal((await store.apps.update(pooled, { name: "n", now: at(1) }))?.senders, "pooled", "other updates keep it");
        await store.apps.update(pooled, { senders: "dedicated", now: at(2) });
        assert.equal((await store.apps.get(pooled))?.senders ?? "dedicated", "dedicated");
        await store.apps.update(id, { senders: "pooled", now: at(3) });
        assert.equal((await store.apps.get(id))?.senders, "pooled");
      });

      it("list pages by id", async () => {
        const base = newApp();
        const ids = ["e", "a", "d", "c", "b"].map((s) => `${base}-${s}`);
        for (const id of ids) await store.apps.create(appRecord(id));
        const seen: string[] = [];
        let cursor = base;
        for (let i = 0; i < 3; i++) {
          const page = await store.apps.list({ after: cursor, limit: 2 });
          const ours = page.filter((a) => a.id.startsWith(`${base}-`));
          seen.push(...idsOf(ours));
          assert.deepEqual(idsOf(page), sortStrings(idsOf(page)));
          cursor = page.at(-1)?.id ?? cursor;
        }
        assert.deepEqual(seen, sortStrings(ids));
        const first = await store.apps.list({ limit: 3 });
        assert.ok(first.length <= 3);
        assert.deepEqual(idsOf(first), sortStrings(idsOf(first)));
        assert.deepEqual(await store.apps.list({ after: `${base}-a`, limit: 0 }), []);
      });

      it("update patches name, limits and providers", async () => {
        const id = newApp();
        const app = appRecord(id);
        await store.apps.create(app);
        const limits = { ...app.limits, maxTopicsPerDevice: 7, deviceOverflowPolicy: "reject" as const };
        const updated = await store.apps.update(id, { name: "Renamed", limits, providers: ["webpush"], now: at(5) });
        assert.deepEqual(updated, { ...app, name: "Renamed", limits, providers: ["webpush"], updatedAt: at(5) });
        assert.deepEqual(await store.apps.get(id), updated);
        const partial = await store.apps.update(id, { name: "Again", now: at(6) });
        assert.deepEqual(partial, { ...updated!, name: "Again", updatedAt: at(6) });
        assert.equal(await store.apps.update(newApp(), { name: "x", now: at(7) }), null);
      });

      it("bumpSecretVersion increments and returns the new version", async () => {
        const id = newApp();
        await store.apps.create(appRecord(id, { secretVersion: 1 }));
        assert.equal(await store.apps.bumpSecretVersion(id, at(1)), 2);
        assert.equal(await store.apps.bumpSecretVersion(id, at(2)), 3);
        const app = await store.apps.get(id);
        assert.equal(app?.secretVersion, 3);
        assert.deepEqual(app?.updatedAt, at(2));
        assert.equal(await store.apps.bumpSecretVersion(newApp(), at(3)), null);
      });

      it("delete removes the app", async () => {
        const id = newApp();
        const keep = newApp();
        await store.apps.create(appRecord(id));
        await store.apps.create(appRecord(keep));
        assert.equal(await store.apps.delete(id), true);
        assert.equal(await store.apps.get(id), null);
        assert.equal(await store.apps.delete(id), false);
        assert.notEqual(await store.apps.get(keep), null);
        // The id can be used again.
        await store.apps.create(appRecord(id));
      });
    });

    // ---------------------------------------------------------------------------------------
    describe("api keys", () => {
      it("create, findByHash and list", async () => {
        const app = newApp();
        const other = newApp();
        const k1 = keyRecord(app, { createdAt: at(2), role: "client" });
        const k2 = keyRecord(app, { createdAt: at(1) });
        const k3 = keyRecord(other);
        for (const k of [k1, k2, k3]) await store.apiKeys.create(k);
        assert.deepEqual(await store.apiKeys.findByHash(k1.hash), k1);
        assert.deepEqual(await store.apiKeys.findByHash(k3.hash), k3);
        assert.equal(await store.apiKeys.findByHash(randomBytes(32).toString("hex")), null);
        assert.deepEqual(await store.apiKeys.list(app), [k2, k1]);
        assert.deepEqual(await store.apiKeys.list(other), [k3]);
        assert.deepEqual(await store.apiKeys.list(newApp()), []);
        await assert.rejects(store.apiKeys.create(keyRecord(app, { hash: k1.hash })), (e: unknown) => e instanceof HeraldError && e.code === Status.ALREADY_EXISTS);
        assert.deepEqual(await store.apiKeys.list(app), [k2, k1]);
      });

      it("revoke marks the key once; another app cannot revoke it", async () => {
        const app = newApp();
        const other = newApp();
        const key = keyRecord(app);
        await store.apiKeys.create(key);
        assert.equal(await store.apiKeys.revoke(other, key.id, at(1)), null);
        assert.equal((await store.apiKeys.findByHash(key.hash))?.revokedAt, null);
        assert.equal(await store.apiKeys.revoke(app, "missing", at(1)), null);
        const revoked = await store.apiKeys.revoke(app, key.id, at(2));
        assert.deepEqual(revoked, { ...key, revokedAt: at(2) });
        assert.deepEqual(await store.apiKeys.findByHash(key.hash), revoked);
        assert.deepEqual(await store.apiKeys.list(app), [revoked]);
        assert.deepEqual(await store.apiKeys.revoke(app, key.id, at(3)), revoked);
      });

      it("removeApp removes that app's keys only", async () => {
        const app = newApp();
        const other = newApp();
        const mine = [keyRecord(app), keyRecord(app)];
        const theirs = keyRecord(other);
        for (const k of [...mine, theirs]) await store.apiKeys.create(k);
        assert.equal(await store.apiKeys.removeApp(app), 2);
        assert.deepEqual(await store.apiKeys.list(app), []);
        assert.equal(await store.apiKeys.findByHash(mine[0]!.hash), null);
        assert.deepEqual(await store.apiKeys.findByHash(theirs.hash), theirs);
        assert.equal(await store.apiKeys.removeApp(app), 0);
      });
    });
  });
}
