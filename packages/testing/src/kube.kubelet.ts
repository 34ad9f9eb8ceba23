import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, mkdir, rename, rm, writeFile, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, normalize } from "node:path";
import {
  ApiException,
  CoreV1Api,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type V1Container,
  type V1Pod,
  type V1PodCondition,
  type V1Secret,
  type V1ContainerStatus,
  type V1SecretVolumeSource,
} from "@kubernetes/client-node";
import { freePort } from "./process.fixture.js";
import { eventually } from "./poll.wait.js";

// A stand-in for the kubelet, for test clusters that have an API server and the controller
// manager but no scheduler and no nodes: it runs the pods of selected Deployments as local Node
// processes and reports them back to the API server the way a kubelet would, so the ReplicaSet
// and Deployment controllers count them and a test can prove that what the operator writes
// (command, env, Secret volume items) makes a process that really works.
//
// What it does, per pod matching the selector in the namespace:
// - binds it to `nodeName` (no Node object is needed for a Binding; the binding is also the
//   claim, so two kubelets watching the same pods never both run one);
// - runs its single container's command with `process.execPath` for "node", cwd = repo root,
//   and an environment made of the container's plain `env` values only: the test's own
//   environment is not inherited, so a variable the operator forgets is missing here too;
// - writes each mounted Secret volume, and each Secret of a projected volume (items or all
//   keys, with the volume's modes; an optional one that is missing is left out), under a
//   per-pod temp dir, and rewrites env values that are paths on such a mount (this is how
//   HERALD_CREDENTIALS_DIR=/etc/herald/credentials becomes the local copy); HERALD_HEALTH_PORT
//   is always a free local port;
// - keeps those files current while the process runs: a watch of the namespace's Secrets brings
//   a change within moments (a kubelet takes up to its sync period, about a minute by default),
//   each changed file replaced by a rename, a removed key's file deleted;
// - reports Running as soon as the process is spawned, and Ready once GET <readiness path or
//   /healthz> answers 200 (probed until then, not afterwards);
// - on a deletionTimestamp or a delete: SIGTERM, SIGKILL after the grace period, then deletes
//   the pod with gracePeriodSeconds=0 (nothing else finalizes a terminating pod without a
//   kubelet).
//
// Deliberate differences from a kubelet:
// - A process that exits by itself is not restarted. The pod stays in phase Running with the
//   container terminated (exit code, signal, reason) and Ready=False, which is what a kubelet
//   shows between restarts. Marking it Failed would make the ReplicaSet controller create a
//   replacement at once, and a sender that crashes at startup would loop without any backoff.
// - A container this kubelet cannot run (env valueFrom other than the pod's name, namespace,
//   node and service account fields, envFrom, no "node" command, an unknown
//   volume type, init containers) stays Pending with its container waiting, reason
//   CreateContainerConfigError and a message saying why (again: Failed would mean a
//   replacement storm). A missing Secret (or Secret key) is retried every second, like a
//   kubelet retrying a mount.
// - No liveness probes, no workingDir, no resource limits, no user ids;
//   emptyDir volumes are not materialised (the process sees the host filesystem).
// - stop() terminates the processes but leaves the pods as they are in the API server, like a
//   kubelet that died.

export const LOCAL_NODE_NAME = "local-kubelet";
// Enough of a crash report to read in a test failure, small enough to keep per process.
const OUTPUT_TAIL_CHARS = 64 * 1024;
const DEFAULT_GRACE_SECONDS = 30;
const MOUNT_RETRY_MS = 1000;
const PROBE_INTERVAL_MS = 100;

export interface KubeletLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface LocalKubeletOptions {
  kubeconfig: KubeConfig;
  namespace: string;
  labelSelector: string;
  // Working directory of every process: the repository root, so `node --import tsx
  // services/sender/src/main.ts` resolves as in the image.
  cwd: string;
  // Extra variables for a pod's process (e.g. the test's Kafka brokers), applied over the
  // container's env; HERALD_HEALTH_PORT stays the kubelet's.
  envOverrides?: (pod: V1Pod) => Record<string, string>;
  nodeName?: string;
  logger?: KubeletLogger;
}

