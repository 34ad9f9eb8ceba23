import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { Registry } from "prom-client";
import { createMetricsRegistry } from "@herald/platform";
import { dispatch } from "@herald/proto";
import { freePort, requireEnv, scrape, startFakeWebPush, type FakeWebPush } from "@herald/testing";
import { parseAllDocuments } from "yaml";
import { ALLOW_FAKES, registerMany, startPlatform, testCaFile, watchToEnd, webPushSender, type Platform } from "../e2e/platform.fixture.js";
import { Platform as DevicePlatform, Provider } from "./fixtures.js";

// Prometheus's own checker on what Herald ships to Prometheus: the alerting rules the chart
// renders (`promtool check rules`) and what every process's /metrics serves (`promtool check
// metrics`: the text format and the naming conventions, e.g. `_total` only on counters).
// promtool comes from test/infra/promtool.sh (HERALD_PROMTOOL); without it the suite fails.

const root = fileURLToPath(new URL("../../", import.meta.url));
const OPERATOR = `${root}operator/src/index.ts`;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(binary: string, args: string[], input = ""): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(binary, args, { maxBuffer: 32 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    child.stdin!.end(input);
  });
}

// promtool check metrics reads the exposition on stdin and lists every problem; none is allowed.
async function checkMetrics(what: string, text: string): Promise<void> {
  const r = await run(requireEnv("HERALD_PROMTOOL"), ["check", "metrics"], text);
  assert.equal(`${r.stdout}${r.stderr}`.trim(), "", `promtool check metrics on ${what}`);
  assert.equal(r.code, 0, `promtool check metrics on ${what}: exit ${r.code}`);
}

it("has promtool from test/infra", () => {
  requireEnv("HERALD_PROMTOOL");
});

describe("promtool check rules: the chart's PrometheusRule", () => {
  const dir = mkdtempSync(join(tmpdir(), "herald-promtool-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("is valid, every alert with its expression and labels", async () => {
    const values = ["--set", "metrics.prometheusRule.enabled=true", "--set", "auth.adminKey=promtool-test-admin-key-0123456789", "--set", "auth.masterSecret=promtool-test-master-secret-0123456789"];
    const r = await run(requireEnv("HERALD_HELM"), ["template", "herald", `${root}charts/herald`, "--namespace", "herald", ...values]);
    assert.equal(r.code, 0, `helm template failed:\n${r.stderr}`);
    const rules = parseAllDocuments(r.stdout)
      .map((d) => d.toJS() as { kind?: string; spec?: { groups: unknown[] } } | null)
      .filter((o) => o?.kind === "PrometheusRule");
    assert.equal(rules.length, 1, "one PrometheusRule");
    // A PrometheusRule's spec is a Prometheus rule file: { groups: [...] }.
    const file = join(dir, "rules.json");
    writeFileSync(file, JSON.stringify(rules[0]!.spec));
    const checked = await run(requireEnv("HERALD_PROMTOOL"), ["check", "rules", "--lint=all", "--lint-fatal", file]);
    assert.equal(checked.code, 0, `promtool check rules:\n${checked.stdout}${checked.stderr}`);
    assert.match(checked.stdout, /SUCCESS: \d+ rules found/);
    assert.doesNotMatch(`${checked.stdout}${checked.stderr}`, /WARNING|FAILED/);
  });
});

describe("promtool check metrics: every /metrics endpoint", { timeout: 240_000 }, () => {
  let platform: Platform;
  let fake: FakeWebPush;
  const endpoints: Record<string, string> = {};

  before(async () => {
    fake = await startFakeWebPush();
    platform = await startPlatform({ ...ALLOW_FAKES });
    const appId = `prom-${Math.random().toString(36).slice(2, 8)}`;
    const app = await platform.createApp(appId);
    const web = webPushSender(testCaFile());
    endpoints["herald-sender-webpush"] = (await platform.startSender(appId, "webpush", web.env, web.credentials)).opsUrl;
    const gatewayMetrics = await freePort();
    await platform.startGateway({ HERALD_METRICS_PORT: String(gatewayMetrics) });
    endpoints["herald-gateway"] = `http://127.0.0.1:${gatewayMetrics}`;
    Object.assign(endpoints, { "herald-registry": platform.metrics.registry, "herald-topic": platform.metrics.topic, "herald-dispatcher": platform.metrics.dispatcher });
    // A workload first, so every labelled metric has series (a delivery, a dead token, RPCs).
    const subs = [fake.subscribe(), fake.subscribe({ scenario: "gone" })];
    await registerMany(app, subs.map((s) => ({ provider: Provider.PROVIDER_WEBPUSH, platform: DevicePlatform.PLATFORM_WEB, token: s.token, topics: ["news"] })));
    const { id } = await app.dispatch.publish({ recipients: { target: { $case: "topics", value: { values: ["news"] } } }, notification: { alert: { title: "Hi", body: "there" } } });
    assert.equal(dispatch.publishStateToJSON((await watchToEnd(app, id)).state), "PUBLISH_STATE_DONE");
  });
  after(async () => {
    await platform?.stop();
    await fake?.close();
  });

  for (const service of ["herald-registry", "herald-topic", "herald-dispatcher", "herald-gateway", "herald-sender-webpush"]) {
    it(`${service}`, async () => {
      const text = await scrape(endpoints[service]!);
      assert.match(text, /^process_cpu_seconds_total\{/m, "process metrics are there");
      await checkMetrics(service, text);
    });
  }

  it("herald-operator (its registry, as operator/src/main.ts builds it)", async () => {
    const { OperatorMetrics } = (await import(OPERATOR)) as { OperatorMetrics: new (registry: Registry, queueDepth: () => number) => { reconciles: { inc(l: object): void }; duration: { observe(l: object, v: number): void }; ready: { set(l: object, v: number): void }; credentialFailures: { inc(l: object): void }; senderLag: { set(l: object, v: number): void }; leader: { set(v: number): void } } };
    const registry = createMetricsRegistry("herald-operator");
    const m = new OperatorMetrics(registry, () => 2);
    m.reconciles.inc({ result: "success" });
    m.duration.observe({ result: "success" }, 0.2);
    m.ready.set({ namespace: "ns", app: "shop" }, 1);
    m.credentialFailures.inc({ namespace: "ns", app: "shop", reason: "missing" });
    m.senderLag.set({ namespace: "ns", app: "shop", provider: "apns" }, 3);
    m.leader.set(1);
    await checkMetrics("herald-operator", await registry.metrics());
  });
});
