// `npm run bench`: Herald's delivery benchmark (see bench/README.md). bench/run.sh starts Kafka
// and FerretDB first; this file runs the measurements:
//   1. the ceiling: the fake APNs's own request rate under h2load;
//   2. per mode (distributed, embedded): start the fakes and the platform, bulk-import the
//      devices, measure single-device publish latency (which also warms the connections up),
//      then one topic broadcast to every device;
// and prints a table and writes JSON under bench/results/.
import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ProviderName } from "@herald/store";
import { parseOptions, splitDevices, USAGE, type BenchOptions } from "./bench.options.js";
import { runBroadcast, runRawTokens } from "./broadcast.scenario.js";
import { measureCeiling } from "./ceiling.h2load.js";
import { startFakes, type FakesProcess } from "./fakes.client.js";
import type { FakesOptions } from "./fakes.protocol.js";
import { runLatency, type LatencyResult } from "./latency.scenario.js";
import { runOperatorScenario } from "./operator.scenario.js";
import { runPool } from "./pool.scenario.js";
import { runUnits } from "./units.scenario.js";
import { startDistributed } from "./platform.distributed.js";
import { startEmbeddedTarget } from "./platform.embedded.js";
import { BENCH_TOPIC, type Mode, type Target } from "./platform.types.js";
import { availableProviders } from "./providers.table.js";
import { formatOperator, formatRun, machine, writeResults, type ModeResult, type RunResult } from "./report.table.js";
import { round } from "./seed.devices.js";

const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);
// What to stop when the run is interrupted: the platform's and the fakes' processes would
// otherwise outlive the driver.
const running = new Set<() => Promise<void>>();
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping the benchmark's processes`);
    void Promise.allSettled([...running].map((stop) => stop())).finally(() => process.exit(130));
  });
}
const GOAL_RATE = 20_000;
// Unmeasured probes per provider before the latency run: first connections and JIT warm-up.
const WARMUP_PROBES = 3;