export interface PodRef {
  namespace: string;
  name: string;
  uid: string;
}

export interface RunningPod {
  pod: PodRef;
  pid: number;
  healthUrl: string;
  ready: boolean;
  // The process's stdout and stderr, interleaved, last 64 KiB.
  output(): string;
}

export interface ExitedPod {
  pod: PodRef;
  pid: number;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  // true when the kubelet stopped it (pod deleted, scaled down, stop()).
  stoppedByKubelet: boolean;
  output(): string;
}

export interface LocalKubelet {
  stop(): Promise<void>;
  running(): RunningPod[];
  // Processes that have ended, oldest first: scaled-down pods and crashes alike.
  exited(): ExitedPod[];
  // Pods without a process: refused (CreateContainerConfigError) or waiting for a Secret
  // (ContainerCreating), with the reason reported on the pod.
  refused(): Array<{ pod: PodRef; reason: string }>;
  // Polls until predicate(running()) holds; the error says what every pod is doing.
  waitFor(predicate: (running: RunningPod[]) => boolean, timeoutMs: number, what?: string): Promise<RunningPod[]>;
}

// A pod this kubelet will never run as specified.
class PodConfigError extends Error {}
// A pod whose volumes cannot be set up yet (Secret or key missing): retried.
class MountError extends Error {}

function isStatus(err: unknown, ...codes: number[]): boolean {
  return err instanceof ApiException && codes.includes(err.code);
}

function refOf(pod: V1Pod): PodRef {
  return { namespace: pod.metadata!.namespace!, name: pod.metadata!.name!, uid: pod.metadata!.uid! };
}

// ---- what to run: a pure function of the pod spec ---------------------------------------

interface SecretMount {
  mountPath: string;
  source: V1SecretVolumeSource;
}

interface LaunchPlan {
  container: V1Container;
  args: string[];
  env: Record<string, string>;
  secretMounts: SecretMount[];
  probePath: string;
}

function launchPlan(pod: V1Pod): LaunchPlan {
  const spec = pod.spec!;
  if (spec.initContainers?.length) throw new PodConfigError("init containers are not supported by the local kubelet");
  if (spec.containers.length !== 1) throw new PodConfigError(`the local kubelet runs pods of exactly one container, this one has ${spec.containers.length}`);
  const container = spec.containers[0]!;
  const command = container.command ?? [];
  // Only node commands can run here: the image is the repository.
  if (command.length === 0 || basename(command[0]!) !== "node") {
    throw new PodConfigError(`container ${container.name}: command must start with "node" (got ${JSON.stringify(command)})`);
  }
  if (container.envFrom?.length) throw new PodConfigError(`container ${container.name}: envFrom is not supported by the local kubelet`);
  const env: Record<string, string> = {};
  // The downward API's pod fields (what Herald's pods read: their name, namespace and node),
  // and $(VAR) references to variables defined earlier in the list, as a kubelet expands them.
  const fields: Record<string, string | undefined> = { "metadata.name": pod.metadata?.name, "metadata.namespace": pod.metadata?.namespace, "spec.nodeName": spec.nodeName ?? LOCAL_NODE_NAME, "spec.serviceAccountName": spec.serviceAccountName ?? "default" };
  for (const e of container.env ?? []) {
    if (e.valueFrom) {
      const path = e.valueFrom.fieldRef?.fieldPath;
      const value = path === undefined ? undefined : fields[path];
      if (value === undefined) throw new PodConfigError(`container ${container.name}: env ${e.name} uses valueFrom${path ? ` fieldRef ${path}` : ""}, which the local kubelet does not resolve`);
      env[e.name] = value;
      continue;
    }
    env[e.name] = (e.value ?? "").replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (ref: string, name?: string) => (name === undefined ? "$" : (env[name] ?? ref)));
  }
  const volumes = new Map((spec.volumes ?? []).map((v) => [v.name, v]));
  const secretMounts: SecretMount[] = [];
  for (const m of container.volumeMounts ?? []) {
    const volume = volumes.get(m.name);
    if (!volume) throw new PodConfigError(`container ${container.name}: volumeMount ${m.name} names no volume`);
    if (volume.emptyDir) continue;
    if (m.subPath || m.subPathExpr) throw new PodConfigError(`volumeMount ${m.name}: subPath is not supported by the local kubelet`);
    if (volume.secret) {
      secretMounts.push({ mountPath: normalize(m.mountPath), source: volume.secret });
      continue;
    }
    // A projected volume of Secrets (a pooled sender's apps): each source written into the one
    // mount, as the kubelet's projection does.
    if (volume.projected && (volume.projected.sources ?? []).every((source) => source.secret && Object.keys(source).length === 1)) {
      for (const { secret } of volume.projected.sources ?? []) {
        secretMounts.push({ mountPath: normalize(m.mountPath), source: { secretName: secret!.name, items: secret!.items, optional: secret!.optional, defaultMode: volume.projected.defaultMode } });
      }
      continue;
    }
    throw new PodConfigError(`volume ${m.name}: only secret, projected (of secrets) and emptyDir volumes are supported by the local kubelet`);
  }
  // The one path contract Herald's services have: it must be where a Secret is mounted, or
  // the process would read a directory that does not exist in the real pod either.
  const credentialsDir = env.HERALD_CREDENTIALS_DIR;
  if (credentialsDir !== undefined && !secretMounts.some((m) => onMount(credentialsDir, m.mountPath))) {
    throw new PodConfigError(`HERALD_CREDENTIALS_DIR=${credentialsDir} is not on a Secret volume mount (${secretMounts.map((m) => m.mountPath).join(", ") || "none"})`);
  }
  return {
    container,
    args: [...command.slice(1), ...(container.args ?? [])],
    env,
    secretMounts,
    probePath: container.readinessProbe?.httpGet?.path ?? "/healthz",
  };
}

