import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { ApiKeyAuthenticator, createClient, createLogger, GrpcServer, hashApiKey, MemoryBus, startTracing, type Tracing } from "@herald/platform";
import { dispatch } from "@herald/proto";
import { createMemoryPublishRepository, createMemoryStore, DEFAULT_LIMITS, DEFAULT_WEBPUSH_HOSTS } from "@herald/store";
import { PublishService } from "./publish.service.js";
import { storeRecipients } from "./recipient.source.js";

// The Publish call's SERVER span is the root of a publish's trace: it names the publish, so the
// trace is found by herald.publish_id from its first span on.
describe("Publish call span", () => {
  const exporter = new InMemorySpanExporter();
  let tracing: Tracing;
  let server: GrpcServer;
  let address: string;
  const bus = new MemoryBus();

  before(async () => {
    tracing = startTracing({ serviceName: "herald-dispatcher", extraProcessors: [new SimpleSpanProcessor(exporter)], detectors: [] });
    const store = createMemoryStore();
    const now = new Date();
    await store.apps.create({ id: "app1", name: "app1", limits: DEFAULT_LIMITS, providers: ["apns", "fcm", "hms", "webpush"], secretVersion: 1, owner: "", vapidPublicKey: "", webhooks: [], createdAt: now, updatedAt: now });
    const logger = createLogger({ service: "t", level: "silent" });
    const service = new PublishService({ publishes: createMemoryPublishRepository(), directory: store, recipients: storeRecipients(store), bus, tokenRules: { webPushHosts: DEFAULT_WEBPUSH_HOSTS, webPushAllowInsecure: false }, logger, now: () => new Date() });
    server = new GrpcServer({
      logger,
      authenticator: new ApiKeyAuthenticator({ lookup: async (h) => (h === hashApiKey("k") ? { app: "app1", role: "server", keyId: "1", revoked: false } : null) }),
      services: [service.binding()],
    });
    address = `127.0.0.1:${await server.listen("127.0.0.1:0")}`;
  });
  after(async () => {
    await server.stop(500);
    await bus.close();
    await tracing.shutdown();
  });

  it("carries herald.publish_id and rpc.grpc.status_code 0", async () => {
    const client = createClient(dispatch.DispatchServiceService, dispatch, address, { apiKey: "k" });
    try {
      const { id } = await client.publish(dispatch.PublishRequest.fromPartial({ recipients: { target: { $case: "topics", value: { values: ["news"] } } }, notification: { alert: { title: "Hi", body: "there" } } }));
      assert.ok(id);
      const root = exporter.getFinishedSpans().find((s) => s.name === "herald.dispatch.v1.DispatchService/Publish");
      assert.ok(root, "the call's span");
      assert.equal(root.parentSpanContext, undefined, "the call is the root");
      assert.equal(root.attributes["herald.publish_id"], id);
      assert.equal(root.attributes["herald.app"], "app1");
      assert.equal(root.attributes["rpc.grpc.status_code"], 0);
      const onBus = exporter.getFinishedSpans().find((s) => s.name === "herald.publishes publish");
      assert.equal(onBus?.spanContext().traceId, root.spanContext().traceId, "the hand-off to Kafka is in the same trace");
    } finally {
      client.close();
    }
  });
});
