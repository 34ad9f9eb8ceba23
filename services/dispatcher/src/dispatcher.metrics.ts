import { Counter, Histogram, type Registry } from "prom-client";

// What the dispatcher counts for Prometheus: publishes accepted, how long fan-outs take, and the
// jobs and targets they hand to each provider's sender.
export class DispatcherMetrics {
  private readonly accepted: Counter<"app" | "scheduled">;
  private readonly fanout: Histogram<"app">;
  private readonly jobs: Counter<"app" | "provider">;
  private readonly targets: Counter<"app" | "provider">;

  constructor(registry: Registry) {
    this.accepted = new Counter({ name: "herald_publishes_accepted_total", help: "Publishes accepted (scheduled: has a future send_at)", labelNames: ["app", "scheduled"], registers: [registry] });
    this.fanout = new Histogram({
      name: "herald_fanout_duration_seconds",
      help: "From the start of a publish's fan-out until its last job is on Kafka",
      labelNames: ["app"],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers: [registry],
    });
    this.jobs = new Counter({ name: "herald_fanout_jobs_total", help: "Delivery jobs handed to the senders", labelNames: ["app", "provider"], registers: [registry] });
    this.targets = new Counter({ name: "herald_fanout_targets_total", help: "Devices or raw tokens in the delivery jobs handed to the senders", labelNames: ["app", "provider"], registers: [registry] });
  }

  publishAccepted(app: string, scheduled: boolean): void {
    this.accepted.inc({ app, scheduled: String(scheduled) });
  }

  fanoutDone(app: string, seconds: number): void {
    this.fanout.observe({ app }, seconds);
  }

  handedOn(app: string, provider: string, targets: number): void {
    this.jobs.inc({ app, provider });
    this.targets.inc({ app, provider }, targets);
  }
}
