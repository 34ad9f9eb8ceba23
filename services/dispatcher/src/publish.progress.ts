import type { PublishRecord, PublishRepository } from "@herald/store";

// Deliveries with a final outcome; retrying ones come back later with another result.
export const settled = (p: PublishRecord) =>
  p.counts.sent + p.counts.failed + p.counts.invalidTokens + p.counts.expired + p.counts.cancelled + p.counts.deadLettered;

// A publish is done once its fan-out finished and every targeted delivery is settled. Both the
// fan-out (which may finish last) and the result aggregator call this; the state transition makes
// it happen once.
export async function completeIfSettled(publishes: PublishRepository, app: string, id: string, now: Date): Promise<void> {
  const p = await publishes.get(app, id);
  if (p?.state === "sending" && p.fanoutDone && settled(p) >= p.counts.targeted) {
    await publishes.transition(app, id, ["sending"], "done", { finishedAt: now, now });
  }
}
