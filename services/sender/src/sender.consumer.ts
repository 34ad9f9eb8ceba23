import { randomBytes } from "node:crypto";
import { backoffDelay, withSpan, YIELDED, type Bus, type HandlerOutcome, type BusMessage, type Logger, type RetryPolicy, type Subscription } from "@herald/platform";
import { BusGroups, BusTopics, deliveryTopicsOf, dispatch, events } from "@herald/proto";
import type { Outcome, PushProvider, SendRequest, TargetResult } from "./provider.types.js";
import type { SenderMetrics } from "./sender.metrics.js";

export interface SenderOptions {
  app: string;
  provider: PushProvider;
  bus: Bus;
  logger: Logger;
  now: () => Date;
  // Attempts per delivery before it goes to the dead-letter topic.
  maxAttempts?: number;
  backoff?: { initialMs: number; maxMs: number };
  // How long the sender stops calling the provider after a credential failure.
  credentialCooldownMs?: number;
  metrics?: SenderMetrics;
  // Targets sent between two checkpoints of a job (default 25): each step's retries and token
  // feedback are handed on and its position and counts recorded before the next one starts, so a
  // sender killed mid-job repeats at most one step, not the job. Larger steps use more of a
  // provider's concurrency at once.
  checkpointEvery?: number;
  // Backoff of a hand-off to the bus that failed (the broker unreachable): the outcomes are
  // handed on again until they are on the bus; the notifications are never sent again for it.
  handOffRetry?: { initialMs: number; maxMs: number };
  // The cancelled publish ids to honour, when someone else reads herald.control (a pooled
  // sender, for all its apps); otherwise start() subscribes to it.
  cancellations?: Set<string>;
  // Where a job's retries go; herald.retries.<app>.<provider> when absent.
  retryTopic?: (app: string) => string;
}

// What the Kafka bus adds to a message (see CheckpointedBusMessage in @herald/platform's
// bus.kafka.ts): the progress checkpointed for it before a crash, and the way to record it.
type CheckpointedMessage = BusMessage & { progress?: string; checkpoint?: (progress: string) => Promise<void>; shouldYield?: () => boolean };

interface Tally {
  result: events.DeliveryResult;
  retry: events.JobTarget[];
  retryAfterMs: number;
  retryReason: string;
  feedback: events.TokenFeedback[];
}

// The sender runtime for one app and provider: consumes delivery jobs, lets the provider send,
// and acts on the outcomes the same way for every provider — results to herald.results, dead
// tokens to herald.token-feedback, transient failures back on the retry topic with exponential
// backoff and jitter (honouring Retry-After, never past expire_at), exhausted ones to the
// dead-letter topic. A job's offset is committed only after all of that is on the bus.
//
// A job larger than `checkpointEvery` targets is worked through in steps of that many. After each
// step the job's message is checkpointed with the position reached and the counts so far (retries
// of a step's targets go on as the job id with "/<first target>" appended); the job reports one
// result when its last step is done. A sender that gets the job after a crash starts at the
// checkpoint with its counts, and reports how many of its sends it carried over (resumed_sent).
// What a crash can still repeat is the step in progress: sent again, and counted as duplicates
// only when the job's result had reached the bus (the aggregator then sees the job attempt under
// another run id, and counts the sends that run made itself).
export class SenderWorker {
  private readonly cancelled: Set<string>;
  // Jobs this process stopped at a checkpoint when the bus asked (by "<job>:<attempt>:").
  private readonly yielded = new Set<string>();
  // The job subscriptions, which pause while credentials are refused; and herald.control's.
  private readonly subscriptions: Subscription[] = [];
  private control?: Subscription;
  private readonly maxAttempts: number;
  private readonly backoff: { initialMs: number; maxMs: number };
  private readonly step: number;
  private readonly handOffRetry: { initialMs: number; maxMs: number };
  private stopping = false;

  constructor(private readonly o: SenderOptions) {
    this.maxAttempts = o.maxAttempts ?? 8;
    this.backoff = o.backoff ?? { initialMs: 1000, maxMs: 300_000 };
    this.step = Math.max(1, o.checkpointEvery ?? 25);
    this.handOffRetry = o.handOffRetry ?? { initialMs: 200, maxMs: 5000 };
    this.cancelled = o.cancellations ?? new Set();
  }

