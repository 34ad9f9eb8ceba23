// The registry as its own process (distributed mode): config → infrastructure → module → server.
import { ApiKeyAuthenticator, connectMongo, consumerLagGauge, DEFAULT_DENIED_NETWORKS, dropDeletedAppSeries, env, NetworkPolicy, createLogger, createMetricsRegistry, GrpcServer, grpcCallMetrics, KafkaBus, Lifecycle, loadConfig, namespacedBus, serveMetrics, serviceEnv, startTracing, tracingOptions } from "@herald/platform";
import { BusGroups, BusTopics, descriptorSetPath } from "@herald/proto";
import { apiKeyLookup, createMongoStore, tokenRulesEnv, tokenRulesFrom } from "@herald/store";
import { z } from "zod";
import { RegistryMetrics } from "./registry.metrics.js";
import { WebhookMetrics } from "./webhook.consumer.js";
import { createRegistryModule } from "./registry.module.js";

const config = loadConfig(
  z.object({
    ...serviceEnv,
    ...tokenRulesEnv,
    HERALD_SECRET: z.string().min(16, "use at least 16 random characters"),
    HERALD_SWEEP_INTERVAL_SECONDS: z.coerce.number().int().min(1).default(3600),
    // How often the /metrics series of deleted apps are looked for and dropped.
    HERALD_APP_SERIES_SWEEP_SECONDS: env.int(60, 1),
    // Webhook calls: attempts before the dead-letter topic, backoff between them, answer timeout.
    HERALD_WEBHOOK_MAX_ATTEMPTS: env.int(8, 1),
    HERALD_WEBHOOK_RETRY_INITIAL_MS: env.int(1000, 1),
    HERALD_WEBHOOK_RETRY_MAX_MS: env.int(300_000, 1),
    HERALD_WEBHOOK_TIMEOUT_MS: env.int(10_000, 100),
    // Where webhook calls may not connect (resolved addresses); "" allows everything.
    HERALD_WEBHOOK_DENIED_NETWORKS: env.csv([...DEFAULT_DENIED_NETWORKS]).superRefine((cidrs, ctx) => {
      try {
        new NetworkPolicy(cidrs);
      } catch (err) {
        ctx.addIssue({ code: "custom", message: (err as Error).message });
      }
    }),
  }),
);
const logger = createLogger({ service: "herald-registry", level: config.HERALD_LOG_LEVEL });
const lifecycle = new Lifecycle(logger);
lifecycle.installSignalHandlers();

const tracing = startTracing(tracingOptions(config, "herald-registry"));
lifecycle.add("tracing", () => tracing.shutdown());
const mongo = await connectMongo(config.HERALD_MONGO_URL, logger);
const store = await createMongoStore(mongo.db, { client: mongo.client });
lifecycle.add("store", () => store.close());
const bus = namespacedBus(new KafkaBus({ brokers: config.HERALD_KAFKA_BROKERS, clientId: "herald-registry", logger }), config.HERALD_KAFKA_NAMESPACE);
lifecycle.add("bus", () => bus.close());
// Its own topics, and those it consumes for webhooks (whichever service starts first makes them).
await bus.ensureTopics(
  [BusTopics.devices, BusTopics.tokenFeedback, BusTopics.publishEvents, BusTopics.results, BusTopics.receipts, BusTopics.webhooks, BusTopics.webhookRetries, BusTopics.webhookDeadLetter].map((name) => ({ name, partitions: 8 })),
);

const metrics = createMetricsRegistry("herald-registry");
const registry = createRegistryModule({
  store,
  metrics: new RegistryMetrics(metrics, store, logger, config.HERALD_SIZE_METRICS_INTERVAL_SECONDS * 1000),
  webhooks: { maxAttempts: config.HERALD_WEBHOOK_MAX_ATTEMPTS, retryInitialMs: config.HERALD_WEBHOOK_RETRY_INITIAL_MS, retryMaxMs: config.HERALD_WEBHOOK_RETRY_MAX_MS, timeoutMs: config.HERALD_WEBHOOK_TIMEOUT_MS, deniedNetworks: config.HERALD_WEBHOOK_DENIED_NETWORKS },
  webhookMetrics: new WebhookMetrics(metrics),
  bus,
  logger,
  masterSecret: config.HERALD_SECRET,
  tokenRules: tokenRulesFrom(config),
  sweepIntervalMs: config.HERALD_SWEEP_INTERVAL_SECONDS * 1000,
});
registry.sweeper.start();
lifecycle.add("sweeper", () => registry.sweeper.stop());
const feedback = await registry.tokenFeedback.start();
lifecycle.add("token feedback", () => feedback.stop());
await registry.webhooks.start();
lifecycle.add("webhooks", () => registry.webhooks.stop());

consumerLagGauge({
  registry: metrics,
  bus,
  groups: [
    { group: BusGroups.tokenFeedback, topics: [BusTopics.tokenFeedback] },
    { group: BusGroups.webhookEvents, topics: [BusTopics.publishEvents, BusTopics.results, BusTopics.tokenFeedback, BusTopics.receipts] },
    { group: BusGroups.webhooks, topics: [BusTopics.webhooks] },
    { group: BusGroups.webhookRetries, topics: [BusTopics.webhookRetries] },
  ],
  logger,
});
const server = new GrpcServer({
  logger,
  authenticator: new ApiKeyAuthenticator({ adminKey: config.HERALD_ADMIN_KEY, adminKeySha256: config.HERALD_ADMIN_KEY_SHA256, lookup: apiKeyLookup(store) }),
  services: registry.bindings,
  descriptorSetPath,
  onCall: grpcCallMetrics(metrics),
});
const port = await server.listen(config.HERALD_GRPC_ADDRESS);
lifecycle.add("grpc", () => server.stop());
// The per-app series (device events, webhook calls) of apps deleted since, on every replica.
const appSeries = dropDeletedAppSeries({ registry: metrics, exists: async (app) => (await store.apps.get(app)) !== null, intervalMs: config.HERALD_APP_SERIES_SWEEP_SECONDS * 1000, logger });
lifecycle.add("app series", async () => appSeries.stop());
await serveMetrics({ port: config.HERALD_METRICS_PORT, registry: metrics, lifecycle, logger });
logger.info({ port }, "registry serving");
