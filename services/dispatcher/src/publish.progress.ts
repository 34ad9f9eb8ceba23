import type { Bus } from "@herald/platform";
import { BusTopics, events } from "@herald/proto";
import type { PublishRecord, PublishRepository, PublishStateName } from "@herald/store";
import { STATE_ENUM, toPublishProto } from "./publish.mapper.js";

// Deliveries with a final outcome; retrying ones come back later with another result.
export const settled = (p: PublishRecord) =>
  p.counts.sent + p.counts.failed + p.counts.invalidTokens + p.counts.expired + p.counts.cancelled + p.counts.deadLettered;

// Tells herald.publish-events (webhooks) that a publish ended. Sent before the final state is
// stored wherever that is possible, so a crash in between sends it again rather than never:
// consumers dedupe by publish id.
export async function announceFinished(bus: Bus, p: PublishRecord, state: PublishStateName, now: Date): Promise<void> {
  const message: events.PublishFinished = { app: p.app, publishId: p.id, state: STATE_ENUM[state], counts: toPublishProto(p).counts!, at: now };
  await bus.publish(BusTopics.publishEvents, [{ key: p.id, value: events.PublishFinished.encode(message).finish() }]);
}

// A publish is done once its fan-out finished and every targeted delivery is settled. Both the
// fan-out (which may finish last) and the result aggregator call this; the state transition makes
// it happen once.
// `known`: the publish as a write just returned it, which saves the read (a result's write
// returns the publish after its counts were added).
export async function completeIfSettled(publishes: PublishRepository, bus: Bus, app: string, id: string, now: Date, known?: PublishRecord | null): Promise<void> {
  const p = known === undefined ? await publishes.get(app, id) : known;
  if (p?.state === "sending" && p.fanoutDone && settled(p) >= p.counts.targeted) {
    await announceFinished(bus, p, "done", now);
    await publishes.transition(app, id, ["sending"], "done", { finishedAt: now, now });
  }
}