async function runMode(mode: Mode, o: BenchOptions, fakesOptions: FakesOptions, stamp: string, ceiling: number | null): Promise<ModeResult> {
  const setupStarted = performance.now();
  const fakes = await startFakes(fakesOptions);
  running.add(fakes.stop);
  let target: Target | undefined;
  try {
    const available = availableProviders(fakes.info);
    const missing = Object.keys(o.mix).filter((p) => !available.includes(p as ProviderName));
    if (missing.length) throw new Error(`--mix names ${missing.join(", ")}, which the benchmark cannot run yet (available: ${available.join(", ")})`);
    const providers = Object.keys(o.mix) as ProviderName[];
    const profile = o.profileDir ? join(o.profileDir, `${stamp}-${mode}`) : undefined;
    if (profile) mkdirSync(profile, { recursive: true });
    const profileArgs = [...o.nodeArgs, ...(profile ? ["--cpu-prof", `--cpu-prof-dir=${profile}`] : [])];
    target =
      mode === "distributed"
        ? await startDistributed({ fakes, providers, senderReplicas: o.senderReplicas, nodeArgs: profileArgs, log })
        : await startEmbeddedTarget({ fakes, providers, nodeArgs: profileArgs, log });
    running.add(target.stop);

    const devices = splitDevices(o.devices, o.mix);
    const probesEach = Math.ceil((o.latencyCount + o.busyLatencyCount) / providers.length) + WARMUP_PROBES;
    log(`${mode}: importing ${o.devices} devices (${Object.entries(devices).map(([p, n]) => `${p} ${n}`).join(", ")}) and ${probesEach * providers.length} latency probes`);
    const { probes, ...seed } = await target.seed({ app: target.app, topic: BENCH_TOPIC, devices, probes: Object.fromEntries(providers.map((p) => [p, probesEach])) });
    log(`${mode}: imported in ${seed.seconds} s (${seed.devicesPerSecond} devices/s)`);
    const setupSeconds = round((performance.now() - setupStarted) / 1000, 1);

    // Interleave the providers so the steady rate reaches each of them evenly.
    const byProvider = providers.map((p) => probes.filter((x) => x.provider === p));
    const warmup = byProvider.flatMap((list) => list.slice(0, WARMUP_PROBES));
    const unwarmed = Array.from({ length: probesEach - WARMUP_PROBES }, (_, i) => byProvider.map((list) => list[WARMUP_PROBES + i]!)).flat();
    const measured = unwarmed.slice(0, o.latencyCount);
    const busyProbes = unwarmed.slice(o.latencyCount, o.latencyCount + o.busyLatencyCount);
    let latency = null;
    if (o.latencyCount > 0) {
      log(`${mode}: warm-up, then ${measured.length} single-device publishes at ${o.latencyRate}/s`);
      await runLatency(target, fakes, warmup, 5, o.latencyWaitMs, log);
      latency = await runLatency(target, fakes, measured, o.latencyRate, o.latencyWaitMs, log);
      const ms = (v: number) => (Number.isFinite(v) ? `${v} ms` : `> ${o.latencyWaitMs / 1000} s`);
      log(`${mode}: latency p50 ${ms(latency.all.p50)}, p99 ${ms(latency.all.p99)} (${latency.received} of ${latency.sent} arrived)`);
    }

    const loadBefore = round(loadavg()[0] ?? 0, 2);
    log(`${mode}: broadcasting to ${o.devices} devices (load average ${loadBefore})`);
    // Lone publishes beside the broadcast: what a password reset waits while a campaign goes out.
    let busy: Promise<LatencyResult> | undefined;
    const startBusy = () => {
      if (busyProbes.length === 0) return;
      log(`${mode}: ${busyProbes.length} single-device publishes at ${o.latencyRate}/s while the broadcast runs`);
      busy = runLatency(target!, fakes, busyProbes, o.latencyRate, o.latencyWaitMs, log, { reset: false });
    };
    const broadcast = await runBroadcast(target, fakes, devices, { stallTimeoutMs: o.stallTimeoutMs, budgetMs: o.broadcastBudgetMs, log, onAccepted: startBusy });
    log(`${mode}: ${broadcast.delivered} delivered in ${broadcast.timeToLastMs} ms: ${broadcast.deliveriesPerSecond}/s; publish ${broadcast.publishState}`);
    const busyLatency = (await busy) ?? null;
    if (busyLatency) log(`${mode}: during the broadcast, latency p50 ${busyLatency.all.p50} ms, p99 ${busyLatency.all.p99} ms (${busyLatency.received} of ${busyLatency.sent} arrived)`);
    let rawTokens = null;
    if (o.rawTokens) {
      log(`${mode}: the same ${o.devices} deliveries as publishes to raw APNs tokens`);
      rawTokens = await runRawTokens(target, fakes, o.devices, { stallTimeoutMs: o.stallTimeoutMs, budgetMs: o.broadcastBudgetMs, log });
      log(`${mode}: raw tokens: ${rawTokens.delivered} delivered in ${rawTokens.timeToLastMs} ms: ${rawTokens.deliveriesPerSecond}/s`);
    }
    const ofCeiling = ceiling ? round(broadcast.deliveriesPerSecond / ceiling, 3) : null;
    return {
      mode,
      devices,
      setupSeconds,
      seed,
      broadcast,
      latency,
      busyLatency,
      rawTokens,
      ofCeiling,
      loadBefore,
      goals: { halfOfCeiling: ofCeiling === null ? null : ofCeiling >= 0.5, twentyThousandPerSecond: broadcast.complete && broadcast.deliveriesPerSecond >= GOAL_RATE },
    };
  } finally {
    if (target) running.delete(target.stop);
    running.delete(fakes.stop);
    await target?.stop().catch((err: unknown) => log(`${mode}: stopping failed: ${String(err)}`));
    await fakes.stop();
  }
}

