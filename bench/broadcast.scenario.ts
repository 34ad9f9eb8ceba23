// One topic broadcast: publish over gRPC, then count deliveries at the fakes until every device
// has its notification. Timed from the accepted publish to the last 2xx answer a fake gave.
import { dispatch, Provider } from "@herald/proto";
import type { ProviderName } from "@herald/store";
import { randomDeviceToken } from "@herald/testing";
import type { FakesControl } from "./fakes.client.js";
import { wallNow, type FakesStats } from "./fakes.protocol.js";
import type { LoopDelay } from "./embedded.main.js";
import { BENCH_TOPIC, type Target } from "./platform.types.js";
import { UsageMeter, type ProcessUsage } from "./proc.stats.js";
import { round } from "./seed.devices.js";

export interface BroadcastResult {
  devices: number;
  delivered: number;
  // Publish call → accepted (the RPC's answer).
  acceptMs: number;
  // Accepted → first and last delivery counted by the fakes.
  firstDeliveryMs: number;
  timeToLastMs: number;
  // Devices / (accepted → last delivery); for an incomplete broadcast, delivered / elapsed.
  deliveriesPerSecond: number;
  // Incomplete only: how long the whole topic would take at that rate.
  projectedSeconds: number | null;
  // Between the first and the last delivery only (the sending phase, without fan-out start-up).
  sendingPerSecond: number;
  perProvider: Partial<Record<ProviderName, { devices: number; delivered: number; failed: number; timeToLastMs: number; deliveriesPerSecond: number }>>;
  // Accepted (createdAt) → fan-out started (startedAt), from the publish's timestamps.
  fanoutStartMs: number | null;
  // Accepted → the publish reached a final state, with Herald's own counts.
  publishFinalMs: number | null;
  publishState: string;
  publishCounts: { targeted: number; sent: number; failed: number; retries: number } | null;
  // Deliveries counted once per second after the publish (to see stalls and ramp-up).
  timeline: Array<{ ms: number; delivered: number }>;
  usage: ProcessUsage[];
  // The longest and p99 event-loop delay of the embedded server from the Publish call to the end.
  eventLoop: LoopDelay | null;
  complete: boolean;
  // Why an incomplete broadcast was given up: "budget" or "stalled".
  stoppedBy: "budget" | "stalled" | null;
}

export interface BroadcastOptions {
  // Give up when no delivery arrives for this long...
  stallTimeoutMs: number;
  // ...or when the whole broadcast takes longer than this (the publish is then cancelled).
  budgetMs: number;
  log: (line: string) => void;
  // Called once the broadcast is accepted (to send lone publishes beside it).
  onAccepted?: () => void;
}

const POLL_MS = 100;

export async function runBroadcast(target: Target, fakes: FakesControl, expected: Partial<Record<ProviderName, number>>, o: BroadcastOptions): Promise<BroadcastResult> {
  const devices = Object.values(expected).reduce((a, b) => a + b, 0);
  await fakes.reset();
  const meter = new UsageMeter(target.processes);
  meter.begin();

  await target.loopDelay?.(true);
  const called = wallNow();
  // A generous deadline: how long accepting takes under load is itself a result (acceptMs).
  const { id } = await target.dispatch.publish(
    {
      recipients: { target: { $case: "topics", value: { values: [BENCH_TOPIC] } } },
      notification: { alert: { title: "Benchmark", body: `Broadcast to ${devices} devices` } },
    },
    { deadlineMs: 600_000 },
  );
  const accepted = wallNow();
  o.onAccepted?.();

  const timeline: BroadcastResult["timeline"] = [];
  let stats: FakesStats = { providers: {}, watched: {} };
  let delivered = 0;
  let lastProgress = performance.now();
  let nextSample = accepted + 1000;
  let nextLog = performance.now() + 10_000;
  let stoppedBy: BroadcastResult["stoppedBy"] = null;
  for (;;) {
    stats = await fakes.stats();
    const now = delivered;
    // Watched deliveries are lone-publish probes sent beside the broadcast, not part of it.
    delivered = Object.values(stats.providers).reduce((n, c) => n + c.ok, 0) - Object.keys(stats.watched).length;
    if (delivered !== now) lastProgress = performance.now();
    if (wallNow() >= nextSample) {
      timeline.push({ ms: Math.round(wallNow() - accepted), delivered });
      nextSample += 1000;
    }
    if (performance.now() >= nextLog) {
      o.log(`${target.mode}: ${delivered} of ${devices} delivered`);
      nextLog += 10_000;
    }
    if (delivered >= devices) break;
    if (performance.now() - lastProgress > o.stallTimeoutMs) {
      o.log(`${target.mode}: no delivery for ${o.stallTimeoutMs / 1000} s; stopping at ${delivered} of ${devices}`);
      stoppedBy = "stalled";
      break;
    }
    if (wallNow() - accepted > o.budgetMs) {
      o.log(`${target.mode}: broadcast budget of ${o.budgetMs / 1000} s used up at ${delivered} of ${devices}; cancelling the publish`);
      stoppedBy = "budget";
      break;
    }
    await sleep(POLL_MS);
  }
  const counted = Object.values(stats.providers);
  const first = Math.min(...counted.filter((c) => c.firstOkAt > 0).map((c) => c.firstOkAt));
  const last = Math.max(...counted.map((c) => c.lastOkAt));
  const complete = delivered >= devices;
  const stoppedAt = wallNow();
  if (!complete) await target.dispatch.cancelPublish({ id }).catch((err: unknown) => o.log(`${target.mode}: cancelling the broadcast failed: ${String(err)}`));
  // Incomplete: the rate over the whole time waited, not up to the last delivery seen.
  const timeToLast = complete ? last - accepted : stoppedAt - accepted;
  const rate = delivered / (timeToLast / 1000);

  // Herald's own view: results are aggregated after the deliveries, so this ends a little later.
  let final: dispatch.Publish | undefined;
  const finalDeadline = performance.now() + (complete ? 60_000 : 30_000);
  while (performance.now() < finalDeadline) {
    final = (await target.dispatch.getPublish({ id })).publish;
    if (final && isFinal(final.state)) break;
    await sleep(POLL_MS);
  }
  const finalAt = final && isFinal(final.state) ? wallNow() : undefined;
  const usage = meter.end();
  const eventLoop = (await target.loopDelay?.(false)) ?? null;
  // A cancelled fan-out notices only between batches: wait until deliveries stop, so that what
  // is left of it is not counted by the next phase.
  if (!complete) await quiesce(fakes, 15_000, 120_000);

  const perProvider: BroadcastResult["perProvider"] = {};
  for (const [provider, n] of Object.entries(expected) as Array<[ProviderName, number]>) {
    const c = stats.providers[provider];
    const ttl = c && c.lastOkAt > 0 ? c.lastOkAt - accepted : NaN;
    const probes = Object.keys(stats.watched).filter((k) => k.startsWith(`${provider}:`)).length;
    const ok = (c?.ok ?? 0) - probes;
    perProvider[provider] = { devices: n, delivered: ok, failed: c?.failed ?? 0, timeToLastMs: round(ttl), deliveriesPerSecond: Math.round(ok / (ttl / 1000)) };
  }
  return {
    devices,
    delivered,
    acceptMs: round(accepted - called, 1),
    firstDeliveryMs: round(first - accepted),
    timeToLastMs: round(timeToLast),
    deliveriesPerSecond: Math.round(rate),
    projectedSeconds: complete ? null : round(devices / rate),
    sendingPerSecond: Math.round(delivered / ((last - first) / 1000)),
    perProvider,
    fanoutStartMs: final?.createdAt && final.startedAt ? final.startedAt.getTime() - final.createdAt.getTime() : null,
    publishFinalMs: finalAt !== undefined ? round(finalAt - accepted) : null,
    publishState: final ? dispatch.publishStateToJSON(final.state) : "unknown",
    publishCounts: final?.counts ? { targeted: final.counts.targeted, sent: final.counts.sent, failed: final.counts.failed, retries: final.counts.retries } : null,
    timeline,
    usage,
    eventLoop,
    complete,
    stoppedBy,
  };
}

