// One sender process: one app and one provider (the operator runs a Deployment per pair).
import { createLogger, KafkaBus, Lifecycle, loadConfig, serviceEnv, startTracing } from "@herald/platform";
import { BusTopics } from "@herald/proto";
import { createServer } from "node:http";
import { z } from "zod";
import type { ProviderName, PushProvider } from "./provider.types.js";
import { DryRunProvider } from "./providers/dryrun.provider.js";
import { SenderWorker } from "./sender.consumer.js";

const { HERALD_MONGO_URL: _mongo, HERALD_GRPC_ADDRESS: _grpc, HERALD_ADMIN_KEY: _admin, HERALD_ADMIN_KEY_SHA256: _adminHash, ...env } = serviceEnv;
const config = loadConfig(
  z.object({
    ...env,
    HERALD_APP: z.string().regex(/^[a-z][a-z0-9-]{0,63}$/, "an app id"),
    HERALD_PROVIDER: z.enum(["apns", "fcm", "hms", "webpush"]),
    // Without credentials a sender runs dry-run: it accepts every delivery without calling anyone.
    HERALD_DRY_RUN: z.enum(["true", "false"]).default("false").transform((v) => v === "true"),
    HERALD_DRY_RUN_LATENCY_MS: z.coerce.number().int().min(0).default(0),
    HERALD_MAX_ATTEMPTS: z.coerce.number().int().min(1).default(8),
    HERALD_HEALTH_PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  }),
);
const name = config.HERALD_PROVIDER as ProviderName;
const logger = createLogger({ service: `herald-sender-${name}`, level: config.HERALD_LOG_LEVEL }).child({ app: config.HERALD_APP, provider: name });
const lifecycle = new Lifecycle(logger);
lifecycle.installSignalHandlers();

const tracing = startTracing({ serviceName: `herald-sender-${name}`, otlpEndpoint: config.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, sampleRatio: config.HERALD_TRACE_SAMPLE_RATIO });
lifecycle.add("tracing", () => tracing.shutdown());

function provider(): PushProvider {
  if (config.HERALD_DRY_RUN) return new DryRunProvider(name, config.HERALD_DRY_RUN_LATENCY_MS);
  throw new Error(`HERALD_PROVIDER=${name}: real provider credentials are not wired in this build yet; set HERALD_DRY_RUN=true`);
}

const bus = new KafkaBus({ brokers: config.HERALD_KAFKA_BROKERS, clientId: `herald-sender-${config.HERALD_APP}-${name}`, logger });
lifecycle.add("bus", () => bus.close());
await bus.ensureTopics([BusTopics.deliveries(config.HERALD_APP, name), BusTopics.retries(config.HERALD_APP, name), BusTopics.control, BusTopics.results, BusTopics.tokenFeedback, BusTopics.deadLetter].map((t) => ({ name: t, partitions: 8 })));
const worker = new SenderWorker({ app: config.HERALD_APP, provider: provider(), bus, logger, now: () => new Date(), maxAttempts: config.HERALD_MAX_ATTEMPTS });
await worker.start();
lifecycle.add("worker", () => worker.stop());

// Liveness/readiness for Kubernetes probes.
const health = createServer((_req, res) => res.writeHead(200, { "content-type": "text/plain" }).end("ok\n"));
await new Promise<void>((resolve) => health.listen(config.HERALD_HEALTH_PORT, resolve));
lifecycle.add("health", () => new Promise((resolve) => health.close(() => resolve())));
logger.info({ healthPort: config.HERALD_HEALTH_PORT }, "sender running");
