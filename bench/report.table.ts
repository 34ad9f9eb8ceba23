// The benchmark's output: plain-text tables on stdout, JSON files under bench/results/.
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg, release, totalmem } from "node:os";
import { join } from "node:path";
import type { ProviderName } from "@herald/store";
import type { BenchOptions } from "./bench.options.js";
import type { BroadcastResult, RawTokensResult } from "./broadcast.scenario.js";
import type { CeilingResult } from "./ceiling.h2load.js";
import type { LatencyResult } from "./latency.scenario.js";
import type { OperatorResult } from "./operator.scenario.js";
import type { Mode } from "./platform.types.js";
import type { SeedResult } from "./seed.devices.js";

export interface ModeResult {
  mode: Mode;
  devices: Partial<Record<ProviderName, number>>;
  setupSeconds: number;
  seed: Omit<SeedResult, "probes">;
  broadcast: BroadcastResult;
  latency: LatencyResult | null;
  // The same probes sent while the broadcast ran.
  busyLatency: LatencyResult | null;
  rawTokens: RawTokensResult | null;
  // Broadcast deliveries/s as a share of the ceiling (null without a ceiling).
  ofCeiling: number | null;
  goals: { halfOfCeiling: boolean | null; twentyThousandPerSecond: boolean };
  // 1-minute load average just before the broadcast: above ~0.5, something else was using the
  // machine (the benchmark's own processes idle at that point).
  loadBefore: number;
}

export interface RunResult {
  startedAt: string;
  machine: { cpus: number; cpuModel: string; memoryGiB: number; node: string; kernel: string; loadAverage: number[] };
  options: BenchOptions;
  ceiling: CeilingResult | null;
  modes: ModeResult[];
  // Modes that could not be measured, with the error.
  failures: Array<{ mode: Mode; error: string }>;
}

export function machine(): RunResult["machine"] {
  const list = cpus();
  return { cpus: list.length, cpuModel: list[0]?.model ?? "unknown", memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version, kernel: release(), loadAverage: loadavg().map((l) => Math.round(l * 100) / 100) };
}

// results/<ISO date>-<mode>.json for each mode (with the run's ceiling and machine), and the whole
// run as results/latest.json. Colons are not portable in file names.
export function writeResults(run: RunResult, outDir: string): string[] {
  mkdirSync(outDir, { recursive: true });
  const stamp = run.startedAt.replace(/\.\d+Z$/, "Z").replaceAll(":", "-");
  const written: string[] = [];
  const write = (name: string, value: unknown) => {
    const file = join(outDir, name);
    writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
    written.push(file);
  };
  for (const m of run.modes) write(`${stamp}-${m.mode}.json`, { ...run, modes: [m] });
  write("latest.json", run);
  return written;
}

