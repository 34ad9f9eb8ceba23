import type { V1Deployment, V1Secret } from "@kubernetes/client-node";
import type { PushAppProvider } from "@herald/pushapp";
import { withSpan, type Logger } from "@herald/platform";
import type { EventRecorder } from "./event.recorder.js";
import type { Informer } from "./informer.watch.js";
import { FencedError } from "./leader.fence.js";
import type { OperatorMetrics } from "./operator.metrics.js";
import { pushAppKey, ReportedError, type PushAppObject, type PushAppReconciler } from "./pushapp.reconciler.js";
import { POOL_LABEL, poolAppsIn } from "./pool.deployment.js";
import { LABELS, MANAGED_BY } from "./sender.deployment.js";
import { WorkQueue } from "./work.queue.js";

export interface ControllerDeps {
  pushApps: Informer<PushAppObject>;
  secrets: Informer<V1Secret>;
  deployments: Informer<V1Deployment>;
  reconciler: PushAppReconciler;
  metrics: OperatorMetrics;
  events: EventRecorder;
  logger: Logger;
  concurrency: number;
  resyncMs: number;
  // Whether pools scale on lag (HERALD_POOL_MAX_REPLICAS above HERALD_POOL_REPLICAS).
  poolScaling: boolean;
}

// Turns watch events into PushApp keys on the work queue: a PushApp's own changes, a change of
// any Secret it references (a rotated credential), and a change of what it owns (a Deployment
// becoming available, a Secret edited by hand). The informers run on every replica, so a new
// leader starts with a warm cache; only the leader's queue runs reconciles.
//
// A PushApp update that changes neither its generation (the spec), its deletion, nor a
// herald.dev/ annotation is not queued: it is a status or finalizer write, most often the
// operator's own, and reconciling on it would make every status write wake the next reconcile.
export class PushAppController {
  private queue?: WorkQueue;
  private resync?: NodeJS.Timeout;
  // Key → what of the PushApp a reconcile depends on, as last queued.
  private readonly seen = new Map<string, string>();
  // Pool keys (POOL_KEY) whose scaling runs: each requeues itself while its pool exists.
  private readonly pools = new Set<string>();
  // Pool key → its replicas and their availability, as last seen.
  private readonly poolAvailability = new Map<string, string>();

  constructor(private readonly d: ControllerDeps) {
    d.pushApps.onChange((o) => this.pushAppChanged(o));
    d.pushApps.onDelete((o) => {
      const key = pushAppKey(o.metadata.namespace, o.metadata.name);
      this.queue?.forget(key);
      this.seen.delete(key);
      d.metrics.forgetApp(o.metadata.namespace, o.metadata.name);
      d.events.forget(o.metadata.uid);
      d.reconciler.forget(o.metadata.uid);
    });
    d.secrets.onChange((s) => this.secretChanged(s));
    d.secrets.onDelete((s) => this.secretChanged(s));
    d.deployments.onChange((dep) => this.deploymentChanged(dep));
    d.deployments.onDelete((dep) => this.deploymentChanged(dep, true));
  }

  get depth(): number {
    return this.queue?.depth ?? 0;
  }

  get running(): boolean {
    return this.queue !== undefined;
  }

