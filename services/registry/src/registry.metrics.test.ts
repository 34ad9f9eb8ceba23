import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createLogger, createMetricsRegistry, dropDeletedAppSeries, startOpsServer } from "@herald/platform";
import { createMemoryStore, DEFAULT_LIMITS } from "@herald/store";
import { RegistryMetrics } from "./registry.metrics.js";
import { WebhookMetrics } from "./webhook.consumer.js";

// The registry's per-app series (device events, webhook calls) go from its scrape once the app
// is deleted, as main.ts wires it; the devices gauge follows what the store holds.
describe("registry metrics of a deleted app", () => {
  it("are dropped from /metrics by the sweep, the other app's kept", async () => {
    const logger = createLogger({ service: "t", level: "silent" });
    const store = createMemoryStore();
    const now = new Date();
    for (const id of ["keep", "drop"]) await store.apps.create({ id, name: id, limits: DEFAULT_LIMITS, providers: ["fcm"], secretVersion: 1, owner: "", vapidPublicKey: "", webhooks: [], createdAt: now, updatedAt: now });
    const registry = createMetricsRegistry("herald-registry");
    const metrics = new RegistryMetrics(registry, store, logger, 0);
    const webhooks = new WebhookMetrics(registry);
    for (const app of ["keep", "drop"]) {
      metrics.countEvent(app, "registered", "", 2);
      webhooks.deliveries.inc({ app, type: "publish.completed", result: "delivered" });
    }
    const sweeper = dropDeletedAppSeries({ registry, exists: async (app) => (await store.apps.get(app)) !== null, intervalMs: 3_600_000, logger });
    const ops = await startOpsServer({ port: 0, host: "127.0.0.1", registry });
    try {
      const scrape = async () => (await fetch(`http://127.0.0.1:${ops.port}/metrics`)).text();
      const apps = (text: string, metric: string) => [...text.matchAll(new RegExp(`^${metric}\\{app="([^"]+)"`, "gm"))].map((m) => m[1]).sort();
      let text = await scrape();
      assert.deepEqual(apps(text, "herald_registry_device_events_total"), ["drop", "keep"]);
      assert.deepEqual(apps(text, "herald_webhook_deliveries_total"), ["drop", "keep"]);

      await store.apps.delete("drop");
      assert.deepEqual(await sweeper.sweep(), ["drop"]);
      text = await scrape();
      assert.deepEqual(apps(text, "herald_registry_device_events_total"), ["keep"]);
      assert.deepEqual(apps(text, "herald_webhook_deliveries_total"), ["keep"]);
    } finally {
      sweeper.stop();
      await ops.close();
    }
  });
});
