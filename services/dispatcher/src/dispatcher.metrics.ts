import { cachedRead, polledGauge, type Logger } from "@herald/platform";
import type { PublishRepository, PublishStateName } from "@herald/store";
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

// States a publish moves out of on its own; one that sits in them unchanged is stuck (a fan-out
// that died, jobs no sender consumes, results that never came).
const MOVING: PublishStateName[] = ["queued", "fanning_out", "sending"];

// `herald_publishes_stalled{app, state}`: publishes that made no progress (no count, cursor or
// state change) for `stallSeconds`. Read on scrape, at most every 30 s, and at most 1000 of them
// (the alert needs "> 0", not an exact census).
export function stalledPublishesGauge(o: { registry: Registry; publishes: PublishRepository; stallSeconds: number; logger: Logger; now?: () => Date }): void {
  const now = o.now ?? (() => new Date());
  const read = cachedRead(async () => {
    const stale = await o.publishes.listStale(MOVING, new Date(now().getTime() - o.stallSeconds * 1000), 1000);
    const byKey = new Map<string, { labels: { app: string; state: string }; value: number }>();
    for (const p of stale) {
      const key = `${p.app}\n${p.state}`;
      const sample = byKey.get(key) ?? { labels: { app: p.app, state: p.state }, value: 0 };
      sample.value++;
      byKey.set(key, sample);
    }
    return [...byKey.values()];
  }, 30_000);
  polledGauge({
    registry: o.registry,
    name: "herald_publishes_stalled",
    help: `Publishes queued, fanning out or sending that made no progress for the stall time (HERALD_PUBLISH_STALL_SECONDS)`,
    labelNames: ["app", "state"] as const,
    read,
    logger: o.logger,
  });
}
