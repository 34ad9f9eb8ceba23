import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { busContract } from "./bus.contract.js";
import type { BusLogger } from "./bus.logger.js";
import { MemoryBus } from "./bus.memory.js";
import type { BusMessage } from "./bus.types.js";

// Retries are expected in the contract; keep their warnings out of the test output unless asked.
const logger: BusLogger = process.env.HERALD_TEST_LOG
  ? { error: console.error, warn: console.warn, info: console.info, debug: console.debug }
  : { error: console.error, warn: () => {}, info: () => {}, debug: () => {} };

busContract("MemoryBus", async () => new MemoryBus({ logger }), { quietMs: 200 });

const encoder = new TextEncoder();
const text = (m: BusMessage) => new TextDecoder().decode(m.value);

async function eventually(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(5);
  }
}

const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;

describe("MemoryBus specifics", () => {
  it("lets the event loop turn while a partition works through a backlog of handlers that never wait", async () => {
    const bus = new MemoryBus({ logger, defaultPartitions: 1 });
    const total = 20_000;
    let handled = 0;
    let handledWhenTimerFired = -1;
    await bus.publish("backlog", Array.from({ length: total }, (_, i) => ({ key: "k", value: encoder.encode(String(i)) })));
    await bus.subscribe({
      group: "g",
      topics: ["backlog"],
      fromBeginning: true,
      handler: async () => {
        // A little synchronous work and no I/O, like a fan-out over the memory store.
        let x = 0;
        for (let i = 0; i < 2_000; i++) x += i;
        handled += x > 0 ? 1 : 0;
      },
    });
    setTimeout(() => (handledWhenTimerFired = handled), 0);
    await eventually(() => handled === total, "every message handled", 60_000);
    await bus.close();
    assert.ok(handledWhenTimerFired >= 0 && handledWhenTimerFired < total, `a timer due at once fired only after ${handledWhenTimerFired} of ${total} messages`);
  });

  it("leaves no timer behind after close(), even with a retry backoff pending", async () => {
    const baseline = timers();
    const bus = new MemoryBus({ logger });
    let attempts = 0;
    await bus.subscribe({
      group: "g",
      topics: ["t"],
      retry: { initialMs: 60_000, maxMs: 60_000 },
      handler: async () => {
        attempts++;
        throw new Error("always");
      },
    });
    const paused = await bus.subscribe({ group: "g2", topics: ["t"], handler: async () => {} });
    paused.pause();
    await bus.publish("t", [{ key: "k", value: encoder.encode("x") }]);
    await eventually(() => attempts === 1 && timers() > baseline, "a pending backoff timer");
    await bus.close();
    assert.equal(timers(), baseline);
    await assert.rejects(bus.publish("t", [{ key: "k", value: encoder.encode("x") }]), /closed/);
  });

  it("creates topics on first publish with the default partition count, visible to pattern subscribers", async () => {
    const bus = new MemoryBus({ logger, defaultPartitions: 3 });
    try {
      const seen: BusMessage[] = [];
      await bus.subscribe({ group: "g", topics: [/^auto\./], fromBeginning: false, handler: async (m) => void seen.push(m) });
      await bus.publish(
        "auto.one",
        Array.from({ length: 30 }, (_, i) => ({ key: `k${i}`, value: encoder.encode(`v${i}`) })),
      );
      await eventually(() => seen.length === 30, "30 messages");
      assert.deepEqual(new Set(seen.map((m) => m.partition)), new Set([0, 1, 2]));
    } finally {
      await bus.close();
    }
  });

  it("rebalances as consumers come and go without losing or duplicating a message", async () => {
    const bus = new MemoryBus({ logger });
    try {
      await bus.ensureTopics([{ name: "churn", partitions: 8 }]);
      const seen = new Map<string, number>();
      const handler = async (m: BusMessage) => {
        // Yield so rebalances land while handlers are in flight.
        await delay(0);
        seen.set(text(m), (seen.get(text(m)) ?? 0) + 1);
      };
      const subs = [await bus.subscribe({ group: "g", topics: ["churn"], handler })];
      let sent = 0;
      for (let round = 0; round < 6; round++) {
        await bus.publish("churn", Array.from({ length: 50 }, () => ({ key: `k${sent % 13}`, value: encoder.encode(`m${sent++}`) })));
        if (round % 2 === 0) subs.push(await bus.subscribe({ group: "g", topics: ["churn"], handler, partitionsConcurrently: 2 }));
        else await subs.shift()!.stop();
      }
      await eventually(() => seen.size === sent, `${sent} messages`);
      assert.ok([...seen.values()].every((n) => n === 1), "each message handled once");
    } finally {
      await bus.close();
    }
  });

  it("partitionsConcurrently bounds the handlers running at once", async () => {
    const bus = new MemoryBus({ logger });
    try {
      await bus.ensureTopics([{ name: "conc", partitions: 4 }]);
      let running = 0;
      let peak = 0;
      let done = 0;
      await bus.subscribe({
        group: "g",
        topics: ["conc"],
        partitionsConcurrently: 2,
        handler: async () => {
          peak = Math.max(peak, ++running);
          await delay(1);
          running--;
          done++;
        },
      });
      await bus.publish("conc", Array.from({ length: 40 }, (_, i) => ({ key: `k${i}`, value: encoder.encode(`${i}`) })));
      await eventually(() => done === 40, "40 messages");
      assert.equal(peak, 2);
    } finally {
      await bus.close();
    }
  });

  it("close() ends every partition worker, whatever it was doing when revoked (workers between two messages once slept forever)", async () => {
    // The race needs a worker revoked while busy and about to go idle: about 1 in 100 rounds hung.
    for (let round = 0; round < 200; round++) {
      const bus = new MemoryBus({ logger });
      await bus.ensureTopics([{ name: "close", partitions: 4 }]);
      let done = 0;
      await bus.subscribe({ group: "g", topics: ["close"], partitionsConcurrently: 2, handler: async () => void (await delay(0), done++) });
      await bus.publish("close", Array.from({ length: 8 }, (_, i) => ({ key: `k${i}`, value: encoder.encode(`${i}`) })));
      await eventually(() => done === 8, "8 messages");
      let deadline: NodeJS.Timeout | undefined;
      const closed = await Promise.race([bus.close().then(() => true), new Promise<boolean>((r) => (deadline = setTimeout(() => r(false), 5000)))]);
      clearTimeout(deadline);
      assert.ok(closed, `close() ended in round ${round}`);
    }
  });

  it("drops messages beyond the retention, and a late group starts at the oldest retained", async () => {
    const bus = new MemoryBus({ logger, defaultPartitions: 1, retainPerPartition: 8 });
    try {
      await bus.publish("short", Array.from({ length: 40 }, (_, i) => ({ key: "k", value: encoder.encode(`${i}`) })));
      const seen: string[] = [];
      await bus.subscribe({ group: "late", topics: ["short"], handler: async (m) => void seen.push(text(m)) });
      await eventually(() => seen.includes("39"), "the newest message");
      assert.ok(seen.length >= 8 && seen.length <= 10, `kept ${seen.length}`);
      assert.deepEqual(seen, seen.map(Number).sort((a, b) => a - b).map(String));
    } finally {
      await bus.close();
    }
  });

  it("a handler finishing after its topic was deleted leaves no offset for a new topic of that name", async () => {
    const bus = new MemoryBus({ logger, defaultPartitions: 1 });
    try {
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const seen: string[] = [];
      let entered = false;
      await bus.subscribe({
        group: "g",
        topics: ["doomed"],
        handler: async (m) => {
          if (text(m) === "first") {
            entered = true;
            await gate;
          }
          seen.push(text(m));
        },
      });
      await bus.publish("doomed", [0, 1, 2].map((i) => ({ key: "k", value: encoder.encode(i === 0 ? "first" : `old-${i}`) })));
      await eventually(() => entered, "first in flight");
      await bus.deleteTopics(["doomed"]);
      release();
      await eventually(() => seen.includes("first"), "the in-flight handler to finish");
      await bus.ensureTopics([{ name: "doomed", partitions: 1 }]);
      await bus.publish("doomed", [{ key: "k", value: encoder.encode("fresh") }]);
      await eventually(() => seen.includes("fresh"), "the message of the new topic");
      assert.deepEqual(seen, ["first", "fresh"]);
    } finally {
      await bus.close();
    }
  });

  it("rejects what Kafka would reject", async () => {
    const bus = new MemoryBus({ logger });
    try {
      await assert.rejects(bus.publish("bad topic", []), /invalid topic name/);
      await assert.rejects(bus.ensureTopics([{ name: "t", partitions: 0 }]), /positive integer/);
      await assert.rejects(bus.subscribe({ group: "", topics: ["t"], handler: async () => {} }), /group/);
      await assert.rejects(bus.subscribe({ group: "g", topics: [], handler: async () => {} }), /topic/);
    } finally {
      await bus.close();
    }
  });
});
