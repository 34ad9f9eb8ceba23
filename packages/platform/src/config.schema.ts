import { z } from "zod";

// Each service declares its environment as a zod object whose keys are the variable names, so
// an error can name the variable to fix.
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`);
    this.name = "ConfigError";
  }
}

export function loadConfig<S extends z.ZodObject>(schema: S, env: NodeJS.ProcessEnv = process.env): z.infer<S> {
  const result = schema.safeParse(env);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const name = issue.path.join(".");
    const raw = env[name];
    const shown = raw === undefined ? "unset" : isSecret(name) ? "[redacted]" : JSON.stringify(raw);
    return `${name} (${shown}): ${issue.message}`;
  });
  throw new ConfigError(problems);
}

// Never echo a credential back in an error message.
const isSecret = (name: string) => /KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL/i.test(name);

export const env = {
  port: (fallback: number) => z.coerce.number().int().min(0).max(65535).default(fallback),
  int: (fallback: number, min = 0) => z.coerce.number().int().min(min).default(fallback),
  bool: (fallback: boolean) =>
    z
      .enum(["true", "false", "1", "0", "yes", "no"])
      .default(fallback ? "true" : "false")
      .transform((v) => v === "true" || v === "1" || v === "yes"),
  csv: (fallback: string[] = []) =>
    z
      .string()
      .default(fallback.join(","))
      .transform((v) => v.split(",").map((s) => s.trim()).filter(Boolean)),
  url: () => z.string().url(),
  logLevel: () => z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
};

// Variables every distributed service reads.
export const serviceEnv = {
  HERALD_LOG_LEVEL: env.logLevel(),
  HERALD_GRPC_ADDRESS: z.string().default("0.0.0.0:50051"),
  HERALD_MONGO_URL: z.string().startsWith("mongodb", "must be a mongodb:// URL"),
  HERALD_KAFKA_BROKERS: z
    .string()
    .min(1, "list the Kafka brokers, e.g. kafka-0:9092,kafka-1:9092")
    .transform((v) => v.split(",").map((s) => s.trim()).filter(Boolean)),
  // Prefix of every Kafka topic and consumer group, for installations sharing a cluster.
  HERALD_KAFKA_NAMESPACE: z.string().regex(/^[a-zA-Z0-9._-]{0,100}$/, "letters, digits, '.', '_' and '-' only").default(""),
  HERALD_ADMIN_KEY: z.string().min(24, "use at least 24 random characters").optional(),
  HERALD_ADMIN_KEY_SHA256: z.string().regex(/^[0-9a-f]{64}$/, "must be a lowercase hex SHA-256").optional(),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: z.string().url().optional(),
  HERALD_TRACE_SAMPLE_RATIO: z.coerce.number().min(0).max(1).default(1),
  // The service's name in traces (default herald-<service>).
  OTEL_SERVICE_NAME: z.string().optional(),
  // Port of GET /metrics (Prometheus) and /healthz; unset: no such server (0: any free port).
  HERALD_METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  // The registry and topic service recount devices and subscriptions for /metrics at most this
  // often (a count reads the collection).
  HERALD_SIZE_METRICS_INTERVAL_SECONDS: z.coerce.number().int().min(1).default(60),
};
