import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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

interface Rule {
  alert: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleFile {
  groups: Array<{ name: string; rules: Rule[] }>;
}

const AUTH = ["--set", "auth.adminKey=promtool-test-admin-key-0123456789", "--set", "auth.masterSecret=promtool-test-master-secret-0123456789"];

// The PrometheusRule's spec as the chart renders it (release "herald" in namespace "herald"): a
// Prometheus rule file, { groups: [...] }.
async function renderedRules(set: string[]): Promise<RuleFile> {
  const values = ["--set", "metrics.prometheusRule.enabled=true", ...set.flatMap((v) => ["--set", v]), ...AUTH];
  const r = await run(requireEnv("HERALD_HELM"), ["template", "herald", `${root}charts/herald`, "--namespace", "herald", ...values]);
  assert.equal(r.code, 0, `helm template failed:\n${r.stderr}`);
  const rules = parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as { kind?: string; spec?: RuleFile } | null)
    .filter((o) => o?.kind === "PrometheusRule");
  assert.equal(rules.length, 1, "one PrometheusRule");
  return rules[0]!.spec!;
}

const MONITORS = ["metrics.serviceMonitor.enabled=true", "metrics.podMonitor.enabled=true"];

describe("promtool check rules: the chart's PrometheusRule", () => {
  const dir = mkdtempSync(join(tmpdir(), "herald-promtool-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const [what, set] of [["alone", []], ["with the ServiceMonitor and PodMonitor", MONITORS]] as const) {
    it(`is valid, every alert with its expression and labels (${what})`, async () => {
      const file = join(dir, `rules-${set.length}.json`);
      writeFileSync(file, JSON.stringify(await renderedRules([...set])));
      const checked = await run(requireEnv("HERALD_PROMTOOL"), ["check", "rules", "--lint=all", "--lint-fatal", file]);
      assert.equal(checked.code, 0, `promtool check rules:\n${checked.stdout}${checked.stderr}`);
      assert.match(checked.stdout, /SUCCESS: \d+ rules found/);
      assert.doesNotMatch(`${checked.stdout}${checked.stderr}`, /WARNING|FAILED/);
    });
  }
});

// Every query of the dashboard parses as PromQL: each becomes a recording rule (Grafana's
// $__rate_interval and $app filled in) for promtool check rules.
it("promtool check rules: every dashboard query is valid PromQL", async () => {
  const dashboard = JSON.parse(readFileSync(`${root}charts/herald/dashboards/herald.json`, "utf8")) as { panels: Array<{ id: number; targets: Array<{ refId: string; expr: string }> }> };
  const rules = dashboard.panels.flatMap((p) => p.targets.map((t) => ({ record: `dashboard:panel_${p.id}_${t.refId}`, expr: t.expr.replaceAll("$__rate_interval", "5m").replaceAll("$app", ".*") })));
  assert.ok(rules.length >= 30, `${rules.length} queries`);
  const dir = mkdtempSync(join(tmpdir(), "herald-promtool-dashboard-"));
  try {
    const file = join(dir, "dashboard.json");
    writeFileSync(file, JSON.stringify({ groups: [{ name: "dashboard", rules }] }));
    const checked = await run(requireEnv("HERALD_PROMTOOL"), ["check", "rules", file]);
    assert.equal(checked.code, 0, `promtool check rules:\n${checked.stdout}${checked.stderr}`);
    assert.match(checked.stdout, new RegExp(`SUCCESS: ${rules.length} rules found`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// `promtool test rules`: series in, alerts out, on the rendered rules, with Prometheus's own rule
// evaluation (for:, staleness, absent()). Each case names the alerts expected at a time; an
// alert not listed must not fire then.
interface Expected {
  labels: Record<string, string>;
  // Stand-ins for {{ $value | ... }} in the annotations: the value as Prometheus renders it.
  value?: string;
}
interface RuleCase {
  name: string;
  series: Array<{ series: string; values: string }>;
  at: Array<{ time: string; alert: string; expect: Expected[] }>;
}

// What the rule's annotations read for these labels and value: {{ $labels.x }} and
// {{ $value | ... }} filled in (promtool compares annotations too, byte for byte).
function annotationsFor(rule: Rule, e: Expected): Record<string, string> {
  const fill = (t: string) =>
    t.replace(/\{\{ \$labels\.(\w+) \}\}/g, (_, k: string) => e.labels[k] ?? "").replace(/\{\{ \$value(?: \| \w+)? \}\}/g, () => {
      assert.ok(e.value !== undefined, `${rule.alert}: the case must say what {{ $value }} renders as`);
      return e.value;
    });
  return Object.fromEntries(Object.entries(rule.annotations ?? {}).map(([k, v]) => [k, fill(v)]));
}

async function testRules(dir: string, rules: RuleFile, cases: RuleCase[]): Promise<Run> {
  const rulesFile = join(dir, `unit-rules-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(rulesFile, JSON.stringify(rules));
  const all = rules.groups.flatMap((g) => g.rules);
  const ruleOf = (alert: string, labels: Record<string, string>) => {
    // Several rules share an alert name (HeraldComponentDown per component): the one whose
    // static labels the expected alert carries.
    const found = all.filter((r) => r.alert === alert && Object.entries(r.labels ?? {}).every(([k, v]) => labels[k] === v));
    assert.equal(found.length, 1, `one rule ${alert} for ${JSON.stringify(labels)}`);
    return found[0]!;
  };
  const tests = cases.map((c) => ({
    name: c.name,
    interval: "1m",
    input_series: c.series,
    alert_rule_test: c.at.map((a) => ({
      eval_time: a.time,
      alertname: a.alert,
      exp_alerts: a.expect.map((e) => ({ exp_labels: e.labels, exp_annotations: annotationsFor(ruleOf(a.alert, e.labels), e) })),
    })),
  }));
  const testFile = join(dir, `unit-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(testFile, JSON.stringify({ rule_files: [rulesFile], evaluation_interval: "1m", tests }));
  return run(requireEnv("HERALD_PROMTOOL"), ["test", "rules", testFile]);
}

// herald_deliveries_total of one app and provider: per-minute increments by result, for 40 minutes.
const deliveries = (app: string, provider: string, perMinute: Record<string, number>) =>
  Object.entries(perMinute).map(([result, n]) => ({ series: `herald_deliveries_total{app="${app}",provider="${provider}",result="${result}",reason="",service="herald-sender-${provider}"}`, values: `0+${n}x40` }));

describe("promtool test rules: what fires, and what does not", () => {
  const dir = mkdtempSync(join(tmpdir(), "herald-promtool-unit-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  let rules: RuleFile;
  before(async () => {
    rules = await renderedRules([...MONITORS]);
  });
  const errorRate = (app: string, provider: string, value: string): Expected => ({ labels: { app, provider, severity: "warning" }, value });

  const storm: RuleCase = {
    name: "a retry storm does not dilute the error rate",
    series: [
      // 2 of 12 final outcomes a minute fail (17%), under 600 retries a minute.
      ...deliveries("shop", "apns", { sent: 10, failed: 2, retrying: 600 }),
      // Retries alone are not failures; neither are dead tokens.
      ...deliveries("news", "fcm", { sent: 100, retrying: 1000, invalid_token: 20 }),
      // 1% failing: under the 5% threshold.
      ...deliveries("calm", "webpush", { sent: 99, failed: 1 }),
      // Dead letters are final failures: 1 sent, 1 dead-lettered, any number of retries.
      ...deliveries("stuck", "hms", { sent: 1, dead_lettered: 1, retrying: 100 }),
    ],
    at: [
      // The rate needs two samples and for: 10m must pass first.
      { time: "8m", alert: "HeraldDeliveryErrorRate", expect: [] },
      { time: "25m", alert: "HeraldDeliveryErrorRate", expect: [errorRate("shop", "apns", "16.67%"), errorRate("stuck", "hms", "50%")] },
    ],
  };

  it("HeraldDeliveryErrorRate counts final outcomes only: a retry storm does not hide failures", async () => {
    const r = await testRules(dir, rules, [storm]);
    assert.equal(r.code, 0, `promtool test rules:\n${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /SUCCESS/);
  });

  it("(the same series under the old ratio, retries in the denominator, do not fire: the bug this guards against)", async () => {
    const old: RuleFile = {
      groups: [{ name: "old", rules: [{ ...rules.groups[0]!.rules.find((x) => x.alert === "HeraldDeliveryErrorRate")!, expr: 'sum by (app, provider) (rate(herald_deliveries_total{result="failed"}[10m])) / sum by (app, provider) (rate(herald_deliveries_total[10m])) > 0.05' }] }],
    };
    const r = await testRules(dir, old, [{ ...storm, at: [{ time: "25m", alert: "HeraldDeliveryErrorRate", expect: [] }] }]);
    assert.equal(r.code, 0, `promtool test rules:\n${r.stdout}${r.stderr}`);
  });

  it("a test that expects the wrong alerts fails (promtool really compares)", async () => {
    const r = await testRules(dir, rules, [{ ...storm, at: [{ time: "25m", alert: "HeraldDeliveryErrorRate", expect: [errorRate("shop", "apns", "16.67%")] }] }]);
    assert.notEqual(r.code, 0, "an unexpected alert (stuck/hms) must fail the test");
    assert.match(`${r.stdout}${r.stderr}`, /FAILED/);
  });

  it("a silent sender fires: HeraldSenderMissing with deliveries waiting, HeraldSenderNotReporting without", async () => {
    const inflight = (app: string, provider: string, values: string) => ({ series: `herald_sender_inflight_jobs{app="${app}",provider="${provider}",service="herald-sender-${provider}",pod="${app}-${provider}-1",namespace="apps"}`, values });
    const lag = (app: string, provider: string, values: string) => ({ series: `herald_operator_sender_lag{exported_namespace="apps",app="${app}",provider="${provider}",namespace="herald",service="herald-operator"}`, values });
    const r = await testRules(dir, rules, [
      {
        name: "silent senders",
        series: [
          // shop/apns: its sender reports for 10 minutes, then its pod is gone (stale), 500 waiting.
          lag("shop", "apns", "500x40"),
          inflight("shop", "apns", "0x10 stale"),
          // quiet/webpush: the same, with nothing queued.
          lag("quiet", "webpush", "0x40"),
          inflight("quiet", "webpush", "0x10 stale"),
          // idle/fcm: scaled to zero on purpose (autoscaling minReplicas 0): no alert.
          lag("idle", "fcm", "0x40"),
          inflight("idle", "fcm", "0x10 stale"),
          { series: 'herald_operator_sender_desired_replicas{exported_namespace="apps",app="idle",provider="fcm",namespace="herald",service="herald-operator"}', values: "1x10 0x30" },
          { series: 'herald_operator_sender_desired_replicas{exported_namespace="apps",app="quiet",provider="webpush",namespace="herald",service="herald-operator"}', values: "1x40" },
          // news/fcm: the sender keeps reporting, however long the queue.
          lag("news", "fcm", "9000x40"),
          inflight("news", "fcm", "0+1x40"),
          // A rolling update: the old pod goes, a new one (another series) takes over.
          lag("roll", "hms", "100x40"),
          inflight("roll", "hms", "0x10 stale"),
          { series: 'herald_sender_inflight_jobs{app="roll",provider="hms",service="herald-sender-hms",pod="roll-hms-2",namespace="apps"}', values: "_x9 0x31" },
        ],
        at: [
          { time: "14m", alert: "HeraldSenderMissing", expect: [] },
          { time: "17m", alert: "HeraldSenderMissing", expect: [{ labels: { app: "shop", provider: "apns", severity: "critical" }, value: "500" }] },
          // Missing from minute 11: HeraldSenderNotReporting waits 15 minutes.
          { time: "24m", alert: "HeraldSenderNotReporting", expect: [] },
          { time: "28m", alert: "HeraldSenderNotReporting", expect: [{ labels: { app: "quiet", provider: "webpush", severity: "warning" } }, { labels: { app: "shop", provider: "apns", severity: "warning" } }] },
        ],
      },
    ]);
    assert.equal(r.code, 0, `promtool test rules:\n${r.stdout}${r.stderr}`);
  });

  it("a component that stops reporting fires HeraldComponentDown, a pod that fails its scrapes HeraldTargetDown", async () => {
    const up = (job: string, pod: string, values: string) => ({ series: `up{job="${job}",pod="${pod}",instance="${pod}:9090",namespace="herald"}`, values });
    const r = await testRules(dir, rules, [
      {
        name: "components down",
        series: [
          // The registry's only pod fails every scrape from minute 10.
          up("herald-registry", "registry-a", "1x9 0x30"),
          // One of two dispatchers fails: the component is still up.
          up("herald-dispatcher", "dispatcher-a", "1x40"),
          up("herald-dispatcher", "dispatcher-b", "1x9 0x30"),
          // The topic service's pods are all gone (no targets at all).
          up("herald-topic", "topic-a", "1x9 stale"),
          up("herald-gateway", "gateway-a", "1x40"),
          up("herald-operator", "operator-a", "1x40"),
          // A sender pod (PodMonitor job "<namespace>/<name>") that stopped answering.
          up("herald/herald-senders", "shop-apns-1", "1x9 0x30"),
          // Another installation's job is none of this rule's business.
          up("other-registry", "other-a", "0x40"),
        ],
        at: [
          { time: "12m", alert: "HeraldComponentDown", expect: [] },
          { time: "16m", alert: "HeraldComponentDown", expect: [{ labels: { component: "registry", severity: "critical" } }, { labels: { component: "topic", severity: "critical" } }] },
          { time: "16m", alert: "HeraldTargetDown", expect: [] },
          {
            time: "21m",
            alert: "HeraldTargetDown",
            expect: [
              { labels: { job: "herald-registry", pod: "registry-a", instance: "registry-a:9090", namespace: "herald", severity: "warning" } },
              { labels: { job: "herald-dispatcher", pod: "dispatcher-b", instance: "dispatcher-b:9090", namespace: "herald", severity: "warning" } },
              { labels: { job: "herald/herald-senders", pod: "shop-apns-1", instance: "shop-apns-1:9090", namespace: "herald", severity: "warning" } },
            ],
          },
        ],
      },
    ]);
    assert.equal(r.code, 0, `promtool test rules:\n${r.stdout}${r.stderr}`);
  });

  it("dead letters fire for deliveries and for webhook calls; stalled publishes fire", async () => {
    const r = await testRules(dir, rules, [
      {
        name: "dead letters and stalls",
        series: [
          ...deliveries("shop", "apns", { sent: 100, dead_lettered: 0 }),
          { series: 'herald_deliveries_total{app="news",provider="fcm",result="dead_lettered",reason="fcm:UNAVAILABLE",service="herald-sender-fcm"}', values: "0x10 3x30" },
          { series: 'herald_webhook_deliveries_total{app="news",type="publish.completed",result="dead_lettered",service="herald-registry"}', values: "0x10 1x30" },
          { series: 'herald_webhook_deliveries_total{app="shop",type="publish.completed",result="delivered",service="herald-registry"}', values: "0+5x40" },
          { series: 'herald_publishes_stalled{app="news",state="sending",service="herald-dispatcher"}', values: "0x10 2x30" },
        ],
        at: [
          { time: "5m", alert: "HeraldDeadLetterGrowth", expect: [] },
          { time: "12m", alert: "HeraldDeadLetterGrowth", expect: [{ labels: { app: "news", provider: "fcm", severity: "warning" }, value: "3" }] },
          { time: "12m", alert: "HeraldWebhookDeadLetters", expect: [{ labels: { app: "news", severity: "warning" }, value: "1" }] },
          // 15 minutes after the last dead letter, the increase is 0 again.
          { time: "30m", alert: "HeraldWebhookDeadLetters", expect: [] },
          { time: "13m", alert: "HeraldPublishStalled", expect: [] },
          { time: "16m", alert: "HeraldPublishStalled", expect: [{ labels: { app: "news", state: "sending", severity: "warning" }, value: "2" }] },
        ],
      },
    ]);
    assert.equal(r.code, 0, `promtool test rules:\n${r.stdout}${r.stderr}`);
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