function onMount(path: string, mountPath: string): boolean {
  const p = normalize(path);
  return p === mountPath || p.startsWith(mountPath.endsWith("/") ? mountPath : `${mountPath}/`);
}

// Env values that are paths on a Secret mount point at the local copy under `root`.
function remapPaths(env: Record<string, string>, mounts: SecretMount[], root: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) out[k] = mounts.some((m) => onMount(v, m.mountPath)) ? join(root, normalize(v)) : v;
  return out;
}

// Writes the Secret's keys (or the listed items) as files, as the kubelet's secret volume does,
// and again whenever the Secret changes: `written` (file → base64 content) is what this source
// wrote last, so only changed files are rewritten (each atomically, by a rename) and files of
// keys that are gone are removed.
async function materialiseSecret(core: CoreV1Api, namespace: string, mount: SecretMount, root: string, written: Map<string, string>): Promise<void> {
  const { secretName, items, defaultMode, optional } = mount.source;
  let data: Record<string, string> = {};
  try {
    const secret = await core.readNamespacedSecret({ namespace, name: secretName! });
    data = secret.data ?? {};
  } catch (err) {
    if (!isStatus(err, 404)) throw err;
    if (!optional) throw new MountError(`secret "${secretName}" not found`);
  }
  const files = items ?? Object.keys(data).map((key) => ({ key, path: key, mode: undefined }));
  const dir = join(root, mount.mountPath);
  await mkdir(dir, { recursive: true });
  const now = new Map<string, string>();
  for (const item of files) {
    const value = data[item.key];
    if (value === undefined) {
      if (optional) continue;
      throw new MountError(`secret "${secretName}" has no key "${item.key}"`);
    }
    const file = join(dir, item.path);
    if (!onMount(file, dir)) throw new PodConfigError(`secret volume item path ${item.path} leaves the mount`);
    now.set(file, value);
    if (written.get(file) === value) continue;
    await mkdir(dirname(file), { recursive: true });
    // A hidden name, as the kubelet's own staging entries (..data, ..<timestamp>) are.
    const staged = join(dirname(file), `..${basename(file)}.tmp`);
    await rm(staged, { force: true });
    await writeFile(staged, Buffer.from(value, "base64"));
    await chmod(staged, item.mode ?? defaultMode ?? 0o644);
    await rename(staged, file);
  }
  for (const file of written.keys()) if (!now.has(file)) await rm(file, { force: true });
  written.clear();
  for (const [file, value] of now) written.set(file, value);
}

