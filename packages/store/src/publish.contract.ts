import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import { HeraldError, Status } from "@herald/platform";
import type { CountDeltas, PublishRecord, PublishRepository, PublishStateName } from "./publish.types.js";

// The behaviour every PublishRepository must have (memory and MongoDB pass the same cases). Each
// case gets a fresh repository from `make` (the MongoDB one over the run's database) and works in
// its own random app ids; every case also checks that another app sees and changes none of it.
// The repository does not generate ids: the tests make time-ordered ones, as the dispatcher does.

const T0 = Date.parse("2030-01-01T00:00:00.000Z");
const at = (minutes: number) => new Date(T0 + minutes * 60_000);
const newApp = () => `t-${randomUUID().slice(0, 8)}`;

let seq = 0;
// Time-ordered: later calls sort after earlier ones, also within one millisecond.
export const newPublishId = () =>
  `${Date.now().toString(36).padStart(9, "0")}-${(seq++).toString(36).padStart(6, "0")}-${randomBytes(4).toString("hex")}`;

const zeroCounts = (): PublishRecord["counts"] => ({
  targeted: 0,
  sent: 0,
  failed: 0,
  invalidTokens: 0,
  expired: 0,
  cancelled: 0,
  deadLettered: 0,
  duplicates: 0,
  retries: 0,
  deliveredReceipts: 0,
  openedReceipts: 0,
  failedByReason: {},
});

function publish(app: string, extra: Partial<PublishRecord> = {}): PublishRecord {
  return {
    id: newPublishId(),
    app,
    uid: "",
    state: "queued",
    request: new Uint8Array(randomBytes(40)),
    labels: {},
    counts: zeroCounts(),
    fanoutCursor: "",
    fanoutDone: false,
    sendAt: null,
    expireAt: null,
    createdAt: at(0),
    updatedAt: at(0),
    startedAt: null,
    finishedAt: null,
    error: "",
    ...extra,
  };
}

const idsOf = (records: Array<{ id: string }>) => records.map((r) => r.id);

