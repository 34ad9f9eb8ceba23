import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createMetricsRegistry, grpcCallMetrics } from "./metrics.registry.js";

// Prometheus's naming rules: `_total` is for counters only (rate() and promtool assume it).
describe("metrics registry", () => {
  it("exports no gauge, histogram or summary named *_total, and keeps the process metrics", async () => {
    const registry = createMetricsRegistry("herald-test");
    grpcCallMetrics(registry)("herald.x.v1.X/Y", 0, 0.01);
    const text = await registry.metrics();
    const types = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
    const misnamed = [...types].filter(([name, type]) => name.endsWith("_total") && type !== "counter");
    assert.deepEqual(misnamed, []);
    for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) assert.ok(!types.has(name), name);
    // what remains of them: the by-type gauges, and the usual process metrics
    for (const name of ["nodejs_active_handles", "nodejs_active_resources", "process_cpu_seconds_total", "nodejs_eventloop_lag_seconds", "nodejs_heap_size_used_bytes", "herald_grpc_server_duration_seconds"]) assert.ok(types.has(name), name);
    assert.match(text, /^process_cpu_seconds_total\{service="herald-test"\} /m);
  });
});
