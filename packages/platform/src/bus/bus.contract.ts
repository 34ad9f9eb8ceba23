import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { SpanKind, context, propagation, trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { InMemorySpanExporter, NodeTracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-node";
import type { Bus, BusMessage, SubscribeOptions, Subscription } from "./bus.types.js";

// The behaviour every Bus implementation must have (DESIGN §4 at-least-once, §7 "memory and real
// adapters pass the same contract tests"). Each case uses its own topics and groups, named from
// the prefix plus a random run id, so reruns against a long-lived broker never see old data.

export interface BusContractOptions {
  // Prepended to every topic and group name, e.g. "herald-test.bus.".
  topicPrefix?: string;
  // Length of the "nothing (more) arrives" windows. Default 500 ms; an in-process bus delivers
  // at once and can use less.
  quietMs?: number;
  // The name a topic or group has on the wire (spans name the real Kafka topic); a namespaced
  // bus prefixes them.
  wireName?: (name: string) => string;
}

const WAIT_MS = 30_000;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function busContract(name: string, makeBus: () => Promise<Bus>, opts: BusContractOptions = {}): void {
  const prefix = opts.topicPrefix ?? "";
  const quietMs = opts.quietMs ?? 500;
  const wire = opts.wireName ?? ((n: string) => n);
  // The negative check: the condition must keep holding for a short bounded window.
  const quiet = async (check: () => boolean, what: string): Promise<void> => {
    const end = Date.now() + quietMs;
    while (Date.now() < end) {
      assert.ok(check(), what);
      await delay(10);
    }
    assert.ok(check(), what);
  };
  const runId = `${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
  let counter = 0;
  const unique = (label: string) => `${prefix}${label}.${runId}.${++counter}`;

  const scenario = (title: string, body: (f: Fixture) => Promise<void>) =>
    it(title, { timeout: 4 * WAIT_MS }, async () => {
      const fixture = new Fixture(await makeBus(), unique);
      try {
        await body(fixture);
      } finally {
        await fixture.dispose();
      }
    });

  describe(`${name} bus contract`, () => {
    scenario("publish → subscribe keeps topic, key, value bytes and custom headers", async (f) => {
      const topic = await f.topic("roundtrip", 4);
      const inbox = await f.consume({ topics: [topic] });
      const binary = Uint8Array.from({ length: 256 }, (_, i) => i);
      const before = Date.now();
      await f.bus.publish(topic, [
        { key: "device-1", value: encoder.encode("hello"), headers: { "x-app": "demo", "x-unicode": "héllo ✓" } },
        { key: "device-2", value: binary },
        { key: "device-1", value: encoder.encode("again"), headers: {} },
        { key: "", value: new Uint8Array(0) },
      ]);
      await eventually(() => inbox.messages.length >= 4, "4 messages");

      const hello = inbox.one("hello");
      assert.equal(hello.topic, topic);
      assert.equal(hello.key, "device-1");
      assert.equal(hello.headers["x-app"], "demo");
      assert.equal(hello.headers["x-unicode"], "héllo ✓");
      assert.match(hello.offset, /^\d+$/);
      assert.ok(hello.partition >= 0 && hello.partition < 4, `partition ${hello.partition}`);
      assert.ok(hello.timestamp instanceof Date);
      assert.ok(Math.abs(hello.timestamp.getTime() - before) < 60_000, `timestamp ${hello.timestamp.toISOString()}`);

      const bin = inbox.messages.find((m) => m.key === "device-2")!;
      assert.deepEqual(Array.from(bin.value), Array.from(binary));

      const again = inbox.one("again");
      assert.equal(again.partition, hello.partition, "same key, same partition");
      assert.ok(BigInt(again.offset) > BigInt(hello.offset), "later message, later offset");

      const empty = inbox.messages.find((m) => m.key === "")!;
      assert.equal(empty.value.length, 0);
    });

    scenario("per-key order holds: 200 messages over 5 keys, partitions handled concurrently", async (f) => {
      const topic = await f.topic("order", 4);
      const inbox = await f.consume({ topics: [topic], partitionsConcurrently: 4 });
      const keys = ["k0", "k1", "k2", "k3", "k4"];
      const all = Array.from({ length: 200 }, (_, i) => ({ key: keys[i % keys.length]!, value: encoder.encode(`${keys[i % keys.length]}:${i}`) }));
      for (let i = 0; i < all.length; i += 50) await f.bus.publish(topic, all.slice(i, i + 50));
      await eventually(() => inbox.messages.length >= 200, "200 messages");

      for (const key of keys) {
        const mine = inbox.messages.filter((m) => m.key === key);
        assert.equal(mine.length, 40, `key ${key}`);
        const seq = mine.map((m) => Number(text(m).split(":")[1]));
        assert.deepEqual(seq, [...seq].sort((a, b) => a - b), `order of key ${key}`);
        assert.equal(new Set(mine.map((m) => m.partition)).size, 1, `key ${key} on one partition`);
      }
      const byPartition = new Map<number, bigint[]>();
      for (const m of inbox.messages) byPartition.set(m.partition, [...(byPartition.get(m.partition) ?? []), BigInt(m.offset)]);
      for (const [partition, offsets] of byPartition) {
        assert.ok(offsets.every((o, i) => i === 0 || o > offsets[i - 1]!), `offsets of partition ${partition} in order`);
      }
      await quiet(() => inbox.messages.length === 200, "no duplicate delivery");
    });

    scenario("two consumers of one group split the partitions, see every message once, and one takes over when the other leaves", async (f) => {
      const topic = await f.topic("split", 4);
      const group = f.unique("g");
      const a = await f.consume({ group, topics: [topic] });
      const b = await f.consume({ group, topics: [topic] });
      const sent: string[] = [];
      const publishWave = async () => {
        const wave = Array.from({ length: 16 }, (_, i) => ({ key: `k${i}`, value: encoder.encode(`m${sent.length + i}`) }));
        sent.push(...wave.map((m) => decoder.decode(m.value)));
        await f.bus.publish(topic, wave);
      };
      // A second member's join takes a rebalance on Kafka, so keep publishing until both work.
      await eventually(async () => {
        await publishWave();
        return a.messages.length > 0 && b.messages.length > 0;
      }, "both consumers receiving", { pollMs: 100 });
      await eventually(() => a.messages.length + b.messages.length >= sent.length, `${sent.length} messages`);
      await quiet(() => a.messages.length + b.messages.length === sent.length, "no duplicates");
      const seen = [...a.texts(), ...b.texts()];
      assert.equal(new Set(seen).size, seen.length, "nobody saw a message twice");
      assert.deepEqual(new Set(seen), new Set(sent));
      const partitionsOf = (inbox: Inbox) => new Set(inbox.messages.map((m) => m.partition));
      assert.ok(partitionsOf(a).size + partitionsOf(b).size >= 4, "all partitions consumed");

      await b.subscription.stop();
      const bCount = b.messages.length;
      const aCount = a.messages.length;
      await publishWave();
      await eventually(() => a.messages.length === aCount + 16, "the remaining consumer takes over every partition");
      assert.equal(b.messages.length, bCount, "a stopped consumer receives nothing");
      assert.equal(new Set(a.messages.slice(aCount).map((m) => m.partition)).size, 4);
    });

    scenario("different groups each see everything, including what was retained before they joined", async (f) => {
      const topic = await f.topic("groups", 4);
      const first = Array.from({ length: 30 }, (_, i) => ({ key: `k${i % 7}`, value: encoder.encode(`early-${i}`) }));
      await f.bus.publish(topic, first);
      const g1 = await f.consume({ topics: [topic] });
      const g2 = await f.consume({ topics: [topic], partitionsConcurrently: 2 });
      await f.bus.publish(topic, Array.from({ length: 10 }, (_, i) => ({ key: `k${i}`, value: encoder.encode(`late-${i}`) })));
      await eventually(() => g1.messages.length >= 40 && g2.messages.length >= 40, "40 messages in each group");
      await quiet(() => g1.messages.length === 40 && g2.messages.length === 40, "no duplicates");
      assert.deepEqual(new Set(g1.texts()), new Set(g2.texts()));
      assert.equal(new Set(g1.texts()).size, 40);
    });

    scenario("fromBeginning: false starts a new group at the end of the topic", async (f) => {
      const topic = await f.topic("latest", 2);
      await f.bus.publish(topic, [1, 2, 3].map((i) => ({ key: `k${i}`, value: encoder.encode(`old-${i}`) })));
      const inbox = await f.consume({ topics: [topic], fromBeginning: false });
      await f.bus.publish(topic, [1, 2, 3].map((i) => ({ key: `k${i}`, value: encoder.encode(`new-${i}`) })));
      await eventually(() => inbox.messages.length >= 3, "3 new messages");
      await quiet(() => inbox.messages.length === 3, "nothing old");
      assert.deepEqual(new Set(inbox.texts()), new Set(["new-1", "new-2", "new-3"]));
    });

    scenario("a failing handler gets the same message again; later messages of its partition wait; nothing is lost and the retried offset is committed", async (f) => {
      const topic = await f.topic("retry", 4);
      const group = f.unique("g");
      const calls: string[] = [];
      const done: string[] = [];
      let failures = 0;
      const sub = await f.subscribe({
        group,
        topics: [topic],
        retry: { initialMs: 20, maxMs: 40 },
        handler: async (m) => {
          calls.push(text(m));
          if (text(m) === "m2" && failures < 2) {
            failures++;
            throw new Error(`induced failure ${failures}`);
          }
          done.push(text(m));
        },
      });
      await f.bus.publish(topic, ["m0", "m1", "m2", "m3", "m4", "m5"].map((v) => ({ key: "one-key", value: encoder.encode(v) })));
      await eventually(() => done.includes("m5"), "m5 handled");
      assert.deepEqual(calls, ["m0", "m1", "m2", "m2", "m2", "m3", "m4", "m5"]);
      assert.deepEqual(done, ["m0", "m1", "m2", "m3", "m4", "m5"]);

      // A new member of the group starts after m5: every success, the retried one included, was committed.
      await sub.stop();
      const next = await f.consume({ group, topics: [topic] });
      await f.bus.publish(topic, [{ key: "one-key", value: encoder.encode("sentinel") }]);
      await eventually(() => next.messages.length >= 1, "sentinel");
      await quiet(() => next.messages.length === 1, "no redelivery");
      assert.deepEqual(next.texts(), ["sentinel"]);
    });

    scenario("a partition stuck on a failing message does not hold back the other partitions", async (f) => {
      const topic = await f.topic("stuck", 4);
      let release = false;
      let poisonAttempts = 0;
      const inbox = new Inbox();
      await f.subscribe({
        group: f.unique("g"),
        topics: [topic],
        retry: { initialMs: 300, maxMs: 300 },
        handler: async (m) => {
          if (text(m) === "poison" && !release) {
            poisonAttempts++;
            throw new Error("poison");
          }
          await inbox.handler(m);
        },
      });
      // Learn which keys share a partition before choosing the poisoned one.
      const keys = Array.from({ length: 16 }, (_, i) => `k${i}`);
      await f.bus.publish(topic, keys.map((key) => ({ key, value: encoder.encode(`probe-${key}`) })));
      await eventually(() => inbox.messages.length >= keys.length, "probes");
      const partitionOf = new Map(inbox.messages.map((m) => [m.key, m.partition]));
      const poisonKey = "k0";
      const others = keys.filter((k) => partitionOf.get(k) !== partitionOf.get(poisonKey));
      assert.ok(others.length > 0, "16 keys over 4 partitions use more than one partition");

      await f.bus.publish(topic, [
        { key: poisonKey, value: encoder.encode("poison") },
        { key: poisonKey, value: encoder.encode("behind-poison") },
      ]);
      // Only once the poisoned partition is known to be stuck (failed and retried) do the other
      // partitions get new messages: they must flow while it stays stuck. (Publishing them
      // together let the others finish before the poison was first tried, proving nothing.)
      await eventually(() => poisonAttempts >= 2, "the poison retried");
      await f.bus.publish(topic, others.map((key) => ({ key, value: encoder.encode(`after-${key}`) })));
      await eventually(() => others.every((k) => inbox.texts().includes(`after-${k}`)), "other partitions delivered");
      assert.ok(!inbox.texts().includes("behind-poison"), "the message behind the failing one waits");

      release = true;
      await eventually(() => inbox.texts().includes("behind-poison"), "the stuck partition recovers");
      const texts = inbox.texts();
      assert.ok(texts.indexOf("poison") < texts.indexOf("behind-poison"));
    });

    scenario("a deferred message comes back once after its time, unhandled till then, while the other partitions flow", async (f) => {
      const topic = await f.topic("defer", 4);
      const inbox = new Inbox();
      const deferredAt: number[] = [];
      let laterAt = 0;
      const DEFER_MS = 1500;
      await f.subscribe({
        group: f.unique("g"),
        topics: [topic],
        handler: async (m) => {
          if (text(m) === "later" && deferredAt.length === 0) {
            deferredAt.push(Date.now());
            return { deferMs: DEFER_MS };
          }
          if (text(m) === "later") laterAt = Date.now();
          await inbox.handler(m);
        },
      });
      const keys = Array.from({ length: 16 }, (_, i) => `k${i}`);
      await f.bus.publish(topic, keys.map((key) => ({ key, value: encoder.encode(`probe-${key}`) })));
      await eventually(() => inbox.messages.length >= keys.length, "probes");
      const partitionOf = new Map(inbox.messages.map((m) => [m.key, m.partition]));
      const others = keys.filter((k) => partitionOf.get(k) !== partitionOf.get("k0"));
      await f.bus.publish(topic, [
        { key: "k0", value: encoder.encode("later") },
        { key: "k0", value: encoder.encode("behind-later") },
      ]);
      await eventually(() => deferredAt.length === 1, "the message deferred");
      await f.bus.publish(topic, others.map((key) => ({ key, value: encoder.encode(`after-${key}`) })));
      await eventually(() => others.every((k) => inbox.texts().includes(`after-${k}`)), "other partitions delivered");
      assert.ok(!inbox.texts().includes("later") && !inbox.texts().includes("behind-later"), "the deferred message and what is behind it wait");
      await eventually(() => inbox.texts().includes("behind-later"), "the deferred partition goes on");
      assert.ok(laterAt - deferredAt[0]! >= DEFER_MS - 50, `handled ${laterAt - deferredAt[0]!} ms after it was deferred for ${DEFER_MS}`);
      const texts = inbox.texts();
      assert.equal(texts.filter((t) => t === "later").length, 1);
      assert.ok(texts.indexOf("later") < texts.indexOf("behind-later"));
    });

    scenario("stop waits for the in-flight handler; a message it did not finish goes to the next consumer of the group", async (f) => {
      const topic = await f.topic("restart", 4);
      const group = f.unique("g");
      const gate = deferred<void>();
      let entered = false;
      const handled: string[] = [];
      const sub = await f.subscribe({
        group,
        topics: [topic],
        handler: async (m) => {
          if (text(m) === "m2") {
            entered = true;
            // The process is told to stop while this message is being worked on, and the work fails.
            await gate.promise;
          }
          handled.push(text(m));
        },
      });
      await f.bus.publish(topic, ["m0", "m1", "m2", "m3", "m4"].map((v) => ({ key: "one-key", value: encoder.encode(v) })));
      await eventually(() => entered, "m2 in flight");

      let stopped = false;
      const stopping = sub.stop().then(() => (stopped = true));
      await quiet(() => !stopped, "stop waits for the in-flight handler");
      gate.reject(new Error("lost mid-message"));
      await stopping;
      assert.deepEqual(handled, ["m0", "m1"]);

      const next = await f.consume({ group, topics: [topic] });
      await eventually(() => next.messages.length >= 3, "redelivery");
      await quiet(() => next.messages.length === 3, "no more");
      assert.deepEqual(next.texts(), ["m2", "m3", "m4"], "m0 and m1 were committed, m2 was not");
    });

    scenario("stop lets an in-flight handler finish and commits it", async (f) => {
      const topic = await f.topic("drain", 4);
      const group = f.unique("g");
      const gate = deferred<void>();
      let entered = false;
      const handled: string[] = [];
      const sub = await f.subscribe({
        group,
        topics: [topic],
        handler: async (m) => {
          if (text(m) === "m1") {
            entered = true;
            await gate.promise;
          }
          handled.push(text(m));
        },
      });
      await f.bus.publish(topic, ["m0", "m1", "m2", "m3"].map((v) => ({ key: "one-key", value: encoder.encode(v) })));
      await eventually(() => entered, "m1 in flight");
      const stopping = sub.stop();
      gate.resolve();
      await stopping;
      assert.deepEqual(handled, ["m0", "m1"], "nothing new starts once stop() was called");

      const next = await f.consume({ group, topics: [topic] });
      await eventually(() => next.messages.length >= 2, "the rest");
      await quiet(() => next.messages.length === 2, "no more");
      assert.deepEqual(next.texts(), ["m2", "m3"]);
    });

    scenario("pause stops delivery (also from inside a handler) and resume continues in order", async (f) => {
      const topic = await f.topic("pause", 4);
      const inbox = new Inbox();
      let sub: Subscription | undefined;
      sub = await f.subscribe({
        group: f.unique("g"),
        topics: [topic],
        handler: async (m) => {
          await inbox.handler(m);
          // Backpressure: a handler pauses its own subscription.
          if (text(m) === "p1") sub!.pause();
        },
      });
      await f.bus.publish(topic, ["p0", "p1", "p2", "p3"].map((v) => ({ key: "one-key", value: encoder.encode(v) })));
      await eventually(() => inbox.messages.length >= 2, "p0, p1");
      await quiet(() => inbox.messages.length === 2, "paused: nothing after p1");

      await f.bus.publish(topic, [{ key: "other-key", value: encoder.encode("p4") }]);
      await quiet(() => inbox.messages.length === 2, "paused: nothing from other partitions either");

      sub.resume();
      await eventually(() => inbox.messages.length >= 5, "resumed");
      assert.deepEqual(
        inbox.texts().filter((t) => t !== "p4"),
        ["p0", "p1", "p2", "p3"],
      );

      sub.pause();
      sub.pause();
      await f.bus.publish(topic, [{ key: "one-key", value: encoder.encode("p5") }]);
      await quiet(() => inbox.messages.length === 5, "paused again");
      sub.resume();
      sub.resume();
      await eventually(() => inbox.texts().includes("p5"), "p5 after resume");
      await quiet(() => inbox.messages.length === 6, "exactly once");
    });

    scenario("ensureTopics is idempotent, never shrinks, and raises the partition count", async (f) => {
      const topic = f.unique("topics");
      f.created.push(topic);
      await f.bus.ensureTopics([{ name: topic, partitions: 2 }]);
      await f.bus.ensureTopics([{ name: topic, partitions: 2 }]);
      await f.bus.ensureTopics([{ name: topic, partitions: 1 }]);
      const other = f.unique("topics-other");
      f.created.push(other);
      await f.bus.ensureTopics([
        { name: topic, partitions: 4 },
        { name: other, partitions: 1 },
      ]);
      const inbox = await f.consume({ topics: [topic] });
      await f.bus.publish(topic, Array.from({ length: 64 }, (_, i) => ({ key: `key-${i}`, value: encoder.encode(`v${i}`) })));
      await eventually(() => inbox.messages.length >= 64, "64 messages");
      assert.deepEqual(new Set(inbox.messages.map((m) => m.partition)), new Set([0, 1, 2, 3]));

      await f.bus.deleteTopics([other, f.unique("never-created")]);
    });

    scenario("lag counts what a group has not consumed, per partition, and drops to zero once it has", async (f) => {
      const topic = await f.topic("lag", 3);
      const group = f.unique("lag-group");
      await f.bus.publish(topic, Array.from({ length: 30 }, (_, i) => ({ key: `key-${i}`, value: encoder.encode(`v${i}`) })));
      const before = await f.bus.lag(group, [topic, f.unique("missing")]);
      assert.deepEqual(before.map((l) => l.partition).sort(), [0, 1, 2]);
      assert.ok(before.every((l) => l.topic === topic && l.committed === null && l.lag === l.end), JSON.stringify(before));
      assert.equal(before.reduce((n, l) => n + l.lag, 0), 30);

      const inbox = await f.consume({ topics: [topic], group });
      await eventually(() => inbox.messages.length >= 30, "30 messages");
      await eventually(async () => (await f.bus.lag(group, [topic])).every((l) => l.lag === 0 && l.committed === l.end), "lag 0 once committed");
      await inbox.subscription.stop();
      await f.bus.publish(topic, [{ key: "late", value: encoder.encode("late") }]);
      const after = await f.bus.lag(group, [topic]);
      assert.equal(after.reduce((n, l) => n + l.lag, 0), 1);
    });

    scenario("a pattern subscription picks up topics created later", async (f) => {
      const base = f.unique("pattern");
      const first = `${base}.a`;
      const later = `${base}.b`;
      const unrelated = `${base}-x`;
      f.created.push(first, later, unrelated);
      await f.bus.ensureTopics([{ name: first, partitions: 2 }]);
      const inbox = await f.consume({ topics: [new RegExp(`^${escapeRegExp(base)}\\.`)] });
      await f.bus.publish(first, [{ key: "k", value: encoder.encode("in-first") }]);
      await eventually(() => inbox.texts().includes("in-first"), "message on the existing topic");

      await f.bus.ensureTopics([
        { name: later, partitions: 2 },
        { name: unrelated, partitions: 1 },
      ]);
      await f.bus.publish(later, [{ key: "k", value: encoder.encode("in-later") }]);
      await f.bus.publish(unrelated, [{ key: "k", value: encoder.encode("unrelated") }]);
      await eventually(() => inbox.texts().includes("in-later"), "message on the topic created later");
      assert.ok(!inbox.texts().includes("unrelated"));
      assert.equal(inbox.messages.find((m) => text(m) === "in-later")!.topic, later);
    });

    scenario("trace context flows from the publisher's span to the handler", async (f) => {
      const exporter = new InMemorySpanExporter();
      const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
      provider.register({ propagator: new W3CTraceContextPropagator() });
      try {
        const topic = await f.topic("trace", 2);
        const group = f.unique("g");
        const seen: Array<{ traceId: string; spanId: string } | undefined> = [];
        await f.subscribe({
          group,
          topics: [topic],
          handler: async () => {
            seen.push(trace.getActiveSpan()?.spanContext());
          },
        });
        const tracer = trace.getTracer("bus-contract");
        const publisher = await tracer.startActiveSpan("publisher", async (span) => {
          await f.bus.publish(topic, [{ key: "k", value: encoder.encode("traced"), headers: { "x-own": "kept" } }]);
          span.end();
          return span.spanContext();
        });
        // Published outside any span: the handler gets a fresh trace, not the previous one.
        await f.bus.publish(topic, [{ key: "k", value: encoder.encode("untraced") }]);
        await eventually(() => seen.length >= 2, "both messages handled");
        assert.equal(seen[0]?.traceId, publisher.traceId);
        assert.notEqual(seen[0]?.spanId, publisher.spanId);
        assert.ok(seen[1]?.traceId);
        assert.notEqual(seen[1]?.traceId, publisher.traceId);

        const processSpan = () => exporter.getFinishedSpans().find((s) => s.name === `${wire(topic)} process` && s.spanContext().traceId === publisher.traceId);
        await eventually(() => processSpan() !== undefined, "process span exported");
        const span = processSpan()!;
        assert.equal(span.kind, SpanKind.CONSUMER);
        assert.equal(span.spanContext().spanId, seen[0]?.spanId, "the handler runs inside the process span");
        assert.equal(span.attributes["messaging.destination.name"], wire(topic));
        assert.equal(span.attributes["messaging.consumer.group.name"], wire(group));
        assert.equal(typeof span.attributes["messaging.kafka.partition"], "number");
        assert.equal(typeof span.attributes["messaging.kafka.offset"], "number");
        assert.ok(span.attributes["messaging.system"]);
      } finally {
        await provider.shutdown();
        trace.disable();
        propagation.disable();
        context.disable();
      }
    });
  });
}

class Inbox {
  readonly messages: BusMessage[] = [];
  readonly handler = async (m: BusMessage): Promise<void> => {
    this.messages.push(m);
  };

  texts(): string[] {
    return this.messages.map(text);
  }

  one(value: string): BusMessage {
    const found = this.messages.filter((m) => text(m) === value);
    assert.equal(found.length, 1, `exactly one "${value}"`);
    return found[0]!;
  }
}

type ConsumeOptions = Omit<SubscribeOptions, "handler" | "group"> & { group?: string };

class Fixture {
  readonly created: string[] = [];
  private readonly subscriptions: Subscription[] = [];

  constructor(
    readonly bus: Bus,
    readonly unique: (label: string) => string,
  ) {}

  async topic(label: string, partitions: number): Promise<string> {
    const name = this.unique(label);
    this.created.push(name);
    await this.bus.ensureTopics([{ name, partitions }]);
    return name;
  }

  async subscribe(options: SubscribeOptions): Promise<Subscription> {
    const subscription = await this.bus.subscribe(options);
    this.subscriptions.push(subscription);
    return subscription;
  }

  async consume(options: ConsumeOptions): Promise<Inbox & { subscription: Subscription }> {
    const inbox = new Inbox();
    const subscription = await this.subscribe({ ...options, group: options.group ?? this.unique("g"), handler: inbox.handler });
    return Object.assign(inbox, { subscription });
  }

  async dispose(): Promise<void> {
    await Promise.allSettled(this.subscriptions.map((s) => s.stop()));
    await this.bus.deleteTopics(this.created).catch(() => {});
    await this.bus.close();
  }
}

function text(m: BusMessage): string {
  return decoder.decode(m.value);
}

// Polls until the check holds; the poll interval is not a synchronisation assumption.
async function eventually(check: () => boolean | Promise<boolean>, what: string, options: { timeoutMs?: number; pollMs?: number } = {}): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? WAIT_MS);
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(options.pollMs ?? 10);
  }
}

function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
