import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, Histogram, Registry } from "prom-client";
import { Status } from "./errors.js";
import type { GrpcCallType } from "./grpc.server.js";
import type { Lifecycle } from "./lifecycle.shutdown.js";
import type { Logger } from "./log.logger.js";

// One Prometheus registry per process, created in main.ts and handed to whatever records into
// it (prom-client's global default registry is never used). Process metrics (CPU, memory, event
// loop lag, GC) come with it, labelled with the service.
export function createMetricsRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  // prom-client also exports the sums of nodejs_active_{handles,requests,resources} as gauges
  // named *_total, which Prometheus reserves for counters (promtool check metrics flags them, and
  // rate() over them would be wrong): dropped; sum the by-type gauges instead.
  for (const name of DROPPED_DEFAULT_METRICS) registry.removeSingleMetric(name);
  return registry;
}

export const DROPPED_DEFAULT_METRICS = ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"];

// GrpcServerOptions.onCall recording into `herald_grpc_server_duration_seconds` (method, code
// name, grpc_type unary or server_stream): request rates, error rates and latency per RPC. A
// stream's duration is how long the client kept it open, so latency panels take
// grpc_type="unary" only.
export function grpcCallMetrics(registry: Registry): (method: string, code: Status, seconds: number, type?: GrpcCallType) => void {
  const calls = new Histogram({
    name: "herald_grpc_server_duration_seconds",
    help: "gRPC calls served, by method, status code and type (unary, server_stream: the whole stream)",
    labelNames: ["method", "code", "grpc_type"],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30],
    registers: [registry],
  });
  return (method, code, seconds, type = "unary") => calls.observe({ method, code: Status[code] ?? String(code), grpc_type: type }, seconds);
}

export interface OpsServer {
  readonly port: number;
  close(): Promise<void>;
}

// The HTTP side of a service for Prometheus and Kubernetes: GET /metrics (text exposition
// format), GET /healthz (200 with `health()`'s JSON) and GET /readyz (200 or 503 from `ready()`,
// for a readiness probe; always 200 without it). Anything else is a 404 with a reason.
export async function startOpsServer(o: { port: number; host?: string; registry: Registry; health?: () => unknown; ready?: () => { ready: boolean; [k: string]: unknown } }): Promise<OpsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const json = (status: number, body: unknown) => res.writeHead(status, { "content-type": "application/json" }).end(`${JSON.stringify(body)}\n`);
    if (req.method !== "GET") return json(405, { error: "method_not_allowed", description: "only GET" });
    if (path === "/metrics") {
      o.registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": o.registry.contentType }).end(text),
        (err: unknown) => json(500, { error: "metrics_failed", description: String(err) }),
      );
      return;
    }
    if (path === "/healthz" || path === "/") return json(200, o.health?.() ?? { ok: true });
    if (path === "/readyz") {
      const state = o.ready?.() ?? { ready: true };
      return json(state.ready ? 200 : 503, state);
    }
    return json(404, { error: "not_found", description: `no ${path}: try /metrics, /healthz or /readyz` });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

// The ops server of a gRPC service when HERALD_METRICS_PORT is set, stopped with the process.
export async function serveMetrics(o: { port: number | undefined; registry: Registry; lifecycle: Lifecycle; logger: Logger }): Promise<void> {
  if (o.port === undefined) return;
  const ops = await startOpsServer({ port: o.port, registry: o.registry });
  o.lifecycle.add("metrics", () => ops.close());
  o.logger.info({ metricsPort: ops.port }, "metrics on /metrics");
}
