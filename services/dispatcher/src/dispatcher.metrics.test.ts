import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createLogger, createMetricsRegistry, dropDeletedAppSeries } from "@herald/platform";
import { createMemoryPublishRepository, createMemoryStore, DEFAULT_LIMITS, type PublishRecord } from "@herald/store";
import { Registry } from "prom-client";
import { DispatcherMetrics, stalledPublishesGauge } from "./dispatcher.metrics.js";

const publish = (id: string, app: string, state: PublishRecord["state"], updatedAt: Date): PublishRecord => ({
  id, app, uid: "", state, request: new Uint8Array(), labels: {},
  counts: { targeted: 0, sent: 0, failed: 0, invalidTokens: 0, expired: 0, cancelled: 0, deadLettered: 0, duplicates: 0, retries: 0, deliveredReceipts: 0, openedReceipts: 0, failedByReason: {} },
  fanoutCursor: "", fanoutDone: false, sendAt: null, expireAt: null, createdAt: updatedAt, updatedAt, startedAt: null, finishedAt: null, error: "",
});

describe("herald_publishes_stalled", () => {
  it("counts per app and state the publishes that made no progress for the stall time, never final or scheduled ones", async () => {
    const now = new Date("2026-12-01T12:00:00Z");
    const ago = (s: number) => new Date(now.getTime() - s * 1000);
    const publishes = createMemoryPublishRepository();
    for (const p of [
      publish("p1", "shop", "sending", ago(600)),
      publish("p2", "shop", "sending", ago(400)),
      publish("p3", "shop", "queued", ago(301)),
      publish("p4", "news", "fanning_out", ago(900)),
      publish("p5", "news", "sending", ago(10)),
      publish("p6", "news", "done", ago(900)),
      publish("p7", "news", "scheduled", ago(900)),
    ]) await publishes.create(p);
    const registry = new Registry();
    stalledPublishesGauge({ registry, publishes, stallSeconds: 300, logger: createLogger({ service: "t", level: "silent" }), now: () => now });
    const metric = await registry.getSingleMetric("herald_publishes_stalled")!.get();
    const samples = Object.fromEntries(metric.values.map((v) => [`${v.labels.app}/${v.labels.state}`, v.value]));
    assert.deepEqual(samples, { "shop/sending": 2, "shop/queued": 1, "news/fanning_out": 1 });
  });
});

// As main.ts wires it: the publish and fan-out series of an app deleted since leave the scrape.
describe("dispatcher metrics of a deleted app", () => {
  it("are dropped by the sweep, the other app's kept", async () => {
    const store = createMemoryStore();
    const now = new Date();
    for (const id of ["keep", "drop"]) await store.apps.create({ id, name: id, limits: DEFAULT_LIMITS, providers: ["fcm"], secretVersion: 1, owner: "", vapidPublicKey: "", webhooks: [], createdAt: now, updatedAt: now });
    const registry = createMetricsRegistry("herald-dispatcher");
    const metrics = new DispatcherMetrics(registry);
    for (const app of ["keep", "drop"]) {
      metrics.publishAccepted(app, false);
      metrics.fanoutDone(app, 0.2);
      metrics.handedOn(app, "fcm", 10);
    }
    const sweeper = dropDeletedAppSeries({ registry, exists: async (app) => (await store.apps.get(app)) !== null, intervalMs: 3_600_000, logger: createLogger({ service: "t", level: "silent" }) });
    try {
      await store.apps.delete("drop");
      assert.deepEqual(await sweeper.sweep(), ["drop"]);
      const text = await registry.metrics();
      const apps = new Set([...text.matchAll(/^herald_\w+\{[^}]*app="([^"]+)"/gm)].map((m) => m[1]));
      assert.deepEqual([...apps], ["keep"]);
      for (const name of ["herald_publishes_accepted_total", "herald_fanout_duration_seconds_count", "herald_fanout_jobs_total", "herald_fanout_targets_total"]) assert.match(text, new RegExp(`^${name}\\{[^}]*app="keep"`, "m"), name);
    } finally {
      sweeper.stop();
    }
  });
});
