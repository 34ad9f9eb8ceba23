// The operator at scale (issue 13): N PushApps, every provider enabled (APNs, FCM, HMS, Web Push,
// each with a valid credentials Secret of its own), all pooled, applied with kubectl to the real
// kube-apiserver of test/infra; the operator runs as the chart's ServiceAccount with the chart's
// RBAC, the registry and Kafka are real, and the local kubelet (@herald/testing) runs the pool
// sender pods as processes. Measured:
//   - first apply → every PushApp Ready=True (observedGeneration current), and each app's own
//     time to Ready from its conditions;
//   - the operator's peak RSS and CPU seconds meanwhile, its reconciles (its own /metrics) and
//     what it sent to and received from the API server, per verb and resource (bench/kube.proxy.ts
//     sits between the two), next to the API server's own watch metrics (every watcher);
//   - the pool Deployments: size of their JSON, how often they were rewritten (generation,
//     revisions) and how many pool pods the kubelet started for them;
//   - once every pool has converged (one pod on the latest template per provider, its consumers
//     in their groups): an idle window, with the operator's RSS and CPU per minute, its traffic,
//     and each pool pod's RSS: the sender memory of N apps;
//   - optionally a cold restart of the operator (caches from scratch, every app reconciled once);
//   - the cost of one app's 12 pool topics on the broker, with no and with 12·N topics there.
import { execFile } from "node:child_process";
import { randomBytes, generateKeyPairSync } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { AppsV1Api, CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import kafkajs, { type Admin, type GroupDescription } from "kafkajs";
import { KafkaBus, namespacedBus, type Bus } from "@herald/platform";
import { names, poolAppsIn } from "@herald/operator";
import { BusGroups, LANES, pooledTopicsOf } from "@herald/proto";
import { PUSHAPP_GROUP, PUSHAPP_PLURAL, PUSHAPP_VERSION } from "@herald/pushapp";
import { generateApnsKey, requireEnv, sample, scrape, startLocalKubelet, type LocalKubelet, type RunningPod } from "@herald/testing";
import webPush from "web-push";
import { adminKubeConfig, applyChartRbac, CHART_LEASE_NAME, createNamespace, ensureNamespace, installCrd, kubectlOk, root, startOperator, type OperatorProcess } from "../test/e2e/kube.fixture.js";
import { startPlatform, type Platform } from "../test/e2e/platform.fixture.js";
import { sleep } from "./broadcast.scenario.js";
import { startKubeProxy, trafficSince, trafficTotal, type KubeProxy, type Traffic, type TrafficCount } from "./kube.proxy.js";
import { cpuSecondsOf, peakRssMiB, pidFromFile, rssMiB, UsageMeter, type ProcessUsage, type WatchedProcess } from "./proc.stats.js";
import { round } from "./seed.devices.js";

const PROVIDERS = ["apns", "fcm", "hms", "webpush"] as const;
type Provider = (typeof PROVIDERS)[number];
// The chart's default installation name: its pools are <installation>-pool-<provider>.
const INSTALLATION = "herald";
const poolName = (provider: Provider) => names.pool(INSTALLATION, provider);
const PUSHAPPS = { group: PUSHAPP_GROUP, version: PUSHAPP_VERSION, plural: PUSHAPP_PLURAL };
// PushApps per kubectl apply (a platform team's manifests, a GitOps sync).
const APPLY_CHUNK = 100;
// How long the pools may take to converge once every app is Ready, and the consumers to join.
const SETTLE_MS = 900_000;
// How long the work queue may take to empty after that before the idle window starts anyway.
const DRAIN_MS = 300_000;
const POLL_MS = 2000;

export interface OperatorScenarioOptions {
  apps: number;
  idleSeconds: number;
  readyBudgetMs: number;
  restart: boolean;
  log: (line: string) => void;
  // Registers what an interrupted run must stop; returns its deregistration.
  onInterrupt: (stop: () => Promise<void>) => () => void;
}

interface Percentile3 {
  p50: number;
  p90: number;
  max: number;
}

interface ApiServerWatch {
  // Watch events the API server sent (to every watcher: the operator, the controller manager,
  // the local kubelet) and their bytes, per resource.
  events: Record<string, { events: number; bytes: number }>;
  // Watches open at the end, per resource (every client).
  open: Record<string, number>;
}

interface OperatorTraffic {
  total: TrafficCount;
  byKind: Traffic;
  // TLS connections the operator opened to the API server.
  connections: number;
}

interface Reconciles {
  success: number;
  backoff: number;
  error: number;
  total: number;
  perSecond: number;
  perApp: number;
  avgSeconds: number;
}

export interface PoolResult {
  provider: Provider;
  deployment: string;
  // The apps it serves: those with keys in its credential shards (the pod template's projected
  // sources, one per app, in the results from before the shards).
  sources: number;
  // metadata.generation: 1 + every change of its spec; revision: ReplicaSets made for it.
  generation: number;
  revision: number;
  // The Deployment as the API server returns it (compact JSON), and without its managedFields.
  jsonBytes: number;
  jsonBytesWithoutManagedFields: number;
  // Pods of this pool the local kubelet started (rolled ones included) and their CPU seconds
  // (polled every second: the last second of a pod that was stopped is missed).
  podsStarted: number;
  podsCpuSeconds: number;
  // The converged pod: RSS at the end of the idle window and its peak during it.
  idleRssMiB: number;
  idlePeakRssMiB: number;
  // Topics its three consumer groups had assigned when the idle window began (3 per app).
  assignedTopics: number;
}

export interface OperatorResult {
  apps: number;
  providers: readonly Provider[];
  secretsPerApp: number;
  // What code ran: the operator and its packages are read from the working tree.
  source: { head: string; uncommitted: string[] };
  setup: { secretsSeconds: number; loadAverage: number };
  apply: {
    // kubectl apply --server-side of the N PushApps, in chunks of APPLY_CHUNK.
    applySeconds: number;
    // First apply → every PushApp Ready=True with a current observedGeneration (polled every 2 s).
    readySeconds: number;
    complete: boolean;
    readyApps: number;
    // Each app's Ready lastTransitionTime − creationTimestamp (1 s resolution).
    perAppReadySeconds: Percentile3;
    timeline: Array<{ s: number; ready: number; reconciles: number }>;
    operator: { peakRssMiB: number; rssAfterMiB: number; cpuSeconds: number };
    reconciles: Reconciles;
    traffic: OperatorTraffic;
    apiserver: ApiServerWatch;
    processes: ProcessUsage[];
    loadAverage: number;
  };
  // After the pools converged: until the operator's work queue was empty 3 times in a row (read
  // every 2 s: each /metrics read costs the operator CPU with N apps' series), and the
  // reconciles made since every app was Ready.
  drain: { seconds: number; drained: boolean; reconciles: number; queueDepth: number };
  pools: {
    // Every app Ready → every pool on one pod of its latest template, consumers assigned.
    settleSeconds: number;
    settled: boolean;
    perProvider: PoolResult[];
    totalIdleRssMiB: number;
    // Processes the local kubelet started for the pools, and their CPU seconds, in total.
    podsStarted: number;
    podsCpuSeconds: number;
  };
  idle: {
    seconds: number;
    operator: { rssMiB: number; peakRssMiB: number; cpuSeconds: number; cpuSecondsPerMinute: number };
    reconciles: number;
    traffic: OperatorTraffic;
    apiserver: ApiServerWatch;
    processes: ProcessUsage[];
    loadAverage: number;
  };
  restart: {
    // SIGTERM → exit of the old operator; start → /readyz (caches synced); → every app reconciled.
    stopSeconds: number;
    readySeconds: number;
    // → as many reconciles as apps, and the work queue's depth then.
    reconciledSeconds: number;
    queueDepth: number;
    reconciles: Reconciles;
    operator: { peakRssMiB: number; rssMiB: number; cpuSeconds: number };
    traffic: OperatorTraffic;
  } | null;
  kafka: {
    // The apps' pool topics that exist at the end (12 per app that got that far), and every
    // topic on the broker.
    topics: number;
    brokerTopics: number;
    // One app's 12 pool topics (ensureTopics, as the operator calls it), ms per app, averaged
    // over probe apps: on a broker without this run's topics, and with 12·N of them.
    ensureMsPerAppBefore: number;
    ensureMsPerAppAfter: number;
    brokerRssMiBBefore: number;
    brokerRssMiBAfter: number;
  };
  kubeletWarnings: Record<string, number>;
}

const b64 = (v: string) => Buffer.from(v).toString("base64");

// The objects of app i: four Secrets (one per provider) and the PushApp referring to them.
function appObjects(namespace: string, name: string, i: number, keys: { apns: ReturnType<typeof generateApnsKey>; rsaPem: string; vapid: { publicKey: string; privateKey: string } }) {
  const secret = (suffix: string, data: Record<string, string>) => ({ apiVersion: "v1", kind: "Secret", metadata: { name: `${name}-${suffix}`, namespace }, type: "Opaque", data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])) });
  const project = `${name}-project`;
  const serviceAccount = JSON.stringify({ type: "service_account", project_id: project, client_email: `sender@${project}.iam.gserviceaccount.com`, private_key: keys.rsaPem });
  return {
    secrets: [
      secret("apns", { "AuthKey.p8": keys.apns.privateKeyPem }),
      secret("fcm", { "sa.json": serviceAccount }),
      secret("hms", { "client-secret": randomBytes(24).toString("base64url") }),
      secret("webpush", { "vapid.json": JSON.stringify(keys.vapid) }),
    ],
    pushApp: {
      apiVersion: "herald.dev/v1alpha1",
      kind: "PushApp",
      metadata: { name, namespace },
      spec: {
        providers: {
          apns: { environment: "sandbox", bundleId: `com.example.${name}`, auth: { token: { keyId: keys.apns.keyId, teamId: keys.apns.teamId, keySecretRef: { name: `${name}-apns`, key: "AuthKey.p8" } } } },
          fcm: { projectId: project, serviceAccountSecretRef: { name: `${name}-fcm`, key: "sa.json" } },
          hms: { appId: String(104_400_000 + i), clientSecretRef: { name: `${name}-hms`, key: "client-secret" } },
          webpush: { subject: "mailto:ops@example.com", vapidKeysSecretRef: { name: `${name}-webpush`, key: "vapid.json" } },
        },
        senders: { mode: "pooled" },
      },
    },
  };
}

