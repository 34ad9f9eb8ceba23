import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { descriptorSetPath, topic } from "@herald/proto";
import { ApiKeyAuthenticator } from "./auth.keys.js";
import { createClient } from "./grpc.client.js";
import { GrpcServer } from "./grpc.server.js";
import { bindService } from "./grpc.types.js";
import { createLogger } from "./log.logger.js";
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

// Latency panels must leave streams out (a stream lasts as long as its client keeps it open):
// every call's series says which it was.
describe("herald_grpc_server_duration_seconds", () => {
  it("labels unary calls grpc_type=unary and server streams grpc_type=server_stream", async () => {
    const registry = createMetricsRegistry("herald-test");
    const unimplemented = { access: "public" as const, handle: async () => Promise.reject(new Error("not here")) };
    const impl = {
      updateDeviceTopics: { access: "public" as const, handle: async (req: topic.UpdateDeviceTopicsRequest) => ({ topics: req.topics }) },
      listDeviceTopics: unimplemented,
      updateUserTopics: unimplemented,
      listUserTopics: unimplemented,
      getTopicStats: unimplemented,
      listTopics: unimplemented,
      listTopicUsers: unimplemented,
      streamRecipients: { access: "public" as const, handle: async (_req: unknown, _ctx: unknown, send: (r: topic.StreamRecipientsResponse) => Promise<void>) => send({ recipients: [] }) },
    };
    const server = new GrpcServer({
      logger: createLogger({ service: "t", level: "silent" }),
      authenticator: new ApiKeyAuthenticator({ adminKey: "admin-key-admin-key-admin-key", lookup: async () => null }),
      services: [bindService("herald.topic.v1.TopicService", topic.TopicServiceService, impl as never)],
      descriptorSetPath,
      onCall: grpcCallMetrics(registry),
    });
    const client = createClient(topic.TopicServiceService, topic, `127.0.0.1:${await server.listen("127.0.0.1:0")}`, {});
    try {
      await client.updateDeviceTopics({ deviceId: "d", topics: ["a"] });
      for await (const _ of client.streamRecipients({})) void _;
      const text = await registry.metrics();
      const count = (method: string) => new RegExp(`^herald_grpc_server_duration_seconds_count\\{service="herald-test",method="herald\\.topic\\.v1\\.TopicService/${method}",code="OK",grpc_type="(\\w+)"`, "m").exec(text)?.[1];
      assert.equal(count("UpdateDeviceTopics"), "unary");
      assert.equal(count("StreamRecipients"), "server_stream");
    } finally {
      client.close();
      await server.stop(500);
    }
  });
});
