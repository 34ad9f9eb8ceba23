// The HTTP gateway as its own process (distributed mode): config → gRPC upstreams → HTTP server.
import { Histogram } from "prom-client";
import { createLogger, createMetricsRegistry, env, Lifecycle, loadConfig, serveMetrics, serviceEnv, startTracing, tracingOptions } from "@herald/platform";
import { z } from "zod";
import { createGateway } from "./gateway.module.js";
import { startHttpServer } from "./http.listen.js";

const { HERALD_LOG_LEVEL, HERALD_METRICS_PORT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, HERALD_TRACE_SAMPLE_RATIO, OTEL_SERVICE_NAME } = serviceEnv;
const config = loadConfig(
  z.object({
    HERALD_LOG_LEVEL,
    HERALD_METRICS_PORT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    HERALD_TRACE_SAMPLE_RATIO,
    OTEL_SERVICE_NAME,
    HERALD_HTTP_ADDRESS: z.string().default("0.0.0.0:8080"),
    HERALD_REGISTRY_ADDRESS: z.string().min(1, "the registry service's host:port"),
    HERALD_TOPIC_ADDRESS: z.string().min(1, "the topic service's host:port"),
    HERALD_DISPATCHER_ADDRESS: z.string().min(1, "the dispatcher's host:port"),
    // Larger bodies are refused with 413 before they are read.
    HERALD_HTTP_MAX_BODY_BYTES: env.int(1024 * 1024, 1024),
    // Needed by the Pusher Beams-compatible routes only (they act on the app named in the path).
    HERALD_ADMIN_KEY: z.string().min(24, "use at least 24 random characters").optional(),
  }),
);
const logger = createLogger({ service: "herald-gateway", level: config.HERALD_LOG_LEVEL });
const lifecycle = new Lifecycle(logger);
lifecycle.installSignalHandlers();

const tracing = startTracing(tracingOptions(config, "herald-gateway"));
lifecycle.add("tracing", () => tracing.shutdown());

const metrics = createMetricsRegistry("herald-gateway");
const requests = new Histogram({
  name: "herald_http_request_duration_seconds",
  help: "HTTP requests served by the gateway, by route pattern, method and status",
  labelNames: ["route", "method", "status"],
  buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30],
  registers: [metrics],
});
const gateway = createGateway({
  addresses: { registry: config.HERALD_REGISTRY_ADDRESS, topic: config.HERALD_TOPIC_ADDRESS, dispatcher: config.HERALD_DISPATCHER_ADDRESS },
  maxBodyBytes: config.HERALD_HTTP_MAX_BODY_BYTES,
  ...(config.HERALD_ADMIN_KEY ? { adminKey: config.HERALD_ADMIN_KEY } : {}),
  logger,
  version: "0.1.0",
  onRequest: (route, method, status, seconds) => requests.observe({ route, method, status: String(status) }, seconds),
});
lifecycle.add("upstreams", async () => gateway.close());
const server = await startHttpServer(config.HERALD_HTTP_ADDRESS, gateway.handler);
lifecycle.add("http", () => server.close());
await serveMetrics({ port: config.HERALD_METRICS_PORT, registry: metrics, lifecycle, logger });
logger.info({ port: server.port }, "gateway serving");
