import { makeInformer, type KubeConfig, type KubernetesListObject, type KubernetesObject } from "@kubernetes/client-node";
import type { Logger } from "@herald/platform";

export interface InformerOptions<T extends KubernetesObject> {
  name: string;
  path: string;
  list: () => Promise<KubernetesListObject<T>>;
  labelSelector?: string;
  logger: Logger;
  // Restart delay after an error: doubles from minMs up to maxMs, back to minMs once it works.
  backoff?: { minMs: number; maxMs: number };
}

export type ObjectHandler<T> = (object: T) => void;

// @kubernetes/client-node's informer (list, then watch from the list's resourceVersion, relist
// on 410 Gone) stops for good on any other error: a dropped connection, an API server restart,
// a 403 while RBAC is being applied. This one starts it again with backoff, so the cache and the
// event stream survive whatever the API server does.
export class Informer<T extends KubernetesObject> {
  private readonly inner;
  private stopped = false;
  private failures = 0;
  private restartTimer?: NodeJS.Timeout;
  private synced = false;
  private readonly syncWaiters: Array<() => void> = [];

  constructor(
    kc: KubeConfig,
    private readonly options: InformerOptions<T>,
  ) {
    this.inner = makeInformer<T>(kc, options.path, options.list, options.labelSelector);
    this.inner.on("error", (err) => this.failed(err));
    this.inner.on("connect", () => {
      this.failures = 0;
    });
  }

  onChange(handler: ObjectHandler<T>): void {
    this.inner.on("add", handler);
    this.inner.on("update", handler);
  }

  onDelete(handler: ObjectHandler<T>): void {
    this.inner.on("delete", handler);
  }

  get(name: string, namespace?: string): T | undefined {
    return this.inner.get(name, namespace);
  }

  list(namespace?: string): readonly T[] {
    return this.inner.list(namespace);
  }

  get hasSynced(): boolean {
    return this.synced;
  }

  // Starts listing and watching; resolves after the first complete list.
  async start(): Promise<void> {
    this.stopped = false;
    await this.startOnce();
    if (!this.synced) await new Promise<void>((resolve) => this.syncWaiters.push(resolve));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    for (const resolve of this.syncWaiters.splice(0)) resolve();
    await this.inner.stop();
  }

  private async startOnce(): Promise<void> {
    let failed = false;
    const onError = () => {
      failed = true;
    };
    this.inner.on("error", onError);
    try {
      await this.inner.start();
    } catch (err) {
      failed = true;
      this.failed(err);
    } finally {
      this.inner.off("error", onError);
    }
    if (!failed && !this.synced) {
      this.synced = true;
      for (const resolve of this.syncWaiters.splice(0)) resolve();
    }
  }

  private failed(err: unknown): void {
    if (this.stopped) return;
    const { minMs, maxMs } = this.options.backoff ?? { minMs: 500, maxMs: 30_000 };
    const delay = Math.min(minMs * 2 ** this.failures, maxMs);
    this.failures++;
    this.options.logger.warn({ err, informer: this.options.name, retryInMs: delay }, "informer: list/watch failed; restarting");
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => void this.startOnce(), delay);
    this.restartTimer.unref();
  }
}
