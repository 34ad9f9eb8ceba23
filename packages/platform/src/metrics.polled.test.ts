import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Registry } from "prom-client";
import { MemoryBus } from "./bus/bus.memory.js";
import { createLogger } from "./log.logger.js";
import { cachedRead, consumerLagGauge, polledGauge } from "./metrics.polled.js";

const logger = createLogger({ service: "t", level: "silent" });
const value = async (registry: Registry, name: string, labels: Record<string, string>) =>
  (await registry.getSingleMetric(name)!.get()).values.find((v) => Object.entries(labels).every(([k, x]) => String(v.labels[k]) === x))?.value;

describe("polled metrics", () => {
  it("cachedRead reads at most once per interval and never caches a failure", async () => {
    let calls = 0;
    let fail = false;
    const read = cachedRead(async () => {
      calls++;
      if (fail) throw new Error("down");
      return calls;
    }, 60_000);
    assert.equal(await read(), 1);
    assert.equal(await read(), 1);
    assert.equal(calls, 1);

    const failing = cachedRead(async () => {
      calls++;
      if (fail) throw new Error("down");
      return calls;
    }, 60_000);
    fail = true;
    await assert.rejects(failing(), /down/);
    fail = false;
    assert.equal(await failing(), calls, "read again after the failure");
  });

  it("cachedRead gives up on a read that does not answer", async () => {
    const read = cachedRead(() => new Promise<number>(() => {}), 0, 20);
    await assert.rejects(read(), /no answer within 20 ms/);
  });

  it("a polled gauge has the read's samples at each scrape, and none after a failed read", async () => {
    const registry = new Registry();
    let rows = [{ labels: { app: "a" }, value: 3 }];
    let fail = false;
    polledGauge({ registry, name: "t_size", help: "t", labelNames: ["app"], logger, read: async () => {
      if (fail) throw new Error("down");
      return rows;
    } });
    assert.equal(await value(registry, "t_size", { app: "a" }), 3);
    rows = [{ labels: { app: "b" }, value: 1 }];
    assert.equal(await value(registry, "t_size", { app: "a" }), undefined, "an app that went away is gone");
    assert.equal(await value(registry, "t_size", { app: "b" }), 1);
    fail = true;
    assert.deepEqual((await registry.getSingleMetric("t_size")!.get()).values, []);
  });

  it("herald_consumer_lag reports each group's lag per partition", async () => {
    const bus = new MemoryBus();
    await bus.ensureTopics([{ name: "jobs", partitions: 2 }]);
    await bus.publish("jobs", [0, 1, 2, 3, 4].map((i) => ({ key: `k${i}`, value: new Uint8Array([i]) })));
    const registry = new Registry();
    consumerLagGauge({ registry, bus, groups: [{ group: "workers", topics: ["jobs"] }], logger, minIntervalMs: 0 });
    const before = (await registry.getSingleMetric("herald_consumer_lag")!.get()).values;
    assert.deepEqual(before.map((v) => v.labels.partition).sort(), ["0", "1"]);
    assert.equal(before.reduce((n, v) => n + v.value, 0), 5, "nothing consumed yet");

    let handled = 0;
    const sub = await bus.subscribe({ group: "workers", topics: ["jobs"], handler: async () => void handled++ });
    const deadline = Date.now() + 5000;
    let total = 5;
    while (total > 0 && Date.now() < deadline) {
      total = (await registry.getSingleMetric("herald_consumer_lag")!.get()).values.reduce((n, v) => n + v.value, 0);
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(total, 0, "all consumed and committed");
    assert.equal(handled, 5);
    await sub.stop();
    await bus.close();
  });
});