  start(): void {
    if (this.queue) return;
    this.queue = new WorkQueue((key) => this.reconcile(key), {
      concurrency: this.d.concurrency,
      onError: (key, err, retryInMs) => this.d.logger.warn({ err, key, retryInMs }, "reconcile failed; retrying"),
    });
    this.enqueueAll();
    // Whatever a watch may have missed is caught up here.
    this.resync = setInterval(() => this.enqueueAll(), this.d.resyncMs);
    this.resync.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.resync);
    const queue = this.queue;
    this.queue = undefined;
    await queue?.stop();
  }

  // Resolves when no reconcile is queued or running (tests).
  idle(): Promise<void> {
    return this.queue?.idle() ?? Promise.resolve();
  }

  private enqueue(key: string): void {
    this.queue?.add(key);
  }

  private pushAppChanged(o: PushAppObject): void {
    const key = pushAppKey(o.metadata.namespace, o.metadata.name);
    const annotations = Object.entries(o.metadata.annotations ?? {})
      .filter(([k]) => k.startsWith("herald.dev/"))
      .sort(([a], [b]) => a.localeCompare(b));
    const fingerprint = JSON.stringify([o.metadata.uid, o.metadata.generation ?? 0, Boolean(o.metadata.deletionTimestamp), annotations]);
    if (this.seen.get(key) === fingerprint) return;
    this.seen.set(key, fingerprint);
    this.enqueue(key);
  }

  private enqueueAll(): void {
    for (const o of this.d.pushApps.list()) this.enqueue(pushAppKey(o.metadata.namespace, o.metadata.name));
    for (const key of this.pools) this.enqueue(key);
  }

  private secretChanged(secret: V1Secret): void {
    const namespace = secret.metadata?.namespace;
    const name = secret.metadata?.name;
    if (!namespace || !name) return;
    const labels = secret.metadata?.labels;
    if (labels?.[LABELS.managedBy] === MANAGED_BY) return this.ownedChanged(namespace, labels);
    for (const o of this.d.pushApps.list(namespace)) {
      if (referencedSecrets(o.spec).has(name)) this.enqueue(pushAppKey(namespace, o.metadata.name));
    }
  }

  // A pool's availability concerns every app it serves (their status shows it), so a change of
  // its replicas or their availability reconciles them all. Its other changes do not: each app
  // that joins or leaves rewrites the pool, and reconciling every other app on each of those
  // would make N joins cost N² reconciles.
  private deploymentChanged(dep: V1Deployment, deleted = false): void {
    const namespace = dep.metadata?.namespace;
    if (namespace && dep.metadata?.labels?.[POOL_LABEL] && dep.metadata.labels[LABELS.managedBy] === MANAGED_BY) {
      const provider = dep.metadata.labels[LABELS.provider];
      const key = POOL_KEY(namespace, provider ?? "");
      if (this.d.poolScaling && provider && !this.pools.has(key)) {
        this.pools.add(key);
        this.enqueue(key);
      }
      const availability = deleted ? "gone" : JSON.stringify([dep.spec?.replicas, dep.status?.replicas ?? 0, dep.status?.availableReplicas ?? 0, Boolean(dep.metadata.deletionTimestamp)]);
      if (this.poolAvailability.get(key) === availability) return;
      if (deleted) this.poolAvailability.delete(key);
      else this.poolAvailability.set(key, availability);
      // Its apps: those with keys in its credential shards.
      for (const app of poolAppsIn(this.d.secrets.list(namespace), dep.metadata.labels[POOL_LABEL], provider as PushAppProvider)) this.enqueue(pushAppKey(namespace, app));
      return;
    }
    this.ownedChanged(namespace, dep.metadata?.labels);
  }

  private ownedChanged(namespace: string | undefined, labels: Record<string, string> | undefined): void {
    const app = labels?.[LABELS.app];
    if (namespace && app && labels?.[LABELS.managedBy] === MANAGED_BY) this.enqueue(pushAppKey(namespace, app));
  }

  // One span per reconcile (the root of its trace): the app, its namespace, the outcome
  // (success, backoff, error) and why it comes back (autoscaling, or the failure's reason).
  private reconcile(key: string): Promise<void | "backoff"> {
    if (key.startsWith(POOL_KEY_PREFIX)) return this.scalePool(key);
    const [namespace, name] = key.split("/") as [string, string];
    return withSpan("reconcile PushApp", { "herald.app": name, "k8s.namespace.name": namespace }, async (span) => {
      const started = process.hrtime.bigint();
      const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
      const count = (result: "success" | "backoff" | "error") => {
        this.d.metrics.reconciles.inc({ result });
        this.d.metrics.duration.observe({ result }, seconds());
        span.setAttribute("herald.reconcile.outcome", result);
      };
      try {
        const result = await this.d.reconciler.reconcile(key);
        count(result.backoff ? "backoff" : "success");
        const requeue = result.backoff ?? (result.requeueAfterMs ? "autoscaling" : undefined);
        if (requeue) span.setAttribute("herald.reconcile.requeue_reason", requeue);
        if (result.requeueAfterMs) this.queue?.addAfter(key, result.requeueAfterMs);
        return result.backoff ? "backoff" : undefined;
      } catch (err) {
        count("error");
        const reason = err instanceof ReportedError ? err.reason : err instanceof FencedError || (err as Error).name === "AbortError" || (err as { cause?: unknown }).cause instanceof FencedError ? "NotLeader" : "ReconcileError";
        span.setAttribute("herald.reconcile.requeue_reason", reason);
        // A step's failure is already in the status and its Events; anything else gets one here.
        const object = this.d.pushApps.get(name, namespace);
        if (reason === "ReconcileError" && object) await this.d.events.record(object, "Warning", reason, (err instanceof Error ? err.message : String(err)).split("\n")[0]!.slice(0, 500));
        throw err;
      }
    });
  }

  // One look at a pool's lag; it comes back every autoscale interval until the pool is gone.
  private scalePool(key: string): Promise<void> {
    const [namespace, provider] = key.slice(POOL_KEY_PREFIX.length).split("/") as [string, PushAppProvider];
    return withSpan("scale pool", { "k8s.namespace.name": namespace, "herald.provider": provider }, async () => {
      const result = await this.d.reconciler.scalePool(namespace, provider);
      if (result.requeueAfterMs) this.queue?.addAfter(key, result.requeueAfterMs);
      else this.pools.delete(key);
    });
  }
}

// A pool's scaling is queued like a PushApp, under a key no PushApp can have (names hold no ":").
const POOL_KEY_PREFIX = "pool:";
const POOL_KEY = (namespace: string, provider: string) => `${POOL_KEY_PREFIX}${namespace}/${provider}`;

// Names of every Secret a PushApp spec refers to (any `...SecretRef` / `secretRef` field).
export function referencedSecrets(spec: unknown): Set<string> {
  const out = new Set<string>();
  const walk = (node: unknown, key: string) => {
    if (!node || typeof node !== "object") return;
    if (/secretRef$/i.test(key) && typeof (node as { name?: unknown }).name === "string") out.add((node as { name: string }).name);
    for (const [k, v] of Object.entries(node)) walk(v, k);
  };
  walk(spec, "");
  return out;
}
