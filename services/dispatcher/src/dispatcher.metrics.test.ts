import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createLogger } from "@herald/platform";
import { createMemoryPublishRepository, type PublishRecord } from "@herald/store";
import { Registry } from "prom-client";
import { stalledPublishesGauge } from "./dispatcher.metrics.js";

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
