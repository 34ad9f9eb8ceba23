import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { ApiException, AppsV1Api, CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions, type V1Deployment, type V1Pod } from "@kubernetes/client-node";
import { requireEnv } from "./infra.env.js";
import { eventually } from "./poll.wait.js";
import { LOCAL_NODE_NAME, startLocalKubelet, type LocalKubelet } from "./kube.kubelet.js";

// Against the real API server and controller manager of test/infra/kube.sh: Deployments made
// here get their pods from the ReplicaSet controller, and the local kubelet must run them well
// enough for the Deployment controller to count them available, and stop them when they go.

const root = fileURLToPath(new URL("../../../", import.meta.url));
const SELECTOR_LABEL = "herald.dev/local-kubelet-test";
const TOKEN = `token-${randomUUID()}`;

// A stand-in for a sender: reports what it found in its credentials dir and environment, serves
// /healthz on HERALD_HEALTH_PORT, drains on SIGTERM.
const PROBE_SCRIPT = `
const http = require("node:http"), fs = require("node:fs"), path = require("node:path");
const dir = process.env.HERALD_CREDENTIALS_DIR;
const file = path.join(dir, "token.txt");
console.log("REPORT " + JSON.stringify({
  files: fs.readdirSync(dir).sort(),
  token: fs.readFileSync(file, "utf8"),
  mode: (fs.statSync(file).mode & 0o777).toString(8),
  app: process.env.HERALD_APP,
  override: process.env.LOCAL_KUBELET_TEST_POD,
  leaked: process.env.HERALD_KUBECONFIG ?? null,
  resource: process.env.OTEL_RESOURCE_ATTRIBUTES,
}));
const server = http.createServer((req, res) => { res.statusCode = req.url === "/healthz" ? 200 : 404; res.end(); });
server.listen(Number(process.env.HERALD_HEALTH_PORT), "127.0.0.1");
process.on("SIGTERM", () => { console.log("draining"); server.close(() => process.exit(0)); });
`;

// A stand-in for a pooled sender: serves the files of its credentials dir as they are now
// (GET /files: name → content), so a test sees a Secret's change reach a running process.
const FILES_SCRIPT = `
const http = require("node:http"), fs = require("node:fs"), path = require("node:path");
const dir = process.env.HERALD_CREDENTIALS_DIR;
const server = http.createServer((req, res) => {
  if (req.url === "/healthz") return res.end();
  const files = {};
  for (const name of fs.readdirSync(dir)) files[name] = fs.readFileSync(path.join(dir, name), "utf8");
  res.end(JSON.stringify({ pid: process.pid, files }));
});
server.listen(Number(process.env.HERALD_HEALTH_PORT), "127.0.0.1");
process.on("SIGTERM", () => server.close(() => process.exit(0)));
`;

function deployment(name: string, o: { replicas: number; command: string[]; secretName?: string; projected?: boolean; env?: Array<Record<string, unknown>> }): V1Deployment {
  const labels = { [SELECTOR_LABEL]: "1", app: name };
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name },
    spec: {
      replicas: o.replicas,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          terminationGracePeriodSeconds: 10,
          containers: [
            {
              name: "main",
              image: "herald/probe:test",
              command: o.command,
              env: (o.env as never) ?? [
                { name: "HERALD_APP", value: name },
                { name: "HERALD_CREDENTIALS_DIR", value: "/etc/herald/credentials" },
                { name: "HERALD_HEALTH_PORT", value: "8080" },
                // The downward API fields Herald's pods read, and $(VAR) expansion ($$ escapes).
                { name: "POD", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
                { name: "NS", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
                { name: "NODE", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
                { name: "OTEL_RESOURCE_ATTRIBUTES", value: "k8s.pod.name=$(POD),k8s.namespace.name=$(NS),k8s.node.name=$(NODE),x=$(UNDEFINED),y=$$(POD)" },
              ],
              readinessProbe: { httpGet: { path: "/healthz", port: 8080 } },
              volumeMounts: [{ name: "credentials", mountPath: "/etc/herald/credentials", readOnly: true }],
            },
          ],
          volumes: [
            o.projected
              ? { name: "credentials", projected: { defaultMode: 0o400, sources: [{ secret: { name: o.secretName!, optional: true } }, { secret: { name: `${o.secretName}-2`, optional: true } }] } }
              : { name: "credentials", secret: { secretName: o.secretName ?? "probe-credentials", defaultMode: 0o400, items: [{ key: "token.txt", path: "token.txt" }] } },
          ],
        },
      },
    },
  };
}

