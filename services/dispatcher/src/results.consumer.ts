import type { Bus, BusMessage, Subscription } from "@herald/platform";
import { BusGroups, BusTopics, events } from "@herald/proto";
import type { PublishRepository } from "@herald/store";
import { completeIfSettled } from "./publish.progress.js";

// Adds the senders' job results to their publish's counts (herald.results, keyed by publish id,
// so one consumer at a time writes a publish's counts) and closes the publish when everything
// is settled. A result of a job attempt seen before means that job ran twice (a sender restarted
// after sending, before committing): its sends are counted as duplicates, never added twice.
export class ResultAggregator {
  constructor(
    private readonly publishes: PublishRepository,
    private readonly bus: Bus,
    private readonly now: () => Date,
  ) {}

  start(): Promise<Subscription> {
    return this.bus.subscribe({ group: BusGroups.results, topics: [BusTopics.results], handler: (m: BusMessage) => this.handle(events.DeliveryResult.decode(m.value)) });
  }

  async handle(r: events.DeliveryResult): Promise<void> {
    const first = await this.publishes.markResult(r.app, r.publishId, `job:${r.jobId}:${r.attempt}`);
    if (!first) {
      if (r.sent) await this.publishes.addCounts(r.app, r.publishId, { duplicates: r.sent }, this.now());
      // A redelivery after a crash between counting and completing must still complete it.
      await completeIfSettled(this.publishes, this.bus, r.app, r.publishId, this.now());
      return;
    }
    await this.publishes.addCounts(
      r.app,
      r.publishId,
      {
        sent: r.sent,
        failed: r.failed,
        invalidTokens: r.invalidTokens,
        expired: r.expired,
        cancelled: r.cancelled,
        deadLettered: r.deadLettered,
        retries: r.retrying,
        failedByReason: r.failedByReason,
      },
      this.now(),
    );
    await completeIfSettled(this.publishes, this.bus, r.app, r.publishId, this.now());
  }
}
