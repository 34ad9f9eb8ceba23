// Command-line flags of `npm run bench` (everything after `--`).
import { parseArgs } from "node:util";
import type { ProviderName } from "@herald/store";
import type { Mode } from "./platform.types.js";

export interface BenchOptions {
  devices: number;
  modes: Mode[];
  // Share of the broadcast's devices per provider (normalised).
  mix: Partial<Record<ProviderName, number>>;
  latencyRate: number;
  latencyCount: number;
  // Single-device publishes sent while the broadcast runs (the lone publish behind a broadcast).
  busyLatencyCount: number;
  // How long probes are waited for after the last was sent; the rest count as not arrived.
  latencyWaitMs: number;
  ceiling: boolean;
  // The same volume again as publishes to raw APNs tokens (no device store reads).
  rawTokens: boolean;
  ceilingRequests: number;
  apnsLatencyMs: number;
  apnsMaxStreams: number;
  senderReplicas: number;
  stallTimeoutMs: number;
  // A broadcast still running after this long is cancelled and reported as incomplete.
  broadcastBudgetMs: number;
  // Extra node flags for Herald's processes, e.g. --max-old-space-size=256.
  nodeArgs: string[];
  // Directory for .cpuprofile files of Herald's processes; none when absent.
  profileDir?: string;
  outDir: string;
  // > 0: measure pooled senders with this many apps instead of the broadcast modes; then one
  // app's broadcast of poolBroadcast tokens beside another's lone notifications (0: not run).
  poolApps: number;
  poolBroadcast: number;
  // Instead of the broadcast modes: the memory store's heap per device (--devices of them) and
  // the CPU per APNs request of bare node:http2 and of Herald's provider.
  unitCosts: boolean;
  unitRequests: number;
  // > 0: instead, the operator with this many pooled PushApps of every provider on the real API
  // server (bench/operator.scenario.ts): time to Ready, its CPU, memory, reconciles and API
  // traffic, the pool Deployments and pods, then an idle window and a cold restart.
  operatorApps: number;
  operatorIdleSeconds: number;
  operatorBudgetMs: number;
  operatorRestart: boolean;
}

// A mobile app's audience with a website.
export const DEFAULT_MIX: Partial<Record<ProviderName, number>> = { apns: 45, fcm: 45, webpush: 10 };

export const USAGE = `npm run bench -- [flags]
  --devices N          devices in the broadcast topic (default 100000)
  --million            the same as --devices 1000000
  --mode M             distributed | embedded | all (default all)
  --mix LIST           provider shares, e.g. apns=90,webpush=10 (default ${formatMix(DEFAULT_MIX)})
  --latency-rate R     single-device publishes per second (default 20)
  --latency-count N    single-device publishes (default 200)
  --latency-wait-s N   wait for their deliveries at most N s after the last publish (default 60)
  --busy-latency-count N  single-device publishes at the same rate while the broadcast runs
                       (default 100; 0: none)
  --skip-ceiling       do not measure the fake APNs's rate with h2load
  --skip-raw           do not repeat the volume as raw-token publishes (sending without store reads)
  --ceiling-requests N h2load -n (default 100000)
  --apns-latency-ms N  delay the fake APNs adds to every answer (default 0: pure CPU cost)
  --sender-replicas N  sender processes per provider in the distributed mode (default 1)
  --stall-timeout-s N  give up a broadcast after N s without a delivery (default 60)
  --broadcast-budget-s N  cancel a broadcast still running after N s, report it incomplete (default 300)
  --node-args=FLAGS    extra node flags for Herald's processes, e.g. --node-args=--max-old-space-size=256
  --profile            write .cpuprofile files of Herald's processes to bench/results/profiles/
  --out DIR            where results go (default bench/results)
  --pool-apps N        instead: one pooled APNs sender serving N apps against one dedicated
                       sender (idle RSS, RSS once every app sent, each app's first delivery), then
                       one app's broadcast beside another app's lone notifications
  --pool-broadcast N   that broadcast's tokens (default 100000; 0: none); the lone notifications:
                       --latency-count of them at --latency-rate
  --unit-costs         instead: the memory store's heap bytes per device (--devices of them) and
                       the CPU µs per APNs request of a bare node:http2 session and of Herald's
                       APNs provider, taking turns in one process (--unit-requests per turn, 6 turns)
  --unit-requests N    APNs requests per layer and turn (default 20000)
  --operator-apps N    instead: the operator with N pooled PushApps (APNs, FCM, HMS and Web Push,
                       a credentials Secret each) on the test API server, the pool pods run by the
                       local kubelet: time to Ready, the operator's CPU, memory, reconciles and
                       API traffic, pool Deployments and pods, an idle window, a cold restart
  --operator-idle-s N  the idle window once the pools have converged (default 60)
  --operator-budget-s N  give up waiting for every PushApp to be Ready after N s (default 1500)
  --skip-operator-restart  do not restart the operator at the end`;

