// The HTTP gateway as its own process (distributed mode): config → gRPC upstreams → HTTP server.
import { Histogram } from "prom-client";
import { createLogger, createMetricsRegistry, Lifecycle, loadConfig, serveMetrics, startTracing, tracingOptions } from "@herald/platform";
import { gatewayEnv } from "./gateway.config.js";
import { createGateway } from "./gateway.module.js";
import { startHttpServer } from "./http.listen.js";

const config = loadConfig(gatewayEnv);
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
if (config.HERALD_GORUSH_GRPC_ADDRESS) {
  const gorush = await gateway.listenGorush(config.HERALD_GORUSH_GRPC_ADDRESS);
  lifecycle.add("gorush grpc", () => gorush.stop());
  logger.info({ port: gorush.port }, "gorush gRPC API serving");
}
await serveMetrics({ port: config.HERALD_METRICS_PORT, registry: metrics, lifecycle, logger });
logger.info({ port: server.port }, "gateway serving");
