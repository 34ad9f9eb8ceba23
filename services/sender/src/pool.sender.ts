import type { Bus, BusMessage, HandlerOutcome, Logger, Subscription } from "@herald/platform";
import { BusGroups, BusTopics, events, pooledTopics } from "@herald/proto";
import type { PoolApp, PoolAppSource } from "./pool.source.js";
import type { ProviderName, PushProvider } from "./provider.types.js";
import { SenderWorker, type SenderOptions } from "./sender.consumer.js";
import type { SenderMetrics } from "./sender.metrics.js";

export interface PooledSenderOptions {
  provider: ProviderName;
  bus: Bus;
  logger: Logger;
  now: () => Date;
  source: PoolAppSource;
  // Builds an app's provider from its configuration; throws (ProviderConfigError) when the
  // configuration is incomplete.
  createProvider: (app: PoolApp) => Promise<PushProvider>;
  metrics?: (app: string) => SenderMetrics;
  // Apps (partitions) worked on at once per lane; an app's jobs are one partition, so one app
  // never takes more than one of them.
  concurrency?: number;
  // How long one app's batch may keep the others from being fetched (see yieldAfterMs).
  yieldAfterMs?: number;
  // How long an app whose configuration is incomplete waits before it is tried again.
  problemCooldownMs?: number;
  // How long an app with jobs but no configuration at all waits before it is looked up again: a
  // new app's credentials may reach the pool after its first jobs (the kubelet brings its shard).
  missingRetryMs?: number;
  // An app that has sent nothing for this long has its provider (connections, tokens) closed;
  // its next job builds it again. Absent: kept while the process runs.
  idleCloseMs?: number;
  worker?: Pick<SenderOptions, "maxAttempts" | "backoff" | "credentialCooldownMs" | "checkpointEvery" | "handOffRetry">;
}

interface AppEntry {
  version: string;
  worker?: SenderWorker;
  // Why the app cannot send now, and until when its jobs wait for another try.
  problem?: { reason: string; until: number };
  inflight: number;
  // When its last job ended (or it was built), ms.
  lastUsed: number;
  retired: boolean;
  ready?: Promise<void>;
}

// One sender process for one provider and every pooled app of the installation. Each app's jobs
// are on topics of its own with one partition (herald.pool.<provider>.<app>[.urgent],
// herald.pool-retries.<provider>.<app>), read by one consumer group per lane for all apps; a
// pattern subscription picks up the topics of apps added later. Per app, as with a dedicated
// sender: its own provider (built on its first job from the pool's configuration source, rebuilt
// when that changes, without a restart), its own cooldown after refused credentials, its own
// metrics labels and cancellations. Isolation comes from the partitions: an app whose
// credentials cool down, or whose configuration is incomplete, has its partitions paused
// (deferred, not failed: its jobs wait in Kafka); a slow app holds at most one of `concurrency`
// slots per lane; and no app's batch keeps the others from being fetched for longer than
// yieldAfterMs, since a job stops at its next checkpoint and goes on when fetched again.
export class PooledSender {
  private readonly apps = new Map<string, AppEntry>();
  private readonly cancelled = new Map<string, Set<string>>();
  private readonly subscriptions: Subscription[] = [];
  private readonly topics: ReturnType<typeof pooledTopics>;
  private stopping = false;
  private idleSweep?: NodeJS.Timeout;
  // Apps with jobs and no configuration, said once each (they are looked up every missingRetryMs).
  private readonly missing = new Set<string>();

  constructor(private readonly o: PooledSenderOptions) {
    this.topics = pooledTopics(o.provider);
    o.source.onChange((ids) => {
      for (const id of ids) {
        this.missing.delete(id);
        void this.retire(id, "its configuration changed");
      }
    });
  }

