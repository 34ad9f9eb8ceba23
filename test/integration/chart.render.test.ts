import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, describe, after, it } from "node:test";
import { fileURLToPath } from "node:url";
import { loadConfig, NetworkPolicy } from "@herald/platform";
import { requireEnv } from "@herald/testing";
import { parseAllDocuments } from "yaml";

// The Helm chart (charts/herald) with the real helm and the real kube-apiserver of test/infra:
// lint; renders with the defaults, the production sample and every toggle on; what must hold in
// every render (hardened pods, least-privilege RBAC, secrets only by reference, PDBs, monitoring
// objects only when asked for, the operator's environment contract); the values schema refusing
// bad values; a server-side dry run in which the API server accepts every rendered object; and the
// operator's RBAC, applied for real, asked of the API server's authorizer.

const root = fileURLToPath(new URL("../../", import.meta.url));
const CHART = `${root}charts/herald`;
const SAMPLE_VALUES = `${root}deploy/values.sample.yaml`;
const PUSHAPP_CRD = `${CHART}/crds/pushapps.herald.dev.yaml`;
// Loaded at run time (not type-checked from here): the operator's env contract and the sender
// Deployment it builds, so the chart is checked against the code rather than a copy of it.
const OPERATOR = `${root}operator/src/index.ts`;
const GATEWAY = `${root}services/gateway/src/index.ts`;
// The operator's own list of the API calls it makes, which the rendered RBAC must equal.
const PERMISSIONS = `${root}operator/src/kube.permissions.ts`;

const RELEASE = "herald";
// One namespace per run: the renders name it, the dry run creates it.
const NAMESPACE = `herald-chart-${randomUUID().slice(0, 8)}`;
const COMPONENTS = ["registry", "topic", "dispatcher", "gateway", "operator"] as const;
const GRPC_PORTS = { registry: 50051, topic: 50052, dispatcher: 50053 } as const;
const ADMIN_KEY = "chart-test-admin-key-0123456789abcdef";
const MASTER_SECRET = "chart-test-master-secret-0123456789";

// Every optional object and setting on (and registry at one replica, which must lose its PDB).
const ALL_ON = {
  auth: { adminKey: ADMIN_KEY, masterSecret: MASTER_SECRET },
  imagePullSecrets: ["regcred"],
  tracing: { enabled: true, otlpEndpoint: "http://jaeger-collector.observability:4318/v1/traces", sampleRatio: 0.5 },
  webpush: { allowedHosts: ["push.example.com", "*.push.example.net"] },
  webhooks: { deniedNetworks: ["10.0.0.0/8", "fc00::/7"] },
  registry: { replicas: 1 },
  gateway: { maxBodyBytes: 65536, gorushGrpc: { enabled: true, port: 9000 }, ingress: { enabled: true, className: "nginx", host: "push.example.com", tlsSecretName: "push-tls" } },
  operator: { watchNamespace: NAMESPACE },
  sender: { serviceAccountName: "herald-sender", extraEnv: { "*": { HERALD_MAX_ATTEMPTS: "10" }, fcm: { HERALD_FCM_CONNECTIONS: "4" } } },
  metrics: {
    serviceMonitor: { enabled: true, labels: { release: "prometheus" } },
    podMonitor: { enabled: true },
    prometheusRule: { enabled: true },
    grafanaDashboard: { enabled: true, annotations: { grafana_folder: "Herald" } },
  },
};


// The metric names Herald's processes define: every "herald_..." string literal in their code.
const DEFINED_METRICS = new Set(
  ["services", "operator", "packages/platform/src"].flatMap((dir) =>
    readdirSync(`${root}${dir}`, { recursive: true, encoding: "utf8" })
      .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts") && !f.includes("node_modules") && !f.includes("dist/"))
      .flatMap((f) => [...readFileSync(`${root}${dir}/${f}`, "utf8").matchAll(/"(herald_[a-z_]+)"/g)].map((m) => m[1]!)),
  ),
);

const ALERTS = ["HeraldCredentialFailures", "HeraldDeliveryLagGrowing", "HeraldDeliveryErrorRate", "HeraldDeadLetterGrowth", "HeraldPublishStalled", "HeraldOperatorReconcileErrors", "HeraldWebhookDeadLetters", "HeraldSenderMissing", "HeraldSenderNotReporting", ...COMPONENTS.map(() => "HeraldComponentDown"), "HeraldTargetDown"];

// ---- the rendered objects, typed as far as the assertions read them

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } };
}
interface Probe {
  grpc?: { port: number };
  httpGet?: { path: string; port: string | number };
}
interface SecurityContext {
  runAsNonRoot?: boolean;
  readOnlyRootFilesystem?: boolean;
  allowPrivilegeEscalation?: boolean;
  capabilities?: { drop?: string[]; add?: string[] };
  seccompProfile?: { type: string };
  privileged?: boolean;
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  env?: EnvVar[];
  ports?: Array<{ name: string; containerPort: number }>;
  startupProbe?: Probe;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  securityContext?: SecurityContext;
}
interface PodSpec {
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  securityContext?: SecurityContext;
  containers: Container[];
  initContainers?: Container[];
  imagePullSecrets?: Array<{ name: string }>;
}
interface Rule {
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  verbs: string[];
}
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: {
    replicas?: number;
    selector?: { matchLabels?: Record<string, string> };
    template?: { metadata: { labels: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpec };
    ports?: Array<{ name: string; port: number; targetPort: string | number }>;
    minAvailable?: number;
    endpoints?: Array<{ port: string }>;
    podMetricsEndpoints?: Array<{ port: string }>;
    namespaceSelector?: { any?: boolean; matchNames?: string[] };
    groups?: Array<{ rules: Array<{ alert: string; expr: string }> }>;
  };
  rules?: Rule[];
  roleRef?: { kind: string; name: string };
  subjects?: Array<{ kind: string; name: string; namespace: string }>;
  data?: Record<string, string>;
}
interface Render {
  name: string;
  objects: K8sObject[];
  text: string;
}

// ---- helm and kubectl

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(binary: string, args: string[], input?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(binary, args, { maxBuffer: 32 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    child.stdin!.end(input ?? "");
  });
}

