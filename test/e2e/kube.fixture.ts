import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { KubeConfig } from "@kubernetes/client-node";
import { eventually, failureOf, freePort, requireEnv, spawnService, type ServiceProcess } from "@herald/testing";
import type { Platform } from "./platform.fixture.js";

export const root = fileURLToPath(new URL("../../", import.meta.url));
export const CRD_FILE = `${root}charts/herald/crds/pushapps.herald.dev.yaml`;

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

// The real kubectl of test/infra against the real API server, as a platform team would run it.
export function kubectl(args: string[], options: { input?: string; kubeconfig?: string } = {}): Promise<Run> {
  const binary = requireEnv("HERALD_KUBECTL");
  const kubeconfig = options.kubeconfig ?? requireEnv("HERALD_KUBECONFIG");
  return new Promise((resolve) => {
    const child = execFile(binary, ["--kubeconfig", kubeconfig, ...args], { maxBuffer: 32 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    if (options.input !== undefined) child.stdin!.end(options.input);
  });
}

// kubectl that must succeed.
export async function kubectlOk(args: string[], options: { input?: string; kubeconfig?: string } = {}): Promise<string> {
  const run = await kubectl(args, options);
  if (run.code !== 0) throw new Error(`kubectl ${args.join(" ")} failed (${run.code}): ${run.stderr || run.stdout}`);
  return run.stdout;
}

export function adminKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(requireEnv("HERALD_KUBECONFIG"));
  return kc;
}

// Installs (or updates) the PushApp CRD and waits until the API server serves it.
export async function installCrd(): Promise<void> {
  await kubectlOk(["apply", "--server-side", "--force-conflicts", "-f", CRD_FILE]);
  await kubectlOk(["wait", "--for=condition=Established", "--timeout=60s", "crd/pushapps.herald.dev"]);
}

export async function createNamespace(prefix: string): Promise<string> {
  const name = `${prefix}-${randomUUID().slice(0, 8)}`;
  await kubectlOk(["create", "namespace", name]);
  return name;
}

export async function ensureNamespace(name: string): Promise<void> {
  await kubectlOk(["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "v1", kind: "Namespace", metadata: { name } }) });
}

export async function deleteNamespace(name: string): Promise<void> {
  // PushApps first, so the operator (still running) can finish their finalizers.
  await kubectl(["delete", "pushapps", "--all", "-n", name, "--wait=true", "--timeout=60s"]);
  await kubectl(["delete", "namespace", name, "--wait=false"]);
}

// The chart's operator RBAC (a Role in the watched namespace, the leader-election Role in the
// release namespace) for a release "herald" in herald-system: what binds the identity of
// HERALD_KUBE_OPERATOR_KUBECONFIG (system:serviceaccount:herald-system:herald-operator).
export const CHART_LEASE_NAME = "herald-operator";
export async function applyChartRbac(watchNamespace: string): Promise<void> {
  const rendered = await new Promise<string>((resolve, reject) =>
    execFile(
      requireEnv("HERALD_HELM"),
      ["template", "herald", `${root}charts/herald`, "-n", "herald-system", "--set", `operator.watchNamespace=${watchNamespace}`, "--show-only", "templates/rbac.yaml"],
      { maxBuffer: 8 * 1024 * 1024 },
      (err, stdout, stderr) => (err ? reject(new Error(`helm template failed: ${stderr || err.message}`)) : resolve(stdout)),
    ),
  );
  await kubectlOk(["apply", "-f", "-"], { input: rendered });
}

export interface OperatorProcess extends ServiceProcess {
  healthUrl: string;
  identity: string;
}

// One operator replica as its own process, with the Deployment's environment.
export async function startOperator(platform: Platform, o: { namespace: string; leaseName: string; identity: string; kubeconfig?: string; env?: Record<string, string> }): Promise<OperatorProcess> {
  const port = await freePort();
  const proc = spawnService(
    `${root}operator/src/main.ts`,
    {
      ...platform.env,
      KUBECONFIG: o.kubeconfig ?? requireEnv("HERALD_KUBECONFIG"),
      HERALD_REGISTRY_ADDRESS: platform.addresses.registry,
      HERALD_WATCH_NAMESPACE: o.namespace,
      HERALD_OPERATOR_NAMESPACE: "herald-system",
      HERALD_OPERATOR_IDENTITY: o.identity,
      HERALD_LEASE_NAME: o.leaseName,
      HERALD_LEASE_DURATION_SECONDS: "4",
      HERALD_LEASE_RENEW_SECONDS: "1",
      HERALD_HEALTH_PORT: String(port),
      HERALD_LOG_LEVEL: "info",
      // Lag-scaled apps re-read their lag every 2 s instead of 15 s, so the test is short.
      HERALD_AUTOSCALE_INTERVAL_SECONDS: "2",
      ...o.env,
    },
    "",
  );
  const healthUrl = `http://127.0.0.1:${port}`;
  await eventually(
    async () => {
      if (proc.child.exitCode !== null) throw new Error(`operator exited with ${proc.child.exitCode}: ${failureOf(proc.output())}`);
      const res = await fetch(`${healthUrl}/readyz`).catch(() => undefined);
      return res?.status === 200;
    },
    `operator ${o.identity} ready`,
    { timeoutMs: 90_000 },
  ).catch((err: Error) => {
    throw new Error(`${err.message}\n${failureOf(proc.output())}`);
  });
  return Object.assign(proc, { healthUrl, identity: o.identity });
}