const applyList = (items: object[]) => kubectlOk(["apply", "--server-side", "-f", "-"], { input: JSON.stringify({ apiVersion: "v1", kind: "List", items }) });

interface PushAppItem {
  metadata: { name: string; generation?: number; creationTimestamp?: string; finalizers?: string[] };
  status?: { observedGeneration?: number; conditions?: Array<{ type: string; status: string; lastTransitionTime?: string }> };
}

const readyOf = (a: PushAppItem) => a.status?.conditions?.find((c) => c.type === "Ready");
const isReady = (a: PushAppItem) => readyOf(a)?.status === "True" && a.status?.observedGeneration === a.metadata.generation;

function percentile3(values: number[]): Percentile3 {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]! : NaN);
  return { p50: at(0.5), p90: at(0.9), max: at(1) };
}

// The operator's reconcile counters from its /metrics.
async function reconcileCounters(operator: OperatorProcess): Promise<{ success: number; backoff: number; error: number; seconds: number; count: number; depth: number }> {
  const text = await scrape(operator.healthUrl);
  return {
    success: sample(text, "herald_operator_reconciles_total", { result: "success" }),
    backoff: sample(text, "herald_operator_reconciles_total", { result: "backoff" }),
    error: sample(text, "herald_operator_reconciles_total", { result: "error" }),
    seconds: sample(text, "herald_operator_reconcile_duration_seconds_sum"),
    count: sample(text, "herald_operator_reconcile_duration_seconds_count"),
    depth: sample(text, "herald_operator_queue_depth"),
  };
}