async function main(): Promise<number> {
  const resultsDir = fileURLToPath(new URL("./results", import.meta.url));
  const options = parseOptions(process.argv.slice(2), resultsDir);
  if (options === "help") {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const fakesOptions: FakesOptions = { apnsLatencyMs: options.apnsLatencyMs, apnsMaxStreams: options.apnsMaxStreams };
  if (options.operatorApps > 0) return runOperatorOnly(options);
  if (options.poolApps > 0) return runPoolOnly(options, fakesOptions);
  if (options.unitCosts) return runUnitsOnly(options, fakesOptions);
  const run: RunResult = { startedAt: new Date().toISOString(), machine: machine(), options, ceiling: null, modes: [], failures: [] };
  const stamp = run.startedAt.replace(/\.\d+Z$/, "Z").replaceAll(":", "-");

  if (options.ceiling) {
    log(`ceiling: h2load -n ${options.ceilingRequests} -c 2 -m 100 against the fake APNs`);
    const fakes = await startFakes(fakesOptions);
    running.add(fakes.stop);
    try {
      run.ceiling = await measureCeiling(fakes, { requests: options.ceilingRequests, clients: 2, streams: 100 });
      log(`ceiling: ${run.ceiling.requestsPerSecond} req/s (${run.ceiling.status2xx} 2xx, fake counted ${run.ceiling.fakeOk})`);
    } finally {
      running.delete(fakes.stop);
      await fakes.stop();
    }
  }

  let failed = false;
  for (const mode of options.modes) {
    try {
      run.modes.push(await runMode(mode, options, fakesOptions, stamp, run.ceiling?.requestsPerSecond ?? null));
    } catch (err) {
      failed = true;
      run.failures.push({ mode, error: (err as Error).message ?? String(err) });
      log(`${mode} failed: ${(err as Error).stack ?? String(err)}`);
    }
    writeResults(run, options.outDir);
  }
  const files = writeResults(run, options.outDir);
  process.stdout.write(`\n${formatRun(run)}\n\nresults: ${files.join(", ")}\n`);
  return failed || run.modes.some((m) => !m.broadcast.complete) ? 1 : 0;
}

async function runPoolOnly(options: BenchOptions, fakesOptions: FakesOptions): Promise<number> {
  return runAlone("pool", options, fakesOptions, async (fakes) => {
    const result = await runPool(fakes, { apps: options.poolApps, rate: options.latencyRate, broadcast: options.poolBroadcast, loneCount: options.latencyCount, log });
    return { result, failed: result.firstDelivery.missing > 0 || (result.isolation?.lone.missing ?? 0) > 0 };
  });
}

async function runUnitsOnly(options: BenchOptions, fakesOptions: FakesOptions): Promise<number> {
  return runAlone("units", options, fakesOptions, async (fakes) => {
    log(`unit costs: the memory store with ${options.devices} devices, then ${options.unitRequests} APNs requests per layer and turn`);
    return { result: await runUnits(fakes, { storeDevices: options.devices, requests: options.unitRequests, rounds: 6 }), failed: false };
  });
}

async function runOperatorOnly(options: BenchOptions): Promise<number> {
  return runScenario(
    "operator",
    options,
    () =>
      runOperatorScenario({
        apps: options.operatorApps,
        idleSeconds: options.operatorIdleSeconds,
        readyBudgetMs: options.operatorBudgetMs,
        restart: options.operatorRestart,
        log,
        onInterrupt: (stop) => {
          running.add(stop);
          return () => running.delete(stop);
        },
      }),
    formatOperator,
  );
}

// A scenario that replaces the broadcast modes, with the fakes around it.
async function runAlone<T>(name: string, options: BenchOptions, fakesOptions: FakesOptions, scenario: (fakes: FakesProcess) => Promise<{ result: T; failed: boolean }>): Promise<number> {
  const fakes = await startFakes(fakesOptions);
  running.add(fakes.stop);
  try {
    return await runScenario(name, options, () => scenario(fakes));
  } finally {
    running.delete(fakes.stop);
    await fakes.stop();
  }
}

// Its result printed (as a table when there is a format, else as JSON) and written to
// <outDir>/<date>-<name>.json under `name`; exit code 1 when it failed.
async function runScenario<T>(name: string, options: BenchOptions, scenario: () => Promise<{ result: T; failed: boolean }>, format?: (result: T) => string): Promise<number> {
  const startedAt = new Date().toISOString();
  const { result, failed } = await scenario();
  const file = join(options.outDir, `${startedAt.replace(/\.\d+Z$/, "Z").replaceAll(":", "-")}-${name}.json`);
  mkdirSync(options.outDir, { recursive: true });
  writeFileSync(file, `${JSON.stringify({ startedAt, machine: machine(), options, [name]: result }, null, 2)}\n`);
  process.stdout.write(`\n${format ? format(result) : JSON.stringify(result, null, 2)}\n\nresults: ${file}\n`);
  return failed ? 1 : 0;
}

process.exitCode = await main();
