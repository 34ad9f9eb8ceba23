import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import kafkajs from "kafkajs";
import { setTimeout as delay } from "node:timers/promises";
import { busContract } from "./bus.contract.js";
import { KafkaBus } from "./bus.kafka.js";
import type { BusLogger } from "./bus.logger.js";

// Runs against a real broker (DESIGN §8). Without one the suite fails instead of skipping, so a
// green run always means the Kafka adapter was exercised.
const brokers = process.env.HERALD_KAFKA_BROKERS?.split(",").map((b) => b.trim()).filter(Boolean) ?? [];

// Rebalances and retries log warnings by design; show them only when asked.
const logger: BusLogger = process.env.HERALD_TEST_LOG
  ? { error: console.error, warn: console.warn, info: console.info, debug: console.debug }
  : { error: console.error, warn: () => {}, info: () => {}, debug: () => {} };

const makeBus = async () =>
  new KafkaBus({
    brokers,
    clientId: "herald-bus-test",
    logger,
    // Short heartbeats and pattern refreshes so rebalances and new topics are noticed quickly.
    consumer: { heartbeatIntervalMs: 500, sessionTimeoutMs: 10_000, topicRefreshMs: 500 },
  });

if (brokers.length === 0) {
  it("KafkaBus needs a broker", () => {
    assert.fail(
      "HERALD_KAFKA_BROKERS is not set: run `npm test` (it starts Kafka via test/infra/up.sh), or `bash test/infra/up.sh` and export the variables it prints",
    );
  });
} else {
  busContract("KafkaBus", makeBus, { topicPrefix: "herald-test.bus." });

  describe("KafkaBus specifics", () => {
    // A retry waiting for its time, or a slow provider, keeps a handler busy for longer than the
    // session timeout: the member must keep heartbeating, not be evicted and have its partition
    // (and the message in progress) handed to another member.
    it("a handler that runs longer than the session timeout keeps its partition: no rebalance, no repeat", { timeout: 120_000 }, async () => {
      const suffix = `${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
      const topic = `herald-test.bus.slow.${suffix}`;
      const joins: unknown[] = [];
      const bus = new KafkaBus({
        brokers,
        clientId: "herald-bus-test-slow",
        logger: { ...logger, info: (o: unknown, msg?: string) => void (msg === "bus: consumer joined its group" && joins.push(o)) },
        consumer: { heartbeatIntervalMs: 500, sessionTimeoutMs: 6000 },
      });
      try {
        await bus.ensureTopics([{ name: topic, partitions: 1 }]);
        const handled: string[] = [];
        let slowDone!: () => void;
        const slow = new Promise<void>((r) => (slowDone = r));
        await bus.subscribe({
          group: `herald-test.bus.slow-g.${suffix}`,
          topics: [topic],
          handler: async (m) => {
            const v = new TextDecoder().decode(m.value);
            handled.push(v);
            // The slowness is what is under test: 9 s, half as long again as the session.
            if (v === "slow") await delay(9000);
            if (v === "slow") slowDone();
          },
        });
        await bus.publish(topic, [{ key: "k", value: new TextEncoder().encode("slow") }, { key: "k", value: new TextEncoder().encode("next") }]);
        await slow;
        const deadline = Date.now() + 30_000;
        while (!handled.includes("next")) {
          if (Date.now() > deadline) assert.fail(`"next" never handled: ${JSON.stringify(handled)}`);
          await delay(20);
        }
        assert.deepEqual(handled, ["slow", "next"], "each message handled once");
        assert.equal(joins.length, 1, "the member joined once: it was never evicted");
      } finally {
        await bus.deleteTopics([topic]).catch(() => {});
        await bus.close();
      }
    });

    it("a consumer of a new bus instance resumes the group at its committed offset", { timeout: 120_000 }, async () => {
      const suffix = `${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
      const topic = `herald-test.bus.resume.${suffix}`;
      const group = `herald-test.bus.resume-g.${suffix}`;
      const encoder = new TextEncoder();
      const decoder = new TextDecoder();
      const publish = (bus: KafkaBus, from: number, count: number) =>
        bus.publish(topic, Array.from({ length: count }, (_, i) => ({ key: `k${(from + i) % 3}`, value: encoder.encode(`m${from + i}`) })));
      const eventually = async (check: () => boolean, what: string) => {
        const deadline = Date.now() + 30_000;
        while (!check()) {
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
          await delay(10);
        }
      };

      const first = await makeBus();
      try {
        await first.ensureTopics([{ name: topic, partitions: 3 }]);
        const seen: string[] = [];
        const sub = await first.subscribe({ group, topics: [topic], handler: async (m) => void seen.push(decoder.decode(m.value)) });
        await publish(first, 0, 10);
        await eventually(() => seen.length >= 10, "first 10");
        await sub.stop();
        await publish(first, 10, 5);
      } finally {
        await first.close();
      }

      const second = await makeBus();
      try {
        const seen: string[] = [];
        await second.subscribe({ group, topics: [topic], handler: async (m) => void seen.push(decoder.decode(m.value)) });
        await eventually(() => seen.length >= 5, "the 5 published while nobody consumed");
        const end = Date.now() + 500;
        while (Date.now() < end) {
          assert.equal(seen.length, 5, "nothing committed is delivered again");
          await delay(10);
        }
        assert.deepEqual(new Set(seen), new Set(["m10", "m11", "m12", "m13", "m14"]));
      } finally {
        await second.deleteTopics([topic]).catch(() => {});
        await second.close();
      }
    });

    it("a message's checkpoint reaches its next run, in this process and in the group's next consumer", { timeout: 120_000 }, async () => {
      const suffix = `${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
      const topic = `herald-test.bus.checkpoint.${suffix}`;
      const group = `herald-test.bus.checkpoint-g.${suffix}`;
      type Checkpointed = { progress?: string; checkpoint(progress: string): Promise<void> };
      const runs: Array<string | undefined> = [];
      let failedTwice = false;
      const first = await makeBus();
      const second = await makeBus();
      try {
        await first.ensureTopics([{ name: topic, partitions: 1 }]);
        await first.publish(topic, [{ key: "k", value: new TextEncoder().encode("big job") }]);
        // Two steps done, then a failure: the retry in this process starts at step 1, the next
        // consumer of the group (after this one is gone) at step 2.
        const sub = await first.subscribe({
          group,
          topics: [topic],
          retry: { initialMs: 300, maxMs: 300 },
          handler: async (m) => {
            const c = m as typeof m & Checkpointed;
            runs.push(c.progress);
            if (runs.length <= 2) await c.checkpoint(`step-${runs.length}`);
            if (runs.length === 2) failedTwice = true;
            throw new Error("crash after a step");
          },
        });
        const deadline = Date.now() + 30_000;
        while (!failedTwice) {
          if (Date.now() > deadline) assert.fail(`runs: ${JSON.stringify(runs)}`);
          await delay(10);
        }
        await sub.stop();
        await first.close();
      } catch (err) {
        await first.close().catch(() => {});
        throw err;
      }
      try {
        let next: string | undefined | null = null;
        await second.subscribe({ group, topics: [topic], handler: async (m) => void (next = (m as typeof m & Checkpointed).progress) });
        const deadline = Date.now() + 60_000;
        while (next === null) {
          if (Date.now() > deadline) assert.fail("the message was not delivered to the next consumer");
          await delay(10);
        }
        assert.deepEqual(runs.slice(0, 2), [undefined, "step-1"]);
        assert.equal(next, "step-2");
      } finally {
        await second.deleteTopics([topic]).catch(() => {});
        await second.close();
      }
    });

    // kafkajs 2.2.4 fetches again only when every batch of the last fetch is done: a long message
    // on one partition would hold up the others however many are handled at once.
    for (const budget of [undefined, 300]) {
      it(budget ? "with yieldAfterMs a long message stops at a checkpoint so other partitions are fetched; it resumes there, no step repeated" : "without yieldAfterMs a long message on one partition holds up the next fetch of the others (why the budget exists)", { timeout: 120_000 }, async () => {
        const suffix = `${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
        const topic = `herald-test.bus.yield.${suffix}`;
        type Yielding = { progress?: string; checkpoint(progress: string): Promise<void>; shouldYield(): boolean };
        const STEPS = 15;
        const bus = await makeBus();
        try {
          await bus.ensureTopics([{ name: topic, partitions: 2 }]);
          const steps: number[] = [];
          let yields = 0;
          let longPartition = -1;
          let longStarted!: () => void;
          const started = new Promise<void>((r) => (longStarted = r));
          let longDoneAt = 0;
          const shortAt = new Map<number, number>();
          await bus.subscribe({
            group: `herald-test.bus.yield-g.${suffix}`,
            topics: [topic],
            partitionsConcurrently: 2,
            ...(budget ? { yieldAfterMs: budget } : {}),
            handler: async (m) => {
              const c = m as typeof m & Yielding;
              if (m.key !== "long") return void shortAt.set(m.partition, Date.now());
              longPartition = m.partition;
              longStarted();
              for (let step = Number(c.progress ?? 0); step < STEPS; step++) {
                await delay(100);
                steps.push(step);
                await c.checkpoint(String(step + 1));
                if (step + 1 < STEPS && c.shouldYield()) {
                  yields++;
                  return "yielded";
                }
              }
              longDoneAt = Date.now();
            },
          });
          await bus.publish(topic, [{ key: "long", value: new Uint8Array([1]) }]);
          await started;
          await bus.publish(topic, Array.from({ length: 8 }, (_, i) => ({ key: `short-${i}`, value: new Uint8Array([2]) })));
          const deadline = Date.now() + 60_000;
          while (!longDoneAt || shortAt.size < 2) {
            if (Date.now() > deadline) assert.fail(`long done: ${longDoneAt}, short partitions: ${[...shortAt.keys()]}`);
            await delay(20);
          }
          const other = shortAt.get(1 - longPartition);
          assert.ok(other !== undefined, "a short message landed on the other partition");
          assert.deepEqual(steps, Array.from({ length: STEPS }, (_, i) => i), "every step exactly once, in order");
          if (budget) {
            assert.ok(yields > 0, "the long message yielded");
            assert.ok(other < longDoneAt, `the other partition's message was handled ${longDoneAt - other} ms before the long one ended`);
          } else {
            assert.equal(yields, 0);
            assert.ok(other >= longDoneAt, "without a budget the other partition waited for the long message");
          }
        } finally {
          await bus.deleteTopics([topic]).catch(() => {});
          await bus.close();
        }
      });
    }

    it("a deleted topic stays deleted: neither a running consumer nor a late publish recreates it on a broker that auto-creates", { timeout: 120_000 }, async () => {
      // test/infra's broker keeps Kafka's default auto.create.topics.enable=true, as most clusters do.
      const suffix = `${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
      const topic = `herald-test.bus.deleted.${suffix}`;
      const bus = await makeBus();
      const admin = new kafkajs.Kafka({ brokers, logLevel: kafkajs.logLevel.NOTHING }).admin();
      await admin.connect();
      try {
        await bus.ensureTopics([{ name: topic, partitions: 2 }]);
        let seen = 0;
        const sub = await bus.subscribe({ group: `herald-test.bus.deleted-g.${suffix}`, topics: [topic], handler: async () => void seen++ });
        await bus.publish(topic, [{ key: "k", value: new TextEncoder().encode("before") }]);
        const deadline = Date.now() + 30_000;
        while (seen < 1) {
          if (Date.now() > deadline) assert.fail("the message published before the deletion was not consumed");
          await delay(10);
        }
        await bus.deleteTopics([topic]);
        await assert.rejects(bus.publish(topic, [{ key: "k", value: new TextEncoder().encode("late") }]), "a publish to a deleted topic fails instead of recreating it");
        // The consumer keeps fetching (every 500 ms) and refreshing metadata meanwhile; with
        // auto-creation allowed it would have brought the topic back by now.
        const watchUntil = Date.now() + 3_000;
        while (Date.now() < watchUntil) {
          assert.ok(!(await admin.listTopics()).includes(topic), "the deleted topic came back");
          await delay(250);
        }
        await sub.stop();
      } finally {
        await admin.deleteTopics({ topics: [topic] }).catch(() => {});
        await admin.disconnect();
        await bus.close();
      }
    });

    it("several processes ensuring overlapping topics at once all succeed, and the largest count wins", { timeout: 120_000 }, async () => {
      // What every service does as it starts: the same topics, at the same moment, from separate clients.
      const suffix = `${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
      const names = ["a", "b", "c", "d"].map((n) => `herald-test.bus.race.${n}.${suffix}`);
      const buses = await Promise.all([1, 2, 3, 4].map(() => makeBus()));
      try {
        await Promise.all(buses.map((bus, i) => bus.ensureTopics(names.slice(i % 2).map((name) => ({ name, partitions: 2 + i })))));
        const admin = new kafkajs.Kafka({ brokers, logLevel: kafkajs.logLevel.NOTHING }).admin();
        await admin.connect();
        const { topics } = await admin.fetchTopicMetadata({ topics: names }).finally(() => admin.disconnect());
        const counts = Object.fromEntries(topics.map((t) => [t.name, t.partitions.length]));
        assert.deepEqual(counts, { [names[0]!]: 4, [names[1]!]: 5, [names[2]!]: 5, [names[3]!]: 5 });
      } finally {
        await buses[0]!.deleteTopics(names).catch(() => {});
        await Promise.all(buses.map((b) => b.close()));
      }
    });

    it("a topic it read the lag of, deleted by another client, does not keep it from creating topics afterwards", { timeout: 120_000 }, async () => {
      // The operator reads every app's lag and another replica (or a person) may delete an
      // app's topics: kafkajs's admin would refresh the gone topic's metadata on every call.
      const suffix = `${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
      const [gone, next] = ["gone", "next"].map((n) => `herald-test.bus.deleted.${n}.${suffix}`) as [string, string];
      const [reader, other] = await Promise.all([makeBus(), makeBus()]);
      try {
        await reader.ensureTopics([{ name: gone, partitions: 1 }]);
        assert.equal((await reader.lag("nobody", [gone])).length, 1);
        await other.deleteTopics([gone]);
        await reader.ensureTopics([{ name: next, partitions: 2 }]);
        assert.deepEqual((await reader.lag("nobody", [gone, next])).map((p) => [p.topic, p.partition]), [[next, 0], [next, 1]]);
      } finally {
        await reader.deleteTopics([gone, next]).catch(() => {});
        await Promise.all([reader.close(), other.close()]);
      }
    });

    it("a pattern subscription takes on topics created in a row together, one rebalance per resubscribeMinIntervalMs at most, and a deleted one at once", { timeout: 120_000 }, async () => {
      // A pool sender's view of many apps created one after the other.
      const suffix = `${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
      const base = `herald-test.bus.burst.${suffix}`;
      const [a, b, c, d] = ["a", "b", "c", "d"].map((n) => `${base}.${n}`) as [string, string, string, string];
      const resubscribed: number[] = [];
      const bus = new KafkaBus({
        brokers,
        clientId: "herald-bus-test",
        logger: { ...logger, info: (_obj, msg) => void (msg?.includes("re-subscribing") && resubscribed.push(Date.now())) },
        consumer: { heartbeatIntervalMs: 500, sessionTimeoutMs: 10_000, topicRefreshMs: 200, resubscribeMinIntervalMs: 5000 },
      });
      const seen = new Set<string>();
      const until = async (what: string, done: () => boolean) => {
        const deadline = Date.now() + 60_000;
        while (!done()) {
          if (Date.now() > deadline) assert.fail(`${what}: seen ${[...seen].join(", ")}, re-subscribed ${resubscribed.length} times`);
          await delay(20);
        }
      };
      try {
        await bus.ensureTopics([{ name: a, partitions: 1 }]);
        const sub = await bus.subscribe({ group: `herald-test.bus.burst-g.${suffix}`, topics: [new RegExp(`^${base.replace(/\./g, "\\.")}\\.`)], handler: async (m) => void seen.add(m.topic) });
        // The first new topic after a quiet spell: taken on at the next refresh.
        await bus.ensureTopics([{ name: b, partitions: 1 }]);
        await bus.publish(b, [{ key: "k", value: new Uint8Array([1]) }]);
        await until("the first new topic read", () => seen.has(b));
        assert.equal(resubscribed.length, 1);
        // Two more, several refreshes apart: both wait for the interval's end and come together.
        await bus.ensureTopics([{ name: c, partitions: 1 }]);
        await bus.publish(c, [{ key: "k", value: new Uint8Array([2]) }]);
        await delay(1000);
        await bus.ensureTopics([{ name: d, partitions: 1 }]);
        await bus.publish(d, [{ key: "k", value: new Uint8Array([3]) }]);
        await until("both later topics read", () => seen.has(c) && seen.has(d));
        assert.equal(resubscribed.length, 2, "one rebalance for both");
        assert.ok(resubscribed[1]! - resubscribed[0]! >= 5000, `re-subscribed ${resubscribed[1]! - resubscribed[0]!} ms after the previous time`);
        // A deleted topic is taken off at once, interval or not.
        await bus.deleteTopics([a]);
        await until("the deleted topic taken off", () => resubscribed.length === 3);
        assert.ok(resubscribed[2]! - resubscribed[1]! < 5000, "a deletion does not wait for the interval");
        await sub.stop();
      } finally {
        await bus.deleteTopics([a, b, c, d]).catch(() => {});
        await bus.close();
      }
    });

    it("a topic it published to, deleted by another client, does not keep it from publishing to the others", { timeout: 120_000 }, async () => {
      // A dispatcher publishes to every app's topics, and the operator deletes a deleted app's:
      // kafkajs's producer refreshes the metadata of every topic it ever sent to whenever it
      // meets a new one, and a gone topic fails that refresh.
      const suffix = `${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
      const [gone, kept, fresh] = ["gone", "kept", "fresh"].map((n) => `herald-test.bus.deleted-pub.${n}.${suffix}`) as [string, string, string];
      const [writer, other] = await Promise.all([makeBus(), makeBus()]);
      const message = (text: string) => [{ key: "k", value: new TextEncoder().encode(text) }];
      const end = async (topic: string) => (await writer.lag("nobody", [topic]))[0]?.end;
      try {
        await writer.ensureTopics([{ name: gone, partitions: 1 }, { name: kept, partitions: 1 }]);
        await writer.publish(gone, message("one"));
        await writer.publish(kept, message("one"));
        await other.deleteTopics([gone]);
        await other.ensureTopics([{ name: fresh, partitions: 1 }]);
        await writer.publish(fresh, message("one"));
        await writer.publish(kept, message("two"));
        assert.deepEqual([await end(fresh), await end(kept)], [1, 2]);
        // The gone topic itself stays an error, and does not come back.
        await assert.rejects(writer.publish(gone, message("late")));
        await writer.publish(kept, message("three"));
        assert.equal(await end(kept), 3);
      } finally {
        await writer.deleteTopics([gone, kept, fresh]).catch(() => {});
        await Promise.all([writer.close(), other.close()]);
      }
    });
  });
}