export function parseOptions(argv: string[], resultsDir: string): BenchOptions | "help" {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      devices: { type: "string" },
      million: { type: "boolean" },
      mode: { type: "string" },
      mix: { type: "string" },
      "latency-rate": { type: "string" },
      "latency-count": { type: "string" },
      "latency-wait-s": { type: "string" },
      "busy-latency-count": { type: "string" },
      "broadcast-budget-s": { type: "string" },
      "skip-ceiling": { type: "boolean" },
      "skip-raw": { type: "boolean" },
      "ceiling-requests": { type: "string" },
      "apns-latency-ms": { type: "string" },
      "apns-max-streams": { type: "string" },
      "sender-replicas": { type: "string" },
      "stall-timeout-s": { type: "string" },
      profile: { type: "boolean" },
      "node-args": { type: "string" },
      out: { type: "string" },
      "pool-apps": { type: "string" },
      "pool-broadcast": { type: "string" },
      "unit-costs": { type: "boolean" },
      "unit-requests": { type: "string" },
      "operator-apps": { type: "string" },
      "operator-idle-s": { type: "string" },
      "operator-budget-s": { type: "string" },
      "skip-operator-restart": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return "help";
  const int = (flag: string, value: string | undefined, fallback: number, min = 1): number => {
    if (value === undefined) return fallback;
    const n = Number(value.replaceAll("_", ""));
    if (!Number.isInteger(n) || n < min) throw new Error(`--${flag} must be an integer >= ${min}, got ${value}`);
    return n;
  };
  const mode = values.mode ?? "all";
  if (!["distributed", "embedded", "all"].includes(mode)) throw new Error(`--mode must be distributed, embedded or all, got ${mode}`);
  const outDir = values.out ?? resultsDir;
  return {
    devices: values.million ? 1_000_000 : int("devices", values.devices, 100_000),
    modes: mode === "all" ? ["distributed", "embedded"] : [mode as Mode],
    mix: values.mix ? parseMix(values.mix) : DEFAULT_MIX,
    latencyRate: int("latency-rate", values["latency-rate"], 20),
    latencyCount: int("latency-count", values["latency-count"], 200, 0),
    latencyWaitMs: int("latency-wait-s", values["latency-wait-s"], 60) * 1000,
    busyLatencyCount: int("busy-latency-count", values["busy-latency-count"], 100, 0),
    ceiling: !values["skip-ceiling"],
    rawTokens: !values["skip-raw"],
    ceilingRequests: int("ceiling-requests", values["ceiling-requests"], 100_000),
    apnsLatencyMs: int("apns-latency-ms", values["apns-latency-ms"], 0, 0),
    apnsMaxStreams: int("apns-max-streams", values["apns-max-streams"], 1000),
    senderReplicas: int("sender-replicas", values["sender-replicas"], 1),
    stallTimeoutMs: int("stall-timeout-s", values["stall-timeout-s"], 60) * 1000,
    broadcastBudgetMs: int("broadcast-budget-s", values["broadcast-budget-s"], 300) * 1000,
    nodeArgs: values["node-args"]?.split(/\s+/).filter(Boolean) ?? [],
    ...(values.profile ? { profileDir: `${outDir}/profiles` } : {}),
    outDir,
    poolApps: int("pool-apps", values["pool-apps"], 0, 0),
    poolBroadcast: int("pool-broadcast", values["pool-broadcast"], 100_000, 0),
    unitCosts: values["unit-costs"] ?? false,
    unitRequests: int("unit-requests", values["unit-requests"], 20_000),
    operatorApps: int("operator-apps", values["operator-apps"], 0, 1),
    operatorIdleSeconds: int("operator-idle-s", values["operator-idle-s"], 60),
    operatorBudgetMs: int("operator-budget-s", values["operator-budget-s"], 1500) * 1000,
    operatorRestart: !values["skip-operator-restart"],
  };
}

const PROVIDER_NAMES: ProviderName[] = ["apns", "fcm", "hms", "webpush"];

function parseMix(text: string): Partial<Record<ProviderName, number>> {
  const mix: Partial<Record<ProviderName, number>> = {};
  for (const part of text.split(",")) {
    const [name, share] = part.split("=");
    const n = Number(share);
    if (!PROVIDER_NAMES.includes(name as ProviderName) || !(n >= 0)) throw new Error(`--mix: "${part}" is not provider=share (providers: ${PROVIDER_NAMES.join(", ")})`);
    if (n > 0) mix[name as ProviderName] = n;
  }
  if (Object.keys(mix).length === 0) throw new Error("--mix names no provider");
  return mix;
}

export function formatMix(mix: Partial<Record<ProviderName, number>>): string {
  return Object.entries(mix)
    .map(([name, n]) => `${name}=${n}`)
    .join(",");
}

// Splits `total` by the mix: rounded down per provider, the rest to the first.
export function splitDevices(total: number, mix: Partial<Record<ProviderName, number>>): Partial<Record<ProviderName, number>> {
  const entries = Object.entries(mix) as Array<[ProviderName, number]>;
  const sum = entries.reduce((a, [, n]) => a + n, 0);
  const out: Partial<Record<ProviderName, number>> = {};
  for (const [name, n] of entries) out[name] = Math.floor((total * n) / sum);
  const rest = total - Object.values(out).reduce((a, b) => a + b, 0);
  out[entries[0]![0]] = (out[entries[0]![0]] ?? 0) + rest;
  return out;
}
