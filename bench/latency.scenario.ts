// Publish-to-delivery latency: single-device publishes at a steady rate (open loop: each is sent
// on its schedule, whether the previous ones arrived or not), each to its own device, timed from
// the publish call to the fake's receipt of that device's notification.
import type { ProviderName } from "@herald/store";
import type { FakesControl } from "./fakes.client.js";
import { wallNow } from "./fakes.protocol.js";
import type { Target } from "./platform.types.js";
import { round, type LatencyProbe } from "./seed.devices.js";
import { sleep } from "./broadcast.scenario.js";

// Probes that never arrived count as slower than any that did (Infinity, printed as "> wait").
export interface Percentiles {
  count: number;
  missing: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface LatencyResult {
  rate: number;
  sent: number;
  received: number;
  // How long the probes were waited for after the last one was sent.
  waitMs: number;
  // Publish call → fake's receipt, ms.
  all: Percentiles;
  perProvider: Partial<Record<ProviderName, Percentiles>>;
  // Publish call → RPC answer (accepted), ms.
  accept: Percentiles;
  // Where the time goes, from the publishes' own timestamps (dispatcher clock, ms resolution):
  // accepted (createdAt) → fan-out started (startedAt): the hop through the bus to the fan-out
  // worker and its wait behind earlier publishes; fan-out started → delivered at the fake:
  // reading the recipients, the delivery job's hop and the sender. Delivered probes only.
  stages: { queuedMs: Percentiles; fanoutToDeliveryMs: Percentiles };
}

// `reset: false` keeps the fakes' counts (probes sent while a broadcast is being counted).
export async function runLatency(target: Target, fakes: FakesControl, probes: LatencyProbe[], rate: number, waitMs: number, log: (line: string) => void, o: { reset?: boolean } = {}): Promise<LatencyResult> {
  if (o.reset !== false) await fakes.reset();
  await fakes.watch(probes.map((p) => p.watch));
  const calls: Array<{ probe: LatencyProbe; at: number; acceptMs?: number; id?: string }> = [];
  const failures: string[] = [];
  const started = performance.now();
  const inFlight: Array<Promise<void>> = [];
  for (const [i, probe] of probes.entries()) {
    // Against the schedule, not the previous send, so that slow calls do not lower the rate.
    const due = started + (i * 1000) / rate;
    if (due > performance.now()) await sleep(due - performance.now());
    const call: (typeof calls)[number] = { probe, at: wallNow() };
    calls.push(call);
    inFlight.push(
      target.dispatch
        .publish({ recipients: { target: { $case: "deviceIds", value: { values: [probe.deviceId] } } }, notification: { alert: { title: "Latency probe", body: `#${i}` } } })
        .then(({ id }) => {
          call.acceptMs = wallNow() - call.at;
          call.id = id;
        })
        .catch((err: unknown) => void failures.push(String(err))),
    );
  }
  await Promise.all(inFlight);
  if (failures.length) log(`${target.mode}: ${failures.length} latency publishes failed, e.g. ${failures[0]}`);

  // Every probe's delivery, or whatever arrived within the deadline.
  const deadline = performance.now() + waitMs;
  let watched: Record<string, number> = {};
  while (performance.now() < deadline) {
    watched = (await fakes.stats()).watched;
    if (Object.keys(watched).length >= probes.length) break;
    await sleep(100);
  }
  const latencies = new Map<ProviderName | "all", number[]>();
  const add = (k: ProviderName | "all", v: number) => latencies.set(k, [...(latencies.get(k) ?? []), v]);
  const late: string[] = [];
  for (const c of calls) {
    const at = watched[c.probe.watch];
    const ms = at === undefined ? Infinity : at - c.at;
    if (at === undefined && c.id) late.push(c.id);
    add("all", ms);
    add(c.probe.provider, ms);
  }
  const queued: number[] = [];
  const fanout: number[] = [];
  for (const c of calls) {
    const at = watched[c.probe.watch];
    if (at === undefined || !c.id) continue;
    const p = (await target.dispatch.getPublish({ id: c.id })).publish;
    if (!p?.createdAt || !p.startedAt) continue;
    queued.push(p.startedAt.getTime() - p.createdAt.getTime());
    fanout.push(at - p.startedAt.getTime());
  }
  // What did not arrive is still queued in the platform: cancelled, so that the next phase does
  // not measure it.
  if (late.length) {
    log(`${target.mode}: ${late.length} probes not delivered after ${waitMs / 1000} s; cancelling them`);
    await Promise.all(late.map((id) => target.dispatch.cancelPublish({ id }).catch(() => {})));
  }
  const perProvider: LatencyResult["perProvider"] = {};
  for (const [k, values] of latencies) if (k !== "all") perProvider[k] = percentiles(values);
  return {
    rate,
    sent: calls.length,
    received: (latencies.get("all") ?? []).filter(Number.isFinite).length,
    waitMs,
    all: percentiles(latencies.get("all") ?? []),
    perProvider,
    accept: percentiles(calls.flatMap((c) => (c.acceptMs !== undefined ? [c.acceptMs] : []))),
    stages: { queuedMs: percentiles(queued), fanoutToDeliveryMs: percentiles(fanout) },
  };
}

// Nearest-rank percentiles.
export function percentiles(values: number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => (sorted.length ? round(sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!, 1) : NaN);
  return { count: sorted.length, missing: sorted.filter((v) => !Number.isFinite(v)).length, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1) };
}
