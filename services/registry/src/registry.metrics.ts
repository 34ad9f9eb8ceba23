import { Counter, type Registry } from "prom-client";
import { cachedRead, polledGauge, type Logger } from "@herald/platform";
import type { Store } from "@herald/store";

// The registry's own metrics: device lifecycle events (invalid tokens removed among them) and
// the number of devices per app and provider.
export class RegistryMetrics {
  readonly deviceEvents: Counter<"app" | "kind" | "reason">;

  constructor(registry: Registry, store: Store, logger: Logger, sizeIntervalMs: number) {
    this.deviceEvents = new Counter({
      name: "herald_registry_device_events_total",
      help: "Devices registered, updated, moved to another user or removed; removals by reason (token_invalid, inactive, evicted, replaced, api, user_deleted)",
      labelNames: ["app", "kind", "reason"],
      registers: [registry],
    });
    polledGauge({
      registry,
      name: "herald_registry_devices",
      help: "Registered devices per app and provider",
      labelNames: ["app", "provider"],
      read: cachedRead(async () => (await store.devices.sizes()).map((s) => ({ labels: { app: s.app, provider: s.provider }, value: s.devices })), sizeIntervalMs),
      logger,
    });
  }

  readonly countEvent = (app: string, kind: string, reason: string, n: number): void => this.deviceEvents.inc({ app, kind, reason }, n);
}