// ---- one pod's process ---------------------------------------------------------------------

type Waiting = { reason: string; message: string };

class PodRun {
  readonly ref: PodRef;
  private child?: ChildProcess;
  private out = "";
  private root?: string;
  private port = 0;
  private probePath = "/healthz";
  // When this kubelet took the pod: its startTime and the scheduled/initialized transitions.
  private readonly acceptedAt = new Date();
  private plan?: LaunchPlan;
  // Per Secret source of the plan: what was written of it (see materialiseSecret).
  private readonly written = new Map<SecretMount, Map<string, string>>();
  private secretSync: Promise<void> = Promise.resolve();
  private startedAt?: Date;
  private readyAt?: Date;
  private waiting?: Waiting;
  private exit?: { code: number | null; signal: NodeJS.Signals | null; at: Date };
  private terminating?: Promise<void>;
  private exitedPromise?: Promise<void>;
  // Status patches go out one at a time and each sends the state current when it runs, so a
  // late "ready" can never overwrite an "exited".
  private statusChain: Promise<void> = Promise.resolve();

  constructor(
    private pod: V1Pod,
    private readonly k: Kubelet,
  ) {
    this.ref = refOf(pod);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get isRunning(): boolean {
    return this.child !== undefined && this.exit === undefined;
  }

  get refusal(): string | undefined {
    return this.waiting && `${this.waiting.reason}: ${this.waiting.message}`;
  }

  output(): string {
    return this.out;
  }

  healthUrl(): string {
    return `http://127.0.0.1:${this.port}${this.probePath}`;
  }

  observe(pod: V1Pod): void {
    this.pod = pod;
  }

  // Bind, set up volumes, spawn, probe. Every await is followed by a termination check: the
  // pod can be deleted at any point.
  async run(): Promise<void> {
    try {
      if (!(await this.bind()) || this.terminating) return;
      let plan: LaunchPlan;
      try {
        plan = launchPlan(this.pod);
      } catch (err) {
        if (err instanceof PodConfigError) return this.refuse("CreateContainerConfigError", err.message);
        throw err;
      }
      this.probePath = plan.probePath;
      this.plan = plan;
      this.root = await mkdtemp(join(tmpdir(), `local-kubelet-${this.ref.name}-`));
      for (;;) {
        if (this.terminating) return;
        const mounted = await this.mountAll(plan);
        if (mounted === "refused") return;
        if (mounted === "ok") break;
        await new Promise((r) => setTimeout(r, MOUNT_RETRY_MS));
      }
      this.port = await freePort();
      // Checked right before the (synchronous) spawn: terminate() sets the flag synchronously,
      // so a process is either spawned before it, and seen by it, or never.
      if (this.terminating) return;
      this.spawn(plan);
      this.report();
      await this.probe();
    } catch (err) {
      if (!this.terminating) this.k.logger.warn({ pod: this.ref.name, err: String(err) }, "local-kubelet: pod failed to start");
    } finally {
      // The Secret copies of a pod that never got a process.
      if (!this.child) await this.cleanup();
    }
  }

  private async bind(): Promise<boolean> {
    try {
      await this.k.core.createNamespacedPodBinding({
        namespace: this.ref.namespace,
        name: this.ref.name,
        body: { apiVersion: "v1", kind: "Binding", metadata: { name: this.ref.name, namespace: this.ref.namespace, uid: this.ref.uid }, target: { apiVersion: "v1", kind: "Node", name: this.k.nodeName } },
      });
      return true;
    } catch (err) {
      // 409: somebody else bound it; 404: already gone. Either way it is not ours to run.
      if (isStatus(err, 404, 409)) return false;
      throw err;
    }
  }

  private async mountAll(plan: LaunchPlan): Promise<"ok" | "retry" | "refused"> {
    try {
      for (const m of plan.secretMounts) await materialiseSecret(this.k.core, this.ref.namespace, m, this.root!, this.writtenOf(m));
      this.waiting = undefined;
      return "ok";
    } catch (err) {
      if (err instanceof PodConfigError) {
        this.refuse("CreateContainerConfigError", err.message);
        return "refused";
      }
      if (!(err instanceof MountError)) throw err;
      // Reported once per distinct reason, not once per retry.
      if (this.waiting?.message !== err.message) this.refuse("ContainerCreating", err.message);
      return "retry";
    }
  }

  private writtenOf(mount: SecretMount): Map<string, string> {
    let files = this.written.get(mount);
    if (!files) this.written.set(mount, (files = new Map()));
    return files;
  }

  // A Secret changed: a running process sees the change in its files, as a kubelet's sync brings
  // it (a missing Secret keeps the files it had, as there).
  secretChanged(name: string): void {
    const mounts = this.plan?.secretMounts.filter((m) => m.source.secretName === name) ?? [];
    if (mounts.length === 0) return;
    this.secretSync = this.secretSync.then(async () => {
      for (const m of mounts) {
        if (!this.isRunning || this.terminating || !this.root) return;
        await materialiseSecret(this.k.core, this.ref.namespace, m, this.root, this.writtenOf(m)).catch((err: unknown) => {
          if (!(err instanceof MountError)) this.k.logger.warn({ pod: this.ref.name, secret: name, err: String(err) }, "local-kubelet: updating a Secret's files failed");
        });
      }
    });
  }

  private refuse(reason: string, message: string): void {
    this.waiting = { reason, message };
    this.k.logger.warn({ pod: this.ref.name, reason, message }, "local-kubelet: cannot run pod");
    this.report();
  }

  private spawn(plan: LaunchPlan): void {
    const env = {
      // Enough for node itself; nothing else from the test's environment leaks in.
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOSTNAME: this.ref.name,
      ...remapPaths(plan.env, plan.secretMounts, this.root!),
      ...this.k.envOverrides?.(this.pod),
      HERALD_HEALTH_PORT: String(this.port),
    };
    const child = spawn(process.execPath, plan.args, { cwd: this.k.cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    const append = (text: string) => {
      this.out = (this.out + text).slice(-OUTPUT_TAIL_CHARS);
    };
    // Decoded per stream, so a character split across chunks is not garbled.
    child.stdout!.setEncoding("utf8").on("data", append);
    child.stderr!.setEncoding("utf8").on("data", append);
    this.child = child;
    this.startedAt = new Date();
    this.exitedPromise = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.exit = { code, signal, at: new Date() };
        void this.cleanup();
        if (!this.terminating) {
          this.k.logger.warn({ pod: this.ref.name, code, signal, output: this.out.slice(-2000) }, "local-kubelet: process exited by itself (not restarted)");
          this.report();
        }
        this.k.recordExit(this, { code, signal, byKubelet: this.terminating !== undefined });
        resolve();
      });
      // A failed spawn (cwd missing) comes as "error" without "exit"; a failed kill() also
      // comes as "error", for a process that still runs. A listener stays on for both: an
      // unhandled "error" would crash the test.
      child.on("error", (err) => {
        append(`local-kubelet: ${err.message}\n`);
        if (child.pid === undefined && !this.exit) child.emit("exit", null, null);
      });
    });
    this.k.logger.info({ pod: this.ref.name, pid: child.pid, port: this.port }, "local-kubelet: started");
  }

  private async probe(): Promise<void> {
    while (this.isRunning && !this.terminating) {
      const ok = await fetch(this.healthUrl(), { signal: AbortSignal.timeout(1000) })
        .then((r) => r.status === 200)
        .catch(() => false);
      if (ok && this.isRunning && !this.terminating) {
        this.readyAt = new Date();
        this.report();
        return;
      }
      await new Promise((r) => setTimeout(r, PROBE_INTERVAL_MS));
    }
  }

  get ready(): boolean {
    return this.readyAt !== undefined && this.isRunning;
  }

  // Pod deleted or being deleted: SIGTERM, SIGKILL after the grace period, then finalize.
  terminate(options: { deletePod: boolean }): Promise<void> {
    this.terminating ??= this.doTerminate(options.deletePod);
    return this.terminating;
  }

  private async doTerminate(deletePod: boolean): Promise<void> {
    // `terminating` is assigned when this returns its promise: yield once, so that everything
    // below (and the exit handler) already sees it set.
    await Promise.resolve();
    if (this.child && !this.exit) {
      const graceSeconds = this.pod.metadata?.deletionGracePeriodSeconds ?? this.pod.spec?.terminationGracePeriodSeconds ?? DEFAULT_GRACE_SECONDS;
      this.child.kill("SIGTERM");
      const killer = setTimeout(() => this.child!.kill("SIGKILL"), graceSeconds * 1000);
      await this.exitedPromise;
      clearTimeout(killer);
    }
    await this.cleanup();
    if (!deletePod) return;
    try {
      await this.k.core.deleteNamespacedPod({ namespace: this.ref.namespace, name: this.ref.name, gracePeriodSeconds: 0, body: { gracePeriodSeconds: 0, preconditions: { uid: this.ref.uid } } });
    } catch (err) {
      // Already gone (404), or a different pod of the same name (409 precondition).
      if (!isStatus(err, 404, 409)) this.k.logger.warn({ pod: this.ref.name, err: String(err) }, "local-kubelet: deleting the terminated pod failed");
    }
  }

  // The Secret copies do not outlive the process.
  private async cleanup(): Promise<void> {
    if (!this.root || (this.child && !this.exit)) return;
    const root = this.root;
    this.root = undefined;
    // An update of a Secret's files in progress would write them back after the rm.
    await this.secretSync.catch(() => {});
    await rm(root, { recursive: true, force: true });
  }

  private report(): void {
    this.statusChain = this.statusChain.then(() => this.patchStatus());
  }

  private async patchStatus(): Promise<void> {
    if (this.terminating) return;
    try {
      await this.k.core.patchNamespacedPodStatus(
        { namespace: this.ref.namespace, name: this.ref.name, body: { status: this.status() } },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      );
    } catch (err) {
      if (!isStatus(err, 404)) this.k.logger.warn({ pod: this.ref.name, err: String(err) }, "local-kubelet: status patch failed");
    }
  }

  // The whole status each time: a merge patch replaces lists, so conditions and container
  // statuses are always sent complete.
  private status(): Record<string, unknown> {
    const container = this.pod.spec!.containers[0]!;
    const ready = this.ready;
    // Stable transition times: the Deployment controller measures minReadySeconds from Ready's.
    const readyChangedAt = ready ? this.readyAt! : (this.exit?.at ?? this.acceptedAt);
    const cond = (type: string, ok: boolean, at: Date, reason?: string): V1PodCondition => ({ type, status: ok ? "True" : "False", lastTransitionTime: at, ...(reason && !ok ? { reason } : {}) });
    let state: V1ContainerStatus["state"];
    if (this.exit) {
      state = {
        terminated: {
          exitCode: this.exit.code ?? 128 + (this.exit.signal ? signalNumber(this.exit.signal) : 0),
          ...(this.exit.signal ? { signal: signalNumber(this.exit.signal) } : {}),
          reason: this.exit.code === 0 ? "Completed" : "Error",
          message: this.out.slice(-1024),
          startedAt: this.startedAt!,
          finishedAt: this.exit.at,
          containerID: `local://${this.child?.pid}`,
        },
      };
    } else if (this.child) {
      state = { running: { startedAt: this.startedAt! } };
    } else {
      state = { waiting: this.waiting ?? { reason: "ContainerCreating", message: "" } };
    }
    const containerStatus: V1ContainerStatus = {
      name: container.name,
      image: container.image ?? "",
      imageID: "",
      ready,
      started: this.isRunning,
      restartCount: 0,
      state,
      ...(this.child ? { containerID: `local://${this.child.pid}` } : {}),
    };
    return {
      phase: this.child ? "Running" : "Pending",
      hostIP: "127.0.0.1",
      hostIPs: [{ ip: "127.0.0.1" }],
      ...(this.child ? { podIP: "127.0.0.1", podIPs: [{ ip: "127.0.0.1" }] } : {}),
      startTime: this.acceptedAt,
      conditions: [
        cond("PodScheduled", true, this.acceptedAt),
        cond("Initialized", true, this.acceptedAt),
        cond("ContainersReady", ready, readyChangedAt, "ContainersNotReady"),
        cond("Ready", ready, readyChangedAt, "ContainersNotReady"),
      ],
      containerStatuses: [containerStatus],
    };
  }
}