async function ok(pending: Promise<Run>, what: string): Promise<string> {
  const r = await pending;
  assert.equal(r.code, 0, `${what} failed (${r.code}):\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

const helm = (args: string[]) => run(requireEnv("HERALD_HELM"), args);
const kubectl = (args: string[], input?: string) => run(requireEnv("HERALD_KUBECTL"), ["--kubeconfig", requireEnv("HERALD_KUBECONFIG"), ...args], input);

async function render(name: string, valueArgs: string[]): Promise<Render> {
  const text = await ok(helm(["template", RELEASE, CHART, "--namespace", NAMESPACE, ...valueArgs]), `helm template (${name})`);
  const objects = parseAllDocuments(text)
    .map((doc) => doc.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
  return { name, objects, text };
}

// ---- lookups in a render

const ofKind = (r: Render, kind: string) => r.objects.filter((o) => o.kind === kind);

function component(r: Render, kind: string, name: string): K8sObject {
  const found = ofKind(r, kind).find((o) => o.metadata.labels?.["app.kubernetes.io/component"] === name);
  assert.ok(found, `${r.name}: no ${kind} for ${name}`);
  return found;
}

function pod(r: Render, name: string): PodSpec {
  return component(r, "Deployment", name).spec!.template!.spec;
}

function env(container: Container): Map<string, EnvVar> {
  return new Map((container.env ?? []).map((e) => [e.name, e]));
}

function envValue(container: Container, name: string): string | undefined {
  return env(container).get(name)?.value;
}

const selects = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined) =>
  !!selector && Object.entries(selector).every(([k, v]) => labels?.[k] === v);

// A missing tool is a failure that names what to run (and the suite below cannot start).
it("has helm, kubectl and the kube-apiserver's kubeconfig from test/infra", () => {
  for (const name of ["HERALD_HELM", "HERALD_KUBECTL", "HERALD_KUBECONFIG"] as const) requireEnv(name);
});

describe("Helm chart charts/herald", { timeout: 300_000 }, () => {
  let renders: { defaults: Render; sample: Render; all: Render };
  const dir = mkdtempSync(join(tmpdir(), "herald-chart-"));

  before(async () => {
    const allOn = join(dir, "all-on.values.json"); // JSON is YAML
    writeFileSync(allOn, JSON.stringify(ALL_ON));
    const [defaults, sample, all] = await Promise.all([render("defaults", []), render("sample", ["-f", SAMPLE_VALUES]), render("all toggles", ["-f", allOn])]);
    renders = { defaults, sample, all };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const each = () => [renders.defaults, renders.sample, renders.all];

  it("helm lint passes on the defaults and on deploy/values.sample.yaml", async () => {
    await ok(helm(["lint", "--strict", CHART]), "helm lint (defaults)");
    await ok(helm(["lint", "--strict", CHART, "-f", SAMPLE_VALUES]), "helm lint (sample)");
  });

  it("renders every component with one image, from /app, as node --import tsx <component>/src/main.ts", () => {
    for (const r of each()) {
      const images = new Set<string>();
      for (const name of COMPONENTS) {
        const [container, ...others] = pod(r, name).containers;
        assert.equal(others.length, 0, `${r.name} ${name}: one container`);
        const dir = name === "operator" ? "operator" : `services/${name}`;
        assert.deepEqual(container!.command, ["node", "--import", "tsx", `${dir}/src/main.ts`], `${r.name} ${name}`);
        images.add(container!.image);
      }
      assert.equal(images.size, 1, `${r.name}: ${[...images].join(", ")}`);
    }
    assert.match(pod(renders.defaults, "registry").containers[0]!.image, /^ghcr\.io\/herald-push\/herald:0\.1\.0$/);
    assert.match(pod(renders.sample, "registry").containers[0]!.image, /^registry\.example\.com\/platform\/herald:0\.1\.0$/);
  });

  it("runs every container hardened: non-root, read-only root, no privilege escalation, no capabilities, RuntimeDefault seccomp", () => {
    for (const r of each()) {
      for (const deployment of ofKind(r, "Deployment")) {
        const spec = deployment.spec!.template!.spec;
        for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
          const where = `${r.name} ${deployment.metadata.name}/${c.name}`;
          const sc = c.securityContext ?? {};
          assert.equal(sc.runAsNonRoot ?? spec.securityContext?.runAsNonRoot, true, `${where}: runAsNonRoot`);
          assert.equal(sc.readOnlyRootFilesystem, true, `${where}: readOnlyRootFilesystem`);
          assert.equal(sc.allowPrivilegeEscalation, false, `${where}: allowPrivilegeEscalation`);
          assert.deepEqual(sc.capabilities?.drop, ["ALL"], `${where}: capabilities.drop`);
          assert.equal(sc.capabilities?.add, undefined, `${where}: capabilities.add`);
          assert.notEqual(sc.privileged, true, `${where}: privileged`);
          assert.equal((sc.seccompProfile ?? spec.securityContext?.seccompProfile)?.type, "RuntimeDefault", `${where}: seccompProfile`);
        }
      }
    }
  });

  it("gives only the operator an API token, with exactly the RBAC its code uses and no wildcard", async () => {
    const { OPERATOR_RULES, LEASE_RULES } = (await import(PERMISSIONS)) as PermissionsModule;
    for (const r of each()) {
      for (const name of ["registry", "topic", "dispatcher", "gateway"]) assert.equal(pod(r, name).automountServiceAccountToken, false, `${r.name} ${name}`);
      const operator = pod(r, "operator");
      assert.equal(operator.automountServiceAccountToken, true, r.name);

      for (const role of [...ofKind(r, "ClusterRole"), ...ofKind(r, "Role")]) {
        for (const rule of role.rules ?? []) {
          for (const field of ["apiGroups", "resources", "verbs", "resourceNames"] as const) {
            assert.ok(!rule[field]?.includes("*"), `${r.name} ${role.kind}/${role.metadata.name}: wildcard in ${field}`);
          }
        }
      }
      // Every binding gives its role to the operator's service account and nobody else.
      const bindings = [...ofKind(r, "ClusterRoleBinding"), ...ofKind(r, "RoleBinding")];
      assert.equal(bindings.length, 2, r.name);
      for (const b of bindings) {
        assert.deepEqual(b.subjects, [{ kind: "ServiceAccount", name: operator.serviceAccountName, namespace: NAMESPACE }], `${r.name} ${b.metadata.name}`);
        assert.ok(r.objects.some((o) => o.kind === b.roleRef!.kind && o.metadata.name === b.roleRef!.name), `${r.name}: ${b.metadata.name} refers to a rendered role`);
      }

      // PushApps and what they own: cluster-wide, or a Role in the watched namespace.
      const watched = r === renders.all ? NAMESPACE : "";
      const apps = component(r, watched ? "Role" : "ClusterRole", "operator");
      assert.deepEqual(apps.rules, OPERATOR_RULES, r.name);
      assert.equal(apps.metadata.namespace, watched || undefined, r.name);
      assert.equal(ofKind(r, watched ? "ClusterRole" : "Role").filter((o) => o.rules !== undefined && o.rules.some((x) => x.resources?.includes("pushapps"))).length, 0, r.name);

      // Leader election: the one named Lease (get, update) and creating it; no list or watch.
      const container = operator.containers[0]!;
      assert.equal(envValue(container, "HERALD_LEADER_ELECTION"), "true", r.name);
      const lease = envValue(container, "HERALD_LEASE_NAME")!;
      const leases = ofKind(r, "Role").find((o) => o.rules?.some((x) => x.apiGroups?.includes("coordination.k8s.io")));
      assert.equal(leases?.metadata.namespace, NAMESPACE, r.name);
      assert.deepEqual(leases?.rules, LEASE_RULES(lease));
    }
  });

  it("checksums only stable inputs, so a render with the same values rolls no pod", async () => {
    // Generated keys are random in every render (and kept from the cluster on upgrade): the
    // checksum must not follow them.
    const again = await render("defaults, again", []);
    const checksums = (r: Render) => COMPONENTS.map((name) => component(r, "Deployment", name).spec!.template!.metadata.annotations?.["checksum/secrets"]);
    assert.ok(checksums(renders.defaults).every((c) => /^[0-9a-f]{64}$/.test(c ?? "")), checksums(renders.defaults).join(", "));
    assert.deepEqual(checksums(again), checksums(renders.defaults));
    // A key set in values (or another MongoDB URL) rolls every pod that reads it.
    const changed = await render("another admin key", ["--set", `auth.adminKey=${ADMIN_KEY}-2`]);
    const url = await render("another MongoDB URL", ["--set", "mongodb.url=mongodb://mongo-2:27017/herald"]);
    for (const [i, c] of checksums(changed).entries()) assert.notEqual(c, checksums(renders.defaults)[i], `${COMPONENTS[i]}: admin key`);
    for (const [i, c] of checksums(url).entries()) assert.notEqual(c, checksums(renders.defaults)[i], `${COMPONENTS[i]}: MongoDB URL`);
  });

  it("puts every component behind a NetworkPolicy that admits only its callers, unless turned off", async () => {
    const operator = (await import(OPERATOR)) as OperatorModule;
    const podLabels = (r: Render, name: string) => component(r, "Deployment", name).spec!.template!.metadata.labels;
    // Whose pods a policy's ingress rule for `port` admits, by component ("clients" for the
    // values' peers that are not Herald's pods).
    const admitted = (r: Render, policy: NetworkPolicyObject, port: string) => {
      const rules = policy.spec.ingress.filter((rule) => rule.ports.some((p) => p.port === port));
      assert.equal(rules.length, 1, `${r.name} ${policy.metadata.name}: one rule for ${port}`);
      if (!rules[0]!.from) return ["anyone"];
      return rules[0]!.from.map((peer) => COMPONENTS.find((c) => peer.podSelector && !peer.namespaceSelector && selects(peer.podSelector.matchLabels, podLabels(r, c))) ?? JSON.stringify(peer)).sort();
    };
    const everyPod = JSON.stringify({ namespaceSelector: {} });
    for (const r of each()) {
      const policies = ofKind(r, "NetworkPolicy") as unknown as NetworkPolicyObject[];
      for (const name of COMPONENTS) {
        const mine = policies.filter((p) => p.metadata.namespace === NAMESPACE && selects(p.spec.podSelector.matchLabels, podLabels(r, name)));
        assert.equal(mine.length, 1, `${r.name} ${name}: one NetworkPolicy`);
        const policy = mine[0]!;
        assert.deepEqual(policy.spec.policyTypes, ["Ingress"], `${r.name} ${name}: ingress only`);
        // Every port a rule names is one the pods listen on, and every port they listen on has a rule.
        const ports = pod(r, name).containers[0]!.ports!.map((p) => p.name).sort();
        assert.deepEqual(policy.spec.ingress.flatMap((rule) => rule.ports.map((p) => p.port)).sort(), ports, `${r.name} ${name}`);
      }
      const policy = (name: string) => policies.find((p) => selects(p.spec.podSelector.matchLabels, podLabels(r, name)))!;
      assert.deepEqual(admitted(r, policy("registry"), "grpc"), [everyPod, "gateway", "operator"].sort(), r.name);
      assert.deepEqual(admitted(r, policy("topic"), "grpc"), [everyPod, "dispatcher", "gateway"].sort(), r.name);
      assert.deepEqual(admitted(r, policy("dispatcher"), "grpc"), [everyPod, "gateway"].sort(), r.name);
      assert.deepEqual(admitted(r, policy("gateway"), "http"), ["anyone"], r.name);
      if (r === renders.all) assert.deepEqual(admitted(r, policy("gateway"), "gorush-grpc"), ["anyone"], r.name);
      for (const name of COMPONENTS) assert.deepEqual(admitted(r, policy(name), name === "operator" ? "http" : "metrics"), [everyPod], `${r.name} ${name} metrics`);
    }
    // Senders: only where the chart knows they run (the watched namespace), metrics only.
    const app = { apiVersion: "herald.dev/v1alpha1", kind: "PushApp", metadata: { name: "demo", namespace: NAMESPACE, uid: "uid-1" }, spec: {} };
    const config = loadConfig(operator.operatorEnv, { HERALD_ADMIN_KEY: "k".repeat(40), HERALD_REGISTRY_ADDRESS: "registry:50051", HERALD_KAFKA_BROKERS: "kafka:9092", HERALD_SENDER_IMAGE: "herald:1" });
    const sender = operator.senderDeployment(app, { provider: "fcm", replicas: 1, env: {}, files: [], credentialsHash: "h" }, config).spec!.template!;
    const senderPolicies = (r: Render) => (ofKind(r, "NetworkPolicy") as unknown as NetworkPolicyObject[]).filter((p) => selects(p.spec.podSelector.matchLabels, sender.metadata.labels));
    assert.equal(senderPolicies(renders.defaults).length, 0);
    const [senders] = senderPolicies(renders.all);
    assert.equal(senders?.metadata.namespace, NAMESPACE);
    assert.deepEqual(senders!.spec.ingress.map((rule) => rule.ports.map((p) => p.port)), [[sender.spec.containers[0]!.ports![0]!.containerPort]]);

    const off = await render("no NetworkPolicy", ["--set", "networkPolicy.enabled=false"]);
    assert.equal(ofKind(off, "NetworkPolicy").length, 0);
    const narrowed = await render("narrowed NetworkPolicy", ["--set-json", 'networkPolicy.clients=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"shop"}}}]', "--set-json", 'networkPolicy.gatewayFrom=[{"ipBlock":{"cidr":"10.0.0.0/8"}}]']);
    const narrowedPolicy = (name: string) => (ofKind(narrowed, "NetworkPolicy") as unknown as NetworkPolicyObject[]).find((p) => selects(p.spec.podSelector.matchLabels, podLabels(narrowed, name)))!;
    assert.deepEqual(admitted(narrowed, narrowedPolicy("dispatcher"), "grpc"), [JSON.stringify({ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "shop" } } }), "gateway"].sort());
    assert.deepEqual(admitted(narrowed, narrowedPolicy("gateway"), "http"), [JSON.stringify({ ipBlock: { cidr: "10.0.0.0/8" } })]);
  });

  it("hands keys, secrets and the MongoDB URL to the pods only by Secret reference", () => {
    // Variable → its key in the Secret (the auth Secret's keys are fixed; the sample's URL key is "url" too).
    const sensitive: Record<string, string> = { HERALD_ADMIN_KEY: "admin-key", HERALD_ADMIN_KEY_SHA256: "admin-key-sha256", HERALD_SECRET: "master-secret", HERALD_MONGO_URL: "url" };
    for (const r of each()) {
      const secrets = new Set(ofKind(r, "Secret").map((s) => s.metadata.name));
      for (const deployment of ofKind(r, "Deployment")) {
        for (const c of deployment.spec!.template!.spec.containers) {
          for (const e of c.env ?? []) {
            if (!(e.name in sensitive)) continue;
            const where = `${r.name} ${deployment.metadata.name}: ${e.name}`;
            assert.equal(e.value, undefined, `${where} is inline`);
            const ref = e.valueFrom?.secretKeyRef;
            assert.ok(ref, `${where} is not from a Secret`);
            assert.equal(ref.key, sensitive[e.name], where);
            // Either a Secret of this chart, or one the sample says the operator of the cluster made.
            assert.ok(secrets.has(ref.name) || (r === renders.sample && ["herald-auth", "herald-mongodb"].includes(ref.name)), `${where}: unknown Secret ${ref.name}`);
          }
        }
      }
    }
    // The registry and topic service hold only the admin key's hash; the dispatcher and operator need the key.
    const holders = (r: Render, name: string) => [...env(pod(r, name).containers[0]!).keys()].filter((n) => n.startsWith("HERALD_ADMIN_KEY"));
    for (const r of each()) {
      assert.deepEqual(holders(r, "registry"), ["HERALD_ADMIN_KEY_SHA256"], r.name);
      assert.deepEqual(holders(r, "topic"), ["HERALD_ADMIN_KEY_SHA256"], r.name);
      assert.deepEqual(holders(r, "dispatcher"), ["HERALD_ADMIN_KEY"], r.name);
      // The gateway acts on apps for the Beams-compatible APIs.
      assert.deepEqual(holders(r, "gateway"), ["HERALD_ADMIN_KEY"], r.name);
      assert.deepEqual(holders(r, "operator"), ["HERALD_ADMIN_KEY"], r.name);
    }

    // A key given in values lands in its Secret (with its SHA-256) and nowhere else.
    const sha = createHash("sha256").update(ADMIN_KEY).digest("hex");
    const auth = ofKind(renders.all, "Secret").find((s) => s.data?.["admin-key"] !== undefined)!;
    const decoded = (k: string) => Buffer.from(auth.data![k]!, "base64").toString("utf8");
    assert.equal(decoded("admin-key"), ADMIN_KEY);
    assert.equal(decoded("admin-key-sha256"), sha);
    assert.equal(decoded("master-secret"), MASTER_SECRET);
    assert.equal(auth.metadata.annotations?.["helm.sh/resource-policy"], "keep");
    for (const o of renders.all.objects.filter((x) => x !== auth)) {
      const text = JSON.stringify(o);
      for (const secret of [ADMIN_KEY, sha, MASTER_SECRET, Buffer.from(ADMIN_KEY).toString("base64")]) assert.ok(!text.includes(secret), `${o.kind}/${o.metadata.name} holds a secret`);
    }
    // Without values, a 40-character key is generated; with existingSecret, the chart makes none.
    const generated = ofKind(renders.defaults, "Secret").find((s) => s.data?.["admin-key"] !== undefined)!;
    assert.match(Buffer.from(generated.data!["admin-key"]!, "base64").toString("utf8"), /^[A-Za-z0-9]{40}$/);
    assert.deepEqual(ofKind(renders.sample, "Secret"), []);
  });

  it("keeps a PodDisruptionBudget for each component with more than one replica", () => {
    for (const r of each()) {
      for (const name of COMPONENTS) {
        const deployment = component(r, "Deployment", name);
        const budgets = ofKind(r, "PodDisruptionBudget").filter((p) => selects(p.spec!.selector?.matchLabels, deployment.spec!.template!.metadata.labels));
        if (deployment.spec!.replicas! > 1) {
          assert.equal(budgets.length, 1, `${r.name} ${name}`);
          assert.equal(budgets[0]!.spec!.minAvailable, 1, `${r.name} ${name}`);
        } else {
          assert.equal(budgets.length, 0, `${r.name} ${name} has ${deployment.spec!.replicas} replica(s)`);
        }
      }
    }
    assert.equal(component(renders.all, "Deployment", "registry").spec!.replicas, 1);
    assert.equal(ofKind(renders.defaults, "PodDisruptionBudget").length, 5);
  });

  it("wires the services to each other, with gRPC health probes and a metrics port on every Service", async () => {
    for (const r of each()) {
      for (const [name, port] of Object.entries(GRPC_PORTS)) {
        const deployment = component(r, "Deployment", name);
        const c = deployment.spec!.template!.spec.containers[0]!;
        assert.equal(envValue(c, "HERALD_GRPC_ADDRESS"), `0.0.0.0:${port}`, `${r.name} ${name}`);
        assert.equal(envValue(c, "HERALD_METRICS_PORT"), "9090", `${r.name} ${name}`);
        assert.deepEqual(c.ports, [{ name: "grpc", containerPort: port }, { name: "metrics", containerPort: 9090 }], `${r.name} ${name}`);
        for (const probe of [c.startupProbe, c.readinessProbe, c.livenessProbe]) assert.deepEqual(probe?.grpc, { port }, `${r.name} ${name}`);
        const service = component(r, "Service", name);
        assert.ok(selects(service.spec!.selector as Record<string, string>, deployment.spec!.template!.metadata.labels), `${r.name} ${name}: Service selects the pods`);
        assert.deepEqual(
          service.spec!.ports!.map((p) => [p.name, p.port, p.targetPort]),
          [
            ["grpc", port, "grpc"],
            ["metrics", 9090, "metrics"],
          ],
          `${r.name} ${name}`,
        );
      }
      const address = (name: keyof typeof GRPC_PORTS) => `${component(r, "Service", name).metadata.name}:${GRPC_PORTS[name]}`;
      assert.equal(envValue(pod(r, "dispatcher").containers[0]!, "HERALD_TOPIC_ADDRESS"), address("topic"), r.name);
      assert.equal(envValue(pod(r, "operator").containers[0]!, "HERALD_REGISTRY_ADDRESS"), address("registry"), r.name);
      // Only the topic service and the gateway have no Kafka.
      for (const name of COMPONENTS) assert.equal(env(pod(r, name).containers[0]!).has("HERALD_KAFKA_BROKERS"), name !== "topic" && name !== "gateway", `${r.name} ${name}`);

      // The gateway: HTTP on 8080 behind Service port 80, probed on /healthz, in front of the three services.
      const gateway = pod(r, "gateway").containers[0]!;
      for (const name of ["registry", "topic", "dispatcher"] as const) assert.equal(envValue(gateway, `HERALD_${name.toUpperCase()}_ADDRESS`), address(name), `${r.name} gateway → ${name}`);
      // gorush's gRPC port only when asked for.
      const gorush = r === renders.all ? [{ name: "gorush-grpc", containerPort: 9000 }] : [];
      assert.deepEqual(gateway.ports, [{ name: "http", containerPort: 8080 }, { name: "metrics", containerPort: 9090 }, ...gorush], r.name);
      assert.equal(envValue(gateway, "HERALD_GORUSH_GRPC_ADDRESS"), r === renders.all ? "0.0.0.0:9000" : undefined, r.name);
      for (const probe of [gateway.startupProbe, gateway.readinessProbe, gateway.livenessProbe]) assert.deepEqual(probe?.httpGet, { path: "/healthz", port: "http" }, r.name);
      assert.deepEqual(component(r, "Service", "gateway").spec!.ports!.map((p) => [p.name, p.port, p.targetPort]), [["http", 80, "http"], ["metrics", 9090, "metrics"], ...gorush.map((p) => [p.name, 9000, p.name])], r.name);
      assert.equal(envValue(gateway, "HERALD_HTTP_MAX_BODY_BYTES"), r === renders.all ? "65536" : "1048576", r.name);
      const gatewayConfig = loadConfig((await import(GATEWAY) as { gatewayEnv: Parameters<typeof loadConfig>[0] }).gatewayEnv, Object.fromEntries((gateway.env ?? []).map((e) => [e.name, e.value ?? "k".repeat(40)]))) as Record<string, unknown>;
      assert.equal(gatewayConfig.HERALD_HTTP_ADDRESS, "0.0.0.0:8080", "the gateway's own schema accepts the chart's environment");
    }
    // The gateway's Ingress only when asked for, to its Service's http port, with TLS.
    assert.equal(ofKind(renders.defaults, "Ingress").length, 0);
    const [ingress, ...more] = ofKind(renders.all, "Ingress") as unknown as Array<{ spec: { ingressClassName: string; tls: Array<{ hosts: string[]; secretName: string }>; rules: Array<{ host: string; http: { paths: Array<{ backend: { service: { name: string; port: { name: string } } } }> } }> } }>;
    assert.equal(more.length, 0);
    assert.equal(ingress!.spec.ingressClassName, "nginx");
    assert.deepEqual(ingress!.spec.tls, [{ hosts: ["push.example.com"], secretName: "push-tls" }]);
    assert.equal(ingress!.spec.rules[0]!.host, "push.example.com");
    assert.deepEqual(ingress!.spec.rules[0]!.http.paths[0]!.backend.service, { name: component(renders.all, "Service", "gateway").metadata.name, port: { name: "http" } });

    const registry = pod(renders.sample, "registry").containers[0]!;
    assert.equal(envValue(registry, "HERALD_KAFKA_BROKERS"), "kafka-0.kafka.data.svc.cluster.local:9092,kafka-1.kafka.data.svc.cluster.local:9092,kafka-2.kafka.data.svc.cluster.local:9092");
    assert.equal(envValue(registry, "HERALD_SWEEP_INTERVAL_SECONDS"), "1800", "extraEnv");
    // Webhooks may not reach the pod itself by default; the setting is what the registry parses.
    const denied = envValue(pod(renders.defaults, "registry").containers[0]!, "HERALD_WEBHOOK_DENIED_NETWORKS")!.split(",");
    const policy = new NetworkPolicy(denied);
    for (const address of ["127.0.0.1", "::1", "169.254.169.254", "0.0.0.0"]) assert.ok(policy.denies(address), address);
    assert.ok(!policy.denies("10.1.2.3"), "in-cluster receivers stay reachable");
    assert.equal(envValue(pod(renders.all, "registry").containers[0]!, "HERALD_WEBHOOK_DENIED_NETWORKS"), "10.0.0.0/8,fc00::/7");
    for (const name of COMPONENTS) {
      const all = pod(renders.all, name).containers[0]!;
      assert.equal(envValue(all, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), ALL_ON.tracing.otlpEndpoint, name);
      assert.equal(envValue(all, "HERALD_TRACE_SAMPLE_RATIO"), "0.5", name);
      assert.equal(env(pod(renders.defaults, name).containers[0]!).has("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), false, name);
      assert.deepEqual(pod(renders.all, name).imagePullSecrets, [{ name: "regcred" }], name);
      // Resource attributes of every span: the pod's name, namespace and node (downward API,
      // defined before the $(VAR) references to them) and the version.
      for (const r of each()) {
        const container = pod(r, name).containers[0]!;
        const vars = env(container);
        assert.deepEqual(vars.get("HERALD_K8S_POD_NAME")?.valueFrom, { fieldRef: { fieldPath: "metadata.name" } }, `${r.name} ${name}`);
        assert.deepEqual(vars.get("HERALD_K8S_NAMESPACE")?.valueFrom, { fieldRef: { fieldPath: "metadata.namespace" } }, `${r.name} ${name}`);
        assert.deepEqual(vars.get("HERALD_K8S_NODE_NAME")?.valueFrom, { fieldRef: { fieldPath: "spec.nodeName" } }, `${r.name} ${name}`);
        assert.equal(envValue(container, "HERALD_VERSION"), container.image!.split(":").pop(), `${r.name} ${name}`);
        assert.equal(
          envValue(container, "OTEL_RESOURCE_ATTRIBUTES"),
          "k8s.pod.name=$(HERALD_K8S_POD_NAME),k8s.namespace.name=$(HERALD_K8S_NAMESPACE),k8s.node.name=$(HERALD_K8S_NODE_NAME),service.version=$(HERALD_VERSION)",
          `${r.name} ${name}`,
        );
        const order = (container.env ?? []).map((e) => e.name);
        for (const v of ["HERALD_K8S_POD_NAME", "HERALD_K8S_NAMESPACE", "HERALD_K8S_NODE_NAME", "HERALD_VERSION"]) assert.ok(order.indexOf(v) < order.indexOf("OTEL_RESOURCE_ATTRIBUTES"), `${r.name} ${name}: ${v} first`);
      }
    }
  });

  it("gives the operator an environment its own config schema accepts, and senders the PodMonitor scrapes", async () => {
    const operator = (await import(OPERATOR)) as OperatorModule;
    for (const r of each()) {
      const container = pod(r, "operator").containers[0]!;
      assert.deepEqual(env(container).get("HERALD_OPERATOR_NAMESPACE")?.valueFrom, { fieldRef: { fieldPath: "metadata.namespace" } }, r.name);
      assert.deepEqual(env(container).get("HERALD_OPERATOR_IDENTITY")?.valueFrom, { fieldRef: { fieldPath: "metadata.name" } }, r.name);
      assert.equal(envValue(container, "HERALD_SENDER_IMAGE"), container.image, r.name);
      for (const probe of ["/healthz", "/readyz"]) assert.ok([container.readinessProbe, container.livenessProbe].some((p) => p?.httpGet?.path === probe), `${r.name}: ${probe}`);
      assert.deepEqual(container.ports, [{ name: "http", containerPort: 8080 }], r.name);

      // The environment as the pod would see it, references resolved to stand-ins.
      const resolved: Record<string, string> = {};
      for (const e of container.env ?? []) resolved[e.name] = e.value ?? (e.valueFrom?.secretKeyRef ? "k".repeat(40) : "herald-operator-0");
      const config = loadConfig(operator.operatorEnv, resolved) as Record<string, unknown>;
      assert.equal(config.HERALD_WATCH_NAMESPACE, r === renders.all ? NAMESPACE : "", r.name);

      // A sender the operator would build with that config: the chart's image, and labels and a
      // port the PodMonitor finds.
      const app = { apiVersion: "herald.dev/v1alpha1", kind: "PushApp", metadata: { name: "demo", namespace: NAMESPACE, uid: "uid-1" }, spec: {} };
      const sender = operator.senderDeployment(app, { provider: "fcm", replicas: 1, env: {}, files: [], credentialsHash: "h" }, config);
      const senderPod = sender.spec!.template!;
      assert.equal(senderPod.spec.containers[0]!.image, container.image, r.name);
      for (const monitor of ofKind(r, "PodMonitor")) {
        assert.ok(selects(monitor.spec!.selector?.matchLabels, senderPod.metadata.labels), `${r.name}: the PodMonitor selects sender pods`);
        const ports = senderPod.spec.containers[0]!.ports!.map((p) => p.name);
        for (const endpoint of monitor.spec!.podMetricsEndpoints!) assert.ok(ports.includes(endpoint.port), `${r.name}: sender port ${endpoint.port}`);
      }
      if (r === renders.all) {
        const senderEnv = senderPod.spec.containers[0]!;
        assert.equal(envValue(senderEnv, "HERALD_WEBPUSH_ALLOWED_HOSTS"), "push.example.com,*.push.example.net");
        assert.equal(envValue(senderEnv, "HERALD_MAX_ATTEMPTS"), "10");
        assert.equal(envValue(senderEnv, "HERALD_FCM_CONNECTIONS"), "4");
        assert.equal(envValue(senderEnv, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), ALL_ON.tracing.otlpEndpoint);
        // The senders' spans name their pod, app, provider and the chart's version.
        assert.deepEqual(env(senderEnv).get("HERALD_K8S_POD_NAME")?.valueFrom, { fieldRef: { fieldPath: "metadata.name" } });
        assert.deepEqual(env(senderEnv).get("HERALD_K8S_NODE_NAME")?.valueFrom, { fieldRef: { fieldPath: "spec.nodeName" } });
        const attributes = envValue(senderEnv, "OTEL_RESOURCE_ATTRIBUTES") ?? "";
        for (const a of ["k8s.pod.name=$(HERALD_K8S_POD_NAME)", "k8s.namespace.name=$(HERALD_K8S_NAMESPACE)", "k8s.node.name=$(HERALD_K8S_NODE_NAME)", "herald.app=demo", "herald.provider=fcm", `service.version=${container.image!.split(":").pop()}`]) {
          assert.ok(attributes.split(",").includes(a), `sender OTEL_RESOURCE_ATTRIBUTES has ${a}: ${attributes}`);
        }
        assert.equal(senderPod.spec.serviceAccountName, "herald-sender");
      }
    }
  });

  it("renders ServiceMonitor, PodMonitor, PrometheusRule and the dashboard only when enabled", () => {
    const monitoringKinds = ["ServiceMonitor", "PodMonitor", "PrometheusRule"];
    const dashboards = (r: Render) => ofKind(r, "ConfigMap").filter((c) => c.metadata.labels?.grafana_dashboard === "1");
    for (const kind of monitoringKinds) assert.equal(ofKind(renders.defaults, kind).length, 0, kind);
    assert.equal(dashboards(renders.defaults).length, 0);

    for (const r of [renders.sample, renders.all]) {
      for (const kind of monitoringKinds) assert.equal(ofKind(r, kind).length, 1, `${r.name} ${kind}`);
      // The ServiceMonitor reaches the metrics port of all four Services.
      const monitor = ofKind(r, "ServiceMonitor")[0]!;
      const scraped = ofKind(r, "Service").filter((s) => selects(monitor.spec!.selector?.matchLabels, s.metadata.labels) && s.spec!.ports!.some((p) => p.name === monitor.spec!.endpoints![0]!.port));
      assert.deepEqual(scraped.map((s) => s.metadata.labels?.["app.kubernetes.io/component"]).sort(), [...COMPONENTS].sort(), r.name);

      const rules = ofKind(r, "PrometheusRule")[0]!.spec!.groups!.flatMap((g) => g.rules);
      assert.deepEqual(rules.map((x) => x.alert), ALERTS, r.name);
      const expr = (alert: string) => rules.find((x) => x.alert === alert)!.expr;
      assert.match(expr("HeraldCredentialFailures"), /rate\(herald_deliveries_total\{result="credentials"\}\[5m\]\)\) > 0/);
      assert.match(expr("HeraldDeliveryLagGrowing"), /sum by \(topic\).*herald_consumer_lag/);
      // Final outcomes only: retries in the denominator would dilute the ratio (promtool.test.ts runs it).
      assert.match(expr("HeraldDeliveryErrorRate"), /result=~"failed\|dead_lettered".*\[10m\][\s\S]*\/[\s\S]*herald_deliveries_total\{result!~"retrying\|credentials"\}\[10m\][\s\S]*> 0\.05/);
      assert.match(expr("HeraldDeadLetterGrowth"), /increase\(herald_deliveries_total\{result="dead_lettered"\}\[15m\]\)\) > 0/);
      assert.match(expr("HeraldPublishStalled"), /max by \(app, state\) \(herald_publishes_stalled\) > 0/);
      assert.match(expr("HeraldOperatorReconcileErrors"), /rate\(herald_operator_reconciles_total\{result="error"\}\[10m\]\)\) > 0/);
      assert.match(expr("HeraldDeliveryLagGrowing"), r === renders.sample ? /> 50000/ : /> 10000/);

      const [dashboard, ...others] = dashboards(r);
      assert.equal(others.length, 0, r.name);
      const json = JSON.parse(dashboard!.data!["herald.json"]!) as { panels: Array<{ title: string; targets: Array<{ expr: string }> }> };
      const exprs = json.panels.flatMap((p) => p.targets.map((t) => t.expr)).join("\n");
      for (const wanted of [
        "herald_deliveries_total",
        "herald_provider_request_duration_seconds_bucket",
        "herald_consumer_lag",
        'result="invalid_token"',
        'result="retrying"',
        "herald_publishes_accepted_total",
        "herald_fanout_duration_seconds_bucket",
        "herald_registry_devices",
        'herald_registry_device_events_total{kind="removed"',
        "herald_topic_subscriptions",
        "herald_webhook_deliveries_total",
        "herald_webhook_request_duration_seconds_bucket",
        "herald_http_request_duration_seconds_count",
        "herald_http_request_duration_seconds_bucket",
        "herald_operator_reconciles_total",
        "herald_operator_reconcile_duration_seconds_bucket",
        "herald_operator_queue_depth",
        "herald_operator_pushapp_ready",
        "herald_operator_sender_lag",
        "herald_operator_credential_failures_total",
        "herald_operator_leader",
        "herald_publishes_stalled",
        "herald_sender_inflight_jobs",
      ]) {
        assert.ok(exprs.includes(wanted), `${r.name}: the dashboard has no panel on ${wanted}`);
      }
      // Every metric the dashboard and the alerts read is one Herald's code defines (a renamed
      // metric would leave a panel or an alert silently empty).
      const used = new Set([...`${exprs}\n${rules.map((x) => x.expr).join("\n")}`.matchAll(/\bherald_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|count|sum)$/, "")));
      for (const metric of used) assert.ok(DEFINED_METRICS.has(metric), `${r.name}: ${metric} is used by the dashboard or an alert but no code defines it`);
      assert.ok(exprs.includes("histogram_quantile(0.5,") && exprs.includes("histogram_quantile(0.99,"), "p50 and p99");
      // gRPC latency is of unary calls: a stream's duration is how long its client kept it open.
      for (const q of exprs.split("\n").filter((e) => e.includes("herald_grpc_server_duration_seconds_bucket"))) assert.match(q, /grpc_type="unary"/, q);
    }
    // Senders in the watched namespace only, or in all of them.
    assert.deepEqual(ofKind(renders.all, "PodMonitor")[0]!.spec!.namespaceSelector, { matchNames: [NAMESPACE] });
    assert.deepEqual(ofKind(renders.sample, "PodMonitor")[0]!.spec!.namespaceSelector, { any: true });
  });

  it("refuses values that break values.schema.json, naming the value", async () => {
    const cases: Array<[string[], RegExp]> = [
      [["--set", "operator.replicas=-1"], /operator[./]replicas/],
      [["--set", "registry.replicass=3"], /replicass/],
      [["--set", "logLevel=loud"], /logLevel/],
      [["--set", "tracing.enabled=true"], /otlpEndpoint/],
      [["--set", "auth.adminKey=short"], /adminKey/],
      [["--set-json", 'sender.extraEnv={"sms":{"A":"b"}}'], /sms/],
    ];
    for (const [args, named] of cases) {
      const r = await helm(["template", RELEASE, CHART, ...args]);
      assert.notEqual(r.code, 0, `${args.join(" ")} was accepted`);
      assert.match(r.stderr, /schema/, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, named, `${args.join(" ")}: ${r.stderr}`);
    }
  });

  it("refuses values that contradict each other, naming both values", async () => {
    const cases: Array<[string[], RegExp]> = [
      [["--set", "operator.leaderElection.renewSeconds=15"], /operator\.leaderElection\.renewSeconds \(15\) must be below operator\.leaderElection\.leaseDurationSeconds \(15\)/],
      [["--set", "operator.leaderElection.renewSeconds=20", "--set", "operator.leaderElection.leaseDurationSeconds=10"], /renewSeconds \(20\) must be below .*leaseDurationSeconds \(10\)/],
      [["--set", "operator.resources.requests.memory=1Gi"], /operator\.resources\.requests\.memory \(1Gi\) is above operator\.resources\.limits\.memory \(512Mi\)/],
      [["--set", "registry.resources.requests.cpu=2", "--set", "registry.resources.limits.cpu=1500m"], /registry\.resources\.requests\.cpu \(2\) is above registry\.resources\.limits\.cpu \(1500m\)/],
      [["--set-string", "gateway.resources.requests.cpu=0.5", "--set-string", "gateway.resources.limits.cpu=400m"], /gateway\.resources\.requests\.cpu \(0\.5\) is above/],
      [["--set", "operator.poolReplicas=3", "--set", "operator.poolMaxReplicas=2"], /operator\.poolMaxReplicas \(2\) is below operator\.poolReplicas \(3\)/],
    ];
    for (const [args, message] of cases) {
      const r = await helm(["template", RELEASE, CHART, ...args]);
      assert.notEqual(r.code, 0, `${args.join(" ")} was accepted`);
      assert.match(r.stderr, message, `${args.join(" ")}: ${r.stderr}`);
    }
    // Equal is fine, and so are units that only look bigger.
    for (const args of [
      ["--set", "operator.leaderElection.renewSeconds=14"],
      ["--set", "dispatcher.resources.requests.cpu=1", "--set", "dispatcher.resources.limits.cpu=1000m"],
      ["--set", "dispatcher.resources.requests.memory=1000Mi", "--set", "dispatcher.resources.limits.memory=1Gi"],
      ["--set", "operator.leaderElection.enabled=false", "--set", "operator.replicas=1", "--set", "operator.leaderElection.renewSeconds=30"],
      ["--set", "operator.poolReplicas=2", "--set", "operator.poolMaxReplicas=2"],
    ]) {
      await ok(helm(["template", RELEASE, CHART, ...args]), args.join(" "));
    }
  });

  describe("server-side dry run on the real kube-apiserver", () => {
    // The Prometheus Operator's CRDs are not installed: minimal stand-ins that accept any spec,
    // so the API server still checks everything else about these objects.
    const monitoringCrds = ["ServiceMonitor", "PodMonitor", "PrometheusRule"].map((kind) => {
      const plural = `${kind.toLowerCase()}s`;
      return {
        apiVersion: "apiextensions.k8s.io/v1",
        kind: "CustomResourceDefinition",
        metadata: { name: `${plural}.monitoring.coreos.com` },
        spec: {
          group: "monitoring.coreos.com",
          scope: "Namespaced",
          names: { kind, listKind: `${kind}List`, plural, singular: kind.toLowerCase() },
          versions: [{ name: "v1", served: true, storage: true, schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } } }],
        },
      };
    });
    const created: string[] = [];

    before(async () => {
      await ok(kubectl(["create", "namespace", NAMESPACE]), "create namespace");
      await ok(kubectl(["apply", "--server-side", "--force-conflicts", "-f", PUSHAPP_CRD]), "apply the PushApp CRD");
      for (const crd of monitoringCrds) {
        if ((await kubectl(["get", "crd", crd.metadata.name])).code === 0) continue; // the real one, or a concurrent run's
        await ok(kubectl(["create", "-f", "-"], JSON.stringify(crd)), `create ${crd.metadata.name}`);
        created.push(crd.metadata.name);
      }
      const names = ["pushapps.herald.dev", ...monitoringCrds.map((c) => c.metadata.name)].map((n) => `crd/${n}`);
      await ok(kubectl(["wait", "--for=condition=Established", "--timeout=60s", ...names]), "CRDs established");
    });

    after(async () => {
      await kubectl(["delete", "namespace", NAMESPACE, "--wait=false"]);
      for (const name of created) await kubectl(["delete", "crd", name, "--wait=false"]);
    });

    for (const which of ["defaults", "sample", "all"] as const) {
      it(`accepts every object of the ${which} render`, async () => {
        const r = renders[which];
        const out = await ok(kubectl(["apply", "--dry-run=server", "-n", NAMESPACE, "-f", "-"], r.text), `dry run (${r.name})`);
        const accepted = out.split("\n").filter((line) => line.includes("(server dry run)"));
        assert.equal(accepted.length, r.objects.length, `${r.name}: ${r.objects.length} objects, accepted:\n${out}`);
      });
    }

    // The namespaced variant (operator.watchNamespace) applied for real, then asked of the API
    // server's RBAC authorizer as the operator's service account.
    it("lets the operator's service account do what the operator does, and nothing else", async () => {
      const rbac = renders.all.objects.filter((o) => ["ServiceAccount", "Role", "RoleBinding"].includes(o.kind));
      await ok(kubectl(["apply", "-n", NAMESPACE, "-f", "-"], rbac.map((o) => JSON.stringify(o)).join("\n---\n")), "apply the RBAC");
      const account = `system:serviceaccount:${NAMESPACE}:${pod(renders.all, "operator").serviceAccountName}`;
      const lease = envValue(pod(renders.all, "operator").containers[0]!, "HERALD_LEASE_NAME")!;
      const can = async (args: string[], namespace = NAMESPACE) => (await kubectl(["auth", "can-i", ...args, "-n", namespace, "--as", account])).code === 0;
      const allowed = [
        ["list", "pushapps.herald.dev"],
        ["watch", "pushapps.herald.dev"],
        ["patch", "pushapps.herald.dev"],
        ["patch", "pushapps.herald.dev", "--subresource=status"],
        ["update", "pushapps.herald.dev", "--subresource=finalizers"],
        ["watch", "secrets"],
        ["create", "secrets"],
        ["delete", "deployments.apps"],
        ["patch", "deployments.apps"],
        ["create", "events"],
        ["get", `leases.coordination.k8s.io/${lease}`],
        ["update", `leases.coordination.k8s.io/${lease}`],
        ["create", "leases.coordination.k8s.io"],
      ];
      const denied = [
        ["delete", "pushapps.herald.dev"],
        ["create", "pushapps.herald.dev"],
        ["get", "configmaps"],
        ["create", "pods"],
        ["list", "leases.coordination.k8s.io"],
        ["update", "leases.coordination.k8s.io/somebody-elses-lease"],
        ["create", "rolebindings.rbac.authorization.k8s.io"],
        // Owned Secrets go with their PushApp by garbage collection; the code never updates or deletes one.
        ["delete", "secrets"],
        ["update", "secrets"],
        ["update", "deployments.apps"],
        ["update", "pushapps.herald.dev"],
      ];
      for (const args of allowed) assert.equal(await can(args), true, `${account} cannot ${args.join(" ")}`);
      for (const args of denied) assert.equal(await can(args), false, `${account} can ${args.join(" ")}`);
      // Watching one namespace: nothing in any other.
      assert.equal(await can(["list", "secrets"], "default"), false, "secrets of another namespace");
    });
  });
});

interface NetworkPolicyObject {
  metadata: { name: string; namespace: string };
  spec: {
    podSelector: { matchLabels: Record<string, string> };
    policyTypes: string[];
    ingress: Array<{ ports: Array<{ port: string | number }>; from?: Array<{ podSelector?: { matchLabels: Record<string, string> }; namespaceSelector?: object; ipBlock?: object }> }>;
  };
}

// operator/src/kube.permissions.ts.
interface PermissionsModule {
  OPERATOR_RULES: Rule[];
  LEASE_RULES(leaseName: string): Rule[];
}

// The parts of operator/src/index.ts this suite calls.
interface OperatorModule {
  operatorEnv: Parameters<typeof loadConfig>[0];
  senderDeployment(
    app: unknown,
    sender: { provider: string; replicas: number; env: Record<string, string>; files: string[]; credentialsHash: string },
    config: unknown,
  ): K8sObject;
}
