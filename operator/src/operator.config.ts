import { env, serviceEnv } from "@herald/platform";
import { z } from "zod";

// The operator's environment. It talks to the API server (in-cluster service account, or
// KUBECONFIG outside a cluster), the registry (gRPC, admin key) and Kafka (topics, lag).
const { HERALD_MONGO_URL: _mongo, HERALD_GRPC_ADDRESS: _grpc, HERALD_ADMIN_KEY_SHA256: _adminHash, HERALD_METRICS_PORT: _metrics, ...shared } = serviceEnv;

const extraEnv = z
  .string()
  .default("{}")
  .transform((text, ctx) => {
    const shape = 'must be JSON {"*"|"apns"|"fcm"|"hms"|"webpush": {"NAME": "value"}}';
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      ctx.addIssue({ code: "custom", message: `${shape}: ${(err as Error).message}` });
      return z.NEVER;
    }
    // partialRecord: zod 4's record over an enum demands every key.
    const parsed = z.partialRecord(z.enum(["*", "apns", "fcm", "hms", "webpush"]), z.record(z.string().regex(/^[A-Z_][A-Z0-9_]*$/), z.string())).safeParse(json);
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
      ctx.addIssue({ code: "custom", message: `${shape}: ${problems}` });
      return z.NEVER;
    }
    return parsed.data;
  });

export const operatorEnv = z.object({
  ...shared,
  HERALD_ADMIN_KEY: z.string().min(24, "the operator manages apps and API keys with the admin key"),
  HERALD_REGISTRY_ADDRESS: z.string().min(1, "the registry service's host:port"),
  // Namespace whose PushApps are reconciled; empty: every namespace.
  HERALD_WATCH_NAMESPACE: z.string().default(""),
  // The installation this operator is (the chart's release): it reconciles the PushApps whose
  // spec.installation names it, and, with HERALD_CLAIM_UNASSIGNED, claims those that name none.
  HERALD_INSTALLATION: z
    .string()
    .max(63)
    .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "must be a lowercase DNS label (what spec.installation holds)")
    .default("herald"),
  HERALD_CLAIM_UNASSIGNED: env.bool(true),
  // Where the leader-election Lease lives (the operator's own namespace).
  HERALD_OPERATOR_NAMESPACE: z.string().min(1).default("herald-system"),
  HERALD_OPERATOR_IDENTITY: z.string().optional(),
  HERALD_LEADER_ELECTION: env.bool(true),
  HERALD_LEASE_NAME: z.string().default("herald-operator"),
  HERALD_LEASE_DURATION_SECONDS: env.int(15, 2),
  HERALD_LEASE_RENEW_SECONDS: env.int(5, 1),
  // Every PushApp is reconciled at least this often, whatever the watches say.
  HERALD_RESYNC_SECONDS: env.int(300, 1),
  // How often lag-scaled apps re-read their Kafka lag.
  HERALD_AUTOSCALE_INTERVAL_SECONDS: env.int(15, 1),
  // How often an app whose senders are scaled to zero re-reads its lag: the first delivery after
  // an idle spell waits up to this long plus a pod start.
  HERALD_SCALE_FROM_ZERO_INTERVAL_SECONDS: env.int(2, 1),
  // Scaling down waits until the lag has asked for fewer replicas for this long (no flapping).
  HERALD_SCALE_DOWN_STABILIZATION_SECONDS: env.int(300, 0),
  HERALD_RECONCILE_CONCURRENCY: env.int(4, 1),
  // The sender Deployments: image, pull policy, the service account they run as, and extra
  // environment for every sender ("*") or one provider (a proxy, a test endpoint).
  HERALD_SENDER_IMAGE: z.string().min(1).default("ghcr.io/herald-push/herald:0.1.0"),
  HERALD_SENDER_IMAGE_PULL_POLICY: z.enum(["Always", "IfNotPresent", "Never"]).default("IfNotPresent"),
  HERALD_SENDER_SERVICE_ACCOUNT: z.string().default(""),
  HERALD_SENDER_EXTRA_ENV: extraEnv,
  // Replicas of each pooled sender Deployment (one per namespace and provider with pooled apps):
  // HERALD_POOL_REPLICAS, or, with HERALD_POOL_MAX_REPLICAS above it, between the two on the lag
  // of every app the pool serves (0: fixed).
  HERALD_POOL_REPLICAS: env.int(1, 1),
  HERALD_POOL_MAX_REPLICAS: env.int(0, 0),
  HERALD_POOL_TARGET_LAG_PER_REPLICA: env.int(20_000, 1),
  // The Secrets carrying the pooled apps' credentials to each pool (see pool.deployment.ts).
  HERALD_POOL_CREDENTIAL_SHARDS: z.coerce.number().int().min(1).max(256).default(16),
  // The senders of a new PushApp that names no spec.senders.mode (see sender.mode.ts).
  HERALD_DEFAULT_SENDER_MODE: z.enum(["pooled", "dedicated"]).default("pooled"),
  // Herald's version (the chart sets it on every component): the senders' service.version.
  HERALD_VERSION: z.string().default(""),
  // GET /healthz, /readyz and /metrics.
  HERALD_HEALTH_PORT: env.port(8080),
}).superRefine((c, ctx) => {
  if (c.HERALD_POOL_MAX_REPLICAS !== 0 && c.HERALD_POOL_MAX_REPLICAS < c.HERALD_POOL_REPLICAS) {
    ctx.addIssue({ code: "custom", path: ["HERALD_POOL_MAX_REPLICAS"], message: `must be 0 (fixed) or at least HERALD_POOL_REPLICAS (${c.HERALD_POOL_REPLICAS})` });
  }
  // A leader renewing less often than its Lease lasts would lose it between renewals.
  if (c.HERALD_LEADER_ELECTION && c.HERALD_LEASE_RENEW_SECONDS >= c.HERALD_LEASE_DURATION_SECONDS) {
    ctx.addIssue({ code: "custom", path: ["HERALD_LEASE_RENEW_SECONDS"], message: `must be shorter than HERALD_LEASE_DURATION_SECONDS (${c.HERALD_LEASE_DURATION_SECONDS})` });
  }
});

export type OperatorConfig = z.infer<typeof operatorEnv>;
