import type { Registry } from "prom-client";
import type { Logger } from "./log.logger.js";

// A counter or histogram keeps every label set it has seen until the process ends, so the series
// of a deleted app would be exported, and stored by Prometheus, for as long as the pod runs. No
// service is told of a deletion (only the registry replica serving DeleteApp sees it), so each
// checks instead: every `intervalMs` the `app` label values of its registry's series are looked
// up, and the series of the apps that no longer exist are removed. Gauges read on scrape
// (polledGauge, a `collect` function) are left alone: they are rebuilt from the store each time.

type AppLabelled = {
  name: string;
  labelNames?: readonly string[];
  collect?: unknown;
  get(): Promise<{ values: Array<{ labels: Record<string, string | number | undefined> }> }>;
  remove(labels: Record<string, string | number>): void;
};

// How often each service checks (a deleted app's series go within a minute or so).
export const APP_SERIES_SWEEP_MS = 60_000;

export interface AppSeriesSweeper {
  // One pass: the apps whose series were removed.
  sweep(): Promise<string[]>;
  stop(): void;
}

export function dropDeletedAppSeries(o: { registry: Registry; exists: (app: string) => Promise<boolean>; intervalMs?: number; logger: Logger }): AppSeriesSweeper {
  let running: Promise<string[]> | undefined;
  const sweep = async (): Promise<string[]> => {
    const metrics = (o.registry.getMetricsAsArray() as unknown as AppLabelled[]).filter((m) => !m.collect && m.labelNames?.includes("app"));
    // The label sets of each metric, as recorded (a histogram's `le` and its _sum/_count
    // variants collapse into one), grouped by app.
    const byApp = new Map<string, Array<{ metric: AppLabelled; labels: Record<string, string | number> }>>();
    for (const metric of metrics) {
      const seen = new Set<string>();
      for (const { labels } of (await metric.get()).values) {
        const own: Record<string, string | number> = {};
        for (const name of metric.labelNames!) if (labels[name] !== undefined) own[name] = labels[name]!;
        const key = JSON.stringify(own);
        if (seen.has(key) || own.app === undefined) continue;
        seen.add(key);
        const app = String(own.app);
        let series = byApp.get(app);
        if (!series) byApp.set(app, (series = []));
        series.push({ metric, labels: own });
      }
    }
    const dropped: string[] = [];
    for (const [app, series] of byApp) {
      if (await o.exists(app)) continue;
      for (const { metric, labels } of series) metric.remove(labels);
      dropped.push(app);
    }
    if (dropped.length > 0) o.logger.info({ apps: dropped.slice(0, 20), count: dropped.length }, "metric series of deleted apps dropped");
    return dropped;
  };
  // Passes never overlap: a slow store makes the next one wait, not pile up.
  const once = () => (running ??= sweep().finally(() => (running = undefined)));
  const timer = setInterval(() => {
    once().catch((err: unknown) => o.logger.warn({ err }, "dropping the metric series of deleted apps failed; next pass retries"));
  }, o.intervalMs ?? APP_SERIES_SWEEP_MS);
  timer.unref();
  return { sweep: once, stop: () => clearInterval(timer) };
}
