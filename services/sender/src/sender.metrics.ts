import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { RequestObserver } from "./provider.types.js";

// What a sender counts for Prometheus, per app and provider (a dedicated sender has one instance,
// a pooled sender one per app).
export type DeliveryResultLabel = "sent" | "failed" | "invalid_token" | "retrying" | "dead_lettered" | "expired" | "cancelled" | "credentials";

interface SenderSeries {
  deliveries: Counter<"app" | "provider" | "result" | "reason">;
  requests: Histogram<"app" | "provider" | "status">;
  inflight: Gauge<"app" | "provider">;
}

function senderSeries(registry: Registry): SenderSeries {
  return {
    deliveries: new Counter({
      name: "herald_deliveries_total",
      help: "Delivery outcomes per target: sent, failed, invalid_token, retrying, dead_lettered, expired, cancelled, credentials; reason is the provider's code (e.g. apns:BadDeviceToken)",
      labelNames: ["app", "provider", "result", "reason"],
      registers: [registry],
    }),
    requests: new Histogram({
      name: "herald_provider_request_duration_seconds",
      help: "Provider HTTP request duration by HTTP status (0: no answer)",
      labelNames: ["app", "provider", "status"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15],
      registers: [registry],
    }),
    inflight: new Gauge({ name: "herald_sender_inflight_jobs", help: "Delivery jobs being sent right now", labelNames: ["app", "provider"], registers: [registry] }),
  };
}

export class SenderMetrics {
  private readonly labels: { app: string; provider: string };
  private readonly series: SenderSeries;

  constructor(registry: Registry | SenderSeries, app: string, provider: string) {
    this.labels = { app, provider };
    this.series = "deliveries" in registry ? registry : senderSeries(registry);
    // Exported from the start, at 0: the series that says this app's sender is there at all (the
    // HeraldSenderMissing alert looks for it), before and between deliveries.
    this.series.inflight.set(this.labels, 0);
  }

  // A pooled sender's: the same series, one set of app labels per app it serves.
  static perApp(registry: Registry, provider: string): (app: string) => SenderMetrics {
    const series = senderSeries(registry);
    return (app) => new SenderMetrics(series, app, provider);
  }

  delivery(result: DeliveryResultLabel, reason: string, n = 1): void {
    if (n > 0) this.series.deliveries.inc({ ...this.labels, result, reason }, n);
  }

  readonly request: RequestObserver = (status, seconds) => this.series.requests.observe({ ...this.labels, status: String(status) }, seconds);

  jobStarted(): void {
    this.series.inflight.inc(this.labels);
  }

  jobFinished(): void {
    this.series.inflight.dec(this.labels);
  }
}