const FINAL = new Set([dispatch.PublishState.PUBLISH_STATE_DONE, dispatch.PublishState.PUBLISH_STATE_CANCELLED, dispatch.PublishState.PUBLISH_STATE_FAILED, dispatch.PublishState.PUBLISH_STATE_EXPIRED]);
const isFinal = (state: dispatch.PublishState) => FINAL.has(state);

async function quiesce(fakes: FakesControl, quietMs: number, maxMs: number): Promise<void> {
  const deadline = performance.now() + maxMs;
  let seen = -1;
  let since = performance.now();
  while (performance.now() < deadline && performance.now() - since < quietMs) {
    const n = Object.values((await fakes.stats()).providers).reduce((a, c) => a + c.ok + c.failed, 0);
    if (n !== seen) {
      seen = n;
      since = performance.now();
    }
    await sleep(500);
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface RawTokensResult {
  deliveries: number;
  publishes: number;
  delivered: number;
  // First publish call → last delivery.
  timeToLastMs: number;
  deliveriesPerSecond: number;
  complete: boolean;
  usage: ProcessUsage[];
}

// The same volume as publishes to raw APNs tokens (the stateless use: up to 1000 tokens per
// publish, nothing read from the device store), through the same dispatcher, bus and sender. Set
// against the broadcast, it separates the cost of reading the recipients from the cost of sending.
export async function runRawTokens(target: Target, fakes: FakesControl, deliveries: number, o: BroadcastOptions): Promise<RawTokensResult> {
  const PER_PUBLISH = 1000;
  const IN_FLIGHT = 4;
  const publishes = Math.ceil(deliveries / PER_PUBLISH);
  await fakes.reset();
  const meter = new UsageMeter(target.processes);
  meter.begin();
  const started = wallNow();
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < publishes; i = next++) {
      const tokens = Array.from({ length: Math.min(PER_PUBLISH, deliveries - i * PER_PUBLISH) }, () => randomDeviceToken());
      await target.dispatch.publish({
        recipients: { target: { $case: "tokens", value: { provider: Provider.PROVIDER_APNS, tokens } } },
        notification: { alert: { title: "Benchmark", body: `Raw tokens ${i}` } },
      });
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  let delivered = 0;
  let last = started;
  let lastProgress = performance.now();
  while (delivered < deliveries && performance.now() - lastProgress < o.stallTimeoutMs && wallNow() - started < o.budgetMs) {
    await sleep(POLL_MS);
    const apns = (await fakes.stats()).providers.apns;
    if ((apns?.ok ?? 0) > delivered) lastProgress = performance.now();
    delivered = apns?.ok ?? 0;
    last = apns?.lastOkAt ?? last;
  }
  const complete = delivered >= deliveries;
  const elapsed = (complete ? last : wallNow()) - started;
  return { deliveries, publishes, delivered, timeToLastMs: round(elapsed), deliveriesPerSecond: Math.round(delivered / (elapsed / 1000)), complete, usage: meter.end() };
}