function signalNumber(signal: NodeJS.Signals): number {
  const n: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGTERM: 15 };
  return n[signal] ?? 0;
}

// ---- the kubelet: one informer, one PodRun per pod it claimed --------------------------------

class Kubelet {
  readonly core: CoreV1Api;
  readonly nodeName: string;
  readonly cwd: string;
  readonly envOverrides?: (pod: V1Pod) => Record<string, string>;
  readonly logger: KubeletLogger;
  private readonly runs = new Map<string, PodRun>();
  private readonly ended: ExitedPod[] = [];
  private readonly informer;
  // Every Secret of the namespace, watched so that running pods see their Secrets change.
  private readonly secrets;
  private stopped = false;
  private readonly restartTimers = new Set<NodeJS.Timeout>();

  constructor(private readonly options: LocalKubeletOptions) {
    this.core = options.kubeconfig.makeApiClient(CoreV1Api);
    this.nodeName = options.nodeName ?? LOCAL_NODE_NAME;
    this.cwd = options.cwd;
    this.envOverrides = options.envOverrides;
    this.logger = options.logger ?? stderrLogger;
    const { namespace, labelSelector } = options;
    this.informer = makeInformer<V1Pod>(options.kubeconfig, `/api/v1/namespaces/${namespace}/pods`, () => this.core.listNamespacedPod({ namespace, labelSelector }), labelSelector);
    this.informer.on("add", (pod) => this.changed(pod));
    this.informer.on("update", (pod) => this.changed(pod));
    this.informer.on("delete", (pod) => this.deleted(pod));
    this.secrets = makeInformer<V1Secret>(options.kubeconfig, `/api/v1/namespaces/${namespace}/secrets`, () => this.core.listNamespacedSecret({ namespace }));
    for (const event of ["add", "update", "delete"] as const) {
      this.secrets.on(event, (secret) => {
        for (const run of this.runs.values()) run.secretChanged(secret.metadata?.name ?? "");
      });
    }
  }

