// One sender process: one app and one provider (the operator runs a Deployment per pair).
import { consumerLagGauge, createMetricsRegistry, KafkaBus, Lifecycle, loadConfig, namespacedBus, serviceEnv, startOpsServer, startTracing, tracingOptions } from "@herald/platform";
import { APP_ID_PATTERN, BusGroups, BusTopics, deliveryTopicsOf } from "@herald/proto";
import { z } from "zod";
import { tokenRulesEnv, tokenRulesFrom } from "@herald/store";
import { createProvider, providerEnv } from "./provider.factory.js";
import type { ProviderName } from "./provider.types.js";
import { SenderWorker } from "./sender.consumer.js";
import { senderLogger } from "./sender.logger.js";
import { SenderMetrics } from "./sender.metrics.js";

const { HERALD_MONGO_URL: _mongo, HERALD_GRPC_ADDRESS: _grpc, HERALD_ADMIN_KEY: _admin, HERALD_ADMIN_KEY_SHA256: _adminHash, HERALD_METRICS_PORT: _metrics, ...env } = serviceEnv;
const config = loadConfig(
  z.object({
    ...env,
    ...providerEnv,
    ...tokenRulesEnv,
    HERALD_APP: z.string().regex(APP_ID_PATTERN, "an app id"),
    HERALD_PROVIDER: z.enum(["apns", "fcm", "hms", "webpush"]),
    HERALD_MAX_ATTEMPTS: z.coerce.number().int().min(1).default(8),
    // Exponential backoff with jitter between attempts, raised by a provider's Retry-After.
    HERALD_RETRY_INITIAL_MS: z.coerce.number().int().min(1).default(1000),
    HERALD_RETRY_MAX_MS: z.coerce.number().int().min(1).default(300_000),
    // How long the sender stops calling a provider that refused the credentials.
    HERALD_CREDENTIAL_COOLDOWN_MS: z.coerce.number().int().min(1).default(60_000),
    HERALD_HEALTH_PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  }),
);
const name = config.HERALD_PROVIDER as ProviderName;
const logger = senderLogger({ app: config.HERALD_APP, provider: name, level: config.HERALD_LOG_LEVEL });
const lifecycle = new Lifecycle(logger);
lifecycle.installSignalHandlers();

const tracing = startTracing(tracingOptions(config, `herald-sender-${name}`));
lifecycle.add("tracing", () => tracing.shutdown());

const registry = createMetricsRegistry(`herald-sender-${name}`);
const metrics = new SenderMetrics(registry, config.HERALD_APP, name);
// Before Kafka: a missing credential stops the sender at once, naming the file or variable.
const provider = createProvider(name, config, { tokenRules: tokenRulesFrom(config), onRequest: metrics.request });
lifecycle.add("provider", () => provider.close());

const bus = namespacedBus(new KafkaBus({ brokers: config.HERALD_KAFKA_BROKERS, clientId: `herald-sender-${config.HERALD_APP}-${name}`, logger }), config.HERALD_KAFKA_NAMESPACE);
lifecycle.add("bus", () => bus.close());
const lanes = deliveryTopicsOf(config.HERALD_APP, name);
await bus.ensureTopics([...lanes.map((l) => l.topic), BusTopics.retries(config.HERALD_APP, name), BusTopics.control, BusTopics.results, BusTopics.tokenFeedback, BusTopics.deadLetter].map((t) => ({ name: t, partitions: 8 })));
consumerLagGauge({
  registry,
  bus,
  groups: [
    // One series per lane (its group and topic labels): lag per lane.
    ...lanes.map((l) => ({ group: l.group, topics: [l.topic] })),
    { group: BusGroups.senderRetries(config.HERALD_APP, name), topics: [BusTopics.retries(config.HERALD_APP, name)] },
  ],
  logger,
});
const worker = new SenderWorker({ app: config.HERALD_APP, provider, bus, logger, now: () => new Date(), maxAttempts: config.HERALD_MAX_ATTEMPTS,
  backoff: { initialMs: config.HERALD_RETRY_INITIAL_MS, maxMs: config.HERALD_RETRY_MAX_MS },
  credentialCooldownMs: config.HERALD_CREDENTIAL_COOLDOWN_MS,
  metrics,
});
await worker.start();
lifecycle.add("worker", () => worker.stop());

// Liveness/readiness for Kubernetes probes (GET /healthz) and Prometheus (GET /metrics).
// Always 200: a restart cannot fix refused credentials; the body says whether the app is degraded.
const ops = await startOpsServer({ port: config.HERALD_HEALTH_PORT, registry, health: () => ({ app: config.HERALD_APP, provider: name, ...worker.health() }) });
lifecycle.add("health", () => ops.close());
logger.info({ healthPort: ops.port }, "sender running");
