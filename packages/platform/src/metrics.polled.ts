import { Gauge, type Registry } from "prom-client";
import type { Bus } from "./bus/bus.types.js";
import type { Logger } from "./log.logger.js";

export interface PolledSample<L extends string> {
  labels: Record<L, string>;
  value: number;
}

// A read shared by several gauges and made at most every `minIntervalMs`: counting a
// collection or asking Kafka for offsets costs more than a scrape should, and several gauges
// (topics and subscriptions) come from one read.
export function cachedRead<T>(read: () => Promise<T>, minIntervalMs: number, timeoutMs = 5000): () => Promise<T> {
  let last: { at: number; value: Promise<T> } | undefined;
  return () => {
    if (!last || Date.now() - last.at >= minIntervalMs) {
      const value = withTimeout(read(), timeoutMs);
      last = { at: Date.now(), value };
      // A failed read is not cached: the next scrape tries again.
      value.catch(() => {
        if (last?.value === value) last = undefined;
      });
    }
    return last.value;
  };
}

// A gauge whose samples are read when Prometheus scrapes. A failed read is logged and leaves
// the gauge empty for that scrape: a stale number would look like a healthy one.
export function polledGauge<L extends string>(o: {
  registry: Registry;
  name: string;
  help: string;
  labelNames: readonly L[];
  read: () => Promise<PolledSample<L>[]>;
  logger: Logger;
}): Gauge<L> {
  return new Gauge<L>({
    name: o.name,
    help: o.help,
    labelNames: o.labelNames,
    registers: [o.registry],
    async collect() {
      this.reset();
      try {
        for (const s of await o.read()) this.set(s.labels, s.value);
      } catch (err) {
        o.logger.warn({ err, metric: o.name }, "metric read failed; no samples this scrape");
      }
    },
  });
}

// `herald_consumer_lag{group, topic, partition}`: how far each of this process's consumer
// groups is behind, per partition (the dashboards' and the lag alert's source). Several replicas
// of a group report the same partitions; dashboards take the max per partition.
// `groups`: fixed, or read at every scrape (a pooled sender's topics grow with its apps).
export function consumerLagGauge(o: { registry: Registry; bus: Bus; groups: Array<{ group: string; topics: string[] }> | (() => Array<{ group: string; topics: string[] }>); logger: Logger; minIntervalMs?: number }): Gauge<"group" | "topic" | "partition"> {
  const read = cachedRead(async () => {
    const groups = typeof o.groups === "function" ? o.groups() : o.groups;
    const perGroup = await Promise.all(groups.filter((g) => g.topics.length > 0).map(async ({ group, topics }) => (await o.bus.lag(group, topics)).map((l) => ({ group, ...l }))));
    return perGroup.flat().map((l) => ({ labels: { group: l.group, topic: l.topic, partition: String(l.partition) }, value: l.lag }));
  }, o.minIntervalMs ?? 5000);
  return polledGauge({ registry: o.registry, name: "herald_consumer_lag", help: "Messages of a topic partition the consumer group has not processed yet", labelNames: ["group", "topic", "partition"], read, logger: o.logger });
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
