import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { requireEnv } from "@herald/testing";

const root = fileURLToPath(new URL("../../", import.meta.url));

interface SmokeRun {
  modes: Array<{
    mode: string;
    broadcast: { devices: number; delivered: number; complete: boolean; publishState: string; perProvider: Record<string, { devices: number; delivered: number; failed: number }> };
    latency: { sent: number; received: number } | null;
    busyLatency: { sent: number; received: number } | null;
    rawTokens: { deliveries: number; delivered: number; complete: boolean } | null;
  }>;
  failures: unknown[];
}

// Runs the benchmark driver with these flags; it must exit 0. Returns what it printed.
async function runBench(flags: string[]): Promise<string> {
  const child = spawn(process.execPath, ["--import", "tsx", "bench/bench.ts", ...flags], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr.on("data", (d: Buffer) => (output += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  assert.equal(code, 0, output.slice(-4000));
  return output;
}

// `npm run bench` must keep working: the driver runs both modes at a size that takes seconds,
// against the suite's Kafka and FerretDB, and every device of the broadcast must be reached
// through every provider. Only completeness is asserted; rates are the benchmark's business.
describe("benchmark driver (smoke)", { timeout: 300_000 }, () => {
  it("runs both modes end to end and writes complete results", async () => {
    requireEnv("HERALD_KAFKA_BROKERS");
    requireEnv("HERALD_MONGO_URL");
    const out = mkdtempSync(join(tmpdir(), "herald-bench-smoke-"));
    const output = await runBench(["--devices", "400", "--skip-ceiling", "--latency-count", "6", "--busy-latency-count", "6", "--latency-rate", "10", "--out", out]);

    const run = JSON.parse(readFileSync(join(out, "latest.json"), "utf8")) as SmokeRun;
    assert.deepEqual(run.failures, []);
    assert.deepEqual(run.modes.map((m) => m.mode).sort(), ["distributed", "embedded"]);
    for (const m of run.modes) {
      assert.equal(m.broadcast.complete, true, m.mode);
      assert.equal(m.broadcast.delivered, 400, m.mode);
      assert.equal(m.broadcast.publishState, "PUBLISH_STATE_DONE", m.mode);
      assert.deepEqual(Object.keys(m.broadcast.perProvider).sort(), ["apns", "fcm", "webpush"], m.mode);
      for (const [provider, p] of Object.entries(m.broadcast.perProvider)) {
        assert.equal(p.delivered, p.devices, `${m.mode} ${provider}`);
        assert.equal(p.failed, 0, `${m.mode} ${provider}`);
      }
      assert.deepEqual(m.latency && { sent: m.latency.sent, received: m.latency.received }, { sent: 6, received: 6 }, m.mode);
      assert.deepEqual(m.busyLatency && { sent: m.busyLatency.sent, received: m.busyLatency.received }, { sent: 6, received: 6 }, `${m.mode}: lone publishes beside the broadcast`);
      assert.equal(m.rawTokens?.complete, true, m.mode);
      assert.equal(m.rawTokens?.delivered, 400, m.mode);
    }
    assert.match(output, /deliveries\/s/);
  });

  it("measures pooled senders: every app's first delivery, and one app's broadcast beside another's lone notifications", async () => {
    requireEnv("HERALD_KAFKA_BROKERS");
    const out = mkdtempSync(join(tmpdir(), "herald-bench-pool-smoke-"));
    await runBench(["--pool-apps", "3", "--pool-broadcast", "1000", "--latency-count", "5", "--latency-rate", "10", "--out", out]);
    const file = readdirSync(out).find((f) => f.endsWith("-pool.json"));
    assert.ok(file, `no pool results in ${out}: ${readdirSync(out).join(", ")}`);
    const { pool } = JSON.parse(readFileSync(join(out, file), "utf8")) as {
      pool: { apps: number; poolIdleMiB: number; dedicatedIdleMiB: number; firstDelivery: { count: number; missing: number }; isolation: { broadcast: number; broadcastPerSecond: number; lone: { count: number; missing: number } } };
    };
    assert.equal(pool.apps, 3);
    assert.deepEqual([pool.firstDelivery.count, pool.firstDelivery.missing], [3, 0]);
    assert.ok(pool.poolIdleMiB > 0 && pool.dedicatedIdleMiB > 0, JSON.stringify(pool));
    assert.equal(pool.isolation.broadcast, 1000);
    assert.ok(pool.isolation.broadcastPerSecond > 0, JSON.stringify(pool.isolation));
    assert.deepEqual([pool.isolation.lone.count, pool.isolation.lone.missing], [5, 0]);
  });

  it("measures unit costs: the memory store's bytes per device and the CPU per APNs request by layer", async () => {
    const out = mkdtempSync(join(tmpdir(), "herald-bench-units-smoke-"));
    await runBench(["--unit-costs", "--devices", "2000", "--unit-requests", "300", "--out", out]);
    const file = readdirSync(out).find((f) => f.endsWith("-units.json"));
    assert.ok(file, `no unit-cost results in ${out}: ${readdirSync(out).join(", ")}`);
    const { units } = JSON.parse(readFileSync(join(out, file), "utf8")) as { units: { store: { devices: number; heapBytesPerDevice: number }; apns: { requests: number; bareHttp2: number; heraldProvider: number } } };
    assert.equal(units.store.devices, 2000);
    assert.ok(units.store.heapBytesPerDevice > 0, JSON.stringify(units.store));
    // 300 requests per layer in each of 6 turns, every one answered 200 (anything else throws).
    assert.equal(units.apns.requests, 1800);
    assert.ok(units.apns.bareHttp2 > 0 && units.apns.heraldProvider > 0, JSON.stringify(units.apns));
  });
});

// `--operator-apps`: the operator, the registry, the local kubelet's four pool pods and the
// counting API proxy on the suite's API server, at 2 apps; its own timeout (pool pods start slowly
// on a busy machine).
describe("benchmark driver (smoke): the operator scenario", { timeout: 240_000 }, () => {
  it("measures the operator with pooled PushApps of every provider: Ready, traffic, pools, idle, restart", async () => {
    requireEnv("HERALD_KUBECONFIG");
    requireEnv("HERALD_KAFKA_BROKERS");
    const out = mkdtempSync(join(tmpdir(), "herald-bench-operator-smoke-"));
    await runBench(["--operator-apps", "2", "--operator-idle-s", "2", "--out", out]);
    const file = readdirSync(out).find((f) => f.endsWith("-operator.json"));
    assert.ok(file, `no operator results in ${out}: ${readdirSync(out).join(", ")}`);
    const { operator } = JSON.parse(readFileSync(join(out, file), "utf8")) as {
      operator: {
        apps: number;
        apply: { complete: boolean; readyApps: number; reconciles: { total: number }; traffic: { total: { requests: number; receivedBytes: number; events: number } } };
        pools: { settled: boolean; perProvider: Array<{ provider: string; sources: number; idleRssMiB: number; assignedTopics: number }> };
        restart: { reconciles: { total: number } } | null;
      };
    };
    assert.equal(operator.apps, 2);
    assert.deepEqual([operator.apply.complete, operator.apply.readyApps], [true, 2]);
    assert.ok(operator.apply.reconciles.total >= 2, JSON.stringify(operator.apply.reconciles));
    const traffic = operator.apply.traffic.total;
    assert.ok(traffic.requests > 0 && traffic.receivedBytes > 0 && traffic.events > 0, JSON.stringify(traffic));
    assert.equal(operator.pools.settled, true);
    assert.deepEqual(
      operator.pools.perProvider.map((p) => [p.provider, p.sources, p.assignedTopics]),
      ["apns", "fcm", "hms", "webpush"].map((p) => [p, 2, 6]),
    );
    assert.ok(operator.pools.perProvider.every((p) => p.idleRssMiB > 0), JSON.stringify(operator.pools.perProvider));
    assert.ok((operator.restart?.reconciles.total ?? 0) >= 2, JSON.stringify(operator.restart));
  });
});