  async start(): Promise<void> {
    const name = this.o.provider.name;
    const group = BusGroups.sender(this.o.app, name);
    // Every replica reads every cancellation, so its group is its own.
    if (!this.o.cancellations)
      this.control = await this.o.bus.subscribe({
        group: `${group}-control-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
        topics: [BusTopics.control],
        handler: async (m: BusMessage) => {
          const c = events.PublishControl.decode(m.value);
          if (c.cancelled && c.app === this.o.app) this.remember(c.publishId);
        },
      });
    // Each lane its own group (and Kafka consumer), started urgent first: a broadcast's jobs
    // queued on the bulk topic never delay a job of the urgent one, which is fetched and sent
    // beside them. Both share the provider's connections; a lane's subscription sends one step
    // (at most checkpointEvery targets) at a time, so the urgent lane always finds room.
    for (const { topic, group: laneGroup } of [...deliveryTopicsOf(this.o.app, name)].reverse()) {
      this.subscriptions.push(await this.o.bus.subscribe({ group: laneGroup, topics: [topic], handler: (m) => this.handle(m) }));
    }
    const retries = await this.o.bus.subscribe({ group: BusGroups.senderRetries(this.o.app, name), topics: [BusTopics.retries(this.o.app, name)], handler: (m) => this.handle(m) });
    this.subscriptions.push(retries);
  }


  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.paused);
    const control = this.control;
    this.control = undefined;
    await Promise.all([...this.subscriptions.splice(0), ...(control ? [control] : [])].map((s) => s.stop()));
    await this.o.provider.close();
  }

  isCancelled(publishId: string): boolean {
    return this.cancelled.has(publishId);
  }

  private remember(publishId: string): void {
    if (this.cancelled.size > 10_000) this.cancelled.clear();
    this.cancelled.add(publishId);
  }

  async handle(message: CheckpointedMessage): Promise<HandlerOutcome> {
    const job = events.DeliveryJob.decode(message.value);
    // Only the dispatcher writes delivery topics; a job naming another app than the topic's is
    // not sent with this app's credentials, nor lost.
    if (job.app !== this.o.app) {
      this.o.logger.error({ app: this.o.app, claimed: job.app, publish: job.publishId, job: job.jobId, topic: message.topic }, "a job of another app on this app's topic; dead-lettered");
      const dead = events.DeadLetter.encode({ job, reason: `a job of app ${JSON.stringify(job.app)} on a topic of app ${this.o.app}`, lastError: "", at: this.o.now() }).finish();
      await this.handOff(job, BusTopics.deadLetter, [{ key: job.jobId, value: dead }]);
      // Its publish still comes to an end, with these targets dead-lettered.
      const result = { ...emptyResult(job, this.o.now()), deadLettered: job.targets.length || 1 };
      await this.handOff(job, BusTopics.results, [{ key: job.publishId, value: events.DeliveryResult.encode(result).finish() }]);
      return;
    }
    // A retry waits for its time on the retry topic, so fresh jobs are never held up; its
    // partition is paused meanwhile (no handler sits waiting, other partitions flow).
    const wait = (job.notBefore?.getTime() ?? 0) - this.o.now().getTime();
    if (wait > 0) return { deferMs: wait };
    const stepped = job.targets.length > this.step;
    const mark = `${job.jobId}:${job.attempt}:`;
    // Where a run of this job that died stopped (its last checkpoint), and what it had counted.
    const resumed = stepped ? resumeAt(message.progress, mark, job.targets.length) : undefined;
    let start = resumed?.start ?? 0;
    // Resuming after this process yielded is routine; after a crash or a rebalance it is news.
    const ownYield = this.yielded.delete(mark);
    if (start > 0) this.o.logger[ownYield ? "debug" : "info"]({ app: job.app, publish: job.publishId, job: job.jobId, attempt: job.attempt, from: start }, "resuming a job at its checkpoint");
    const result = emptyResult(job, this.o.now());
    if (resumed) addCounts(result, resumed.counts);
    result.resumedSent = result.sent;
    do {
      const part = stepped ? { ...job, jobId: `${job.jobId}/${start}`, targets: job.targets.slice(start, start + this.step) } : job;
      await this.deliver(part, result);
      start += this.step;
      if (stepped && start < job.targets.length && message.checkpoint) {
        await message.checkpoint(`${mark}${start}:${countsOf(result)}`);
        // The bus wants its consumer back (yieldAfterMs): the job goes on from this checkpoint.
        if (message.shouldYield?.()) {
          if (this.yielded.size > 10_000) this.yielded.clear();
          this.yielded.add(mark);
          return YIELDED;
        }
      }
    } while (stepped && start < job.targets.length);
    await this.handOff(job, BusTopics.results, [{ key: job.publishId, value: events.DeliveryResult.encode(result).finish() }]);
  }

  // Sends one job (or one step of one), hands its retries and token feedback on, and adds its
  // counts to the job's `result`.
  private async deliver(job: events.DeliveryJob, result: events.DeliveryResult): Promise<void> {
    this.o.metrics?.jobStarted();
    const attributes = {
      "herald.app": job.app,
      "herald.provider": this.o.provider.name,
      "herald.publish_id": job.publishId,
      "herald.job_id": job.jobId,
      "herald.attempt": job.attempt,
      "herald.targets": job.targets.length,
    };
    try {
      await withSpan("deliver job", attributes, async (span) => {
        const tally = await this.process(job);
        span.setAttributes({ "herald.sent": tally.result.sent, "herald.failed": tally.result.failed + tally.result.invalidTokens, "herald.retrying": tally.retry.length });
        await this.report(job, tally);
        addCounts(result, tally.result);
      });
    } finally {
      this.o.metrics?.jobFinished();
    }
  }

  private async process(job: events.DeliveryJob): Promise<Tally> {
    const now = this.o.now();
    const count = job.targets.length || 1;
    // A step's counts go into its job's result, which has the run id.
    const tally: Tally = { result: emptyResult(job, now, ""), retry: [], retryAfterMs: 0, retryReason: "", feedback: [] };
    if (this.isCancelled(job.publishId)) {
      tally.result.cancelled = count;
      this.o.metrics?.delivery("cancelled", "", count);
      return tally;
    }
    if (job.expireAt && job.expireAt.getTime() <= now.getTime()) {
      tally.result.expired = count;
      this.o.metrics?.delivery("expired", "", count);
      return tally;
    }
    const request: SendRequest = {
      app: job.app,
      publishId: job.publishId,
      jobId: job.jobId,
      attempt: job.attempt,
      targets: job.targets.map((t) => ({ deviceId: t.deviceId, token: t.token, ...(t.payload.length ? { payload: t.payload } : {}) })),
      payload: job.payload,
      headers: job.headers,
      priority: job.priority === dispatch.Priority.PRIORITY_HIGH ? "high" : job.priority === dispatch.Priority.PRIORITY_LOW ? "low" : "normal",
      ...(job.expireAt ? { expireAt: job.expireAt } : {}),
      ...(job.nativeTopic ? { nativeTopic: job.nativeTopic } : {}),
      ...(job.nativeCondition ? { nativeCondition: job.nativeCondition } : {}),
    };
    const results = await this.o.provider.send(request);
    for (const r of results) this.count(tally, job, r);
    // Sent ones are counted once per step: a labelled counter increment per target was a
    // measurable part of a delivery's CPU.
    this.o.metrics?.delivery("sent", "", tally.result.sent);
    return tally;
  }

  private count(tally: Tally, job: events.DeliveryJob, { target, outcome }: TargetResult): void {
    const r = tally.result;
    if (outcome.kind !== "sent" && outcome.kind !== "retry") this.o.metrics?.delivery(outcome.kind, outcome.reason);
    switch (outcome.kind) {
      case "sent":
        r.sent++;
        this.degradedSince = undefined;
        return;
      case "failed":
        r.failed++;
        countReason(r, outcome.reason);
        return;
      case "invalid_token":
        r.invalidTokens++;
        countReason(r, outcome.reason);
        tally.feedback.push({
          app: job.app,
          provider: job.provider,
          token: target.token,
          deviceId: target.deviceId,
          reason: outcome.reason,
          invalidSince: outcome.invalidSince ?? this.o.now(),
          publishId: job.publishId,
        });
        return;
      case "credentials":
      case "retry":
        this.retryLater(tally, job, target, outcome);
        return;
    }
  }

  private retryLater(tally: Tally, job: events.DeliveryJob, target: TargetResult["target"], outcome: Extract<Outcome, { kind: "retry" | "credentials" }>): void {
    if (outcome.kind === "credentials") {
      // Credentials are wrong: stop calling the provider for a while; tokens stay untouched.
      this.o.logger.error({ app: job.app, provider: this.o.provider.name, reason: outcome.reason }, "provider refused the credentials; app degraded, pausing");
      const cooldown = this.o.credentialCooldownMs ?? 60_000;
      const now = this.o.now();
      this.degradedSince = { reason: outcome.reason, at: this.degradedSince?.at ?? now, until: new Date(now.getTime() + cooldown) };
      this.pauseFor(cooldown);
    }
    const after = outcome.kind === "credentials" ? (this.o.credentialCooldownMs ?? 60_000) : (outcome.retryAfterMs ?? 0);
    tally.retry.push({ deviceId: target.deviceId, token: target.token, payload: Buffer.from(target.payload ?? new Uint8Array()) });
    tally.retryAfterMs = Math.max(tally.retryAfterMs, after);
    tally.retryReason = outcome.reason;
  }

  private paused: NodeJS.Timeout | undefined;
  private degradedSince: { reason: string; at: Date; until: Date } | undefined;

  // Whether the provider refused the credentials lately (the app is degraded until they work):
  // for health endpoints and, later, the PushApp status.
  health(): { degraded: false } | { degraded: true; reason: string; since: Date; pausedUntil: Date } {
    const d = this.degradedSince;
    return d ? { degraded: true, reason: d.reason, since: d.at, pausedUntil: d.until } : { degraded: false };
  }

  private pauseFor(ms: number): void {
    if (this.paused) return;
    for (const s of this.subscriptions) s.pause();
    this.paused = setTimeout(() => {
      this.paused = undefined;
      for (const s of this.subscriptions) s.resume();
    }, ms).unref();
  }

  // Hands a step's retries, dead letters and token feedback on (its counts go into the job's
  // result). The notifications are out already: a publish that fails (the broker unreachable, a
  // crash of it) is repeated here until it succeeds, rather than failing the job, whose
  // redelivery would send everything again. The same messages are published each time (the
  // result keeps its run id), so one that did get through before counts once.
  private async report(job: events.DeliveryJob, tally: Tally): Promise<void> {
    const bus = { publish: (topic: string, messages: Parameters<Bus["publish"]>[1]) => this.handOff(job, topic, messages) };
    const name = this.o.provider.name;
    if (tally.retry.length) {
      const attempt = job.attempt + 1;
      const delay = Math.max(tally.retryAfterMs, backoffMs(job.attempt, this.backoff));
      const notBefore = new Date(this.o.now().getTime() + delay);
      const hopeless = attempt >= this.maxAttempts || (job.expireAt !== undefined && notBefore.getTime() >= job.expireAt.getTime());
      const next: events.DeliveryJob = { ...job, targets: tally.retry, attempt, notBefore };
      if (hopeless) {
        tally.result.deadLettered += tally.retry.length;
        this.o.metrics?.delivery("dead_lettered", tally.retryReason, tally.retry.length);
        const reason = job.expireAt && notBefore >= job.expireAt ? "expires before the next attempt" : `gave up after ${attempt} attempts`;
        await bus.publish(BusTopics.deadLetter, [{ key: job.jobId, value: events.DeadLetter.encode({ job: next, reason, lastError: tally.retryReason, at: this.o.now() }).finish() }]);
      } else {
        tally.result.retrying += tally.retry.length;
        this.o.metrics?.delivery("retrying", tally.retryReason, tally.retry.length);
        await bus.publish(this.o.retryTopic?.(job.app) ?? BusTopics.retries(job.app, name), [{ key: job.jobId, value: events.DeliveryJob.encode(next).finish() }]);
      }
    }
    if (tally.feedback.length) {
      await bus.publish(BusTopics.tokenFeedback, tally.feedback.map((f) => ({ key: `${f.app}/${f.token}`, value: events.TokenFeedback.encode(f).finish() })));
    }
  }

  private async handOff(job: events.DeliveryJob, topic: string, messages: Parameters<Bus["publish"]>[1]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.o.bus.publish(topic, messages);
      } catch (err) {
        // Stopping: the job stays uncommitted and the group's next consumer redoes it.
        if (this.stopping) throw err;
        const delay = backoffDelay(attempt, this.handOffRetry);
        this.o.logger.warn({ err, topic, publish: job.publishId, job: job.jobId, attempt, retryInMs: delay }, "handing a job's outcomes on failed; retrying the hand-off (not the sends)");
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }
}

// Exponential with full jitter on the upper half: attempt 0 waits 0.5–1 × initial, doubling up to max.
export const backoffMs = (attempt: number, b: RetryPolicy): number => backoffDelay(attempt + 1, b);

// A checkpoint's counts (base64url of a DeliveryResult that holds only counts) stay far below
// Kafka's offset metadata limit (offset.metadata.max.bytes, 4096): beyond MAX_REASONS distinct
// failure reasons the rarest are folded into "<provider>:OTHER".
const MAX_REASONS = 20;

const COUNTS = ["sent", "failed", "invalidTokens", "expired", "cancelled", "deadLettered", "retrying"] as const;

function addCounts(into: events.DeliveryResult, from: Pick<events.DeliveryResult, (typeof COUNTS)[number] | "failedByReason">): void {
  for (const c of COUNTS) into[c] += from[c];
  for (const [reason, n] of Object.entries(from.failedByReason)) into.failedByReason[reason] = (into.failedByReason[reason] ?? 0) + n;
  const reasons = Object.entries(into.failedByReason);
  if (reasons.length <= MAX_REASONS) return;
  const other = `${reasons[0]![0].split(":")[0]}:OTHER`;
  reasons.sort((a, b) => b[1] - a[1]);
  const kept: Record<string, number> = {};
  for (const [reason, n] of reasons.slice(0, MAX_REASONS - 1)) if (reason !== other) kept[reason] = n;
  kept[other] = reasons.filter(([reason]) => !(reason in kept)).reduce((sum, [, n]) => sum + n, 0);
  into.failedByReason = kept;
}

const countsOf = (r: events.DeliveryResult): string =>
  Buffer.from(events.DeliveryResult.encode(events.DeliveryResult.fromPartial({ ...Object.fromEntries(COUNTS.map((c) => [c, r[c]])), failedByReason: r.failedByReason })).finish()).toString("base64url");

// "<jobId>:<attempt>:<position>[:<counts>]" of this attempt, with a position inside the job. A
// checkpoint without counts (written by a sender that reported every step itself) carries none.
function resumeAt(progress: string | undefined, mark: string, targets: number): { start: number; counts: events.DeliveryResult } | undefined {
  if (!progress?.startsWith(mark)) return undefined;
  const [position = "", counts] = progress.slice(mark.length).split(":", 2);
  const start = Number(position);
  if (!Number.isSafeInteger(start) || start <= 0 || start >= targets) return undefined;
  if (counts === undefined) return { start, counts: events.DeliveryResult.fromPartial({}) };
  // Node's base64url decoding skips what is not base64url; such counts are not ours.
  if (!/^[A-Za-z0-9_-]+$/.test(counts)) return undefined;
  try {
    return { start, counts: events.DeliveryResult.decode(Buffer.from(counts, "base64url")) };
  } catch {
    // Unreadable counts: the job starts over (its sends repeat) rather than report wrong counts.
    return undefined;
  }
}

function countReason(r: events.DeliveryResult, reason: string): void {
  r.failedByReason[reason] = (r.failedByReason[reason] ?? 0) + 1;
}

function emptyResult(job: events.DeliveryJob, at: Date, runId = randomBytes(8).toString("hex")): events.DeliveryResult {
  return {
    app: job.app,
    publishId: job.publishId,
    jobId: job.jobId,
    provider: job.provider,
    attempt: job.attempt,
    sent: 0,
    failed: 0,
    invalidTokens: 0,
    expired: 0,
    cancelled: 0,
    deadLettered: 0,
    retrying: 0,
    failedByReason: {},
    at,
    runId,
    resumedSent: 0,
  };
}
