// A keyed work queue in the client-go manner: a key added many times before it is processed is
// processed once; a key is never processed by two workers at once (an add while it runs marks
// it dirty and it runs again after); failures are retried with per-key exponential backoff; an
// add after a delay serves periodic work (autoscaling) without timers per caller. A handler that
// did not throw but could not finish either (a credential that is missing, a name the registry
// refuses) returns "backoff" and is retried on the same schedule as a failure.

export interface WorkQueueOptions {
  concurrency: number;
  // Backoff of a failing key: baseMs * 2^(failures-1), at most maxMs.
  baseMs?: number;
  maxMs?: number;
  onError?: (key: string, err: unknown, retryInMs: number) => void;
}

export type KeyHandler = (key: string) => Promise<void | "backoff">;

export class WorkQueue {
  private readonly pending: string[] = [];
  private readonly queued = new Set<string>();
  private readonly running = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly idleWaiters: Array<() => void> = [];
  private workers = 0;
  private stopped = false;

  constructor(
    private readonly handler: KeyHandler,
    private readonly options: WorkQueueOptions,
  ) {}

  // Keys waiting or running (the queue depth metric).
  get depth(): number {
    return this.queued.size + this.running.size;
  }

  add(key: string): void {
    if (this.stopped) return;
    if (this.running.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.pending.push(key);
    this.pump();
  }

  // Adds the key after `ms`; an earlier pending delayed add of the same key wins.
  addAfter(key: string, ms: number): void {
    if (this.stopped) return;
    if (ms <= 0) return this.add(key);
    const at = Date.now() + ms;
    const existing = this.timers.get(key);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, ms);
    this.timers.set(key, { at, timer });
  }

  // Forgets a key's failure count (it was deleted, or succeeded elsewhere).
  forget(key: string): void {
    this.failures.delete(key);
  }

  // Resolves when nothing is queued or running (tests and shutdown).
  idle(): Promise<void> {
    if (this.depth === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  // Stops taking work; resolves when the running handlers have finished.
  async stop(): Promise<void> {
    this.stopped = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.pending.length = 0;
    this.queued.clear();
    this.dirty.clear();
    await this.idle();
  }

  // Schedules the next attempt of a failing key; returns the delay.
  private retryLater(key: string): number {
    const failures = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, failures);
    const delay = Math.min((this.options.baseMs ?? 200) * 2 ** (failures - 1), this.options.maxMs ?? 300_000);
    this.addAfter(key, delay);
    return delay;
  }

  private pump(): void {
    while (!this.stopped && this.workers < this.options.concurrency && this.pending.length > 0) {
      const key = this.pending.shift()!;
      this.queued.delete(key);
      this.running.add(key);
      this.workers++;
      void this.run(key);
    }
    if (this.depth === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  private async run(key: string): Promise<void> {
    try {
      if ((await this.handler(key)) === "backoff") this.retryLater(key);
      else this.failures.delete(key);
    } catch (err) {
      this.options.onError?.(key, err, this.retryLater(key));
    } finally {
      this.running.delete(key);
      this.workers--;
      if (this.dirty.delete(key)) this.add(key);
      this.pump();
    }
  }
}
