// The topic service as its own process (distributed mode): config → infrastructure → module → server.
import { ApiKeyAuthenticator, cachedRead, connectMongo, createLogger, createMetricsRegistry, GrpcServer, grpcCallMetrics, Lifecycle, loadConfig, polledGauge, serveMetrics, serviceEnv, startTracing, tracingOptions } from "@herald/platform";
import { descriptorSetPath } from "@herald/proto";
import { apiKeyLookup, createMongoStore } from "@herald/store";
import { z } from "zod";
import { createTopicModule } from "./topic.module.js";

const { HERALD_KAFKA_BROKERS: _brokers, HERALD_KAFKA_NAMESPACE: _namespace, ...env } = serviceEnv;
const config = loadConfig(z.object({ ...env, HERALD_GRPC_ADDRESS: z.string().default("0.0.0.0:50052") }));
const logger = createLogger({ service: "herald-topic", level: config.HERALD_LOG_LEVEL });
const lifecycle = new Lifecycle(logger);
lifecycle.installSignalHandlers();

const tracing = startTracing(tracingOptions(config, "herald-topic"));
lifecycle.add("tracing", () => tracing.shutdown());
const mongo = await connectMongo(config.HERALD_MONGO_URL, logger);
const store = await createMongoStore(mongo.db, { client: mongo.client });
lifecycle.add("store", () => store.close());

const topics = createTopicModule({ store });
const metrics = createMetricsRegistry("herald-topic");
// Topic sizes per app, from one count shared by both gauges.
const sizes = cachedRead(() => store.subscriptions.sizes(), config.HERALD_SIZE_METRICS_INTERVAL_SECONDS * 1000);
polledGauge({ registry: metrics, name: "herald_topic_topics", help: "Distinct topics devices are subscribed to, per app", labelNames: ["app"], read: async () => (await sizes()).map((s) => ({ labels: { app: s.app }, value: s.topics })), logger });
polledGauge({ registry: metrics, name: "herald_topic_subscriptions", help: "Device-topic subscriptions per app", labelNames: ["app"], read: async () => (await sizes()).map((s) => ({ labels: { app: s.app }, value: s.subscriptions })), logger });
const server = new GrpcServer({
  logger,
  authenticator: new ApiKeyAuthenticator({ adminKey: config.HERALD_ADMIN_KEY, adminKeySha256: config.HERALD_ADMIN_KEY_SHA256, lookup: apiKeyLookup(store) }),
  services: topics.bindings,
  descriptorSetPath,
  onCall: grpcCallMetrics(metrics),
});
const port = await server.listen(config.HERALD_GRPC_ADDRESS);
lifecycle.add("grpc", () => server.stop());
await serveMetrics({ port: config.HERALD_METRICS_PORT, registry: metrics, lifecycle, logger });
logger.info({ port }, "topic service serving");