const int = (n: number | null | undefined) => (n === null || n === undefined || !Number.isFinite(n) ? "-" : Math.round(n).toLocaleString("en-US"));
const fixed = (n: number | null | undefined, digits = 1) => (n === null || n === undefined || !Number.isFinite(n) ? "-" : n.toFixed(digits));
// Latency percentiles: a probe that never arrived is Infinity (null once in JSON).
const ms = (n: number | null | undefined, waitMs: number) => (n === null || n === undefined || n === Infinity ? `> ${waitMs / 1000} s` : `${fixed(n)} ms`);
const pct = (n: number | null) => (n === null ? "-" : `${Math.round(n * 100)} %`);

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [line(headers), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

export function formatRun(run: RunResult): string {
  const out: string[] = [];
  const m = run.machine;
  out.push(`Herald delivery benchmark, ${run.startedAt}: ${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB, Node ${m.node}`);
  if (run.ceiling) {
    const c = run.ceiling;
    out.push(`ceiling: fake APNs answered ${int(c.requestsPerSecond)} req/s (${int(c.status2xx)} of ${int(c.requests)} 2xx, fake CPU ${fixed(c.usage[0]?.cpuSeconds, 1)} s in ${fixed(c.seconds, 2)} s)`);
    out.push(`         ${c.command}`);
  } else {
    out.push("ceiling: not measured (--skip-ceiling)");
  }
  out.push("");

  out.push(
    table(
      ["mode", "devices", "seed/s", "publish RPC", "accepted→first", "time to last", "deliveries/s", "call→last", "/s from call", "of ceiling", "publish done", "latency p50", "p99", "max"],
      run.modes.map((r) => [
        r.mode,
        int(r.broadcast.devices),
        int(r.seed.devicesPerSecond),
        `${fixed(r.broadcast.acceptMs / 1000, 2)} s`,
        `${fixed(r.broadcast.firstDeliveryMs / 1000, 2)} s`,
        r.broadcast.complete ? `${fixed(r.broadcast.timeToLastMs / 1000, 2)} s` : `${int(r.broadcast.delivered)} in ${fixed(r.broadcast.timeToLastMs / 1000, 0)} s (${r.broadcast.stoppedBy}); all ≈ ${int(r.broadcast.projectedSeconds)} s`,
        int(r.broadcast.deliveriesPerSecond),
        // The publish RPC itself can take long when the server's event loop is busy fanning out.
        `${fixed((r.broadcast.acceptMs + r.broadcast.timeToLastMs) / 1000, 2)} s`,
        int(r.broadcast.delivered / ((r.broadcast.acceptMs + r.broadcast.timeToLastMs) / 1000)),
        pct(r.ofCeiling),
        r.broadcast.publishFinalMs === null ? r.broadcast.publishState : `${fixed(r.broadcast.publishFinalMs / 1000, 2)} s`,
        r.latency ? ms(r.latency.all.p50, r.latency.waitMs) : "-",
        r.latency ? ms(r.latency.all.p99, r.latency.waitMs) : "-",
        r.latency ? `${ms(r.latency.all.max, r.latency.waitMs)}${r.latency.all.missing ? ` (${r.latency.all.missing} of ${r.latency.sent} never)` : ""}` : "-",
      ]),
    ),
  );
  out.push("");

  const providerRows: string[][] = [];
  for (const r of run.modes) {
    for (const [name, p] of Object.entries(r.broadcast.perProvider)) {
      const lat = r.latency?.perProvider[name as ProviderName];
      const wait = r.latency?.waitMs ?? 0;
      providerRows.push([`${r.mode} ${name}`, int(p.devices), int(p.delivered), int(p.failed), `${fixed(p.timeToLastMs / 1000, 2)} s`, int(p.deliveriesPerSecond), lat ? ms(lat.p50, wait) : "-", lat ? ms(lat.p99, wait) : "-"]);
    }
  }
  out.push(table(["per provider", "devices", "delivered", "failed", "time to last", "deliveries/s", "latency p50", "p99"], providerRows));
  out.push("");

  const stageRows = run.modes.flatMap((r) => {
    const l = r.latency;
    if (!l) return [];
    const pair = (p: { p50: number; p99: number }) => `${fixed(p.p50)} / ${fixed(p.p99)} ms`;
    return [[r.mode, pair(l.accept), pair(l.stages.queuedMs), pair(l.stages.fanoutToDeliveryMs), r.broadcast.fanoutStartMs === null ? "-" : `${int(r.broadcast.fanoutStartMs)} ms`]];
  });
  if (stageRows.length) {
    out.push(table(["latency p50 / p99", "publish RPC", "accepted→fan-out", "fan-out→delivered", "broadcast accepted→fan-out"], stageRows));
    out.push("");
  }

  // How long Herald's event loop was held during the broadcast (embedded: one process).
  const loopRows = run.modes.flatMap((r) => (r.broadcast.eventLoop ? [[r.mode, `${fixed(r.broadcast.eventLoop.maxMs)} ms`, `${fixed(r.broadcast.eventLoop.p99Ms)} ms`]] : []));
  if (loopRows.length) {
    out.push(table(["event-loop delay during the broadcast", "max", "p99"], loopRows));
    out.push("");
  }

  // Lone publishes at rest and while the broadcast ran, side by side.
  const busyRows = run.modes.flatMap((r) => {
    const b = r.busyLatency;
    if (!b) return [];
    const rest = r.latency;
    return [[r.mode, rest ? `${ms(rest.all.p50, rest.waitMs)} / ${ms(rest.all.p99, rest.waitMs)}` : "-", `${ms(b.all.p50, b.waitMs)} / ${ms(b.all.p99, b.waitMs)}`, ms(b.all.max, b.waitMs), `${b.received} of ${b.sent}`, `${fixed(b.stages.queuedMs.p99)} ms`]];
  });
  if (busyRows.length) {
    out.push(table(["lone publish p50 / p99", "at rest", "during the broadcast", "max", "arrived", "accepted→fan-out p99"], busyRows));
    out.push("");
  }

  const rawRows = run.modes.flatMap((r) => {
    const x = r.rawTokens;
    if (!x) return [];
    const usage = x.usage.filter((u) => u.cpuSeconds >= 0.5).map((u) => `${u.name} ${fixed(u.cpuSeconds, 1)}`).join(", ");
    return [[r.mode, int(x.deliveries), `${int(x.publishes)} × ≤1000`, x.complete ? `${fixed(x.timeToLastMs / 1000, 2)} s` : `${int(x.delivered)} in ${fixed(x.timeToLastMs / 1000, 0)} s`, int(x.deliveriesPerSecond), usage]];
  });
  if (rawRows.length) {
    out.push(table(["raw APNs tokens (no store reads)", "deliveries", "publishes", "time to last", "deliveries/s", "CPU s (≥ 0.5)"], rawRows));
    out.push("");
  }

  // One column per mode: peak RSS during the broadcast (and before it), CPU seconds spent in it.
  const names = [...new Set(run.modes.flatMap((r) => r.broadcast.usage.map((u) => u.name)))];
  const usageRows = names.map((name) => [
    name,
    ...run.modes.flatMap((r) => {
      const u = r.broadcast.usage.find((x) => x.name === name);
      return u ? [`${fixed(u.peakRssMiB, 0)} (${fixed(u.rssBeforeMiB, 0)})`, fixed(u.cpuSeconds, 1)] : ["", ""];
    }),
  ]);
  out.push(table(["process", ...run.modes.flatMap((r) => [`${r.mode} peak RSS MiB (before)`, "CPU s"])], usageRows));
  out.push("");

  for (const r of run.modes) {
    const goals = [
      r.goals.halfOfCeiling === null ? "≥ 50 % of ceiling: not measured" : `≥ 50 % of ceiling: ${r.goals.halfOfCeiling ? "yes" : "NO"}`,
      `≥ 20,000 deliveries/s: ${r.goals.twentyThousandPerSecond ? "yes" : "NO"}`,
    ];
    out.push(`${r.mode}: ${goals.join("; ")}; load average before the broadcast ${fixed(r.loadBefore, 2)}`);
  }
  for (const f of run.failures) out.push(`${f.mode}: FAILED: ${f.error}`);
  return out.join("\n");
}

// `--operator-apps`: the operator at N pooled PushApps (bench/operator.scenario.ts).
export function formatOperator(r: OperatorResult): string {
  const out: string[] = [];
  const mibOf = (bytes: number) => fixed(bytes / 2 ** 20, 1);
  const kibOf = (bytes: number) => fixed(bytes / 1024, 1);
  out.push(`Herald operator with ${int(r.apps)} pooled PushApps (${r.providers.join(", ")}; ${r.secretsPerApp} credential Secrets each), code ${r.source.head}${r.source.uncommitted.length ? ` + ${r.source.uncommitted.length} uncommitted file(s)` : ""}`);
  const a = r.apply;
  out.push(
    `apply: ${int(r.apps)} PushApps applied in ${fixed(a.applySeconds)} s; ${a.complete ? `every one Ready ${fixed(a.readySeconds)} s after the first apply` : `only ${int(a.readyApps)} Ready after ${fixed(a.readySeconds)} s (budget)`}; per app (its Ready transition − creation) p50 ${fixed(a.perAppReadySeconds.p50, 0)} s, p90 ${fixed(a.perAppReadySeconds.p90, 0)} s, max ${fixed(a.perAppReadySeconds.max, 0)} s; load average before ${fixed(a.loadAverage, 2)}`,
  );
  out.push("");
  const phaseRow = (name: string, seconds: number, cpu: number, rss: string, rec: { total: number; perSecond: number; perApp: number } | number, t: { total: { requests: number; sentBytes: number; receivedBytes: number; events: number }; connections: number }) => [
    name,
    fixed(seconds),
    fixed(cpu, 1),
    rss,
    typeof rec === "number" ? int(rec) : `${int(rec.total)} (${fixed(rec.perSecond, 1)}/s, ${fixed(rec.perApp, 1)}/app)`,
    int(t.total.requests),
    mibOf(t.total.sentBytes),
    mibOf(t.total.receivedBytes),
    int(t.total.events),
    int(t.connections),
  ];
  const rows = [phaseRow("apply → all Ready", a.readySeconds, a.operator.cpuSeconds, `${fixed(a.operator.peakRssMiB, 0)} (${fixed(a.operator.rssAfterMiB, 0)})`, a.reconciles, a.traffic)];
  rows.push(phaseRow(`idle (${r.idle.seconds} s)`, r.idle.seconds, r.idle.operator.cpuSeconds, `${fixed(r.idle.operator.peakRssMiB, 0)} (${fixed(r.idle.operator.rssMiB, 0)})`, r.idle.reconciles, r.idle.traffic));
  if (r.restart) rows.push(phaseRow("cold restart → N reconciles", r.restart.reconciledSeconds, r.restart.operator.cpuSeconds, `${fixed(r.restart.operator.peakRssMiB, 0)} (${fixed(r.restart.operator.rssMiB, 0)})`, r.restart.reconciles, r.restart.traffic));
  out.push(table(["operator", "seconds", "CPU s", "RSS MiB peak (end)", "reconciles", "API requests", "sent MiB", "received MiB", "watch events", "TLS conns"], rows));
  out.push(`after every app was Ready: pools converged in ${fixed(r.pools.settleSeconds)} s, the work queue ${r.drain.drained ? "emptied" : `still held ${int(r.drain.queueDepth)} apps`} ${fixed(r.drain.seconds)} s later, ${int(r.drain.reconciles)} more reconciles`);
  out.push(`idle: operator ${fixed(r.idle.operator.cpuSecondsPerMinute, 2)} CPU s per minute${r.restart ? `; restart: SIGTERM → exit ${fixed(r.restart.stopSeconds)} s, start → caches synced ${fixed(r.restart.readySeconds)} s, → ${int(r.apps)} reconciles ${fixed(r.restart.reconciledSeconds)} s (queue then ${int(r.restart.queueDepth)})` : ""}`);
  out.push("");

  const kinds = Object.entries(a.traffic.byKind).sort(([, x], [, y]) => y.receivedBytes + y.sentBytes - (x.receivedBytes + x.sentBytes));
  out.push(
    table(
      ["operator ⇄ API server, apply → all Ready", "requests", "failed", "avg ms", "sent KiB", "received KiB", "watch events (ERROR)", "open watches (max)"],
      kinds.map(([kind, c]) => [kind, int(c.requests), c.failed ? int(c.failed) : "", kind.startsWith("watch ") || !c.requests ? "" : fixed(c.totalMs / c.requests, 0), kibOf(c.sentBytes), kibOf(c.receivedBytes), c.events ? `${int(c.events)}${c.watchErrors ? ` (${int(c.watchErrors)})` : ""}` : "", kind.startsWith("watch ") ? `${int(c.open)} (${int(c.maxOpen)})` : ""]),
    ),
  );
  out.push("");

  const p = r.pools;
  out.push(
    table(
      ["pool Deployment", "apps", "generation", "revisions", "JSON KiB (no managedFields)", "pods started", "pods CPU s", "idle RSS MiB (peak)", "topics assigned"],
      p.perProvider.map((x) => [x.deployment, int(x.sources), int(x.generation), int(x.revision), `${kibOf(x.jsonBytes)} (${kibOf(x.jsonBytesWithoutManagedFields)})`, int(x.podsStarted), fixed(x.podsCpuSeconds, 1), `${fixed(x.idleRssMiB, 0)} (${fixed(x.idlePeakRssMiB, 0)})`, int(x.assignedTopics)]),
    ),
  );
  out.push(
    `pools: ${p.settled ? `converged ${fixed(p.settleSeconds)} s after every app was Ready` : `NOT converged after ${fixed(p.settleSeconds)} s`}; ${int(p.podsStarted)} pool pods started (${fixed(p.podsCpuSeconds, 1)} CPU s); sender memory for ${int(r.apps)} apps: ${fixed(p.totalIdleRssMiB, 0)} MiB (goal for 1,000 apps: < 10 GiB)`,
  );
  out.push("");

  const watchRows = (w: typeof a.apiserver) =>
    Object.entries(w.events)
      .sort(([, x], [, y]) => y.bytes - x.bytes)
      .map(([resource, e]) => [resource, int(e.events), mibOf(e.bytes), int(w.open[resource] ?? 0)]);
  out.push(table(["API server watch events (every watcher), apply → all Ready", "events", "MiB", "open watches at end"], watchRows(a.apiserver)));
  out.push("");
  const procNames = [...new Set([...a.processes, ...r.idle.processes].map((u) => u.name))];
  const procRows = procNames.map((name) => {
    const apply = a.processes.find((x) => x.name === name);
    const idle = r.idle.processes.find((x) => x.name === name);
    return [name, apply ? fixed(apply.cpuSeconds, 1) : "-", apply ? fixed(apply.peakRssMiB, 0) : "-", idle ? fixed(idle.cpuSeconds, 1) : "-", idle ? fixed(idle.peakRssMiB, 0) : "-"];
  });
  out.push(table(["process", "apply CPU s", "apply peak RSS MiB", "idle CPU s", "idle peak RSS MiB"], procRows));
  out.push("");
  const k = r.kafka;
  out.push(`kafka: ${int(k.topics)} pool topics of 1 partition for the apps (${int(k.brokerTopics)} topics on the broker); one app's 12 ensured in ${fixed(k.ensureMsPerAppBefore, 0)} ms on a broker without them, ${fixed(k.ensureMsPerAppAfter, 0)} ms with them; broker RSS ${fixed(k.brokerRssMiBBefore, 0)} → ${fixed(k.brokerRssMiBAfter, 0)} MiB`);
  const warnings = Object.entries(r.kubeletWarnings);
  if (warnings.length) out.push(`local kubelet warnings: ${warnings.map(([m, c]) => `${m} ×${c}`).join("; ")}`);
  return out.join("\n");
}
