import { env, serviceEnv } from "@herald/platform";
import { z } from "zod";

const { HERALD_LOG_LEVEL, HERALD_METRICS_PORT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, HERALD_TRACE_SAMPLE_RATIO, OTEL_SERVICE_NAME } = serviceEnv;

// The gateway's environment: where it listens, the services behind it, its body limit, and the
// admin key for the compatibility APIs.
export const gatewayEnv = z.object({
  HERALD_LOG_LEVEL,
  HERALD_METRICS_PORT,
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
  HERALD_TRACE_SAMPLE_RATIO,
  OTEL_SERVICE_NAME,
  HERALD_HTTP_ADDRESS: z.string().default("0.0.0.0:8080"),
  HERALD_REGISTRY_ADDRESS: z.string().min(1, "the registry service's host:port"),
  HERALD_TOPIC_ADDRESS: z.string().min(1, "the topic service's host:port"),
  HERALD_DISPATCHER_ADDRESS: z.string().min(1, "the dispatcher's host:port"),
  // host:port of gorush's gRPC API (Gorush.Send; gorush listens on 9000); not served when unset.
  HERALD_GORUSH_GRPC_ADDRESS: z.string().min(1).optional(),
  // Larger bodies are refused with 413 before they are read.
  HERALD_HTTP_MAX_BODY_BYTES: env.int(1024 * 1024, 1024),
  // Needed by the Pusher Beams-compatible routes only (they act on the app named in the path).
  HERALD_ADMIN_KEY: z.string().min(24, "use at least 24 random characters").optional(),
});

export type GatewayConfig = z.infer<typeof gatewayEnv>;