function report(output: string): { files: string[]; token: string; mode: string; app: string; override: string; leaked: string | null; resource?: string } {
  const line = output.split("\n").find((l) => l.startsWith("REPORT "));
  assert.ok(line, `no REPORT line in the process output:\n${output}`);
  return JSON.parse(line.slice("REPORT ".length));
}

function isNotFound(err: unknown): boolean {
  return err instanceof ApiException && err.code === 404;
}

describe("LocalKubelet against a real API server", () => {
  let kc: KubeConfig;
  let core: CoreV1Api;
  let apps: AppsV1Api;
  let namespace: string;
  let kubelet: LocalKubelet;

  const podsOf = async (app: string): Promise<V1Pod[]> => (await core.listNamespacedPod({ namespace, labelSelector: `app=${app}` })).items;
  const secret = (name: string) => core.createNamespacedSecret({ namespace, body: { metadata: { name }, data: { "token.txt": Buffer.from(TOKEN).toString("base64"), "other.txt": Buffer.from("not mounted").toString("base64") } } });

  before(async () => {
    kc = new KubeConfig();
    kc.loadFromFile(requireEnv("HERALD_KUBECONFIG"));
    core = kc.makeApiClient(CoreV1Api);
    apps = kc.makeApiClient(AppsV1Api);
    namespace = `local-kubelet-${randomUUID().slice(0, 8)}`;
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    await secret("probe-credentials");
    kubelet = await startLocalKubelet({
      kubeconfig: kc,
      namespace,
      labelSelector: `${SELECTOR_LABEL}=1`,
      cwd: root,
      envOverrides: (pod) => ({ LOCAL_KUBELET_TEST_POD: pod.metadata!.name! }),
    });
  });

  after(async () => {
    if (!namespace) return;
    // With the kubelet still running: the namespace controller deletes the pods gracefully and
    // only the kubelet can finish that, so the namespace really goes away.
    await core.deleteNamespace({ name: namespace }).catch(() => {});
    await eventually(
      () =>
        core.readNamespace({ name: namespace }).then(
          () => false,
          (err) => isNotFound(err),
        ),
      `namespace ${namespace} deleted`,
      { timeoutMs: 90_000 },
    ).finally(() => kubelet?.stop());
  });

  it("runs a Deployment's pods as processes the Deployment counts available, and stops them when they go", async () => {
    await apps.createNamespacedDeployment({ namespace, body: deployment("probe", { replicas: 2, command: ["node", "-e", PROBE_SCRIPT] }) });

    const running = await kubelet.waitFor((r) => r.length === 2 && r.every((p) => p.ready), 60_000, "2 ready processes");
    assert.notEqual(running[0]!.pid, running[1]!.pid);
    for (const p of running) {
      const r = report(await eventually(() => p.output().includes("REPORT ") && p.output(), `report of ${p.pod.name}`, { timeoutMs: 10_000 }));
      // items honoured (other.txt is not mounted), defaultMode honoured, content is the Secret's.
      assert.deepEqual(r.files, ["token.txt"]);
      assert.equal(r.token, TOKEN);
      assert.equal(r.mode, "400");
      assert.equal(r.app, "probe");
      assert.equal(r.override, p.pod.name);
      assert.equal(r.leaked, null, "the test's environment must not leak into the pod's process");
      assert.equal(r.resource, `k8s.pod.name=${p.pod.name},k8s.namespace.name=${namespace},k8s.node.name=${LOCAL_NODE_NAME},x=$(UNDEFINED),y=$(POD)`);
      const health = await fetch(p.healthUrl);
      assert.equal(health.status, 200);
    }

    const available = await eventually(
      async () => {
        const d = await apps.readNamespacedDeployment({ namespace, name: "probe" });
        return d.status?.availableReplicas === 2 && d.status?.readyReplicas === 2 && d;
      },
      "Deployment probe availableReplicas 2",
      { timeoutMs: 60_000 },
    );
    assert.equal(available.status?.replicas, 2);
    for (const pod of await podsOf("probe")) {
      assert.equal(pod.spec?.nodeName, LOCAL_NODE_NAME);
      assert.equal(pod.status?.phase, "Running");
      assert.equal(pod.status?.podIP, "127.0.0.1");
      assert.equal(pod.status?.containerStatuses?.[0]?.ready, true);
    }

    // Scale down: the ReplicaSet controller deletes one pod (gracefully, it is bound); the
    // kubelet stops its process and finalizes the pod.
    const before = new Set(running.map((p) => p.pid));
    await apps.patchNamespacedDeploymentScale({ namespace, name: "probe", body: { spec: { replicas: 1 } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
    const [survivor] = await kubelet.waitFor((r) => r.length === 1, 30_000, "1 process after scaling to 1");
    assert.ok(before.has(survivor!.pid));
    const stopped = kubelet.exited();
    assert.equal(stopped.length, 1);
    assert.equal(stopped[0]!.stoppedByKubelet, true);
    assert.equal(stopped[0]!.exitCode, 0, `SIGTERM should drain and exit 0:\n${stopped[0]!.output()}`);
    assert.match(stopped[0]!.output(), /draining/);
    await eventually(async () => (await podsOf("probe")).length === 1, "1 pod of probe left in the API server", { timeoutMs: 30_000 });
    await eventually(
      async () => {
        const d = await apps.readNamespacedDeployment({ namespace, name: "probe" });
        return d.status?.replicas === 1 && d.status?.availableReplicas === 1;
      },
      "Deployment probe at 1 available replica",
      { timeoutMs: 30_000 },
    );

    // Foreground deletion: the garbage collector deletes the ReplicaSet, then its pods; the
    // Deployment is gone only once the kubelet has finalized every pod.
    await apps.deleteNamespacedDeployment({ namespace, name: "probe", propagationPolicy: "Foreground" });
    await kubelet.waitFor((r) => r.length === 0, 30_000, "no process after deleting the Deployment");
    await eventually(
      () =>
        apps.readNamespacedDeployment({ namespace, name: "probe" }).then(
          () => false,
          (err) => isNotFound(err),
        ),
      "Deployment probe gone",
      { timeoutMs: 60_000 },
    );
    assert.deepEqual(await podsOf("probe"), []);
    assert.equal(kubelet.exited().filter((e) => !e.stoppedByKubelet).length, 0, "no process crashed");
  });

  it("reports a crash and an unrunnable pod on the pod instead of replacing it, and waits for a missing Secret", async () => {
    // Exits by itself: not restarted, and not marked Failed (the ReplicaSet would replace it).
    await apps.createNamespacedDeployment({ namespace, body: deployment("crash", { replicas: 1, command: ["node", "-e", "console.error('boom'); process.exit(3)"] }) });
    // valueFrom it cannot resolve (a Secret key): refused with a reason, like a kubelet's
    // CreateContainerConfigError.
    await apps.createNamespacedDeployment({
      namespace,
      body: deployment("unrunnable", {
        replicas: 1,
        command: ["node", "-e", PROBE_SCRIPT],
        env: [
          { name: "HERALD_CREDENTIALS_DIR", value: "/etc/herald/credentials" },
          { name: "HERALD_APP", valueFrom: { secretKeyRef: { name: "probe-credentials", key: "token.txt" } } },
        ],
      }),
    });
    // Its Secret does not exist yet: the pod waits, and runs once the Secret is there.
    await apps.createNamespacedDeployment({ namespace, body: deployment("late", { replicas: 1, command: ["node", "-e", PROBE_SCRIPT], secretName: "late-credentials" }) });

    const crashed = await eventually(
      async () => {
        const [pod, ...more] = await podsOf("crash");
        assert.equal(more.length, 0, "the crashed pod must not be replaced");
        return pod?.status?.containerStatuses?.[0]?.state?.terminated && pod;
      },
      "the crash pod reported terminated",
      { timeoutMs: 60_000 },
    );
    const terminated = crashed.status!.containerStatuses![0]!.state!.terminated!;
    assert.equal(terminated.exitCode, 3);
    assert.equal(terminated.reason, "Error");
    assert.match(terminated.message ?? "", /boom/);
    assert.equal(crashed.status?.phase, "Running");
    assert.equal(crashed.status?.conditions?.find((c) => c.type === "Ready")?.status, "False");
    const crash = kubelet.exited().find((e) => e.pod.name === crashed.metadata!.name);
    assert.equal(crash?.exitCode, 3);
    assert.equal(crash?.stoppedByKubelet, false);

    const refused = await eventually(
      async () => {
        const [pod] = await podsOf("unrunnable");
        return pod?.status?.containerStatuses?.[0]?.state?.waiting?.reason === "CreateContainerConfigError" && pod;
      },
      "the unrunnable pod reported CreateContainerConfigError",
      { timeoutMs: 30_000 },
    );
    assert.match(refused.status!.containerStatuses![0]!.state!.waiting!.message!, /HERALD_APP uses valueFrom/);
    assert.equal(refused.status?.phase, "Pending");
    assert.ok(kubelet.refused().some((r) => r.pod.name === refused.metadata!.name));

    await eventually(
      async () => {
        const [pod] = await podsOf("late");
        return /secret "late-credentials" not found/.test(pod?.status?.containerStatuses?.[0]?.state?.waiting?.message ?? "");
      },
      "the late pod waiting for its Secret",
      { timeoutMs: 30_000 },
    );
    assert.equal(kubelet.running().filter((r) => r.pod.name.startsWith("late-")).length, 0);
    await secret("late-credentials");
    const lateRun = (await kubelet.waitFor((r) => r.some((p) => p.pod.name.startsWith("late-") && p.ready), 30_000, "the late pod running once its Secret exists")).find((p) => p.pod.name.startsWith("late-"))!;
    assert.equal(report(await eventually(() => lateRun.output().includes("REPORT ") && lateRun.output(), "late report", { timeoutMs: 10_000 })).token, TOKEN);

    // Pods that never ran or already exited are finalized on deletion too.
    for (const name of ["crash", "unrunnable", "late"]) await apps.deleteNamespacedDeployment({ namespace, name, propagationPolicy: "Background" });
    await kubelet.waitFor((r) => r.length === 0, 30_000, "no process after deleting the Deployments");
    await eventually(async () => (await core.listNamespacedPod({ namespace })).items.length === 0, "every pod finalized", { timeoutMs: 60_000 });
  });

  it("brings a change of a mounted Secret to the running process: a key written, changed, removed; a Secret that appears later", async () => {
    const data = (files: Record<string, string>) => Object.fromEntries(Object.entries(files).map(([k, v]) => [k, Buffer.from(v).toString("base64")]));
    await core.createNamespacedSecret({ namespace, body: { metadata: { name: "shard" }, data: data({ "a.key": "one" }) } });
    await apps.createNamespacedDeployment({ namespace, body: deployment("live", { replicas: 1, command: ["node", "-e", FILES_SCRIPT], secretName: "shard", projected: true }) });
    const [run] = await kubelet.waitFor((r) => r.some((p) => p.pod.name.startsWith("live-") && p.ready), 60_000, "the live pod ready");
    const seen = async () => (await (await fetch(run!.healthUrl.replace(/\/healthz$/, "/files"))).json()) as { pid: number; files: Record<string, string> };
    const until = (files: Record<string, string>, what: string) =>
      eventually(
        async () => {
          const now = await seen();
          return JSON.stringify(now.files) === JSON.stringify(files) && now;
        },
        what,
        { timeoutMs: 30_000 },
      );
    const first = await until({ "a.key": "one" }, "the first content");

    await core.replaceNamespacedSecret({ namespace, name: "shard", body: { metadata: { name: "shard" }, data: data({ "a.key": "two", "b.key": "new" }) } });
    await until({ "a.key": "two", "b.key": "new" }, "a changed and b written");
    await core.replaceNamespacedSecret({ namespace, name: "shard", body: { metadata: { name: "shard" }, data: data({ "b.key": "new" }) } });
    await until({ "b.key": "new" }, "a's file removed with its key");
    // The second source of the projected volume did not exist when the pod started.
    await core.createNamespacedSecret({ namespace, body: { metadata: { name: "shard-2" }, data: data({ "c.key": "later" }) } });
    const last = await until({ "b.key": "new", "c.key": "later" }, "the late source's key");
    assert.equal(last.pid, first.pid, "the same process throughout: no restart");

    await apps.deleteNamespacedDeployment({ namespace, name: "live", propagationPolicy: "Background" });
    await kubelet.waitFor((r) => !r.some((p) => p.pod.name.startsWith("live-")), 30_000, "the live pod stopped");
  });
});