function reconcilesBetween(a: Awaited<ReturnType<typeof reconcileCounters>>, b: Awaited<ReturnType<typeof reconcileCounters>>, seconds: number, apps: number): Reconciles {
  const success = b.success - a.success;
  const backoff = b.backoff - a.backoff;
  const error = b.error - a.error;
  const total = success + backoff + error;
  const count = b.count - a.count;
  return { success, backoff, error, total, perSecond: round(total / seconds, 2), perApp: round(total / apps, 2), avgSeconds: count ? round((b.seconds - a.seconds) / count, 3) : NaN };
}

// The API server's own watch metrics (as admin): events and bytes per resource, open watches.
interface ApiServerSnapshot {
  events: Record<string, number>;
  bytes: Record<string, number>;
  open: Record<string, number>;
}
async function apiServerWatch(): Promise<ApiServerSnapshot> {
  const text = await kubectlOk(["get", "--raw", "/metrics"]);
  const out: ApiServerSnapshot = { events: {}, bytes: {}, open: {} };
  for (const line of text.split("\n")) {
    const m = /^(apiserver_watch_events_total|apiserver_watch_events_sizes_sum|apiserver_longrunning_requests)\{(.*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...m[2]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    const resource = labels.resource ?? labels.kind ?? "?";
    const key = labels.group ? `${resource}.${labels.group}` : resource;
    const value = Number(m[3]);
    if (m[1] === "apiserver_watch_events_total") out.events[key] = (out.events[key] ?? 0) + value;
    else if (m[1] === "apiserver_watch_events_sizes_sum") out.bytes[key] = (out.bytes[key] ?? 0) + value;
    else if (labels.verb === "WATCH" && value > 0) out.open[key] = (out.open[key] ?? 0) + value;
  }
  return out;
}

function apiServerSince(a: ApiServerSnapshot, b: ApiServerSnapshot): ApiServerWatch {
  const events: ApiServerWatch["events"] = {};
  for (const key of Object.keys(b.events)) {
    const n = b.events[key]! - (a.events[key] ?? 0);
    if (n > 0) events[key] = { events: n, bytes: Math.round((b.bytes[key] ?? 0) - (a.bytes[key] ?? 0)) };
  }
  return { events, open: b.open };
}

// Read-only git: which commit, and which of the operator's files differ from it.
function gitSource(): Promise<OperatorResult["source"]> {
  const git = (args: string[]) => new Promise<string>((resolve) => execFile("git", args, { cwd: root }, (err, stdout) => resolve(err ? "" : stdout.trim())));
  return Promise.all([git(["rev-parse", "--short", "HEAD"]), git(["status", "--porcelain", "--", "operator", "packages/pushapp", "packages/testing", "services/sender", "charts/herald/crds"])]).then(([head, status]) => ({
    head,
    uncommitted: status.split("\n").filter(Boolean),
  }));
}

// Test infra processes (bench/run.sh's HERALD_RUN), when their pid files are there.
function infraProcesses(): WatchedProcess[] {
  const run = process.env.HERALD_RUN ?? join(process.env.HERALD_CACHE ?? join(process.env.HOME ?? "", ".cache/herald"), "run");
  const out: WatchedProcess[] = [];
  for (const [name, file] of [
    ["kube-apiserver", "kube/apiserver.pid"],
    ["etcd", "kube/etcd.pid"],
    ["kube-controller-manager", "kube/controller-manager.pid"],
    ["kafka", "kafka/kafka.pid"],
    ["ferretdb", "ferretdb/ferretdb.pid"],
    ["postgres", "postgres/postgres.pid"],
  ] as const) {
    const pid = pidFromFile(join(run, file));
    if (pid) out.push({ name, pid, role: "infra", children: name === "postgres" });
  }
  return out;
}

// Node processes this driver started that run the operator (one that startOperator gave up on).
function operatorChildren(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid !== process.pid) continue;
      if (readFileSync(`/proc/${entry}/cmdline`, "utf8").includes("operator/src/main.ts")) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

// The pool pods' CPU, polled: pid → [provider, last CPU seconds seen].
class PoolPodMeter {
  private readonly seen = new Map<number, { provider: Provider; cpu: number }>();
  private timer?: NodeJS.Timeout;
  constructor(private readonly kubelet: LocalKubelet) {}
  start(): void {
    this.timer = setInterval(() => this.poll(), 1000).unref();
  }
  poll(): void {
    for (const pod of this.kubelet.running()) {
      const provider = providerOfPod(pod);
      if (!provider) continue;
      const cpu = cpuSecondsOf(pod.pid);
      if (Number.isFinite(cpu)) this.seen.set(pod.pid, { provider, cpu });
    }
  }
  stop(): void {
    clearInterval(this.timer);
    this.poll();
  }
  byProvider(provider: Provider): { pods: number; cpuSeconds: number } {
    const mine = [...this.seen.values()].filter((p) => p.provider === provider);
    return { pods: mine.length, cpuSeconds: round(mine.reduce((n, p) => n + p.cpu, 0), 1) };
  }
}

const providerOfPod = (pod: RunningPod): Provider | undefined => PROVIDERS.find((p) => pod.pod.name.startsWith(`${poolName(p)}-`));

export async function runOperatorScenario(o: OperatorScenarioOptions): Promise<{ result: OperatorResult; failed: boolean }> {
  const { log } = o;
  const n = o.apps;
  for (const name of ["HERALD_KUBECONFIG", "HERALD_KUBE_OPERATOR_KUBECONFIG", "HERALD_KUBECTL", "HERALD_HELM", "HERALD_KAFKA_BROKERS", "HERALD_MONGO_URL"] as const) requireEnv(name);
  const source = await gitSource();
  if (source.uncommitted.length) log(`operator: running the working tree's operator, with uncommitted changes in ${source.uncommitted.length} file(s)`);
  const names = Array.from({ length: n }, (_, i) => `app-${String(i + 1).padStart(4, "0")}`);
  const kc = adminKubeConfig();
  const custom = kc.makeApiClient(CustomObjectsApi);
  const appsApi = kc.makeApiClient(AppsV1Api);
  const coreApi = kc.makeApiClient(CoreV1Api);
  const kubeletWarnings: Record<string, number> = {};
  const kubeletFirst: Record<string, string> = {};

  let platform: Platform | undefined;
  let proxy: KubeProxy | undefined;
  let kubelet: LocalKubelet | undefined;
  let operator: OperatorProcess | undefined;
  let bus: Bus | undefined;
  // The probe apps' topics live in a Kafka namespace of their own: the pools' patterns must not see them.
  let probeBus: Bus | undefined;
  let kafkaAdmin: Admin | undefined;
  let namespace = "";
  const teardown = async () => {
    log("operator: tearing down (operator, kubelet, finalizers, namespace, topics)");
    await operator?.stop("SIGTERM", 30_000).catch(() => {});
    for (const pid of operatorChildren()) process.kill(pid, "SIGKILL");
    await kubelet?.stop().catch(() => {});
    if (namespace) {
      // The operator is gone: its finalizers are taken off by hand (the topics go below, the
      // registry's database is the platform's own), then the namespace with everything in it.
      const list = (await custom.listNamespacedCustomObject({ ...PUSHAPPS, namespace }).catch(() => ({ items: [] }))) as { items: PushAppItem[] };
      const queue = list.items.filter((a) => a.metadata.finalizers?.length);
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          for (let a = queue.shift(); a; a = queue.shift()) {
            await custom.patchNamespacedCustomObject({ ...PUSHAPPS, namespace, name: a.metadata.name, body: { metadata: { finalizers: null } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch)).catch(() => {});
          }
        }),
      );
      await kubectlOk(["delete", "namespace", namespace, "--wait=false"]).catch(() => {});
    }
    if (bus) {
      const topics = names.flatMap((app) => PROVIDERS.flatMap((p) => pooledTopicsOf(app, p)));
      for (let i = 0; i < topics.length; i += 600) await bus.deleteTopics(topics.slice(i, i + 600)).catch((err: unknown) => log(`operator: deleting topics failed: ${String(err)}`));
      await bus.close();
    }
    if (probeBus) {
      await probeBus.deleteTopics([...probeApps("before"), ...probeApps("after")].flatMap((app) => PROVIDERS.flatMap((p) => pooledTopicsOf(app, p)))).catch(() => {});
      await probeBus.close();
    }
    await kafkaAdmin?.disconnect().catch(() => {});
    await platform?.stop();
    await proxy?.close();
  };
  const deregister = o.onInterrupt(teardown);

  try {
    log("operator: CRD, namespace, the chart's operator RBAC, registry (platform processes)");
    await installCrd();
    await ensureNamespace("herald-system");
    namespace = await createNamespace("bench-op");
    await applyChartRbac(namespace);
    platform = await startPlatform();
    const kafkaNamespace = platform.env.HERALD_KAFKA_NAMESPACE!;
    bus = namespacedBus(new KafkaBus({ brokers: requireEnv("HERALD_KAFKA_BROKERS").split(","), clientId: "bench-operator" }), kafkaNamespace);
    probeBus = namespacedBus(new KafkaBus({ brokers: requireEnv("HERALD_KAFKA_BROKERS").split(","), clientId: "bench-operator-probe" }), `${kafkaNamespace.replace(/\.$/, "")}-probe.`);
    kafkaAdmin = new kafkajs.Kafka({ brokers: requireEnv("HERALD_KAFKA_BROKERS").split(","), clientId: "bench-operator-groups", logLevel: kafkajs.logLevel.NOTHING }).admin();
    await kafkaAdmin.connect();

    const infra = infraProcesses();
    const kafkaPid = infra.find((p) => p.name === "kafka")?.pid;
    const brokerRssMiBBefore = kafkaPid ? rssMiB(kafkaPid) : NaN;
    const ensureMsPerAppBefore = await timeTopicEnsure(probeBus, probeApps("before"));
    log(`operator: 12 pool topics per app take ${ensureMsPerAppBefore} ms to ensure on a broker without this run's topics`);

    log(`operator: ${n} apps' credentials: ${4 * n} Secrets`);
    const keys = {
      apns: generateApnsKey(),
      rsaPem: generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
      vapid: webPush.generateVAPIDKeys(),
    };
    const objects = names.map((name, i) => appObjects(namespace, name, i, keys));
    const secretsStarted = performance.now();
    for (let i = 0; i < objects.length; i += APPLY_CHUNK) await applyList(objects.slice(i, i + APPLY_CHUNK).flatMap((x) => x.secrets));
    const secretsSeconds = round((performance.now() - secretsStarted) / 1000, 1);

    proxy = await startKubeProxy(requireEnv("HERALD_KUBE_OPERATOR_KUBECONFIG"));
    kubelet = await startLocalKubelet({
      kubeconfig: kc,
      namespace,
      labelSelector: "app.kubernetes.io/component=sender",
      cwd: root,
      // Warnings counted by message (with the first one's details), not printed.
      logger: {
        info: () => {},
        warn: (obj, msg) => {
          kubeletWarnings[msg] = (kubeletWarnings[msg] ?? 0) + 1;
          kubeletFirst[msg] ??= JSON.stringify(obj).slice(0, 300);
        },
      },
    });
    const podMeter = new PoolPodMeter(kubelet);
    podMeter.start();
    // As the chart's ServiceAccount, through the counting proxy. One replica without leader
    // election: a Lease of its own is not what is measured, and the chart's Lease name is shared
    // with the e2e suites on the tests' cluster. The chart's defaults otherwise (lag read every 15 s).
    const operatorEnv = { HERALD_LEADER_ELECTION: "false", HERALD_AUTOSCALE_INTERVAL_SECONDS: "15" };
    const startOp = (identity: string) => startOperator(platform!, { namespace, leaseName: CHART_LEASE_NAME, identity, kubeconfig: proxy!.kubeconfig, env: operatorEnv });
    operator = await startOp("op-bench");
    log(`operator: running (pid ${operator.child.pid}), talking to the API server through ${proxy.url}`);

    // ---- apply → every PushApp Ready --------------------------------------------------------
    const loadBeforeApply = round(readLoad(), 2);
    const benchProcesses: WatchedProcess[] = [
      { name: "bench driver (local kubelet)", pid: process.pid, role: "fakes" },
      { name: "bench API proxy", pid: proxy.pid, role: "fakes" },
    ];
    const meter = new UsageMeter([{ name: "operator", pid: operator.child.pid!, role: "herald" }, ...infra, ...benchProcesses], 500);
    const { traffic: traffic0, connections: connections0 } = await proxy.snapshot();
    const api0 = await apiServerWatch();
    const counters0 = await reconcileCounters(operator);
    log(`operator: applying ${n} PushApps (kubectl apply --server-side, ${APPLY_CHUNK} per call; load average ${loadBeforeApply})`);
    meter.begin();
    const applyStarted = performance.now();
    for (let i = 0; i < objects.length; i += APPLY_CHUNK) await applyList(objects.slice(i, i + APPLY_CHUNK).map((x) => x.pushApp));
    const applySeconds = round((performance.now() - applyStarted) / 1000, 1);
    log(`operator: applied in ${applySeconds} s; waiting for Ready=True (budget ${o.readyBudgetMs / 1000} s)`);
    const timeline: OperatorResult["apply"]["timeline"] = [];
    let items: PushAppItem[] = [];
    let ready = 0;
    let lastPoint = -Infinity;
    const deadline = performance.now() + o.readyBudgetMs;
    for (;;) {
      items = ((await custom.listNamespacedCustomObject({ ...PUSHAPPS, namespace })) as { items: PushAppItem[] }).items;
      ready = items.filter(isReady).length;
      const s = round((performance.now() - applyStarted) / 1000, 1);
      const done = ready === n;
      if (done || s - lastPoint >= 10 || performance.now() > deadline) {
        const c = await reconcileCounters(operator).catch(() => undefined);
        timeline.push({ s, ready, reconciles: c ? c.success + c.backoff + c.error - (counters0.success + counters0.backoff + counters0.error) : NaN });
        lastPoint = s;
        log(`operator: ${s} s: ${ready} of ${n} Ready`);
      }
      if (done || performance.now() > deadline) break;
      await sleep(POLL_MS);
    }
    const readySeconds = round((performance.now() - applyStarted) / 1000, 1);
    const applyUsage = meter.end();
    const counters1 = await reconcileCounters(operator);
    const { traffic: traffic1, connections: connections1 } = await proxy.snapshot();
    const api1 = await apiServerWatch();
    const opUsage = applyUsage[0]!;
    const perAppReady = items.flatMap((a) => {
      const at = readyOf(a)?.lastTransitionTime;
      return isReady(a) && at && a.metadata.creationTimestamp ? [(Date.parse(at) - Date.parse(a.metadata.creationTimestamp)) / 1000] : [];
    });
    const apply: OperatorResult["apply"] = {
      applySeconds,
      readySeconds,
      complete: ready === n,
      readyApps: ready,
      perAppReadySeconds: percentile3(perAppReady),
      timeline,
      operator: { peakRssMiB: opUsage.peakRssMiB, rssAfterMiB: rssMiB(operator.child.pid!), cpuSeconds: opUsage.cpuSeconds },
      reconciles: reconcilesBetween(counters0, counters1, readySeconds, n),
      traffic: { total: trafficTotal(trafficSince(traffic0, traffic1)), byKind: trafficSince(traffic0, traffic1), connections: connections1 - connections0 },
      apiserver: apiServerSince(api0, api1),
      processes: applyUsage.slice(1),
      loadAverage: loadBeforeApply,
    };
    log(
      `operator: ${ready} of ${n} Ready ${ready === n ? `${readySeconds} s after the first apply` : `when the budget ran out (${readySeconds} s)`}; operator peak RSS ${opUsage.peakRssMiB} MiB, ${opUsage.cpuSeconds} CPU s, ${apply.reconciles.total} reconciles, received ${mib(apply.traffic.total.receivedBytes)} MiB in ${apply.traffic.total.events} watch events`,
    );

    // ---- the pools converge ------------------------------------------------------------------
    log("operator: waiting for every pool to run one pod of its latest template with its consumers assigned");
    const settleStarted = performance.now();
    // With apps still not Ready the pools are still changing: measured as they are.
    const settleDeadline = performance.now() + (apply.complete ? SETTLE_MS : 0);
    let settled = false;
    let assigned: Record<string, number> = {};
    for (;;) {
      const states = await Promise.all(PROVIDERS.map((p) => poolConverged(appsApi, coreApi, kubelet!, namespace, p, n)));
      if (states.every(Boolean)) {
        assigned = await assignedTopics(kafkaAdmin, kafkaNamespace);
        if (PROVIDERS.every((p) => (assigned[p] ?? 0) >= 3 * n)) {
          settled = true;
          break;
        }
      }
      if (performance.now() > settleDeadline) break;
      await sleep(POLL_MS);
    }
    const settleSeconds = round((performance.now() - settleStarted) / 1000, 1);
    log(settled ? `operator: pools converged ${settleSeconds} s after every app was Ready` : `operator: pools did not converge within ${settleSeconds} s (measuring anyway)`);
    // What the apply left on the work queue (every pool Deployment change queues every app of
    // the pool) is worked off before the idle window.
    const drainStarted = performance.now();
    const drainDeadline = drainStarted + (apply.complete ? DRAIN_MS : 0);
    let drained = false;
    for (let quiet = 0; ; ) {
      const c = await reconcileCounters(operator);
      quiet = c.depth === 0 ? quiet + 1 : 0;
      if (quiet >= 3) {
        drained = true;
        break;
      }
      if (performance.now() > drainDeadline) break;
      await sleep(POLL_MS);
    }
    const drainCounters = await reconcileCounters(operator);
    const drain = {
      seconds: round((performance.now() - drainStarted) / 1000, 1),
      drained,
      reconciles: drainCounters.success + drainCounters.backoff + drainCounters.error - (counters1.success + counters1.backoff + counters1.error),
      queueDepth: drainCounters.depth,
    };
    log(`operator: work queue ${drained ? "empty" : `still holding ${drain.queueDepth} apps`} ${drain.seconds} s later (${drain.reconciles} reconciles since every app was Ready)`);

    // ---- idle ----------------------------------------------------------------------------------
    const poolPods = PROVIDERS.map((p) => kubelet!.running().find((pod) => providerOfPod(pod) === p && pod.ready));
    const loadBeforeIdle = round(readLoad(), 2);
    const idleMeter = new UsageMeter(
      [{ name: "operator", pid: operator.child.pid!, role: "herald" }, ...poolPods.flatMap((pod, i) => (pod ? [{ name: poolName(PROVIDERS[i]!), pid: pod.pid, role: "herald" as const }] : [])), ...infra, ...benchProcesses],
      500,
    );
    const idleCounters0 = await reconcileCounters(operator);
    const { traffic: idleTraffic0, connections: idleConnections0 } = await proxy.snapshot();
    const idleApi0 = await apiServerWatch();
    log(`operator: idle for ${o.idleSeconds} s (load average ${loadBeforeIdle})`);
    idleMeter.begin();
    await sleep(o.idleSeconds * 1000);
    const idleUsage = idleMeter.end();
    const idleCounters1 = await reconcileCounters(operator);
    const { traffic: idleTraffic1, connections: idleConnections1 } = await proxy.snapshot();
    const idleApi1 = await apiServerWatch();
    const idleOp = idleUsage[0]!;
    const idle: OperatorResult["idle"] = {
      seconds: o.idleSeconds,
      operator: { rssMiB: rssMiB(operator.child.pid!), peakRssMiB: idleOp.peakRssMiB, cpuSeconds: idleOp.cpuSeconds, cpuSecondsPerMinute: round((idleOp.cpuSeconds * 60) / o.idleSeconds, 2) },
      reconciles: idleCounters1.success + idleCounters1.backoff + idleCounters1.error - (idleCounters0.success + idleCounters0.backoff + idleCounters0.error),
      traffic: { total: trafficTotal(trafficSince(idleTraffic0, idleTraffic1)), byKind: trafficSince(idleTraffic0, idleTraffic1), connections: idleConnections1 - idleConnections0 },
      apiserver: apiServerSince(idleApi0, idleApi1),
      processes: idleUsage.slice(1),
      loadAverage: loadBeforeIdle,
    };
    podMeter.poll();
    const perProvider: PoolResult[] = [];
    for (const [i, provider] of PROVIDERS.entries()) {
      const raw = await kubectlOk(["get", "--raw", `/apis/apps/v1/namespaces/${namespace}/deployments/${poolName(provider)}`]).catch(() => "");
      const dep = raw ? (JSON.parse(raw) as { metadata: { generation?: number; annotations?: Record<string, string>; managedFields?: unknown } }) : undefined;
      const usage = idleUsage.find((u) => u.name === poolName(provider));
      const pods = podMeter.byProvider(provider);
      perProvider.push({
        provider,
        deployment: poolName(provider),
        sources: await poolApps(coreApi, namespace, provider),
        generation: dep?.metadata.generation ?? 0,
        revision: Number(dep?.metadata.annotations?.["deployment.kubernetes.io/revision"] ?? 0),
        jsonBytes: Buffer.byteLength(raw),
        jsonBytesWithoutManagedFields: dep ? Buffer.byteLength(JSON.stringify({ ...dep, metadata: { ...dep.metadata, managedFields: undefined } })) : 0,
        podsStarted: pods.pods,
        podsCpuSeconds: pods.cpuSeconds,
        idleRssMiB: poolPods[i] ? rssMiB(poolPods[i]!.pid) : NaN,
        idlePeakRssMiB: usage?.peakRssMiB ?? NaN,
        assignedTopics: assigned[provider] ?? 0,
      });
    }
    const totalIdleRssMiB = round(perProvider.reduce((s, p) => s + (Number.isFinite(p.idleRssMiB) ? p.idleRssMiB : 0), 0), 1);
    log(`operator: idle: operator ${idle.operator.rssMiB} MiB, ${idle.operator.cpuSecondsPerMinute} CPU s/min, ${idle.reconciles} reconciles; pools ${perProvider.map((p) => `${p.provider} ${p.idleRssMiB} MiB`).join(", ")} (total ${totalIdleRssMiB} MiB)`);

    // ---- a cold restart ----------------------------------------------------------------------
    let restart: OperatorResult["restart"] = null;
    if (o.restart && apply.complete) {
      log("operator: restarting the operator (SIGTERM, then a new process: caches from scratch, every app reconciled)");
      const stopStarted = performance.now();
      await operator.stop("SIGTERM", 60_000);
      const stopSeconds = round((performance.now() - stopStarted) / 1000, 1);
      operator = undefined;
      const { traffic: t0, connections: c0 } = await proxy.snapshot();
      const started = performance.now();
      operator = await startOp("op-bench-restarted");
      const readySecondsRestart = round((performance.now() - started) / 1000, 1);
      const zero = { success: 0, backoff: 0, error: 0, seconds: 0, count: 0, depth: 0 };
      // As many reconciles as apps (the start queues every app once; pool Deployment events
      // queue them again meanwhile, so the queue itself may not be empty then).
      const restartDeadline = performance.now() + o.readyBudgetMs;
      let counters = await reconcileCounters(operator);
      while (counters.success + counters.backoff + counters.error < n && performance.now() < restartDeadline) {
        await sleep(POLL_MS);
        counters = await reconcileCounters(operator);
      }
      const reconciledSeconds = round((performance.now() - started) / 1000, 1);
      const pid = operator.child.pid!;
      const { traffic: t1, connections: c1 } = await proxy.snapshot();
      restart = {
        stopSeconds,
        readySeconds: readySecondsRestart,
        reconciledSeconds,
        queueDepth: counters.depth,
        reconciles: reconcilesBetween(zero, counters, reconciledSeconds, n),
        operator: { peakRssMiB: peakRssMiB(pid), rssMiB: rssMiB(pid), cpuSeconds: round(cpuSecondsOf(pid), 2) },
        traffic: { total: trafficTotal(trafficSince(t0, t1)), byKind: trafficSince(t0, t1), connections: c1 - c0 },
      };
      log(`operator: restarted: ready ${readySecondsRestart} s, every app reconciled after ${reconciledSeconds} s, ${restart.operator.cpuSeconds} CPU s, peak RSS ${restart.operator.peakRssMiB} MiB`);
    }

    // ---- Kafka -------------------------------------------------------------------------------
    const allTopics = await kafkaAdmin.listTopics();
    const appTopics = allTopics.filter((t) => t.startsWith(`${kafkaNamespace}herald.pool`)).length;
    const ensureMsPerAppAfter = await timeTopicEnsure(probeBus, probeApps("after"));
    const brokerRssMiBAfter = kafkaPid ? rssMiB(kafkaPid) : NaN;
    log(`operator: 12 pool topics per app take ${ensureMsPerAppAfter} ms to ensure with ${appTopics} of this run's pool topics (${allTopics.length} in all) on the broker`);
    podMeter.stop();
    const result: OperatorResult = {
      apps: n,
      providers: PROVIDERS,
      secretsPerApp: 4,
      source,
      setup: { secretsSeconds, loadAverage: loadBeforeApply },
      apply,
      drain,
      pools: {
        settleSeconds,
        settled,
        perProvider,
        totalIdleRssMiB,
        podsStarted: perProvider.reduce((s, p) => s + p.podsStarted, 0),
        podsCpuSeconds: round(perProvider.reduce((s, p) => s + p.podsCpuSeconds, 0), 1),
      },
      idle,
      restart,
      kafka: { topics: appTopics, brokerTopics: allTopics.length, ensureMsPerAppBefore, ensureMsPerAppAfter, brokerRssMiBBefore, brokerRssMiBAfter },
      kubeletWarnings: Object.fromEntries(Object.entries(kubeletWarnings).map(([msg, count]) => [`${msg} (first: ${kubeletFirst[msg]})`, count])),
    };
    return { result, failed: !apply.complete || !settled };
  } finally {
    deregister();
    await teardown();
  }
}

