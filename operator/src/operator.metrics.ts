import { Counter, Gauge, Histogram, type Registry } from "prom-client";

// What the operator reports to Prometheus: reconciles by result and their duration, the work
// queue's depth, whether it leads, each app's readiness, credential failures, and the Kafka
// lag of every sender (what lag-based scaling acts on).
export class OperatorMetrics {
  readonly reconciles: Counter<"result">;
  readonly duration: Histogram<"result">;
  readonly ready: Gauge<"namespace" | "app">;
  readonly credentialFailures: Counter<"namespace" | "app" | "reason">;
  readonly senderLag: Gauge<"namespace" | "app" | "provider">;
  readonly senderReplicas: Gauge<"namespace" | "app" | "provider">;
  readonly leader: Gauge;
  readonly poolLag: Gauge<"namespace" | "provider">;
  readonly poolReplicas: Gauge<"namespace" | "provider">;

  constructor(registry: Registry, queueDepth: () => number) {
    this.reconciles = new Counter({ name: "herald_operator_reconciles_total", help: "PushApp reconciles by result (success, error)", labelNames: ["result"], registers: [registry] });
    this.duration = new Histogram({
      name: "herald_operator_reconcile_duration_seconds",
      help: "Duration of one PushApp reconcile",
      labelNames: ["result"],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    });
    new Gauge({
      name: "herald_operator_queue_depth",
      help: "PushApp keys waiting or being reconciled",
      registers: [registry],
      collect() {
        this.set(queueDepth());
      },
    });
    this.ready = new Gauge({ name: "herald_operator_pushapp_ready", help: "1 when the PushApp's Ready condition is True", labelNames: ["namespace", "app"], registers: [registry] });
    this.credentialFailures = new Counter({
      name: "herald_operator_credential_failures_total",
      help: "Reconciles that found a referenced credential missing or invalid",
      labelNames: ["namespace", "app", "reason"],
      registers: [registry],
    });
    this.senderLag = new Gauge({ name: "herald_operator_sender_lag", help: "Deliveries waiting for a provider's senders (Kafka consumer lag)", labelNames: ["namespace", "app", "provider"], registers: [registry] });
    this.senderReplicas = new Gauge({ name: "herald_operator_sender_desired_replicas", help: "Sender replicas the operator asks for, per provider (0: scaled to zero while idle, or served by the namespace's pool)", labelNames: ["namespace", "app", "provider"], registers: [registry] });
    this.poolLag = new Gauge({ name: "herald_operator_pool_lag", help: "Deliveries waiting for a pool's senders, over every app it serves (what its scaling acts on)", labelNames: ["namespace", "provider"], registers: [registry] });
    this.poolReplicas = new Gauge({ name: "herald_operator_pool_desired_replicas", help: "Replicas the operator asks for of a namespace's pool Deployment for one provider", labelNames: ["namespace", "provider"], registers: [registry] });
    this.leader = new Gauge({ name: "herald_operator_leader", help: "1 while this replica holds the leader Lease", registers: [registry] });
  }

  // Drops every series of a PushApp that is gone, so dashboards and alerts do not keep a deleted
  // app's last readiness or lag forever.
  // (prom-client removes a series by its exact label set, so every reason and provider is named.)
  forgetApp(namespace: string, app: string): void {
    this.ready.remove({ namespace, app });
    for (const reason of ["SecretNotFound", "SecretKeyMissing", "InvalidCredentials", "ProjectIdMismatch"]) this.credentialFailures.remove({ namespace, app, reason });
    for (const provider of ["apns", "fcm", "hms", "webpush"]) {
      this.senderLag.remove({ namespace, app, provider });
      this.senderReplicas.remove({ namespace, app, provider });
    }
  }

  forgetPool(namespace: string, provider: string): void {
    this.poolLag.remove({ namespace, provider });
    this.poolReplicas.remove({ namespace, provider });
  }
}
