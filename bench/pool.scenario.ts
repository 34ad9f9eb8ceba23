// Pooled senders (issue 13): what a long tail of idle apps costs. One pooled APNs sender process
// serves N apps (each with its own topics, credentials directory and, once it sends, its own
// provider and HTTP/2 connection); beside it one dedicated APNs sender serves one app, for the
// comparison. Measured: each process's RSS idle, the pool's RSS once every app has sent, and the
// first delivery of each idle app (its job published on Kafka → the fake APNs's receipt).
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { KafkaBus, namespacedBus, type Bus } from "@herald/platform";
import { BusTopics, events, pooledTopicsOf, Provider } from "@herald/proto";
import { poolFileName, SETTINGS_FILE } from "@herald/sender";
import { freePort, requireEnv, spawnService, type ServiceProcess } from "@herald/testing";
import { sleep } from "./broadcast.scenario.js";
import type { FakesControl } from "./fakes.client.js";
import { wallNow, watchKey } from "./fakes.protocol.js";
import { percentiles, type Percentiles } from "./latency.scenario.js";
import { waitForHealthPort } from "./platform.distributed.js";
import { rssMiB, UsageMeter } from "./proc.stats.js";
import { entryOf, writeCaFile, writeCredentials } from "./providers.table.js";
import { round } from "./seed.devices.js";

const root = fileURLToPath(new URL("../", import.meta.url));

export interface PoolResult {
  apps: number;
  // Resident set of the pooled sender with every app's topics assigned and nothing sent yet,
  // and once every app has sent (each with a provider and connection of its own), MiB.
  poolIdleMiB: number;
  poolAllActiveMiB: number;
  // One dedicated sender, idle, MiB: what every app and provider costs without a pool.
  dedicatedIdleMiB: number;
  // Each app's first delivery (the pool builds its provider on that job), ms.
  firstDelivery: Percentiles;
  // The pool's CPU seconds while the apps sent their first notification.
  poolCpuSeconds: number;
  // For 1,000 apps on 4 providers: dedicated senders (4,000 processes) against 4 pools
  // (apns-like cost per provider, RSS scaled from this run's per-app increment), GiB.
  thousandApps: { dedicatedGiB: number; pooledGiB: number };
  // One app's broadcast (jobs of 500 on its bulk topic) while another app sends lone
  // notifications (one target each, on its urgent topic, as Herald routes small publishes):
  // the lone ones' job-published → delivered times, and the broadcast's rate. null: not run.
  isolation: { broadcast: number; broadcastPerSecond: number; lone: Percentiles } | null;
}

