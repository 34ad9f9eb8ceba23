import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { AppsV1Api, CoordinationV1Api, Watch, type V1Deployment } from "@kubernetes/client-node";
import { eventually, failureOf, requireEnv, sample, scrape, seriesCount } from "@herald/testing";
import { adminKubeConfig, createNamespace, deleteNamespace, ensureNamespace, installCrd, kubectlOk, startOperator, type OperatorProcess } from "./kube.fixture.js";
import { startPlatform, type Platform } from "./platform.fixture.js";

// Leadership that is fenced, on a real API server: operator replicas as child processes, one of
// them frozen with SIGSTOP past its Lease while another takes over, then woken up. Also the
// operator's reconcile spans in a real Jaeger and the metric series of a deleted PushApp.

const b64 = (v: string) => Buffer.from(v).toString("base64");
const runId = randomUUID().slice(0, 6);
const secret = (namespace: string, name: string, data: Record<string, string>) => ({ apiVersion: "v1", kind: "Secret", metadata: { name, namespace }, type: "Opaque", data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])) });
// Dedicated senders, which a new PushApp gets only when it says so (pooled: delivery.kube).
const pushApp = (namespace: string, name: string, spec: Record<string, unknown>) => ({ apiVersion: "herald.dev/v1alpha1", kind: "PushApp", metadata: { name, namespace }, spec: { ...spec, senders: { mode: "dedicated", ...(spec.senders as object | undefined) } } });
const apply = (objects: object[]) => kubectlOk(["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }) });
// Each replica stamps the sender Deployments it writes with its own identity (an extra env
// var), so a Deployment says which replica wrote it last.
const writerEnv = (identity: string) => ({ HERALD_SENDER_EXTRA_ENV: JSON.stringify({ "*": { HERALD_TEST_WRITER: identity } }) });
const writerOf = (d: V1Deployment) => d.spec?.template.spec?.containers[0]?.env?.find((e) => e.name === "HERALD_TEST_WRITER")?.value;

interface JaegerSpan {
  spanID: string;
  operationName: string;
  references: Array<{ refType: string; spanID: string }>;
  tags: Array<{ key: string; value: unknown }>;
}

describe("operator leadership on a real API server", () => {
  let platform: Platform;
  let namespace: string;
  const leaseName = `herald-operator-fence-${runId}`;
  const operators: OperatorProcess[] = [];
  const coordination = () => adminKubeConfig().makeApiClient(CoordinationV1Api);
  const holder = async () => (await coordination().readNamespacedLease({ name: leaseName, namespace: "herald-system" }).catch(() => undefined))?.spec?.holderIdentity;
  const start = async (identity: string, env: Record<string, string> = {}) => {
    const op = await startOperator(platform, { namespace, leaseName, identity, env: { ...writerEnv(identity), ...env } });
    operators.push(op);
    return op;
  };
  const deployment = (name: string) => adminKubeConfig().makeApiClient(AppsV1Api).readNamespacedDeployment({ name, namespace }).catch(() => undefined);

  before(async () => {
    await installCrd();
    await ensureNamespace("herald-system");
    namespace = await createNamespace("opl");
    platform = await startPlatform();
  });
  after(async () => {
    for (const op of operators) if (op.child.exitCode === null) op.child.kill("SIGCONT");
    if (namespace) await deleteNamespace(namespace);
    for (const op of operators) await op.stop();
    await platform?.stop();
  });

  it("refuses at start a renew interval that is not shorter than the lease", async () => {
    await assert.rejects(
      startOperator(platform, { namespace, leaseName: `${leaseName}-bad`, identity: "op-bad", env: { HERALD_LEASE_DURATION_SECONDS: "4", HERALD_LEASE_RENEW_SECONDS: "4" } }),
      /HERALD_LEASE_RENEW_SECONDS \("4"\): must be shorter than HERALD_LEASE_DURATION_SECONDS \(4\)/,
    );
  });

  it("a leader frozen past its Lease writes nothing once it wakes up; hand-over after SIGSTOP and after SIGKILL", async (t) => {
    const a = await start("op-a");
    await eventually(async () => (await holder()) === "op-a", "op-a leads");
    const name = "fenced";
    const sender = `${name}-herald-hms-sender`;
    await apply([secret(namespace, `${name}-hms`, { "client-secret": "s" }), pushApp(namespace, name, { providers: { hms: { appId: "104466666", clientSecretRef: { name: `${name}-hms`, key: "client-secret" } } }, senders: { replicas: 1 } })]);
    await eventually(async () => {
      const d = await deployment(sender);
      return d && writerOf(d) === "op-a";
    }, "op-a wrote the sender").catch((err: Error) => {
      throw new Error(`${err.message}\n${failureOf(a.output())}`);
    });
    const b = await start("op-b");
    assert.equal(await holder(), "op-a", "op-b is a standby");

    // Every write of a sender Deployment's spec from here on (its generation moves; status
    // updates by the Deployment controller do not), with the replica that made it.
    const writes: Array<{ at: number; writer?: string; replicas?: number; generation: number }> = [];
    let generation = (await deployment(sender))!.metadata!.generation ?? 0;
    const watch = await new Watch(adminKubeConfig()).watch(
      `/apis/apps/v1/namespaces/${namespace}/deployments`,
      { resourceVersion: (await deployment(sender))!.metadata!.resourceVersion },
      (type, d: V1Deployment) => {
        if ((type !== "ADDED" && type !== "MODIFIED") || (d.metadata?.generation ?? 0) <= generation) return;
        generation = d.metadata!.generation!;
        writes.push({ at: Date.now(), writer: writerOf(d), replicas: d.spec?.replicas, generation });
      },
      () => undefined,
    );
    try {
      // A change op-a has just been told about, then op-a frozen: it holds the event (or is in
      // the middle of reconciling it) while it sleeps.
      await kubectlOk(["patch", "pushapp", name, "-n", namespace, "--type=merge", "-p", JSON.stringify({ spec: { senders: { replicas: 2 } } })]);
      a.child.kill("SIGSTOP");
      const stoppedAt = Date.now();
      await eventually(async () => (await holder()) === "op-b", "op-b takes the lease", { timeoutMs: 30_000, pollMs: 50 });
      const takenAt = Date.now();
      t.diagnostic(`hand-over after SIGSTOP: ${takenAt - stoppedAt} ms (lease 4 s, renew 1 s)`);
      await eventually(async () => {
        const d = await deployment(sender);
        return d && writerOf(d) === "op-b" && d.spec?.replicas === 2;
      }, "op-b reconciled the change").catch((err: Error) => {
        throw new Error(`${err.message}\n${failureOf(b.output())}`);
      });

      // Wake op-a: it must find its term over, write nothing, and exit.
      const wokenAt = Date.now();
      a.child.kill("SIGCONT");
      await eventually(() => a.child.exitCode !== null, "op-a exits after losing the lease", { timeoutMs: 30_000 });
      assert.match(a.output(), /leader election: lost the lease/);
      // Whatever op-b writes meanwhile is fine; nothing may carry op-a's stamp after op-b took over.
      const late = writes.filter((w) => w.writer === "op-a" && w.at >= takenAt);
      assert.deepEqual(late, [], `op-a wrote after losing the lease (woken at ${wokenAt}): ${JSON.stringify(writes)}\n${a.output().slice(-4000)}`);
      const d = await deployment(sender);
      assert.equal(writerOf(d!), "op-b");
    } finally {
      watch.abort();
    }

    // A standby for op-b, then op-b killed outright: no release, the Lease has to expire.
    await start("op-c", { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: requireEnv("HERALD_OTLP_TRACES_URL"), OTEL_BSP_SCHEDULE_DELAY: "100" });
    const killedAt = Date.now();
    await b.stop("SIGKILL");
    await eventually(async () => (await holder()) === "op-c", "op-c takes the lease", { timeoutMs: 30_000, pollMs: 50 });
    t.diagnostic(`hand-over after SIGKILL: ${Date.now() - killedAt} ms (lease 4 s, renew 1 s)`);
  });

  it("records one span per reconcile in Jaeger, with the app, namespace, outcome and the kube calls under it", async () => {
    const c = operators.at(-1)!;
    const name = `traced-${runId}`;
    await apply([secret(namespace, `${name}-hms`, { "client-secret": "s" }), pushApp(namespace, name, { providers: { hms: { appId: "104477777", clientSecretRef: { name: `${name}-hms`, key: "client-secret" } } } })]);
    await eventually(async () => (await deployment(`${name}-herald-hms-sender`)) !== undefined, "traced sender").catch((err: Error) => {
      throw new Error(`${err.message}\n${failureOf(c.output())}`);
    });
    const jaeger = requireEnv("HERALD_JAEGER_QUERY_URL");
    const query = new URLSearchParams({ service: "herald-operator", tags: JSON.stringify({ "herald.app": name }), lookback: "1h", limit: "50" });
    const spans = await eventually(async () => {
      const res = await fetch(`${jaeger}/api/traces?${query}`);
      if (res.status !== 200) return undefined;
      const traces = ((await res.json()) as { data: Array<{ spans: JaegerSpan[] }> | null }).data ?? [];
      for (const trace of traces) {
        const root = trace.spans.find((s) => s.operationName === "reconcile PushApp" && s.tags.some((t) => t.key === "herald.reconcile.outcome" && t.value === "success"));
        const apply = trace.spans.find((s) => s.operationName === "kube apply Deployment");
        if (root && apply) return { root, apply, all: trace.spans };
      }
      return undefined;
    }, "a reconcile trace in Jaeger");
    const tag = (s: JaegerSpan, key: string) => s.tags.find((t) => t.key === key)?.value;
    assert.equal(tag(spans.root, "herald.app"), name);
    assert.equal(tag(spans.root, "k8s.namespace.name"), namespace);
    assert.ok(spans.apply.references.some((r) => r.refType === "CHILD_OF" && r.spanID === spans.root.spanID), "the apply is a child of the reconcile");
    assert.ok(spans.all.some((s) => s.operationName === "kube patch PushApp status" || s.operationName === "kube apply Secret"), spans.all.map((s) => s.operationName).join(", "));
  });

  it("an app without providers is registered and Ready with reason NoProviders", async () => {
    const name = `bare-${runId}`;
    await apply([pushApp(namespace, name, { providers: {} })]);
    const ready = await eventually(async () => {
      const app = JSON.parse(await kubectlOk(["get", "pushapp", name, "-n", namespace, "-o", "json"])) as { status?: { conditions?: Array<{ type: string; status: string; reason: string }> } };
      return app.status?.conditions?.find((c) => c.type === "Ready" && c.status === "True");
    }, "bare Ready=True");
    assert.equal(ready.reason, "NoProviders");
    await kubectlOk(["delete", "pushapp", name, "-n", namespace, "--wait=true", "--timeout=60s"]);
  });

  it("drops the metric series of a deleted PushApp", async () => {
    const c = operators.at(-1)!;
    const name = `traced-${runId}`;
    await eventually(async () => seriesCount(await scrape(c.healthUrl), "herald_operator_pushapp_ready", { app: name }) === 1, "the ready series exists");
    await kubectlOk(["delete", "pushapp", name, "-n", namespace, "--wait=true", "--timeout=60s"]);
    const text = await eventually(async () => {
      const m = await scrape(c.healthUrl);
      return seriesCount(m, "herald_operator_pushapp_ready", { app: name }) === 0 ? m : undefined;
    }, "the ready series is gone");
    assert.equal(seriesCount(text, "herald_operator_sender_lag", { app: name }), 0);
    assert.ok(sample(text, "herald_operator_reconciles_total") > 0);
  });
});
