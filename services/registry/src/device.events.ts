import type { Bus } from "@herald/platform";
import { BusTopics, events } from "@herald/proto";
import { platformEnum, providerEnum, type DeviceRecord } from "@herald/store";

export type RemovalReason = "api" | "user_deleted" | "token_invalid" | "inactive" | "evicted" | "replaced" | "app_deleted";

// Publishes device lifecycle events (herald.devices) for webhooks, analytics and caches.
// Published after the store write and awaited: if the bus is down the call fails and the
// client's retry (every write here is idempotent) publishes again.
export class DeviceEvents {
  constructor(
    private readonly bus: Bus,
    private readonly now: () => Date,
    // Counts what was published (metrics): app, kind ("removed"), removal reason, devices.
    private readonly counted?: (app: string, kind: string, reason: string, n: number) => void,
  ) {}

  async emit(kind: events.DeviceEventKind, devices: DeviceRecord[], extra: { previousUser?: string; reason?: RemovalReason } = {}): Promise<void> {
    if (devices.length === 0) return;
    const at = this.now();
    await this.bus.publish(
      BusTopics.devices,
      devices.map((d) => ({
        key: `${d.app}/${d.id}`,
        value: events.DeviceEvent.encode({
          app: d.app,
          deviceId: d.id,
          kind,
          provider: providerEnum(d.provider),
          platform: platformEnum(d.platform),
          user: d.user,
          previousUser: extra.previousUser ?? "",
          reason: extra.reason ?? "",
          at,
        }).finish(),
      })),
    );
    if (this.counted) {
      const kindName = events.deviceEventKindToJSON(kind).replace("DEVICE_EVENT_KIND_", "").toLowerCase();
      const perApp = new Map<string, number>();
      for (const d of devices) perApp.set(d.app, (perApp.get(d.app) ?? 0) + 1);
      for (const [app, n] of perApp) this.counted(app, kindName, extra.reason ?? "", n);
    }
  }
}

export const DeviceEventKind = events.DeviceEventKind;
