import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { eventually, failureOf, requireEnv } from "@herald/testing";
import { parse, stringify } from "yaml";
import { applyChartRbac, CRD_FILE, createNamespace, kubectl, kubectlOk, root, startOperator, type OperatorProcess, type Run } from "./kube.fixture.js";
import { startPlatform, type Platform } from "./platform.fixture.js";

// The chart as a platform team runs it, with the real helm against the real kube-apiserver:
// install, upgrade with the same values (no pod may roll), the CRD upgrade step README "Run on
// Kubernetes" documents, a watched namespace that does not exist, the cluster-wide RBAC asked
// of the API server's authorizer, and the documented uninstall order with a real operator.
// Every release gets its own name and namespace, so suites running at once never meet; pods
// stay Pending (no kubelet), which none of this needs.

const CHART = `${root}charts/herald`;
const PERMISSIONS = `${root}operator/src/kube.permissions.ts`;
const id = randomUUID().slice(0, 6);
// The release name holds "herald", so the chart names its objects after the release alone.
const RELEASE = `herald-${id}`;

function helm(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(requireEnv("HERALD_HELM"), ["--kubeconfig", requireEnv("HERALD_KUBECONFIG"), ...args], { maxBuffer: 32 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

async function helmOk(args: string[]): Promise<string> {
  const r = await helm(args);
  assert.equal(r.code, 0, `helm ${args.join(" ")} failed (${r.code}):\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

interface Deployment {
  metadata: { name: string; generation: number };
  spec: { template: { metadata: { annotations?: Record<string, string> } } };
}

const json = async <T>(args: string[]) => JSON.parse(await kubectlOk([...args, "-o", "json"])) as T;
const namespaceGone = (name: string) => eventually(async () => (await kubectl(["get", "namespace", name])).code !== 0, `namespace ${name} deleted`, { timeoutMs: 90_000 });

describe("the chart installed with helm", { timeout: 600_000 }, () => {
  let namespace: string;
  const dir = mkdtempSync(join(tmpdir(), "herald-chart-e2e-"));
  const cleanups: Array<() => Promise<unknown>> = [];

  before(async () => {
    namespace = `chart-${id}`;
    // The defaults: generated keys, cluster-wide operator. Nothing runs (no kubelet).
    await helmOk(["install", RELEASE, CHART, "--namespace", namespace, "--create-namespace"]);
  });
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    await helm(["uninstall", RELEASE, "--namespace", namespace]);
    await kubectl(["delete", "namespace", namespace, "--wait=false"]);
    rmSync(dir, { recursive: true, force: true });
  });

  it("upgrades with unchanged values without rolling a pod or changing a generated key", async () => {
    const snapshot = async () => {
      const deployments = await json<{ items: Deployment[] }>(["get", "deployments", "-n", namespace]);
      const auth = await json<{ data: Record<string, string> }>(["get", "secret", `${RELEASE}-auth`, "-n", namespace]);
      return { deployments: deployments.items.map((d) => ({ name: d.metadata.name, generation: d.metadata.generation, annotations: d.spec.template.metadata.annotations })), auth: auth.data };
    };
    const installed = await snapshot();
    assert.equal(installed.deployments.length, 5, JSON.stringify(installed.deployments.map((d) => d.name)));
    await helmOk(["upgrade", RELEASE, CHART, "--namespace", namespace]);
    const upgraded = await snapshot();
    assert.deepEqual(upgraded, installed);
    assert.match(await helmOk(["history", RELEASE, "--namespace", namespace, "-o", "json"]), /"revision":2/);
  });

  it("gives the operator's service account no Secret deletion or update anywhere, kube-system included", async () => {
    const { OPERATOR_RULES } = (await import(PERMISSIONS)) as { OPERATOR_RULES: Array<{ apiGroups: string[]; resources: string[]; verbs: string[] }> };
    const account = `system:serviceaccount:${namespace}:${RELEASE}-operator`;
    const can = async (args: string[]) => (await kubectl(["auth", "can-i", ...args, "--as", account])).code === 0;
    for (const args of [
      ["delete", "secrets", "-n", "kube-system"],
      ["update", "secrets", "-n", "kube-system"],
      ["delete", "secrets", "-n", namespace],
      ["deletecollection", "secrets", "-n", "kube-system"],
      ["update", "deployments.apps", "-n", "kube-system"],
      ["delete", "pushapps.herald.dev", "-n", "default"],
      ["get", "configmaps", "-n", "kube-system"],
      ["create", "pods", "-n", "default"],
      ["create", "clusterrolebindings.rbac.authorization.k8s.io"],
    ]) {
      assert.equal(await can(args), false, `${account} can ${args.join(" ")}`);
    }
    // What the code calls is granted, in any namespace (a PushApp can live in any).
    for (const rule of OPERATOR_RULES) {
      for (const resource of rule.resources) {
        const [plural, subresource] = resource.split("/");
        const name = rule.apiGroups[0] ? `${plural}.${rule.apiGroups[0]}` : plural!;
        for (const verb of rule.verbs) {
          const args = [verb, name, "-n", "default", ...(subresource ? [`--subresource=${subresource}`] : [])];
          assert.equal(await can(args), true, `${account} cannot ${args.join(" ")}`);
        }
      }
    }
  });

  it("upgrades the CRD with the documented kubectl apply --server-side step, which helm upgrade keeps", async () => {
    // The next chart version, with a new printer column on the PushApp.
    const next = join(dir, "herald");
    cpSync(CHART, next, { recursive: true });
    const crdFile = join(next, "crds", "pushapps.herald.dev.yaml");
    const crd = parse(readFileSync(crdFile, "utf8")) as { spec: { versions: Array<{ additionalPrinterColumns?: Array<Record<string, unknown>> }> } };
    const column = `Probe${id}`;
    for (const version of crd.spec.versions) version.additionalPrinterColumns = [...(version.additionalPrinterColumns ?? []), { name: column, type: "string", jsonPath: ".spec.displayName", priority: 1 }];
    writeFileSync(crdFile, stringify(crd));
    cleanups.push(() => kubectlOk(["apply", "--server-side", "--force-conflicts", "-f", CRD_FILE]));
    const columns = async () => (await json<{ spec: { versions: Array<{ additionalPrinterColumns?: Array<{ name: string }> }> } }>(["get", "crd", "pushapps.herald.dev"])).spec.versions.flatMap((v) => (v.additionalPrinterColumns ?? []).map((c) => c.name));

    // Helm installs crds/ once and never upgrades them: that is why the step exists.
    await helmOk(["upgrade", RELEASE, next, "--namespace", namespace]);
    assert.ok(!(await columns()).includes(column), "helm upgrade changed the CRD by itself");

    // README: kubectl apply --server-side --force-conflicts -f charts/herald/crds/, then helm upgrade.
    await kubectlOk(["apply", "--server-side", "--force-conflicts", "-f", join(next, "crds")]);
    await kubectlOk(["wait", "--for=condition=Established", "--timeout=60s", "crd/pushapps.herald.dev"]);
    await helmOk(["upgrade", RELEASE, next, "--namespace", namespace]);
    assert.ok((await columns()).includes(column), `the new column is gone after helm upgrade: ${(await columns()).join(", ")}`);
    const wide = await kubectlOk(["get", "pushapps", "-n", namespace, "-o", "wide"]);
    assert.ok(wide === "" || wide.includes(column.toUpperCase()), wide);
  });

  it("refuses a watchNamespace that does not exist before anything is applied, and installs once it does", async () => {
    const second = `herald-${id}-w`;
    const watched = `chart-watched-${id}`;
    const refused = await helm(["install", second, CHART, "--namespace", namespace, "--set", `operator.watchNamespace=${watched}`]);
    assert.notEqual(refused.code, 0, "installed with a missing watchNamespace");
    assert.match(refused.stderr, new RegExp(`operator\\.watchNamespace "${watched}" does not exist: create it first \\(kubectl create namespace ${watched}\\)`), refused.stderr);
    // No failed release is left behind, and nothing of it was created.
    assert.notEqual((await helm(["status", second, "--namespace", namespace])).code, 0, "a release was recorded");
    assert.equal((await kubectlOk(["get", "deployments", "-n", namespace, "-l", `app.kubernetes.io/instance=${second}`, "-o", "name"])).trim(), "");
    // An upgrade to a missing namespace is refused the same way; the release stays as it was.
    const before = JSON.parse(await helmOk(["status", RELEASE, "--namespace", namespace, "-o", "json"])) as { version: number };
    const upgrade = await helm(["upgrade", RELEASE, CHART, "--namespace", namespace, "--set", `operator.watchNamespace=${watched}`]);
    assert.notEqual(upgrade.code, 0);
    assert.match(upgrade.stderr, /does not exist: create it first/);
    const afterUpgrade = JSON.parse(await helmOk(["status", RELEASE, "--namespace", namespace, "-o", "json"])) as { version: number; info: { status: string } };
    assert.deepEqual([afterUpgrade.version, afterUpgrade.info.status], [before.version, "deployed"]);

    await kubectlOk(["create", "namespace", watched]);
    cleanups.push(() => kubectl(["delete", "namespace", watched, "--wait=false"]));
    cleanups.push(() => helm(["uninstall", second, "--namespace", namespace]));
    await helmOk(["install", second, CHART, "--namespace", namespace, "--set", `operator.watchNamespace=${watched}`]);
    await kubectlOk(["get", "role", `${second}-operator`, "-n", watched]);
  });
});

// README "Run on Kubernetes", Uninstall: PushApps first (the operator still runs and finishes
// their finalizers), then the release, then their namespaces. The operator runs as a process
// under the chart's ServiceAccount identity and RBAC (HERALD_KUBE_OPERATOR_KUBECONFIG).
describe("uninstalling with PushApps present", { timeout: 600_000 }, () => {
  let platform: Platform;
  let operator: OperatorProcess | undefined;
  let apps: string;
  let release: string;
  const b64 = (v: string) => Buffer.from(v).toString("base64");

  before(async () => {
    release = `chart-${id}-un`;
    await helmOk(["install", `herald-${id}-un`, CHART, "--namespace", release, "--create-namespace"]);
    apps = await createNamespace("chart-apps");
    await applyChartRbac(apps);
    platform = await startPlatform();
    // No Lease: the suites sharing the chart's identity each run their own operator at once.
    operator = await startOperator(platform, { namespace: apps, leaseName: "unused", identity: `op-uninstall-${id}`, kubeconfig: requireEnv("HERALD_KUBE_OPERATOR_KUBECONFIG"), env: { HERALD_LEADER_ELECTION: "false" } });
  });
  after(async () => {
    await operator?.stop();
    await platform?.stop();
    for (const ns of [apps, release]) if (ns) await kubectl(["delete", "namespace", ns, "--wait=false"]);
  });

  it("leaves no namespace stuck when PushApps are deleted before the release", async () => {
    const app = `bye-${id}`;
    await kubectlOk(["apply", "-f", "-"], {
      input: JSON.stringify({
        apiVersion: "v1",
        kind: "List",
        items: [
          { apiVersion: "v1", kind: "Secret", metadata: { name: `${app}-hms`, namespace: apps }, data: { "client-secret": b64("s") } },
          { apiVersion: "herald.dev/v1alpha1", kind: "PushApp", metadata: { name: app, namespace: apps }, spec: { providers: { hms: { appId: "104455555", clientSecretRef: { name: `${app}-hms`, key: "client-secret" } } } } },
        ],
      }),
    });
    // Reconciled as the chart's account: the referenced Secret read by name, the keys written.
    await eventually(async () => {
      const o = await json<{ metadata: { finalizers?: string[] }; status?: { conditions?: Array<{ type: string; status: string }> } }>(["get", "pushapp", app, "-n", apps]);
      return o.metadata.finalizers?.includes("herald.dev/cleanup") && o.status?.conditions?.some((c) => c.type === "AppRegistered" && c.status === "True");
    }, "PushApp registered").catch((err: Error) => {
      throw new Error(`${err.message}\n${failureOf(operator!.output())}`);
    });

    // 1. PushApps, while the operator runs.
    await kubectlOk(["delete", "pushapps", "--all", "-n", apps, "--wait=true", "--timeout=60s"]);
    assert.equal((await kubectlOk(["get", "pushapps", "-n", apps, "-o", "name"])).trim(), "");
    // 2. The release (here, the operator process with it).
    await operator!.stop();
    operator = undefined;
    await helmOk(["uninstall", `herald-${id}-un`, "--namespace", release, "--wait", "--timeout", "60s"]);
    // 3. The namespaces.
    await kubectlOk(["delete", "namespace", apps, release, "--wait=false"]);
    await namespaceGone(apps);
    await namespaceGone(release);
  });

  it("gets a namespace stuck by a PushApp left without an operator out with the documented finalizer patch", async () => {
    const stuck = await createNamespace("chart-stuck");
    await kubectlOk(["apply", "-f", "-"], {
      input: JSON.stringify({ apiVersion: "herald.dev/v1alpha1", kind: "PushApp", metadata: { name: "orphan", namespace: stuck, finalizers: ["herald.dev/cleanup"] }, spec: {} }),
    });
    await kubectlOk(["delete", "namespace", stuck, "--wait=false"]);
    // Stuck: the namespace controller waits for the finalizer nobody will remove.
    await eventually(async () => {
      const ns = await json<{ status: { phase: string; conditions?: Array<{ type: string; status: string }> } }>(["get", "namespace", stuck]);
      return ns.status.phase === "Terminating" && ns.status.conditions?.some((c) => c.type === "NamespaceFinalizersRemaining" && c.status === "True");
    }, "namespace stuck on the PushApp finalizer");
    // README: kubectl patch pushapp <name> -n <namespace> --type=merge -p '{"metadata":{"finalizers":null}}'
    await kubectlOk(["patch", "pushapp", "orphan", "-n", stuck, "--type=merge", "-p", '{"metadata":{"finalizers":null}}']);
    await namespaceGone(stuck);
  });
});
