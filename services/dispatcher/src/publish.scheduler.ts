import type { Logger } from "@herald/platform";
import type { PublishRepository } from "@herald/store";
import type { PublishService } from "./publish.service.js";

// Hands on scheduled publishes whose send_at has come, and re-hands queued publishes that nobody
// picked up for `staleMs` (the dispatcher died between storing and producing). Both are safe to
// run in every replica: the state transition lets one win, and the fan-out ignores a publish it
// already handled.
export class PublishScheduler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly publishes: PublishRepository,
    private readonly service: PublishService,
    private readonly logger: Logger,
    private readonly now: () => Date,
    private readonly intervalMs = 1000,
    private readonly staleMs = 60_000,
  ) {}

  start(): void {
    const tick = () => {
      const running = this.tick().then(
        () => undefined,
        (err) => this.logger.error({ err }, "publish scheduler tick failed"),
      );
      this.running = running;
      void running.finally(() => {
        if (this.timer !== undefined) this.timer = setTimeout(tick, this.intervalMs).unref();
      });
    };
    this.timer = setTimeout(tick, this.intervalMs).unref();
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  async tick(): Promise<number> {
    const now = this.now();
    let handed = 0;
    for (const due of await this.publishes.listDue(now, 100)) {
      const queued = await this.publishes.transition(due.app, due.id, ["scheduled"], "queued", { now });
      if (queued) {
        await this.service.handOn(queued);
        handed++;
      }
    }
    for (const stale of await this.publishes.listStale(["queued"], new Date(now.getTime() - this.staleMs), 100)) {
      await this.service.handOn(stale);
      handed++;
    }
    return handed;
  }
}