export function publishContract(name: string, make: () => Promise<PublishRepository>): void {
  describe(`${name} publish repository contract`, { timeout: 120_000 }, () => {
    // Creates each record and returns them as given.
    async function seed(repo: PublishRepository, records: PublishRecord[]): Promise<PublishRecord[]> {
      for (const r of records) assert.equal((await repo.create(r)).created, true);
      return records;
    }

    it("create then get round-trips every field, the request bytes intact", async () => {
      const repo = await make();
      const app = newApp();
      // A view into a larger buffer: only its own bytes are the request.
      const backing = new Uint8Array([9, 9, 0, 1, 2, 0xff, 0x80, 0, 9]);
      const record = publish(app, {
        uid: "order-1",
        state: "scheduled",
        request: backing.subarray(2, 8),
        labels: { campaign: "spring", "a.b": "dotted", "k=1": "x=y", $odd: "dollar" },
        counts: { ...zeroCounts(), targeted: 3, failedByReason: { "apns:Bad.Token": 2 } },
        fanoutCursor: "dev-9",
        sendAt: at(60),
        expireAt: at(120),
        createdAt: at(1),
        updatedAt: at(2),
        error: "",
      });
      const { publish: created, created: isNew } = await repo.create(record);
      assert.equal(isNew, true);
      assert.deepEqual(created, { ...record, request: new Uint8Array([0, 1, 2, 0xff, 0x80, 0]) });
      const got = await repo.get(app, record.id);
      assert.ok(got);
      assert.ok(got.request instanceof Uint8Array);
      assert.deepEqual([...got.request], [0, 1, 2, 0xff, 0x80, 0]);
      assert.deepEqual(got, created);
      // Copies: changing what was returned or given changes nothing stored.
      got.request[0] = 42;
      got.labels.campaign = "changed";
      got.counts.sent = 99;
      record.labels.campaign = "changed too";
      const again = await repo.get(app, record.id);
      assert.deepEqual(again, created);
      // An empty request survives as an empty Uint8Array.
      const empty = publish(app, { request: new Uint8Array() });
      await repo.create(empty);
      assert.deepEqual((await repo.get(app, empty.id))?.request, new Uint8Array());
      // Tenancy and absence.
      assert.equal(await repo.get(newApp(), record.id), null);
      assert.equal(await repo.get(app, newPublishId()), null);
    });

    it("a uid is an idempotency key per app; an empty uid never collides; a taken id is refused", async () => {
      const repo = await make();
      const app = newApp();
      const first = publish(app, { uid: "u-1" });
      assert.equal((await repo.create(first)).created, true);
      const second = publish(app, { uid: "u-1", request: new Uint8Array([1]) });
      const dup = await repo.create(second);
      assert.equal(dup.created, false);
      assert.deepEqual(dup.publish, first);
      assert.equal(await repo.get(app, second.id), null);

      // The same uid in another app is another publish.
      const other = newApp();
      const theirs = publish(other, { uid: "u-1" });
      assert.equal((await repo.create(theirs)).created, true);
      assert.deepEqual(await repo.get(app, first.id), first);

      // Empty uids: every publish is new.
      const plain = [publish(app), publish(app), publish(app)];
      for (const p of plain) assert.equal((await repo.create(p)).created, true);
      // A uid equal to another publish's id is just a uid.
      const lookalike = publish(app, { uid: plain[0]!.id });
      assert.equal((await repo.create(lookalike)).created, true);

      // The id of an existing publish (in any app) cannot be taken again.
      for (const taken of [publish(app, { id: plain[1]!.id }), publish(other, { id: plain[1]!.id }), publish(other, { id: first.id, uid: "fresh" })]) {
        await assert.rejects(repo.create(taken), (e: unknown) => e instanceof HeraldError && e.code === Status.ALREADY_EXISTS);
      }
      assert.deepEqual(await repo.get(app, plain[1]!.id), plain[1]);
      assert.equal(await repo.get(other, plain[1]!.id), null);
    });

    it("10 concurrent creates with one uid: exactly one is created, all return its id", async () => {
      const repo = await make();
      const app = newApp();
      const attempts = Array.from({ length: 10 }, () => publish(app, { uid: "same" }));
      const results = await Promise.all(attempts.map((p) => repo.create(p)));
      const created = results.filter((r) => r.created);
      assert.equal(created.length, 1);
      const id = created[0]!.publish.id;
      assert.deepEqual(new Set(results.map((r) => r.publish.id)), new Set([id]));
      assert.deepEqual(idsOf(await repo.list(app, {}, { limit: 20 })), [id]);
      // Concurrent creates without a uid all succeed.
      const plain = Array.from({ length: 10 }, () => publish(app));
      const made = await Promise.all(plain.map((p) => repo.create(p)));
      assert.ok(made.every((r) => r.created));
      assert.equal((await repo.list(app, {}, { limit: 50 })).length, 11);
    });

    it("list: newest first, keyset pages cover everything once, filters by states, uid and labels", async () => {
      const repo = await make();
      const app = newApp();
      const other = newApp();
      const records = await seed(
        repo,
        Array.from({ length: 23 }, (_, i) =>
          publish(app, {
            uid: i % 5 === 0 ? `uid-${i}` : "",
            state: (["queued", "scheduled", "sending"] as const)[i % 3]!,
            labels: { tier: i % 2 ? "odd" : "even", "camp.aign": i < 10 ? "a.1" : "b=2", ...(i % 4 === 0 ? { extra: "y" } : {}) },
          }),
        ),
      );
      await seed(repo, [publish(other, { labels: { tier: "odd" } }), publish(other, { uid: "uid-5" })]);
      const newestFirst = idsOf(records).reverse();

      assert.deepEqual(idsOf(await repo.list(app, {}, { limit: 100 })), newestFirst);
      for (const limit of [1, 4, 7, 23]) {
        const seen: string[] = [];
        let before: string | undefined;
        for (;;) {
          const page = await repo.list(app, {}, { limit, ...(before !== undefined ? { before } : {}) });
          assert.ok(page.length <= limit);
          seen.push(...idsOf(page));
          if (page.length < limit) break;
          before = page.at(-1)!.id;
        }
        assert.deepEqual(seen, newestFirst, `limit ${limit}`);
      }
      assert.deepEqual(await repo.list(app, {}, { limit: 0 }), []);
      assert.deepEqual(await repo.list(app, {}, { limit: 5, before: records[0]!.id }), []);
      assert.deepEqual(idsOf(await repo.list(app, {}, { limit: 2, before: records[3]!.id })), [records[2]!.id, records[1]!.id]);

      const expect = (keep: (i: number) => boolean) => newestFirst.filter((id) => keep(records.findIndex((r) => r.id === id)));
      assert.deepEqual(idsOf(await repo.list(app, { states: ["sending"] }, { limit: 100 })), expect((i) => i % 3 === 2));
      assert.deepEqual(idsOf(await repo.list(app, { states: ["queued", "scheduled"] }, { limit: 100 })), expect((i) => i % 3 !== 2));
      assert.deepEqual(idsOf(await repo.list(app, { states: [] }, { limit: 100 })), newestFirst);
      assert.deepEqual(idsOf(await repo.list(app, { states: ["done"] }, { limit: 100 })), []);
      assert.deepEqual(idsOf(await repo.list(app, { uid: "uid-5" }, { limit: 100 })), [records[5]!.id]);
      assert.deepEqual(idsOf(await repo.list(app, { uid: "" }, { limit: 100 })), newestFirst);
      assert.deepEqual(idsOf(await repo.list(app, { labels: { tier: "odd" } }, { limit: 100 })), expect((i) => i % 2 === 1));
      assert.deepEqual(idsOf(await repo.list(app, { labels: { tier: "even", extra: "y" } }, { limit: 100 })), expect((i) => i % 4 === 0));
      assert.deepEqual(idsOf(await repo.list(app, { labels: { "camp.aign": "b=2" } }, { limit: 100 })), expect((i) => i >= 10));
      assert.deepEqual(idsOf(await repo.list(app, { labels: { tier: "odd", "camp.aign": "a.1" } }, { limit: 100 })), expect((i) => i % 2 === 1 && i < 10));
      assert.deepEqual(idsOf(await repo.list(app, { labels: { tier: "nope" } }, { limit: 100 })), []);
      assert.deepEqual(idsOf(await repo.list(app, { labels: {} }, { limit: 100 })), newestFirst);
      // All filters and a page bound together.
      const mixed = expect((i) => i % 3 === 0 && i % 2 === 0 && i < 20);
      assert.deepEqual(idsOf(await repo.list(app, { states: ["queued"], labels: { tier: "even" } }, { limit: 100, before: records[20]!.id })), mixed);
      assert.deepEqual(idsOf(await repo.list(app, { states: ["queued"], labels: { tier: "even" } }, { limit: 2, before: records[20]!.id })), mixed.slice(0, 2));
      // Records come back whole.
      assert.deepEqual((await repo.list(app, { uid: "uid-10" }, { limit: 1 }))[0], records[10]);
      // Tenancy.
      assert.equal((await repo.list(other, {}, { limit: 100 })).length, 2);
      assert.deepEqual(await repo.list(newApp(), {}, { limit: 100 }), []);
    });

    it("transition moves only from the allowed states and sets startedAt, finishedAt, error and updatedAt", async () => {
      const repo = await make();
      const app = newApp();
      const [p] = await seed(repo, [publish(app)]);
      const id = p!.id;
      // Another app cannot move it.
      assert.equal(await repo.transition(newApp(), id, ["queued"], "cancelled", { now: at(1) }), null);
      assert.equal(await repo.transition(app, id, ["scheduled", "sending"], "cancelled", { now: at(1) }), null);
      assert.equal(await repo.transition(app, id, [], "cancelled", { now: at(1) }), null);
      assert.equal(await repo.transition(app, newPublishId(), ["queued"], "fanning_out", { now: at(1) }), null);
      assert.deepEqual(await repo.get(app, id), p);

      const started = await repo.transition(app, id, ["queued", "scheduled"], "fanning_out", { startedAt: at(2), now: at(2) });
      assert.deepEqual(started, { ...p, state: "fanning_out", startedAt: at(2), updatedAt: at(2) });
      assert.equal(await repo.transition(app, id, ["queued"], "fanning_out", { now: at(3) }), null);
      const sending = await repo.transition(app, id, ["fanning_out"], "sending", { fanoutDone: true, now: at(3) });
      assert.equal(sending?.state, "sending");
      assert.deepEqual(sending?.startedAt, at(2));
      assert.equal(sending?.fanoutDone, true, "the fan-out's end is written with the state");
      const failed = await repo.transition(app, id, ["sending"], "failed", { finishedAt: at(4), error: "bus down", now: at(4) });
      assert.deepEqual(failed, { ...p, state: "failed", startedAt: at(2), finishedAt: at(4), error: "bus down", fanoutDone: true, updatedAt: at(4) });
      assert.deepEqual(await repo.get(app, id), failed);
      // Without fields the state still moves.
      const back = await repo.transition(app, id, ["failed"], "done");
      assert.equal(back?.state, "done");
      assert.equal(back?.error, "bus down");

      // Concurrent transitions out of one state: exactly one wins.
      const [q] = await seed(repo, [publish(app)]);
      const targets: PublishStateName[] = ["cancelled", "fanning_out", "expired", "failed", "cancelled", "fanning_out"];
      const raced = await Promise.all(targets.map((to) => repo.transition(app, q!.id, ["queued"], to, { now: at(5) })));
      const winners = raced.filter((r) => r !== null);
      assert.equal(winners.length, 1);
      assert.equal((await repo.get(app, q!.id))?.state, winners[0]!.state);
    });

    it("saveFanout accumulates targeted and stores the cursor and done", async () => {
      const repo = await make();
      const app = newApp();
      const [p] = await seed(repo, [publish(app)]);
      const id = p!.id;
      await repo.saveFanout(app, id, { cursor: "d-100", targetedDelta: 100, done: false, now: at(1) });
      await repo.saveFanout(app, id, { cursor: "d-250", targetedDelta: 150, done: false, now: at(2) });
      let got = await repo.get(app, id);
      assert.equal(got?.counts.targeted, 250);
      assert.equal(got?.fanoutCursor, "d-250");
      assert.equal(got?.fanoutDone, false);
      assert.deepEqual(got?.updatedAt, at(2));
      await repo.saveFanout(app, id, { cursor: "d-260", targetedDelta: 0, done: true, now: at(3) });
      got = await repo.get(app, id);
      assert.deepEqual(got, { ...p, counts: { ...p!.counts, targeted: 250 }, fanoutCursor: "d-260", fanoutDone: true, updatedAt: at(3) });
      // Concurrent progress reports all add up.
      await Promise.all(Array.from({ length: 20 }, (_, i) => repo.saveFanout(app, id, { cursor: `e-${i}`, targetedDelta: 5, done: true, now: at(4) })));
      assert.equal((await repo.get(app, id))?.counts.targeted, 350);
      // Another app, or a missing publish: nothing happens.
      await repo.saveFanout(newApp(), id, { cursor: "x", targetedDelta: 1000, done: false, now: at(9) });
      await repo.saveFanout(app, newPublishId(), { cursor: "x", targetedDelta: 1000, done: false, now: at(9) });
      got = await repo.get(app, id);
      assert.equal(got?.counts.targeted, 350);
      assert.equal(got?.fanoutDone, true);
    });

    it("addCounts increments atomically, also 50 at once, with any reason key", async () => {
      const repo = await make();
      const app = newApp();
      const [p] = await seed(repo, [publish(app, { counts: { ...zeroCounts(), targeted: 50 } })]);
      const id = p!.id;
      const after = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          repo.addCounts(app, id, i % 2 ? { sent: 1 } : { sent: 1, failedByReason: { "apns:BadDeviceToken": 1, "webpush:host.example:410": 2 } }, at(1)),
        ),
      );
      // Every caller saw its own increment: the counts it got back are distinct.
      assert.deepEqual(new Set(after.map((r) => r?.counts.sent)).size, 50);
      const got = await repo.get(app, id);
      assert.equal(got?.counts.sent, 50);
      assert.equal(got?.counts.targeted, 50);
      assert.deepEqual(got?.counts.failedByReason, { "apns:BadDeviceToken": 25, "webpush:host.example:410": 50 });
      assert.deepEqual(got?.updatedAt, at(1));

      // Every counter, and reason keys that are awkward as field names.
      const odd = { "a.b.c": 1, $dollar: 2, "x$y": 3, "100%": 4, "%2E": 5, "": 6, ["__proto__"]: 7, "fcm:UNREGISTERED": 8 };
      const all = await repo.addCounts(
        app,
        id,
        { targeted: 1, sent: 2, failed: 3, invalidTokens: 4, expired: 5, cancelled: 6, deadLettered: 7, duplicates: 8, retries: 9, deliveredReceipts: 10, openedReceipts: 11, failedByReason: odd },
        at(2),
      );
      const expected = {
        targeted: 51,
        sent: 52,
        failed: 3,
        invalidTokens: 4,
        expired: 5,
        cancelled: 6,
        deadLettered: 7,
        duplicates: 8,
        retries: 9,
        deliveredReceipts: 10,
        openedReceipts: 11,
        failedByReason: { "apns:BadDeviceToken": 25, "webpush:host.example:410": 50, ...odd },
      };
      assert.deepEqual(all?.counts, expected);
      assert.deepEqual((await repo.get(app, id))?.counts, expected);
      // Zero and empty deltas change nothing but updatedAt.
      const same = await repo.addCounts(app, id, { sent: 0, failedByReason: {} }, at(3));
      assert.deepEqual(same?.counts, expected);
      assert.deepEqual(same?.updatedAt, at(3));
      // Negative deltas are increments too.
      assert.equal((await repo.addCounts(app, id, { failedByReason: { "a.b.c": -1 } }, at(3)))?.counts.failedByReason["a.b.c"], 0);
      await assert.rejects(repo.addCounts(app, id, { sent: 0.5 }, at(3)), RangeError);

      // Another app, or a missing publish: null, nothing changes.
      assert.equal(await repo.addCounts(newApp(), id, { sent: 100 }, at(4)), null);
      assert.equal(await repo.addCounts(app, newPublishId(), { sent: 100 }, at(4)), null);
      assert.equal((await repo.get(app, id))?.counts.sent, 52);
    });

    it("markResult is true once, then false, also under 10 concurrent calls", async () => {
      const repo = await make();
      const app = newApp();
      const [p] = await seed(repo, [publish(app)]);
      const id = p!.id;
      assert.equal(await repo.markResult(app, id, "job-1:attempt-1"), true);
      assert.equal(await repo.markResult(app, id, "job-1:attempt-1"), false);
      assert.equal(await repo.markResult(app, id, "job-1:attempt-2"), true);
      assert.equal(await repo.markResult(app, id, "receipt:deliveredReceipts:dev.1\nx"), true);
      assert.equal(await repo.markResult(app, id, "receipt:deliveredReceipts:dev.1\nx"), false);
      const raced = await Promise.all(Array.from({ length: 10 }, () => repo.markResult(app, id, "job-2:attempt-1")));
      assert.equal(raced.filter(Boolean).length, 1);
      // Per app and per publish.
      assert.equal(await repo.markResult(newApp(), id, "job-1:attempt-1"), true);
      assert.equal(await repo.markResult(app, newPublishId(), "job-1:attempt-1"), true);
      assert.equal(await repo.markResult(app, id, "job-1:attempt-1"), false);
    });

    it("countResult adds a result's counts once per key, atomically with the marking, also under 10 concurrent calls", async () => {
      const repo = await make();
      const app = newApp();
      const [p] = await seed(repo, [publish(app)]);
      const id = p!.id;
      const first = await repo.countResult(app, id, "job:a:0", { sent: 3, failed: 1, failedByReason: { "apns:BadDeviceToken": 1 } }, new Date());
      assert.equal(first.counted, true);
      assert.equal(first.publish?.counts.sent, 3);
      const again = await repo.countResult(app, id, "job:a:0", { sent: 3, failed: 1 }, new Date());
      assert.equal(again.counted, false);
      assert.equal(again.publish?.counts.sent, 3, "a repeated result is not added");
      const raced = await Promise.all(Array.from({ length: 10 }, () => repo.countResult(app, id, "job:b:0", { sent: 2 }, new Date())));
      assert.equal(raced.filter((r) => r.counted).length, 1);
      const after = await repo.get(app, id);
      assert.equal(after?.counts.sent, 5);
      assert.equal(after?.counts.failed, 1);
      assert.deepEqual(after?.counts.failedByReason, { "apns:BadDeviceToken": 1 });
      // Keys of markResult and of countResult are apart; other apps' publishes are out of reach.
      assert.equal(await repo.markResult(app, id, "job:a:0"), true);
      assert.deepEqual(await repo.countResult(newApp(), id, "job:c:0", { sent: 1 }, new Date()), { counted: false, publish: null });
      assert.equal((await repo.get(app, id))?.counts.sent, 5);
    });

    it("countJobResult adds a job result once per read position, and a second run's sends as duplicates", async () => {
      const repo = await make();
      const app = newApp();
      const [p] = await seed(repo, [publish(app)]);
      const id = p!.id;
      const ref = (key: string, run: string, partition: number, offset: number) => ({ key, run, partition, offset: String(offset) });
      // Every send its run's own unless `carried` of them came from a run before it.
      const count = (r: ReturnType<typeof ref>, deltas: CountDeltas, carried = 0) => repo.countJobResult(app, id, { ...r, sentByRun: (deltas.sent ?? 0) - carried }, deltas, at(1));
      const first = await count(ref("job:a:0", "run-1", 2, 40), { sent: 3, failed: 1, failedByReason: { "apns:BadDeviceToken": 1 } });
      assert.equal(first.outcome, "counted");
      assert.equal(first.publish?.counts.sent, 3);
      // Read again at the same place, or at an earlier one of the partition: seen, nothing added.
      assert.equal((await count(ref("job:a:0", "run-1", 2, 40), { sent: 3 })).outcome, "seen");
      assert.equal((await count(ref("job:z:0", "run-1", 2, 39), { sent: 3 })).outcome, "seen");
      // The same attempt from another run, later on the topic: its sends went out twice.
      const twice = await count(ref("job:a:0", "run-2", 2, 41), { sent: 3, failed: 1 });
      assert.deepEqual([twice.outcome, twice.publish?.counts.sent, twice.publish?.counts.failed, twice.publish?.counts.duplicates], ["duplicate", 3, 1, 3]);
      assert.equal((await count(ref("job:a:0", "run-2", 2, 41), { sent: 3 })).outcome, "seen");
      // The first run's report on the topic twice (a producer retry): the second adds nothing.
      assert.equal((await count(ref("job:a:0", "run-1", 2, 42), { sent: 3, failed: 1 })).outcome, "seen");
      // Each partition has its own positions (the topic was given more partitions).
      assert.equal((await count(ref("job:b:0", "run-1", 0, 5), { sent: 2 })).outcome, "counted");
      assert.equal((await count(ref("job:c:0", "run-1", 2, 43), { sent: 1 })).outcome, "counted");
      // A third run that resumed the attempt with 2 of its 3 sends carried over sent 1 again.
      assert.equal((await count(ref("job:a:0", "run-3", 2, 44), { sent: 3 }, 2)).outcome, "duplicate");
      assert.equal((await count(ref("job:d:0", "run-1", 2, 2 ** 40), { sent: 1 })).outcome, "counted");
      const after = await repo.get(app, id);
      assert.deepEqual([after?.counts.sent, after?.counts.failed, after?.counts.duplicates], [7, 1, 4]);
      assert.deepEqual(after?.counts.failedByReason, { "apns:BadDeviceToken": 1 });
      // Another app's publish id is out of reach; markResult's keys are apart.
      assert.deepEqual(await repo.countJobResult(newApp(), id, { ...ref("job:e:0", "run-1", 2, 99), sentByRun: 1 }, { sent: 1 }, at(1)), { outcome: "seen", publish: null });
      assert.equal(await repo.markResult(app, id, "job:a:0"), true);
      assert.equal((await repo.get(app, id))?.counts.sent, 7);
    });

    it("listDue: scheduled publishes whose sendAt has come, across apps, oldest first", async () => {
      const repo = await make();
      // A time window no other case uses: listDue spans every app of the repository.
      const base = Date.parse("2001-01-01T00:00:00.000Z");
      const t = (s: number) => new Date(base + s * 1000);
      const [a, b] = [newApp(), newApp()];
      const [late, early, other, exact] = await seed(repo, [
        publish(a, { state: "scheduled", sendAt: t(30) }),
        publish(a, { state: "scheduled", sendAt: t(10) }),
        publish(b, { state: "scheduled", sendAt: t(20) }),
        publish(b, { state: "scheduled", sendAt: t(40) }),
      ]);
      await seed(repo, [
        publish(a, { state: "scheduled", sendAt: t(41) }),
        publish(b, { state: "queued", sendAt: t(5) }),
        publish(a, { state: "cancelled", sendAt: t(5) }),
        publish(a, { state: "scheduled", sendAt: null }),
      ]);
      try {
        assert.deepEqual(idsOf(await repo.listDue(t(40), 10)), idsOf([early!, other!, late!, exact!]));
        assert.deepEqual(await repo.listDue(t(40), 2), [early, other]);
        assert.deepEqual(idsOf(await repo.listDue(t(15), 10)), [early!.id]);
        assert.deepEqual(await repo.listDue(t(9), 10), []);
        assert.deepEqual(await repo.listDue(t(40), 0), []);
        // Once moved on, a publish is no longer due.
        await repo.transition(a, early!.id, ["scheduled"], "queued", { now: t(41) });
        assert.deepEqual(idsOf(await repo.listDue(t(40), 10)), idsOf([other!, late!, exact!]));
      } finally {
        await repo.removeApp(a);
        await repo.removeApp(b);
      }
    });

    it("listStale: publishes in the given states not updated since `before`, across apps, oldest first", async () => {
      const repo = await make();
      const base = Date.parse("2000-01-01T00:00:00.000Z");
      const t = (s: number) => new Date(base + s * 1000);
      const [a, b] = [newApp(), newApp()];
      const [s1, s2, s3] = await seed(repo, [
        publish(a, { state: "sending", updatedAt: t(20) }),
        publish(b, { state: "fanning_out", updatedAt: t(10) }),
        publish(a, { state: "fanning_out", updatedAt: t(30) }),
      ]);
      await seed(repo, [publish(a, { state: "done", updatedAt: t(1) }), publish(b, { state: "sending", updatedAt: t(50) }), publish(a, { state: "queued", updatedAt: t(2) })]);
      try {
        assert.deepEqual(idsOf(await repo.listStale(["fanning_out", "sending"], t(40), 10)), idsOf([s2!, s1!, s3!]));
        assert.deepEqual(await repo.listStale(["fanning_out", "sending"], t(40), 1), [s2]);
        // Strictly before: updated exactly at `before` is not stale.
        assert.deepEqual(idsOf(await repo.listStale(["fanning_out", "sending"], t(30), 10)), idsOf([s2!, s1!]));
        assert.deepEqual(idsOf(await repo.listStale(["fanning_out"], t(40), 10)), idsOf([s2!, s3!]));
        assert.deepEqual(await repo.listStale([], t(40), 10), []);
        // An update makes it fresh.
        await repo.addCounts(b, s2!.id, { sent: 1 }, t(45));
        assert.deepEqual(idsOf(await repo.listStale(["fanning_out", "sending"], t(40), 10)), idsOf([s1!, s3!]));
      } finally {
        await repo.removeApp(a);
        await repo.removeApp(b);
      }
    });

    it("removeApp removes the app's publishes and results, nothing of other apps", async () => {
      const repo = await make();
      const [a, b] = [newApp(), newApp()];
      const mine = await seed(repo, [publish(a, { uid: "k" }), publish(a), publish(a, { state: "scheduled", sendAt: at(1) })]);
      const [theirs] = await seed(repo, [publish(b, { uid: "k" })]);
      assert.equal(await repo.markResult(a, mine[0]!.id, "r"), true);
      assert.equal(await repo.markResult(b, theirs!.id, "r"), true);
      assert.equal(await repo.removeApp(a), 3);
      assert.equal(await repo.removeApp(a), 0);
      assert.deepEqual(await repo.list(a, {}, { limit: 10 }), []);
      for (const p of mine) assert.equal(await repo.get(a, p.id), null);
      assert.deepEqual(await repo.get(b, theirs!.id), theirs);
      assert.equal(await repo.markResult(b, theirs!.id, "r"), false);
      // The app starts over: its uid and result keys are free again.
      assert.equal(await repo.markResult(a, mine[0]!.id, "r"), true);
      assert.equal((await repo.create(publish(a, { uid: "k" }))).created, true);
      await repo.removeApp(a);
      await repo.removeApp(b);
    });
  });
}
