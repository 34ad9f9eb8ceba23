import type { Bus, BusMessage, Subscription } from "@herald/platform";
import { BusGroups, BusTopics, events } from "@herald/proto";
import type { PublishRepository } from "@herald/store";
import { completeIfSettled } from "./publish.progress.js";

const RESULT_PARTITIONS_AT_ONCE = 4;

// Adds the senders' job results to their publish's counts (herald.results, keyed by publish id,
// so one consumer at a time writes a publish's counts) and closes the publish when everything
// is settled. Each job attempt's result is added once, whatever is redelivered; the same attempt
// reported by a second run (a sender restarted after sending, before committing) has its sends
// counted as duplicates, never added twice.
export class ResultAggregator {
  constructor(
    private readonly publishes: PublishRepository,
    private readonly bus: Bus,
    private readonly now: () => Date,
  ) {}

  start(): Promise<Subscription> {
    return this.bus.subscribe({
      group: BusGroups.results,
      topics: [BusTopics.results],
      // Results are keyed by publish, so a broadcast's hundreds of results queue on one partition:
      // the results of a lone publish on another one are counted beside them, not after them.
      partitionsConcurrently: RESULT_PARTITIONS_AT_ONCE,
      handler: (m: BusMessage) => this.handle(events.DeliveryResult.decode(m.value), m),
    });
  }

  // `at`: where the result was read on herald.results, which makes a redelivery recognisable.
  async handle(r: events.DeliveryResult, at: Pick<BusMessage, "partition" | "offset">): Promise<void> {
    const deltas = {
      sent: r.sent,
      failed: r.failed,
      invalidTokens: r.invalidTokens,
      expired: r.expired,
      cancelled: r.cancelled,
      deadLettered: r.deadLettered,
      retries: r.retrying,
      failedByReason: r.failedByReason,
    };
    // One atomic write to the publish: a crash after it redelivers a result that is then seen,
    // and a crash before it leaves nothing counted, so the redelivery counts it and the publish
    // completes. The same attempt counted before under another run: the sender ran it twice, its
    // sends reached the devices twice (duplicates).
    const ref = { key: `job:${r.jobId}:${r.attempt}`, run: r.runId, sentByRun: r.sent - r.resumedSent, partition: at.partition, offset: at.offset };
    const { publish } = await this.publishes.countJobResult(r.app, r.publishId, ref, deltas, this.now());
    await completeIfSettled(this.publishes, this.bus, r.app, r.publishId, this.now(), publish);
  }
}