  async start(): Promise<void> {
    await this.watch(this.informer, "pods");
    await this.watch(this.secrets, "secrets");
  }

  private async watch(informer: typeof this.informer | typeof this.secrets, what: string): Promise<void> {
    let firstError: unknown;
    const onFirstError = (err: unknown) => {
      firstError ??= err;
    };
    informer.on("error", onFirstError);
    await informer.start();
    informer.off("error", onFirstError);
    if (firstError) {
      await Promise.all([this.informer.stop(), this.secrets.stop()]);
      throw new Error(`local-kubelet: cannot list/watch ${what} in ${this.options.namespace}: ${firstError instanceof Error ? firstError.message : String(firstError)}`);
    }
    // The client's informer gives up on any error but 410; a watch that drops mid-test
    // (API server restart) must not silently stop the kubelet.
    const restart = (err: unknown): void => {
      if (this.stopped) return;
      this.logger.warn({ err: String(err) }, `local-kubelet: ${what} watch failed; restarting`);
      const timer = setTimeout(() => {
        this.restartTimers.delete(timer);
        void informer.start().catch(restart);
      }, 1000);
      this.restartTimers.add(timer);
    };
    informer.on("error", restart);
  }

  private changed(pod: V1Pod): void {
    if (this.stopped) return;
    const uid = pod.metadata?.uid;
    if (!uid) return;
    const known = this.runs.get(uid);
    if (known) {
      known.observe(pod);
      if (pod.metadata?.deletionTimestamp) void this.finish(known, { deletePod: true });
      return;
    }
    // Only unscheduled, live pods are new work; a pod bound elsewhere is another kubelet's.
    if (pod.metadata?.deletionTimestamp || pod.spec?.nodeName) return;
    if (pod.status?.phase === "Succeeded" || pod.status?.phase === "Failed") return;
    const run = new PodRun(pod, this);
    this.runs.set(uid, run);
    void run.run();
  }

