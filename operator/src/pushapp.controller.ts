import type { V1Deployment, V1Secret } from "@kubernetes/client-node";
import type { Logger } from "@herald/platform";
import type { Informer } from "./informer.watch.js";
import type { OperatorMetrics } from "./operator.metrics.js";
import { pushAppKey, type PushAppObject, type PushAppReconciler } from "./pushapp.reconciler.js";
import { LABELS, MANAGED_BY } from "./sender.deployment.js";
import { WorkQueue } from "./work.queue.js";

export interface ControllerDeps {
  pushApps: Informer<PushAppObject>;
  secrets: Informer<V1Secret>;
  deployments: Informer<V1Deployment>;
  reconciler: PushAppReconciler;
  metrics: OperatorMetrics;
  logger: Logger;
  concurrency: number;
  resyncMs: number;
}

// Turns watch events into PushApp keys on the work queue: a PushApp's own changes, a change of
// any Secret it references (a rotated credential), and a change of what it owns (a Deployment
// becoming available, a Secret edited by hand). The informers run on every replica, so a new
// leader starts with a warm cache; only the leader's queue runs reconciles.
export class PushAppController {
  private queue?: WorkQueue;
  private resync?: NodeJS.Timeout;

  constructor(private readonly d: ControllerDeps) {
    d.pushApps.onChange((o) => this.enqueue(pushAppKey(o.metadata.namespace, o.metadata.name)));
    d.pushApps.onDelete((o) => this.queue?.forget(pushAppKey(o.metadata.namespace, o.metadata.name)));
    d.secrets.onChange((s) => this.secretChanged(s));
    d.secrets.onDelete((s) => this.secretChanged(s));
    d.deployments.onChange((dep) => this.ownedChanged(dep.metadata?.namespace, dep.metadata?.labels));
    d.deployments.onDelete((dep) => this.ownedChanged(dep.metadata?.namespace, dep.metadata?.labels));
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

  private enqueueAll(): void {
    for (const o of this.d.pushApps.list()) this.enqueue(pushAppKey(o.metadata.namespace, o.metadata.name));
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

  private ownedChanged(namespace: string | undefined, labels: Record<string, string> | undefined): void {
    const app = labels?.[LABELS.app];
    if (namespace && app && labels?.[LABELS.managedBy] === MANAGED_BY) this.enqueue(pushAppKey(namespace, app));
  }

  private async reconcile(key: string): Promise<void> {
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    try {
      const result = await this.d.reconciler.reconcile(key);
      this.d.metrics.reconciles.inc({ result: "success" });
      this.d.metrics.duration.observe({ result: "success" }, seconds());
      if (result.requeueAfterMs) this.queue?.addAfter(key, result.requeueAfterMs);
    } catch (err) {
      this.d.metrics.reconciles.inc({ result: "error" });
      this.d.metrics.duration.observe({ result: "error" }, seconds());
      throw err;
    }
  }
}

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
