import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { SpanKind, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { BusTopics } from "@herald/proto";
import { startTracing, type Tracing } from "../trace.tracing.js";
import { MemoryBus } from "./bus.memory.js";
import { namespacedBus } from "./bus.namespace.js";
import { topicKind } from "./bus.tracing.js";

// Span names are operations in Jaeger: they must be a fixed set, not one per app × provider ×
// namespace. The full topic stays an attribute.
describe("bus span names", () => {
  const exporter = new InMemorySpanExporter();
  let tracing: Tracing;
  before(() => {
    tracing = startTracing({ serviceName: "t", extraProcessors: [new SimpleSpanProcessor(exporter)], detectors: [] });
  });
  after(() => tracing.shutdown());

  it("names a topic by its kind, without app, provider or namespace", () => {
    assert.equal(topicKind(BusTopics.deliveries("shop", "apns")), "herald.deliveries");
    assert.equal(topicKind(`staging.${BusTopics.deliveries("shop-2", "webpush")}`), "herald.deliveries");
    assert.equal(topicKind(`ns-${BusTopics.retries("shop", "fcm")}`), "herald.retries");
    assert.equal(topicKind(BusTopics.publishes), "herald.publishes");
    assert.equal(topicKind(`staging.${BusTopics.deliveries("shop", "fcm", "urgent")}`), "herald.deliveries.urgent", "the urgent lane stays one kind");
    assert.equal(topicKind(`staging.${BusTopics.urgentPublishes}`), "herald.publishes.urgent");
    assert.equal(topicKind(`prod.${BusTopics.tokenFeedback}`), "herald.token-feedback");
    assert.equal(topicKind(`prod.${BusTopics.webhookDeadLetter}`), "herald.webhook-deadletter");
    assert.equal(topicKind("some-test-topic"), "some-test-topic", "a topic that is none of Herald's keeps its name");
  });

  it("names publish and process spans `herald.deliveries publish|process`, the topic in messaging.destination.name", async () => {
    const bus = namespacedBus(new MemoryBus(), "ns1.");
    try {
      const topics = [BusTopics.deliveries("shop", "apns"), BusTopics.deliveries("news", "fcm")];
      let handled = 0;
      await bus.subscribe({ group: "g", topics, handler: async () => void handled++ });
      await trace.getTracer("test").startActiveSpan("root", async (root) => {
        for (const t of topics) await bus.publish(t, [{ key: "k", value: new Uint8Array([1]) }]);
        root.end();
      });
      for (let i = 0; handled < 2 && i < 500; i++) await delay(5);
      assert.equal(handled, 2);
      await delay(20);
      const spans = exporter.getFinishedSpans().filter((s) => s.name !== "root");
      const producers = spans.filter((s) => s.kind === SpanKind.PRODUCER);
      const consumers = spans.filter((s) => s.kind === SpanKind.CONSUMER);
      assert.deepEqual(new Set(producers.map((s) => s.name)), new Set(["herald.deliveries publish"]));
      assert.deepEqual(new Set(consumers.map((s) => s.name)), new Set(["herald.deliveries process"]));
      assert.deepEqual(producers.map((s) => s.attributes["messaging.destination.name"]).sort(), ["ns1.herald.deliveries.news.fcm", "ns1.herald.deliveries.shop.apns"]);
      assert.deepEqual(consumers.map((s) => s.attributes["messaging.destination.name"]).sort(), ["ns1.herald.deliveries.news.fcm", "ns1.herald.deliveries.shop.apns"]);
    } finally {
      await bus.close();
    }
  });
});