export async function runPool(fakes: FakesControl, o: { apps: number; rate: number; broadcast: number; loneCount: number; log: (line: string) => void }): Promise<PoolResult> {
  const namespace = `herald_bench_pool_${Date.now().toString(36)}.`;
  const brokers = requireEnv("HERALD_KAFKA_BROKERS");
  const bus = namespacedBus(new KafkaBus({ brokers: brokers.split(","), clientId: "bench-pool" }), namespace);
  const apns = entryOf("apns").sender(fakes.info, writeCaFile(fakes.info));
  const apps = Array.from({ length: o.apps }, (_, i) => `pool-${String(i).padStart(4, "0")}`);
  const procs: ServiceProcess[] = [];
  try {
    o.log(`pool: ${o.apps} apps' files and topics (3 topics of 1 partition each)`);
    const dir = mkdtempSync(join(tmpdir(), "herald-bench-pool-"));
    const settings = JSON.stringify(Object.fromEntries(Object.entries(apns.env).filter(([k]) => k.startsWith("HERALD_APNS_"))));
    for (const app of apps) {
      for (const [file, content] of Object.entries(apns.credentials)) writeFileSync(join(dir, poolFileName(app, file)), content, { mode: 0o600 });
      writeFileSync(join(dir, poolFileName(app, SETTINGS_FILE)), settings);
    }
    for (let i = 0; i < apps.length; i += 100) {
      await bus.ensureTopics(apps.slice(i, i + 100).flatMap((app) => pooledTopicsOf(app, "apns")).map((name) => ({ name, partitions: 1 })));
    }
    await bus.ensureTopics([BusTopics.results, BusTopics.control, BusTopics.deadLetter, BusTopics.tokenFeedback].map((name) => ({ name, partitions: 8 })));

    const common = { HERALD_KAFKA_BROKERS: brokers, HERALD_KAFKA_NAMESPACE: namespace, HERALD_LOG_LEVEL: "warn", HERALD_PROVIDER: "apns", HERALD_PROVIDER_URL: apns.env.HERALD_PROVIDER_URL!, HERALD_PROVIDER_CA_FILE: apns.env.HERALD_PROVIDER_CA_FILE! };
    const start = async (name: string, env: Record<string, string>) => {
      const health = await freePort();
      const proc = spawnService(join(root, "services/sender/src/main.ts"), { ...common, ...env, HERALD_HEALTH_PORT: String(health) }, "");
      procs.push(proc);
      await waitForHealthPort(proc, health, name);
      return proc;
    };
    o.log("pool: starting the pooled sender and one dedicated sender");
    const pool = await start("pooled sender", { HERALD_POOL: "true", HERALD_POOL_DIR: dir, HERALD_LOG_LEVEL: "info" });
    const dedicated = await start("dedicated sender", { ...apns.env, HERALD_APP: "dedicated-0", HERALD_CREDENTIALS_DIR: writeCredentials(apns.credentials) });
    // Every app's topics assigned to the pool's groups (three groups, one per lane and retries).
    const assigned = Date.now() + 120_000;
    while ((pool.output().match(/consumer joined its group/g) ?? []).length < 3) {
      if (Date.now() > assigned) throw new Error(`the pool's consumers did not join: ${pool.output().slice(-2000)}`);
      await sleep(200);
    }
    await sleep(5000);
    const poolIdleMiB = rssMiB(pool.child.pid!);
    const dedicatedIdleMiB = rssMiB(dedicated.child.pid!);
    o.log(`pool: idle RSS ${poolIdleMiB} MiB for ${o.apps} apps; a dedicated sender ${dedicatedIdleMiB} MiB`);

    // Each app's first job, one token each, at `rate` apps per second.
    const tokens = await entryOf("apns").tokens(fakes, apps.length);
    await fakes.reset();
    await fakes.watch(tokens.map((t) => watchKey("apns", t.fakeKey)));
    const meter = new UsageMeter([{ name: "pool", pid: pool.child.pid!, role: "herald" }]);
    meter.begin();
    const sentAt = await paced(apps, o.rate, (app, i) => bus.publish(BusTopics.pooled(app, "apns"), [{ key: `first-${app}`, value: jobOf(app, `first-${app}`, [tokens[i]!.token]) }]));
    const deadline = Date.now() + 120_000;
    let watched: Record<string, number> = {};
    while (Date.now() < deadline) {
      watched = (await fakes.stats()).watched;
      if (Object.keys(watched).length >= apps.length) break;
      await sleep(250);
    }
    const usage = meter.end()[0]!;
    const firstDelivery = arrivals(tokens, sentAt, watched);
    await sleep(2000);
    const poolAllActiveMiB = rssMiB(pool.child.pid!);
    o.log(`pool: first deliveries p50 ${firstDelivery.p50} ms, p99 ${firstDelivery.p99} ms (${firstDelivery.count - firstDelivery.missing} of ${apps.length}); RSS with every app active ${poolAllActiveMiB} MiB`);
    const perApp = Math.max(0, (poolAllActiveMiB - poolIdleMiB) / apps.length);
    const isolation = o.broadcast > 0 && apps.length >= 2 ? await broadcastBesideLone(fakes, bus, apps[0]!, apps[1]!, o) : null;
    return {
      apps: o.apps,
      poolIdleMiB,
      poolAllActiveMiB,
      dedicatedIdleMiB,
      firstDelivery,
      poolCpuSeconds: usage.cpuSeconds,
      thousandApps: { dedicatedGiB: round((4000 * dedicatedIdleMiB) / 1024, 1), pooledGiB: round((4 * (poolIdleMiB + 1000 * perApp)) / 1024, 2) },
      isolation,
    };
  } finally {
    await Promise.all(procs.map((p) => p.stop("SIGTERM", 20_000)));
    await bus.close();
  }
}

