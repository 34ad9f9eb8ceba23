// The dispatcher as its own process: the publish API, the fan-out, result aggregation and the
// scheduler, on MongoDB and Kafka, reading recipients from the topic service.
import { ApiKeyAuthenticator, connectMongo, consumerLagGauge, createLogger, createMetricsRegistry, dropDeletedAppSeries, GrpcServer, grpcCallMetrics, KafkaBus, Lifecycle, loadConfig, namespacedBus, serveMetrics, serviceEnv, startTracing, tracingOptions } from "@herald/platform";
import { BusGroups, BusTopics, descriptorSetPath } from "@herald/proto";
import { apiKeyLookup, createMongoPublishRepository, createMongoStore, tokenRulesEnv, tokenRulesFrom } from "@herald/store";
import { z } from "zod";
import { DispatcherMetrics, stalledPublishesGauge } from "./dispatcher.metrics.js";
import { createDispatcherModule } from "./dispatcher.module.js";
import { grpcRecipients } from "./recipient.source.js";

const config = loadConfig(
  z.object({
    ...serviceEnv,
    ...tokenRulesEnv,
    HERALD_GRPC_ADDRESS: z.string().default("0.0.0.0:50053"),
    HERALD_TOPIC_ADDRESS: z.string().min(1, "the topic service's host:port"),
    HERALD_ADMIN_KEY: z.string().min(24, "the dispatcher calls the topic service with the admin key"),
    // Publishes per second for every app whose max_publish_rate is 0 ("not set"); 0 keeps such
    // apps unlimited, as before limits were enforced (publish.ratelimit.ts).
    HERALD_DEFAULT_PUBLISH_RATE: z.coerce.number().int().min(0).default(0),
    // A publish queued, fanning out or sending without progress for this long counts as stalled.
    HERALD_PUBLISH_STALL_SECONDS: z.coerce.number().int().min(30).default(300),
    // How often the /metrics series of deleted apps are looked for and dropped.
    HERALD_APP_SERIES_SWEEP_SECONDS: z.coerce.number().int().min(1).default(60),
  }),
);
const logger = createLogger({ service: "herald-dispatcher", level: config.HERALD_LOG_LEVEL });
const lifecycle = new Lifecycle(logger);
lifecycle.installSignalHandlers();

const tracing = startTracing(tracingOptions(config, "herald-dispatcher"));
lifecycle.add("tracing", () => tracing.shutdown());
const mongo = await connectMongo(config.HERALD_MONGO_URL, logger);
lifecycle.add("mongo", () => mongo.close());
const store = await createMongoStore(mongo.db);
const publishes = await createMongoPublishRepository(mongo.db);
const bus = namespacedBus(new KafkaBus({ brokers: config.HERALD_KAFKA_BROKERS, clientId: "herald-dispatcher", logger }), config.HERALD_KAFKA_NAMESPACE);
lifecycle.add("bus", () => bus.close());
const recipients = grpcRecipients(config.HERALD_TOPIC_ADDRESS, config.HERALD_ADMIN_KEY);
lifecycle.add("topic client", async () => recipients.close());

const registry = createMetricsRegistry("herald-dispatcher");
consumerLagGauge({
  registry,
  bus,
  groups: [
    { group: BusGroups.fanout, topics: [BusTopics.publishes] },
    { group: BusGroups.urgentFanout, topics: [BusTopics.urgentPublishes] },
    { group: BusGroups.results, topics: [BusTopics.results] },
  ],
  logger,
});
stalledPublishesGauge({ registry, publishes, stallSeconds: config.HERALD_PUBLISH_STALL_SECONDS, logger });
const dispatcher = createDispatcherModule({ publishes, directory: store, bus, recipients, tokenRules: tokenRulesFrom(config), logger, metrics: new DispatcherMetrics(registry), defaultPublishRate: config.HERALD_DEFAULT_PUBLISH_RATE });
const server = new GrpcServer({
  logger,
  authenticator: new ApiKeyAuthenticator({ adminKey: config.HERALD_ADMIN_KEY, adminKeySha256: config.HERALD_ADMIN_KEY_SHA256, lookup: apiKeyLookup(store) }),
  services: dispatcher.bindings,
  descriptorSetPath,
  onCall: grpcCallMetrics(registry),
});
// Listening before Kafka is awaited: a restarted dispatcher answers GetPublish (and refuses a
// Publish it cannot queue with UNAVAILABLE) at once, instead of after its consumer groups' join,
// which waits out a crashed predecessor's session timeout.
const port = await server.listen(config.HERALD_GRPC_ADDRESS);
logger.info({ port }, "dispatcher listening");
await bus.ensureTopics([BusTopics.publishes, BusTopics.urgentPublishes, BusTopics.results, BusTopics.control, BusTopics.receipts, BusTopics.publishEvents, BusTopics.deadLetter].map((name) => ({ name, partitions: 8 })));
const workers = await dispatcher.start();
lifecycle.add("workers", workers);
// Added last, so it stops first: no call is accepted after the workers and the bus are gone.
lifecycle.add("grpc", () => server.stop());
// The per-app series (publishes, fan-outs) of apps deleted since.
const appSeries = dropDeletedAppSeries({ registry, exists: async (app) => (await store.apps.get(app)) !== null, intervalMs: config.HERALD_APP_SERIES_SWEEP_SECONDS * 1000, logger });
lifecycle.add("app series", async () => appSeries.stop());
await serveMetrics({ port: config.HERALD_METRICS_PORT, registry, lifecycle, logger });
logger.info({ port }, "dispatcher serving");