  async start(): Promise<void> {
    this.subscriptions.push(
      await this.o.bus.subscribe({
        // Every replica reads every cancellation, so its group is its own.
        group: `${BusGroups.pool(this.o.provider)}-control-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
        topics: [BusTopics.control],
        handler: async (m: BusMessage) => {
          const c = events.PublishControl.decode(m.value);
          if (c.cancelled) this.cancellationsOf(c.app).add(c.publishId);
        },
      }),
    );
    const common = { partitionsConcurrently: this.o.concurrency ?? 8, yieldAfterMs: this.o.yieldAfterMs ?? 250, handler: (m: BusMessage) => this.handle(m) };
    // Urgent first, as in a dedicated sender: its own consumer, never behind a bulk fetch.
    for (const lane of [...this.topics.lanes].reverse()) this.subscriptions.push(await this.o.bus.subscribe({ group: lane.group, topics: [lane.pattern], ...common }));
    // Retries wait for their time with their partition paused, so many apps' retries can wait at once.
    this.subscriptions.push(await this.o.bus.subscribe({ group: this.topics.retries.group, topics: [this.topics.retries.pattern], ...common, partitionsConcurrently: Math.max(16, common.partitionsConcurrently) }));
    const idleMs = this.o.idleCloseMs;
    if (idleMs !== undefined) {
      this.idleSweep = setInterval(() => this.closeIdle(idleMs), Math.max(10, Math.min(idleMs / 2, 60_000)));
      this.idleSweep.unref();
    }
  }

  // A long tail of apps that each sent once must not keep a provider and its connections each.
  private closeIdle(idleMs: number): void {
    const now = this.o.now().getTime();
    for (const [app, entry] of this.apps) {
      if (entry.inflight === 0 && entry.worker && !entry.problem && now - entry.lastUsed >= idleMs) void this.retire(app, "idle");
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.idleSweep);
    await Promise.all(this.subscriptions.splice(0).map((s) => s.stop()));
    await Promise.all([...this.apps.keys()].map((id) => this.retire(id, "the sender is stopping")));
  }

  // The apps this process has met, for the health endpoint: how many, and those that cannot send.
  health(): { apps: number; degraded: Array<{ app: string; reason: string; until: Date }> } {
    const degraded: Array<{ app: string; reason: string; until: Date }> = [];
    for (const [app, e] of this.apps) {
      const h = e.worker?.health();
      if (e.problem) degraded.push({ app, reason: e.problem.reason, until: new Date(e.problem.until) });
      else if (h?.degraded) degraded.push({ app, reason: h.reason, until: h.pausedUntil });
    }
    return { apps: this.apps.size, degraded: degraded.slice(0, 100) };
  }

  // The apps whose topics this process has read, for the lag metric.
  knownApps(): string[] {
    return [...this.apps.keys()];
  }

  async handle(message: BusMessage): Promise<HandlerOutcome> {
    const app = this.topics.appOf(message.topic);
    // The patterns match pooled topics only; anything else is not ours to judge.
    if (!app) throw new Error(`pool: ${message.topic} is not a pooled topic of ${this.o.provider}`);
    let entry = await this.entryFor(app);
    // Retired while it was being built (its configuration changed again): build the next one.
    while (entry.retired) entry = await this.entryFor(app);
    const now = this.o.now().getTime();
    if (entry.problem) return { deferMs: entry.problem.until - now };
    const health = entry.worker!.health();
    // Credentials refused lately: this app's partitions wait out the cooldown, nobody else's.
    if (health.degraded && health.pausedUntil.getTime() > now) return { deferMs: health.pausedUntil.getTime() - now };
    entry.inflight++;
    try {
      return await entry.worker!.handle(message);
    } finally {
      entry.lastUsed = this.o.now().getTime();
      if (--entry.inflight === 0 && entry.retired) void this.close(app, entry);
    }
  }

  private cancellationsOf(app: string): Set<string> {
    let set = this.cancelled.get(app);
    if (!set) this.cancelled.set(app, (set = new Set()));
    if (set.size > 10_000) set.clear();
    return set;
  }

  private async entryFor(app: string): Promise<AppEntry> {
    let entry = this.apps.get(app);
    if (entry?.problem && entry.problem.until <= this.o.now().getTime()) {
      this.apps.delete(app);
      entry = undefined;
    }
    if (!entry) {
      const created: AppEntry = { version: "", inflight: 0, lastUsed: this.o.now().getTime(), retired: false };
      created.ready = this.build(app, created);
      this.apps.set(app, (entry = created));
    }
    await entry.ready;
    return entry;
  }

  private async build(app: string, entry: AppEntry): Promise<void> {
    const config = this.o.source.get(app);
    const cooldown = this.o.problemCooldownMs ?? 30_000;
    if (!config) {
      const retryInMs = this.o.missingRetryMs ?? 2000;
      entry.problem = { reason: "the pool has no configuration for this app", until: this.o.now().getTime() + retryInMs };
      if (!this.missing.has(app)) this.o.logger.warn({ app, provider: this.o.provider, retryInMs }, "pool: no configuration (yet) for an app with jobs; its jobs wait");
      this.missing.add(app);
      return;
    }
    entry.version = config.version;
    try {
      const provider = await this.o.createProvider(config);
      entry.worker = new SenderWorker({
        ...this.o.worker,
        app,
        provider,
        bus: this.o.bus,
        logger: this.o.logger.child({ app }),
        now: this.o.now,
        cancellations: this.cancellationsOf(app),
        retryTopic: (a) => BusTopics.pooledRetries(a, this.o.provider),
        ...(this.o.metrics ? { metrics: this.o.metrics(app) } : {}),
      });
      this.o.logger.info({ app, provider: this.o.provider }, "pool: app ready");
    } catch (err) {
      entry.problem = { reason: err instanceof Error ? err.message : String(err), until: this.o.now().getTime() + cooldown };
      this.o.logger.error({ app, provider: this.o.provider, err, retryInMs: cooldown }, "pool: cannot build the app's provider; its jobs wait");
    }
  }

  // The next job builds the app anew; the old provider closes once its jobs in flight are done.
  private async retire(app: string, why: string): Promise<void> {
    const entry = this.apps.get(app);
    if (!entry) return;
    this.apps.delete(app);
    entry.retired = true;
    await entry.ready;
    if (!this.stopping) this.o.logger.info({ app, provider: this.o.provider, why }, "pool: app retired");
    if (entry.inflight === 0) await this.close(app, entry);
  }

  private async close(app: string, entry: AppEntry): Promise<void> {
    const worker = entry.worker;
    entry.worker = undefined;
    await worker?.stop().catch((err: unknown) => this.o.logger.warn({ app, err }, "pool: closing an app's provider failed"));
  }
}
