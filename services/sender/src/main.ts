// One sender process for one provider: of one app (a dedicated sender; the operator runs a
// Deployment per app and provider), or of every pooled app (HERALD_POOL=true: one Deployment per
// provider for the installation, the apps' configuration read from HERALD_POOL_DIR).
import { ConfigError, consumerLagGauge, createMetricsRegistry, env as envOf, KafkaBus, Lifecycle, loadConfig, namespacedBus, serviceEnv, startOpsServer, startTracing, tracingOptions } from "@herald/platform";
import { APP_ID_PATTERN, BusGroups, BusTopics, deliveryTopicsOf, pooledTopics } from "@herald/proto";
import { z } from "zod";
import { tokenRulesEnv, tokenRulesFrom } from "@herald/store";
import { createProvider, providerEnv } from "./provider.factory.js";
import type { ProviderName } from "./provider.types.js";
import { PooledSender } from "./pool.sender.js";
import { appProviderEnv, DirectoryPoolSource } from "./pool.source.js";
import { SenderWorker } from "./sender.consumer.js";
import { senderLogger } from "./sender.logger.js";
import { SenderMetrics } from "./sender.metrics.js";

const { HERALD_MONGO_URL: _mongo, HERALD_GRPC_ADDRESS: _grpc, HERALD_ADMIN_KEY: _admin, HERALD_ADMIN_KEY_SHA256: _adminHash, HERALD_METRICS_PORT: _metrics, ...env } = serviceEnv;
const config = loadConfig(
  z.object({
    ...env,
    ...providerEnv,
    ...tokenRulesEnv,
    HERALD_APP: z.string().regex(APP_ID_PATTERN, "an app id").optional(),
    HERALD_POOL: envOf.bool(false),
    // Each pooled app's credential files and settings.json, named <app id>.<file> (the
    // operator's credential shards, mounted together).
    HERALD_POOL_DIR: z.string().default("/etc/herald/pool"),
    HERALD_POOL_RESCAN_MS: envOf.int(2000, 100),
    // New apps' topics are looked for every 3 s; taking them on is a consumer group rebalance,
    // made at most this often while apps keep coming (the first after a quiet spell at once).
    HERALD_POOL_RESUBSCRIBE_MS: envOf.int(30_000, 0),
    // Apps worked on at once per lane.
    HERALD_POOL_CONCURRENCY: envOf.int(8, 1),
    // A pooled app that has sent nothing for this long gets its provider and connections closed
    // (its next job opens them again); 0: never.
    HERALD_POOL_IDLE_CLOSE_MS: envOf.int(300_000, 0),
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
if (!config.HERALD_POOL && !config.HERALD_APP) throw new ConfigError(["HERALD_APP (unset): the app this sender serves is required, unless HERALD_POOL=true"]);
if (config.HERALD_POOL && config.HERALD_APP) throw new ConfigError(["HERALD_APP: excludes HERALD_POOL=true (a pooled sender serves every app of HERALD_POOL_DIR)"]);
const logger = senderLogger({ app: config.HERALD_APP ?? "(pool)", provider: name, level: config.HERALD_LOG_LEVEL });
const lifecycle = new Lifecycle(logger);
lifecycle.installSignalHandlers();

const tracing = startTracing(tracingOptions(config, `herald-sender-${name}`));
lifecycle.add("tracing", () => tracing.shutdown());

const registry = createMetricsRegistry(`herald-sender-${name}`);
const tokenRules = tokenRulesFrom(config);
// A pooled sender notices a new app's topics at its next topic refresh (then its consumers join
// their groups again, a pause of a few seconds for every pooled app).
const kafka = new KafkaBus({ brokers: config.HERALD_KAFKA_BROKERS, clientId: `herald-sender-${config.HERALD_APP ?? "pool"}-${name}`, logger, ...(config.HERALD_POOL ? { consumer: { topicRefreshMs: 3000, resubscribeMinIntervalMs: config.HERALD_POOL_RESUBSCRIBE_MS } } : {}) });
const bus = namespacedBus(kafka, config.HERALD_KAFKA_NAMESPACE);
const shared = [BusTopics.control, BusTopics.results, BusTopics.tokenFeedback, BusTopics.deadLetter];
const health = config.HERALD_APP ? await dedicated(config.HERALD_APP) : await pooled();

// Liveness/readiness for Kubernetes probes (GET /healthz) and Prometheus (GET /metrics).
// Always 200: a restart cannot fix refused credentials; the body says whether an app is degraded.
const ops = await startOpsServer({ port: config.HERALD_HEALTH_PORT, registry, health });
lifecycle.add("health", () => ops.close());
logger.info({ healthPort: ops.port }, "sender running");

async function dedicated(app: string): Promise<() => object> {
  const metrics = new SenderMetrics(registry, app, name);
  // Before Kafka: a missing credential stops the sender at once, naming the file or variable.
  const provider = createProvider(name, config, { tokenRules, onRequest: metrics.request });
  lifecycle.add("provider", () => provider.close());
  lifecycle.add("bus", () => bus.close());
  const lanes = deliveryTopicsOf(app, name);
  await bus.ensureTopics([...lanes.map((l) => l.topic), BusTopics.retries(app, name), ...shared].map((t) => ({ name: t, partitions: 8 })));
  consumerLagGauge({
    registry,
    bus,
    groups: [
      // One series per lane (its group and topic labels): lag per lane.
      ...lanes.map((l) => ({ group: l.group, topics: [l.topic] })),
      { group: BusGroups.senderRetries(app, name), topics: [BusTopics.retries(app, name)] },
    ],
    logger,
  });
  const worker = new SenderWorker({ app, provider, bus, logger, now: () => new Date(), maxAttempts: config.HERALD_MAX_ATTEMPTS,
    backoff: { initialMs: config.HERALD_RETRY_INITIAL_MS, maxMs: config.HERALD_RETRY_MAX_MS },
    credentialCooldownMs: config.HERALD_CREDENTIAL_COOLDOWN_MS,
    metrics,
  });
  await worker.start();
  lifecycle.add("worker", () => worker.stop());
  return () => ({ app, provider: name, ...worker.health() });
}

async function pooled(): Promise<() => object> {
  const source = new DirectoryPoolSource({ dir: config.HERALD_POOL_DIR, rescanMs: config.HERALD_POOL_RESCAN_MS, logger });
  await source.start();
  lifecycle.add("pool source", () => source.stop());
  lifecycle.add("bus", () => bus.close());
  await bus.ensureTopics(shared.map((t) => ({ name: t, partitions: 8 })));
  const metricsOf = SenderMetrics.perApp(registry, name);
  const pool = new PooledSender({
    provider: name,
    bus,
    logger,
    now: () => new Date(),
    source,
    // Each app's provider reports its requests under its own app label.
    createProvider: async (app) => createProvider(name, appProviderEnv(config, await app.settings()), { tokenRules, credentialPath: app.path, onRequest: metricsOf(app.id).request }),
    metrics: metricsOf,
    concurrency: config.HERALD_POOL_CONCURRENCY,
    problemCooldownMs: config.HERALD_CREDENTIAL_COOLDOWN_MS,
    missingRetryMs: config.HERALD_POOL_RESCAN_MS,
    ...(config.HERALD_POOL_IDLE_CLOSE_MS > 0 ? { idleCloseMs: config.HERALD_POOL_IDLE_CLOSE_MS } : {}),
    worker: { maxAttempts: config.HERALD_MAX_ATTEMPTS, backoff: { initialMs: config.HERALD_RETRY_INITIAL_MS, maxMs: config.HERALD_RETRY_MAX_MS }, credentialCooldownMs: config.HERALD_CREDENTIAL_COOLDOWN_MS },
  });
  consumerLagGauge({
    registry,
    bus,
    // The topics of the apps this process has met (one series per app and lane).
    groups: () => {
      const apps = pool.knownApps();
      return [
        ...pooledTopics(name).lanes.map((l) => ({ group: l.group, topics: apps.map((a) => BusTopics.pooled(a, name, l.lane)) })),
        { group: BusGroups.poolRetries(name), topics: apps.map((a) => BusTopics.pooledRetries(a, name)) },
      ];
    },
    logger,
  });
  await pool.start();
  lifecycle.add("pool", () => pool.stop());
  return () => ({ pool: true, provider: name, ...pool.health() });
}
