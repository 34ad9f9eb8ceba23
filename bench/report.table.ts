// The benchmark's output: plain-text tables on stdout, JSON files under bench/results/.
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg, release, totalmem } from "node:os";
import { join } from "node:path";
import type { ProviderName } from "@herald/store";
import type { BenchOptions } from "./bench.options.js";
import type { BroadcastResult, RawTokensResult } from "./broadcast.scenario.js";
import type { CeilingResult } from "./ceiling.h2load.js";
import type { LatencyResult } from "./latency.scenario.js";
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
