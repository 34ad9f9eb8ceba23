import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { RequestObserver } from "./provider.types.js";

// What a sender counts for Prometheus. One instance per process (one app and provider), so the
// app and provider labels are fixed here.
export type DeliveryResultLabel = "sent" | "failed" | "invalid_token" | "retrying" | "dead_lettered" | "expired" | "cancelled" | "credentials";

export class SenderMetrics {
  private readonly deliveries: Counter<"app" | "provider" | "result" | "reason">;
  private readonly requests: Histogram<"app" | "provider" | "status">;
  private readonly inflight: Gauge<"app" | "provider">;
  private readonly labels: { app: string; provider: string };

  constructor(registry: Registry, app: string, provider: string) {
    this.labels = { app, provider };
    this.deliveries = new Counter({
      name: "herald_deliveries_total",
      help: "Delivery outcomes per target: sent, failed, invalid_token, retrying, dead_lettered, expired, cancelled, credentials; reason is the provider's code (e.g. apns:BadDeviceToken)",
      labelNames: ["app", "provider", "result", "reason"],
      registers: [registry],
    });
    this.requests = new Histogram({
      name: "herald_provider_request_duration_seconds",
      help: "Provider HTTP request duration by HTTP status (0: no answer)",
      labelNames: ["app", "provider", "status"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15],
      registers: [registry],
    });
    this.inflight = new Gauge({ name: "herald_sender_inflight_jobs", help: "Delivery jobs being sent right now", labelNames: ["app", "provider"], registers: [registry] });
    // Exported from the start, at 0: the series that says this app's sender is there at all (the
    // HeraldSenderMissing alert looks for it), before and between deliveries.
    this.inflight.set(this.labels, 0);
  }

  delivery(result: DeliveryResultLabel, reason: string, n = 1): void {
    if (n > 0) this.deliveries.inc({ ...this.labels, result, reason }, n);
  }

  readonly request: RequestObserver = (status, seconds) => this.requests.observe({ ...this.labels, status: String(status) }, seconds);

  jobStarted(): void {
    this.inflight.inc(this.labels);
  }

  jobFinished(): void {
    this.inflight.dec(this.labels);
  }
}