  private deleted(pod: V1Pod): void {
    const run = this.runs.get(pod.metadata?.uid ?? "");
    if (run) void this.finish(run, { deletePod: false });
  }

  private finish(run: PodRun, options: { deletePod: boolean }): Promise<void> {
    return run
      .terminate(options)
      .catch((err) => this.logger.warn({ pod: run.ref.name, err: String(err) }, "local-kubelet: terminating failed"))
      .finally(() => {
        if (this.runs.get(run.ref.uid) === run) this.runs.delete(run.ref.uid);
      });
  }

  recordExit(run: PodRun, e: { code: number | null; signal: NodeJS.Signals | null; byKubelet: boolean }): void {
    this.ended.push({ pod: run.ref, pid: run.pid ?? 0, exitCode: e.code, signal: e.signal, stoppedByKubelet: e.byKubelet, output: () => run.output() });
  }

  running(): RunningPod[] {
    return [...this.runs.values()]
      .filter((r) => r.isRunning)
      .map((r) => ({ pod: r.ref, pid: r.pid!, healthUrl: r.healthUrl(), ready: r.ready, output: () => r.output() }));
  }

  exited(): ExitedPod[] {
    return [...this.ended];
  }

  refused(): Array<{ pod: PodRef; reason: string }> {
    return [...this.runs.values()].filter((r) => !r.pid && r.refusal).map((r) => ({ pod: r.ref, reason: r.refusal! }));
  }

