import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Counter, Gauge, Histogram } from "prom-client";
import { createLogger } from "./log.logger.js";
import { dropDeletedAppSeries } from "./metrics.apps.js";
import { polledGauge } from "./metrics.polled.js";
import { createMetricsRegistry, startOpsServer } from "./metrics.registry.js";

const logger = createLogger({ service: "t", level: "silent" });

describe("dropDeletedAppSeries", () => {
  const registry = createMetricsRegistry("herald-test");
  const live = new Set(["shop", "news", "gone"]);
  const sweeper = dropDeletedAppSeries({ registry, exists: async (app) => live.has(app), intervalMs: 3_600_000, logger });
  after(() => sweeper.stop());

  it("removes every series of an app that no longer exists, and nothing else, from the scrape", async () => {
    const calls = new Counter({ name: "t_calls_total", help: "h", labelNames: ["app", "result"], registers: [registry] });
    const latency = new Histogram({ name: "t_latency_seconds", help: "h", labelNames: ["app", "status"], buckets: [0.1, 1], registers: [registry] });
    const inflight = new Gauge({ name: "t_inflight", help: "h", labelNames: ["app"], registers: [registry] });
    const global = new Counter({ name: "t_global_total", help: "h", labelNames: ["result"], registers: [registry] });
    // Read from "the store" on scrape: rebuilt each time, so not the sweeper's to touch.
    polledGauge({ registry, name: "t_devices", help: "h", labelNames: ["app"], read: async () => [{ labels: { app: "gone" }, value: 3 }], logger });
    for (const app of ["shop", "news", "gone"]) {
      calls.inc({ app, result: "ok" });
      calls.inc({ app, result: "failed" });
      latency.observe({ app, status: "200" }, 0.05);
      latency.observe({ app, status: "500" }, 2);
      inflight.set({ app }, 1);
    }
    global.inc({ result: "ok" });

    const ops = await startOpsServer({ port: 0, host: "127.0.0.1", registry });
    try {
      const scrape = async () => (await fetch(`http://127.0.0.1:${ops.port}/metrics`)).text();
      assert.match(await scrape(), /^t_calls_total\{app="gone",result="failed",service="herald-test"\} 1$/m);

      assert.deepEqual(await sweeper.sweep(), [], "every app exists: nothing goes");
      live.delete("gone");
      assert.deepEqual(await sweeper.sweep(), ["gone"]);

      const text = await scrape();
      const series = (name: string) => text.split("\n").filter((l) => l.startsWith(name));
      assert.deepEqual(series("t_calls_total{").map((l) => /app="(\w+)"/.exec(l)![1]).sort(), ["news", "news", "shop", "shop"]);
      assert.ok(!series("t_latency_seconds").some((l) => l.includes('app="gone"')), "buckets, _sum and _count of the deleted app are gone");
      assert.equal(series("t_latency_seconds_count{").length, 4, "the others' histograms stay");
      assert.ok(!series("t_inflight{").some((l) => l.includes('app="gone"')));
      assert.match(text, /^t_global_total\{result="ok",service="herald-test"\} 1$/m, "a metric without an app label stays");
      assert.match(text, /^t_devices\{app="gone",service="herald-test"\} 3$/m, "a polled gauge stays what its read says");
      // The app's next sample starts a fresh series (a recreated app counts from zero).
      calls.inc({ app: "gone", result: "ok" });
      assert.match(await scrape(), /^t_calls_total\{app="gone",result="ok",service="herald-test"\} 1$/m);
    } finally {
      await ops.close();
    }
  });

  it("keeps the series when the store cannot answer (the pass fails, nothing is removed)", async () => {
    const reg = createMetricsRegistry("herald-test");
    const c = new Counter({ name: "t_other_total", help: "h", labelNames: ["app"], registers: [reg] });
    c.inc({ app: "shop" });
    const failing = dropDeletedAppSeries({ registry: reg, exists: async () => Promise.reject(new Error("store down")), intervalMs: 3_600_000, logger });
    try {
      await assert.rejects(failing.sweep(), /store down/);
      assert.match(await reg.metrics(), /^t_other_total\{app="shop",service="herald-test"\} 1$/m);
    } finally {
      failing.stop();
    }
  });
});
