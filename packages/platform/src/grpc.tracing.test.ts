import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { trace } from "@opentelemetry/api";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { topic } from "@herald/proto";
import { ApiKeyAuthenticator, hashApiKey } from "./auth.keys.js";
import { createClient } from "./grpc.client.js";
import { GrpcServer } from "./grpc.server.js";
import { bindService } from "./grpc.types.js";
import { createLogger } from "./log.logger.js";
import { startTracing, type Tracing } from "./trace.tracing.js";

// A call made inside a span continues the same trace on the server, through gRPC metadata.
describe("trace context over gRPC", () => {
  const exporter = new InMemorySpanExporter();
  let tracing: Tracing;
  let server: GrpcServer;
  let address: string;
  let serverTraceId = "";

  before(async () => {
    // No resource detection: its async attributes (host.id) would hold back the first exports.
    tracing = startTracing({ serviceName: "t", extraProcessors: [new SimpleSpanProcessor(exporter)], detectors: [] });
    const handle = async () => {
      serverTraceId = trace.getActiveSpan()?.spanContext().traceId ?? "";
      return { stats: [] };
    };
    const impl = Object.fromEntries(Object.keys(topic.TopicServiceService).map((k) => [k, { access: "server", handle }]));
    server = new GrpcServer({
      logger: createLogger({ service: "t", level: "silent" }),
      authenticator: new ApiKeyAuthenticator({ lookup: async (h) => (h === hashApiKey("k") ? { app: "a", role: "server", keyId: "1", revoked: false } : null) }),
      services: [bindService("herald.topic.v1.TopicService", topic.TopicServiceService, impl as never)],
    });
    address = `127.0.0.1:${await server.listen("127.0.0.1:0")}`;
  });
  after(async () => {
    await server.stop(500);
    await tracing.shutdown();
  });

  it("parents the server span on the caller's span", async () => {
    const client = createClient(topic.TopicServiceService, topic, address, { apiKey: "k" });
    const callerTraceId = await trace.getTracer("test").startActiveSpan("caller", async (span) => {
      await client.getTopicStats({ topics: ["x"] });
      span.end();
      return span.spanContext().traceId;
    });
    client.close();
    assert.equal(serverTraceId, callerTraceId);
    const serverSpan = exporter.getFinishedSpans().find((s) => s.name === "herald.topic.v1.TopicService/GetTopicStats");
    assert.ok(serverSpan, "the server recorded a span for the call");
    assert.equal(serverSpan.spanContext().traceId, callerTraceId);
    assert.equal(serverSpan.attributes["herald.app"], "a");
    assert.equal(serverSpan.attributes["rpc.grpc.status_code"], 0, "a successful call says OK (0), not nothing");
  });
});