const JOB_TARGETS = 500;

// Sends one item every 1/rate s on its schedule (not after the previous send, so a slow send does
// not lower the rate); returns when each was sent (wall clock, as the fakes count).
async function paced<T>(items: T[], rate: number, send: (item: T, i: number) => Promise<void>): Promise<number[]> {
  const sentAt: number[] = [];
  const started = performance.now();
  for (const [i, item] of items.entries()) {
    const due = started + (i * 1000) / rate;
    if (due > performance.now()) await sleep(due - performance.now());
    sentAt.push(wallNow());
    await send(item, i);
  }
  return sentAt;
}

// Each token's send → the fake APNs's receipt, ms (Infinity: never arrived).
const arrivals = (tokens: Array<{ fakeKey: string }>, sentAt: number[], watched: Record<string, number>): Percentiles =>
  percentiles(tokens.map((t, i) => {
    const at = watched[watchKey("apns", t.fakeKey)];
    return at === undefined ? Infinity : at - sentAt[i]!;
  }));

// An APNs delivery job as the dispatcher hands one to a pooled app's topic.
const jobOf = (app: string, publishId: string, tokens: string[]): Uint8Array =>
  events.DeliveryJob.encode(
    events.DeliveryJob.fromPartial({ jobId: `${publishId}:apns:0`, app, publishId, provider: Provider.PROVIDER_APNS, targets: tokens.map((token, i) => ({ deviceId: `d${i}`, token })), payload: Buffer.from(JSON.stringify({ aps: { alert: { body: publishId } } })) }),
  ).finish();

async function broadcastBesideLone(fakes: FakesControl, bus: Bus, busy: string, lone: string, o: { broadcast: number; loneCount: number; rate: number; log: (line: string) => void }): Promise<NonNullable<PoolResult["isolation"]>> {
  const apns = entryOf("apns");
  const broadcastTokens = await apns.tokens(fakes, o.broadcast);
  const loneTokens = await apns.tokens(fakes, o.loneCount);
  await fakes.reset();
  await fakes.watch(loneTokens.map((t) => watchKey("apns", t.fakeKey)));
  o.log(`pool: ${busy} broadcasts to ${o.broadcast} tokens while ${lone} sends ${o.loneCount} lone notifications at ${o.rate}/s`);
  const jobs = [];
  for (let i = 0; i < broadcastTokens.length; i += JOB_TARGETS) {
    jobs.push({ key: `broadcast-${i}`, value: jobOf(busy, `broadcast-${i}`, broadcastTokens.slice(i, i + JOB_TARGETS).map((t) => t.token)) });
  }
  for (let i = 0; i < jobs.length; i += 10) await bus.publish(BusTopics.pooled(busy, "apns"), jobs.slice(i, i + 10));
  const sentAt = await paced(loneTokens, o.rate, (t, i) => bus.publish(BusTopics.pooled(lone, "apns", "urgent"), [{ key: `lone-${i}`, value: jobOf(lone, `lone-${i}`, [t.token]) }]));
  const deadline = Date.now() + 600_000;
  let stats = await fakes.stats();
  while (Date.now() < deadline && (stats.providers.apns?.ok ?? 0) < o.broadcast + o.loneCount) {
    await sleep(500);
    stats = await fakes.stats();
  }
  const count = stats.providers.apns;
  const lonePercentiles = arrivals(loneTokens, sentAt, stats.watched);
  const seconds = count && count.lastOkAt > count.firstOkAt ? (count.lastOkAt - count.firstOkAt) / 1000 : NaN;
  const broadcastPerSecond = round((count?.ok ?? 0) / seconds);
  o.log(`pool: broadcast ${count?.ok ?? 0} delivered (${broadcastPerSecond}/s); lone notifications p50 ${lonePercentiles.p50} ms, p99 ${lonePercentiles.p99} ms (${lonePercentiles.count - lonePercentiles.missing} of ${o.loneCount})`);
  return { broadcast: o.broadcast, broadcastPerSecond, lone: lonePercentiles };
}
