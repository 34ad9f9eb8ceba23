import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { busContract } from "./bus.contract.js";
import type { BusLogger } from "./bus.logger.js";
import { MemoryBus } from "./bus.memory.js";
import { namespacedBus } from "./bus.namespace.js";
import type { BusMessage } from "./bus.types.js";

const logger: BusLogger = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} };

busContract("namespaced MemoryBus", async () => namespacedBus(new MemoryBus({ logger }), "staging."), { quietMs: 200, wireName: (n) => `staging.${n}` });

describe("namespacedBus", () => {
  const until = async (check: () => boolean) => {
    const deadline = Date.now() + 5_000;
    while (!check()) {
      if (Date.now() > deadline) throw new Error("timed out");
      await delay(5);
    }
  };

  it("keeps installations sharing a cluster apart: same topics, same groups, own messages", async () => {
    const shared = new MemoryBus({ logger });
    const a = namespacedBus(shared, "a.");
    const b = namespacedBus(shared, "b.");
    const seen: Record<string, BusMessage[]> = { a: [], b: [] };
    await a.subscribe({ group: "herald-fanout", topics: ["herald.publishes"], handler: async (m) => void seen.a!.push(m) });
    await b.subscribe({ group: "herald-fanout", topics: ["herald.publishes"], handler: async (m) => void seen.b!.push(m) });
    await a.publish("herald.publishes", [{ key: "k", value: new TextEncoder().encode("for a") }]);
    await b.publish("herald.publishes", [{ key: "k", value: new TextEncoder().encode("for b") }]);
    await until(() => seen.a!.length === 1 && seen.b!.length === 1);
    assert.equal(new TextDecoder().decode(seen.a![0]!.value), "for a");
    assert.equal(new TextDecoder().decode(seen.b![0]!.value), "for b");
    assert.equal(seen.a![0]!.topic, "herald.publishes", "handlers see the plain topic name");
    await shared.close();
  });

  it("translates patterns so they match only inside the namespace", async () => {
    const shared = new MemoryBus({ logger });
    const a = namespacedBus(shared, "a.");
    const topics: string[] = [];
    await a.ensureTopics([{ name: "herald.deliveries.x.apns", partitions: 1 }]);
    await shared.ensureTopics([{ name: "herald.deliveries.y.apns", partitions: 1 }]);
    await a.subscribe({ group: "g", topics: [/^herald\.deliveries\./, /\.apns$/], handler: async (m) => void topics.push(m.topic) });
    await shared.publish("herald.deliveries.y.apns", [{ key: "k", value: new Uint8Array([1]) }]);
    await a.publish("herald.deliveries.x.apns", [{ key: "k", value: new Uint8Array([2]) }]);
    await until(() => topics.length >= 1);
    await delay(100);
    assert.deepEqual(topics, ["herald.deliveries.x.apns"]);
    await shared.close();
  });
});