  describe(): string {
    const lines = [...this.runs.values()].map((r) => {
      const state = r.isRunning ? `running pid ${r.pid}${r.ready ? " ready" : " not ready"}` : r.refusal ? `refused (${r.refusal})` : r.pid ? "exited" : "starting";
      return `  ${r.ref.name}: ${state}`;
    });
    const crashes = this.ended.filter((e) => !e.stoppedByKubelet).map((e) => `  ${e.pod.name} exited ${e.exitCode ?? e.signal}:\n${e.output().slice(-1500)}`);
    return [`pods of local-kubelet (${this.options.namespace}, ${this.options.labelSelector}):`, ...(lines.length ? lines : ["  none"]), ...(crashes.length ? ["crashed:", ...crashes] : [])].join("\n");
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.restartTimers) clearTimeout(timer);
    await Promise.all([this.informer.stop(), this.secrets.stop()]);
    await Promise.all([...this.runs.values()].map((r) => this.finish(r, { deletePod: false })));
  }
}

const stderrLogger: KubeletLogger = {
  info: () => {},
  warn: (obj, msg) => process.stderr.write(`${msg} ${JSON.stringify(obj)}\n`),
};

export async function startLocalKubelet(options: LocalKubeletOptions): Promise<LocalKubelet> {
  const kubelet = new Kubelet(options);
  await kubelet.start();
  return {
    stop: () => kubelet.stop(),
    running: () => kubelet.running(),
    exited: () => kubelet.exited(),
    refused: () => kubelet.refused(),
    async waitFor(predicate, timeoutMs, what = "the local kubelet's processes to match") {
      return eventually(() => {
        const now = kubelet.running();
        return predicate(now) ? now : undefined;
      }, what, { timeoutMs, pollMs: 100 }).catch((err: Error) => {
        throw new Error(`${err.message}\n${kubelet.describe()}`);
      });
    },
  };
}
