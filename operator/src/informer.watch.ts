import { ListWatch, Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject, type V1Secret } from "@kubernetes/client-node";
import type { Logger } from "@herald/platform";

export interface InformerOptions<T extends KubernetesObject> {
  name: string;
  path: string;
  list: () => Promise<KubernetesListObject<T>>;
  labelSelector?: string;
  fieldSelector?: string;
  logger: Logger;
  // Restart delay after an error: doubles from minMs up to maxMs, back to minMs once it works.
  backoff?: { minMs: number; maxMs: number };
  // Awaited before an added or updated object is handed to the onChange handlers (and before the
  // first list counts as synced): what the object depends on gets into a cache first.
  beforeChange?: (object: T) => Promise<void>;
}

export type ObjectHandler<T> = (object: T) => void;

// @kubernetes/client-node's informer (list, then watch from the list's resourceVersion, relist
// on 410 Gone) stops for good on any other error: a dropped connection, an API server restart,
// a 403 while RBAC is being applied. This one starts it again with backoff, so the cache and the
// event stream survive whatever the API server does.
export class Informer<T extends KubernetesObject> {
  private readonly inner: ListWatch<T>;
  private stopped = false;
  private failures = 0;
  private restartTimer?: NodeJS.Timeout;
  private synced = false;
  private readonly syncWaiters: Array<() => void> = [];
  private readonly changeHandlers: Array<ObjectHandler<T>> = [];
  private readonly pending = new Set<Promise<void>>();

  constructor(
    kc: KubeConfig,
    private readonly options: InformerOptions<T>,
  ) {
    this.inner = new ListWatch<T>(options.path, new Watch(kc), options.list, false, options.labelSelector, options.fieldSelector);
    this.inner.on("error", (err) => this.failed(err));
    this.inner.on("connect", () => {
      this.failures = 0;
    });
    const changed = (object: T) => this.changed(object);
    this.inner.on("add", changed);
    this.inner.on("update", changed);
  }

  onChange(handler: ObjectHandler<T>): void {
    this.changeHandlers.push(handler);
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

  private changed(object: T): void {
    const deliver = () => {
      for (const handler of this.changeHandlers) handler(object);
    };
    const before = this.options.beforeChange;
    if (!before) return deliver();
    const done = before(object)
      .catch((err: unknown) => this.options.logger.warn({ err, informer: this.options.name, object: object.metadata?.name }, "informer: preparing an object failed"))
      .then(() => {
        this.pending.delete(done);
        if (!this.stopped) deliver();
      });
    this.pending.add(done);
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
      await Promise.all([...this.pending]);
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

export interface SecretCacheOptions {
  // Lists one namespace's Secrets with a selector (a label selector, or a field selector naming one Secret).
  list: (namespace: string | undefined, selector: { labelSelector?: string; fieldSelector?: string }) => Promise<KubernetesListObject<V1Secret>>;
  // The namespace watched, or "" for every namespace (owned Secrets only: referenced ones are always watched by name).
  namespace: string;
  // Label selector of the Secrets the operator writes.
  ownedSelector: string;
  logger: Logger;
}

// The Secrets the operator needs, and no others: the ones it writes (one watch with a label
// selector) and the ones a PushApp references (one watch per Secret, selected by name), so the
// operator never lists, watches or holds in memory any other Secret of the cluster, and the
// controller still hears of a rotated credential at once. Referenced Secrets are tracked per
// PushApp: track() before the PushApp's change is handled (so a reconcile finds them cached),
// untrack() when it is deleted.
export class SecretCache extends Informer<V1Secret> {
  private readonly byName = new Map<string, { informer: Informer<V1Secret>; users: Set<string>; ready: Promise<void> }>();
  private readonly usesOf = new Map<string, Set<string>>();
  private readonly changeListeners: Array<ObjectHandler<V1Secret>> = [];
  private readonly deleteListeners: Array<ObjectHandler<V1Secret>> = [];

  constructor(
    private readonly kc: KubeConfig,
    private readonly o: SecretCacheOptions,
  ) {
    super(kc, {
      name: "secrets (owned)",
      path: `/api/v1${o.namespace ? `/namespaces/${o.namespace}` : ""}/secrets`,
      list: () => o.list(o.namespace || undefined, { labelSelector: o.ownedSelector }),
      labelSelector: o.ownedSelector,
      logger: o.logger,
    });
  }

  override onChange(handler: ObjectHandler<V1Secret>): void {
    super.onChange(handler);
    this.changeListeners.push(handler);
    for (const { informer } of this.byName.values()) informer.onChange(handler);
  }

  override onDelete(handler: ObjectHandler<V1Secret>): void {
    super.onDelete(handler);
    this.deleteListeners.push(handler);
    for (const { informer } of this.byName.values()) informer.onDelete(handler);
  }

  override get(name: string, namespace?: string): V1Secret | undefined {
    return super.get(name, namespace) ?? this.byName.get(`${namespace}/${name}`)?.informer.get(name, namespace);
  }

  override list(namespace?: string): readonly V1Secret[] {
    const referenced = [...this.byName.values()].flatMap(({ informer }) => informer.list(namespace));
    return [...super.list(namespace), ...referenced];
  }

  // Watches the Secrets `user` (a PushApp key) references in `namespace`, and stops watching the
  // ones it no longer references; resolves once every one of them has been listed.
  async track(user: string, namespace: string, names: Iterable<string>): Promise<void> {
    const wanted = new Set([...names].map((n) => `${namespace}/${n}`));
    const previous = this.usesOf.get(user) ?? new Set<string>();
    this.usesOf.set(user, wanted);
    for (const key of previous) if (!wanted.has(key)) await this.release(user, key);
    const starting: Array<Promise<void>> = [];
    for (const key of wanted) {
      let entry = this.byName.get(key);
      if (!entry) {
        const name = key.slice(namespace.length + 1);
        const informer = new Informer<V1Secret>(this.kc, {
          name: `secret ${key}`,
          path: `/api/v1/namespaces/${namespace}/secrets`,
          list: () => this.o.list(namespace, { fieldSelector: `metadata.name=${name}` }),
          fieldSelector: `metadata.name=${name}`,
          logger: this.o.logger,
        });
        for (const handler of this.changeListeners) informer.onChange(handler);
        for (const handler of this.deleteListeners) informer.onDelete(handler);
        entry = { informer, users: new Set(), ready: informer.start() };
        this.byName.set(key, entry);
      }
      entry.users.add(user);
      starting.push(entry.ready);
    }
    await Promise.all(starting);
  }

  async untrack(user: string): Promise<void> {
    for (const key of this.usesOf.get(user) ?? []) await this.release(user, key);
    this.usesOf.delete(user);
  }

  // How many Secrets are watched by name (tests, metrics).
  get referencedCount(): number {
    return this.byName.size;
  }

  override async stop(): Promise<void> {
    await Promise.all([super.stop(), ...[...this.byName.values()].map(({ informer }) => informer.stop())]);
    this.byName.clear();
    this.usesOf.clear();
  }

  private async release(user: string, key: string): Promise<void> {
    const entry = this.byName.get(key);
    if (!entry) return;
    entry.users.delete(user);
    if (entry.users.size > 0) return;
    this.byName.delete(key);
    await entry.informer.stop();
  }
}
