import assert from "node:assert/strict";
import { hostname } from "node:os";
import { describe, it } from "node:test";
import { trace } from "@opentelemetry/api";
import { envDetector } from "@opentelemetry/resources";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { startTracing, tracingResource } from "./trace.tracing.js";

// Every process's spans say where they come from: OTEL_RESOURCE_ATTRIBUTES (the chart's pod,
// namespace, node, app, provider and version), the host and the process.
describe("tracing resource", () => {
  const withEnv = async <T>(vars: Record<string, string | undefined>, work: () => T | Promise<T>): Promise<T> => {
    const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
    for (const [k, v] of Object.entries(vars)) v === undefined ? delete process.env[k] : (process.env[k] = v);
    try {
      return await work();
    } finally {
      for (const [k, v] of Object.entries(saved)) v === undefined ? delete process.env[k] : (process.env[k] = v);
    }
  };

  it("honours OTEL_RESOURCE_ATTRIBUTES and adds host and process attributes", async () => {
    const resource = await withEnv({ OTEL_RESOURCE_ATTRIBUTES: "k8s.pod.name=pod-1,service.version=9.9,k8s.namespace.name=herald" }, () => tracingResource("herald-topic"));
    await resource.waitForAsyncAttributes?.();
    const a = resource.attributes;
    assert.equal(a["service.name"], "herald-topic");
    assert.equal(a["k8s.pod.name"], "pod-1");
    assert.equal(a["k8s.namespace.name"], "herald");
    assert.equal(a["service.version"], "9.9");
    assert.equal(a["host.name"], hostname());
    assert.equal(a["host.arch"] !== undefined, true, "host.arch");
    assert.equal(a["process.pid"], process.pid);
    assert.equal(a["process.runtime.name"], "nodejs");
    assert.equal(a["process.runtime.version"], process.versions.node);
  });

  it("keeps the service's own name over a service.name in OTEL_RESOURCE_ATTRIBUTES", async () => {
    const resource = await withEnv({ OTEL_RESOURCE_ATTRIBUTES: "service.name=other", OTEL_SERVICE_NAME: undefined }, () => tracingResource("herald-dispatcher", [envDetector]));
    assert.equal(resource.attributes["service.name"], "herald-dispatcher");
  });

  it("puts the resource on every span startTracing exports", async () => {
    const exporter = new InMemorySpanExporter();
    const processor = new SimpleSpanProcessor(exporter);
    // (the exporter forgets its spans on shutdown: read them before)
    const spans = await withEnv({ OTEL_RESOURCE_ATTRIBUTES: "k8s.pod.name=pod-1,service.version=9.9" }, async () => {
      const tracing = startTracing({ serviceName: "herald-sender-apns", extraProcessors: [processor] });
      try {
        trace.getTracer("t").startSpan("x").end();
        await processor.forceFlush();
        return exporter.getFinishedSpans();
      } finally {
        await tracing.shutdown();
      }
    });
    const [span] = spans;
    assert.ok(span, "the span was exported");
    assert.equal(span.resource.attributes["service.name"], "herald-sender-apns");
    assert.equal(span.resource.attributes["k8s.pod.name"], "pod-1");
    assert.equal(span.resource.attributes["service.version"], "9.9");
    assert.equal(span.resource.attributes["host.name"], hostname());
    assert.equal(span.resource.attributes["process.pid"], process.pid);
  });
});
