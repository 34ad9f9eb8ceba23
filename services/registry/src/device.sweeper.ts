import type { Logger } from "@herald/platform";
import type { Store } from "@herald/store";
import type { DeviceService } from "./device.service.js";

const DAY = 24 * 3600 * 1000;
// How long the feedback API lists a dead token.
export const TOKEN_FEEDBACK_RETENTION_MS = 30 * DAY;

// Removes devices not seen for their app's max_inactive_days (FerretDB has no TTL indexes, and a
// TTL index could not follow a per-app setting anyway), expired request-signature claims and
// token feedback past its retention. Idempotent, so every replica may run it.
export class DeviceSweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | undefined;

  constructor(
    private readonly store: Store,
    private readonly devices: DeviceService,
    private readonly logger: Logger,
    private readonly now: () => Date,
    private readonly intervalMs = 3600_000,
  ) {}

  start(): void {
    const tick = () => {
      this.running = this.sweepOnce().catch((err) => {
        this.logger.error({ err }, "device sweep failed");
        return 0;
      });
      void this.running.finally(() => {
        if (this.timer !== undefined) this.timer = setTimeout(tick, this.intervalMs).unref();
      });
    };
    this.timer = setTimeout(tick, Math.min(this.intervalMs, 60_000)).unref();
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  async sweepOnce(): Promise<number> {
    let removed = 0;
    let after: string | undefined;
    for (;;) {
      const apps = await this.store.apps.list({ ...(after ? { after } : {}), limit: 100 });
      for (const app of apps) {
        if (app.limits.maxInactiveDays <= 0) continue;
        const cutoff = new Date(this.now().getTime() - app.limits.maxInactiveDays * DAY);
        for (;;) {
          const stale = await this.store.devices.listInactive(app.id, cutoff, 500);
          if (stale.length === 0) break;
          removed += await this.devices.removeDevices(app.id, stale, "inactive");
        }
      }
      if (apps.length < 100) break;
      after = apps.at(-1)?.id;
    }
    if (removed) this.logger.info({ removed }, "swept inactive devices");
    const now = this.now();
    const nonces = await this.store.nonces.sweep(now);
    const feedback = await this.store.tokenFeedback.sweep(new Date(now.getTime() - TOKEN_FEEDBACK_RETENTION_MS));
    if (nonces || feedback) this.logger.debug({ nonces, feedback }, "swept expired signature claims and token feedback");
    return removed;
  }
}