const mib = (bytes: number) => round(bytes / 2 ** 20, 1);
const readLoad = () => Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);

// Apps whose topics only measure the broker: ensured one app at a time, as reconciles do.
const PROBE_APPS = 10;
const probeApps = (when: "before" | "after") => Array.from({ length: PROBE_APPS }, (_, i) => `probe-${when}-${i}`);

async function timeTopicEnsure(bus: Bus, apps: string[]): Promise<number> {
  const started = performance.now();
  for (const app of apps) await bus.ensureTopics(PROVIDERS.flatMap((p) => pooledTopicsOf(app, p)).map((name) => ({ name, partitions: 1 })));
  return round((performance.now() - started) / apps.length, 1);
}

// One pod of the pool's latest template, ready, and nothing else of the pool running.
// The apps with keys (<app>.<file>) in a pool's credential shards.
async function poolApps(coreApi: CoreV1Api, namespace: string, provider: Provider): Promise<number> {
  const shards = await coreApi.listNamespacedSecret({ namespace, labelSelector: `app.kubernetes.io/component=pool-credentials,herald.dev/provider=${provider}` });
  return poolAppsIn(shards.items, INSTALLATION, provider).size;
}

async function poolConverged(appsApi: AppsV1Api, coreApi: CoreV1Api, kubelet: LocalKubelet, namespace: string, provider: Provider, apps: number): Promise<boolean> {
  const dep = await appsApi.readNamespacedDeployment({ namespace, name: poolName(provider) }).catch(() => undefined);
  if (!dep) return false;
  const want = dep.spec?.replicas ?? 1;
  const s = dep.status;
  if ((await poolApps(coreApi, namespace, provider)) !== apps) return false;
  if (s?.observedGeneration !== dep.metadata?.generation || s?.updatedReplicas !== want || s?.replicas !== want || s?.availableReplicas !== want) return false;
  const pods = kubelet.running().filter((p) => providerOfPod(p) === provider);
  return pods.length === want && pods.every((p) => p.ready);
}

// Topics assigned to each provider's three pool consumer groups (stable groups only).
async function assignedTopics(admin: Admin, kafkaNamespace: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const provider of PROVIDERS) {
    const groups = [...LANES.map((lane) => BusGroups.pool(provider, lane)), BusGroups.poolRetries(provider)].map((g) => `${kafkaNamespace}${g}`);
    const { groups: described } = await admin.describeGroups(groups).catch(() => ({ groups: [] as GroupDescription[] }));
    let topics = 0;
    for (const g of described) {
      if (g.state !== "Stable") continue;
      for (const m of g.members) {
        const decoded = kafkajs.AssignerProtocol.MemberAssignment.decode(m.memberAssignment);
        topics += Object.keys(decoded?.assignment ?? {}).length;
      }
    }
    out[provider] = topics;
  }
  return out;
}
