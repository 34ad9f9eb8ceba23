import { withSpan, YIELDED, type Bus, type BusMessage, type HandlerOutcome, type Logger, type Subscription } from "@herald/platform";
import { BusGroups, BusTopics, dispatch, events, LANES, type Lane, type topic } from "@herald/proto";
import { PROVIDER_NAMES, type ProviderName, type PublishRecord, type PublishRepository } from "@herald/store";
import { buildPayload, type ProviderPayload } from "./notification.payload.js";
import { hasPlaceholders, renderTemplate } from "./notification.template.js";
import { announceFinished, completeIfSettled } from "./publish.progress.js";
import type { RecipientSource } from "./recipient.source.js";
import type { DispatcherMetrics } from "./dispatcher.metrics.js";
import { unconfiguredReason, type Directory } from "./publish.directory.js";
import { countRecipients, streamRequest } from "./publish.recipients.js";

// Targets per delivery job: FCM sends one request per token anyway, HMS takes 1000 per request,
// Web Push requests are the slowest, so its jobs are small enough to retry cheaply.
export const JOB_SIZE: Record<ProviderName, number> = { apns: 500, fcm: 500, hms: 1000, webpush: 100 };
const STREAM_BATCH = 500;

export interface FanoutDeps {
  publishes: PublishRepository;
  directory: Directory;
  bus: Bus;
  recipients: RecipientSource;
  logger: Logger;
  now: () => Date;
  metrics?: DispatcherMetrics;
}

class Cancelled extends Error {}
// The bus asked for the consumer back (yieldAfterMs): the fan-out stops after a batch whose cursor
// is saved and resumes there when the message comes again.
class Yielded extends Error {}


// Publishes fanned out at once by one worker and lane (one per partition of the lane's
// publishes topic at most).
const FANOUT_CONCURRENCY = 4;

// Turns an accepted publish into delivery jobs on herald.deliveries.<app>.<provider> (".urgent"
// appended on the urgent lane). Streams the
// recipients (never a whole topic in memory), and records its position after every batch whose
// jobs are on the bus, so a restarted worker resumes there: at most one batch is handed on twice,
// and the duplicate job results are counted.
export class FanoutWorker {
  constructor(private readonly deps: FanoutDeps) {}

  // One subscription per lane, each its own consumer group (and Kafka consumer): the urgent
  // lane's fan-outs never wait for a fetch, a partition or a fan-out slot of the bulk lane.
  async start(): Promise<Subscription> {
    const subs: Subscription[] = [];
    try {
      for (const lane of LANES) {
        subs.push(
          await this.deps.bus.subscribe({
            group: BusGroups.fanoutOf(lane),
            topics: [BusTopics.publishesOf(lane)],
            // Publishes are independent: a broadcast must not hold up the publishes that land on
            // other partitions behind it.
            partitionsConcurrently: FANOUT_CONCURRENCY,
            // No yieldAfterMs: a resumed fan-out starts a new recipient stream at its cursor, and
            // FerretDB (the test database) sorts the topic's every row again for each; yielding
            // every second made a 100k broadcast ~35x slower (50 against 1,780 deliveries/s,
            // bench/RESULTS.md 2026-12-07). A lone publish has the urgent lane, its own consumer.
            handler: (m: BusMessage & { shouldYield?: () => boolean }) => {
              const accepted = events.PublishAccepted.decode(m.value);
              return this.run(accepted.app, accepted.publishId, lane, m.shouldYield);
            },
          }),
        );
      }
    } catch (err) {
      await Promise.all(subs.map((s) => s.stop()));
      throw err;
    }
    return {
      pause: () => subs.forEach((s) => s.pause()),
      resume: () => subs.forEach((s) => s.resume()),
      stop: async () => void (await Promise.all(subs.map((s) => s.stop()))),
    };
  }

  // `lane`: the one the publish arrived on, which its jobs keep. `shouldYield`: the bus's ask to
  // stop at the next saved cursor (answered with YIELDED).
  async run(app: string, id: string, lane: Lane, shouldYield?: () => boolean): Promise<HandlerOutcome> {
    const { publishes, now } = this.deps;
    let publish = await publishes.get(app, id);
    if (!publish) return this.deps.logger.warn({ app, publish: id }, "fan-out for an unknown publish skipped");
    if (publish.state === "queued") publish = (await publishes.transition(app, id, ["queued"], "fanning_out", { startedAt: now(), now: now() })) ?? (await publishes.get(app, id));
    // Anything but fanning_out: another worker finished it, it was cancelled, or this message is
    // a redelivery of a publish already handed on.
    if (!publish || publish.state !== "fanning_out") return;
    const request = dispatch.PublishRequest.decode(publish.request);
    const appRecord = await this.deps.directory.apps.get(app);
    if (!appRecord) {
      await publishes.transition(app, id, ["fanning_out"], "failed", { finishedAt: now(), error: "the app no longer exists", now: now() });
      return;
    }
    if (publish.expireAt && publish.expireAt.getTime() <= now().getTime()) {
      // Reports what it would have reached: every recipient counts as targeted and expired.
      const n = await countRecipients(this.deps.recipients, app, request);
      const counted = await publishes.countResult(app, id, "fanout:expired", { targeted: n, expired: n }, now());
      await announceFinished(this.deps.bus, counted.publish ?? publish, "expired", now());
      await publishes.transition(app, id, ["fanning_out"], "expired", { finishedAt: now(), error: "expire_at passed before the fan-out", now: now() });
      return;
    }
    const planner = new JobPlanner(publish, request, new Set(appRecord.providers), lane, appRecord.senders === "pooled");
    const started = performance.now();
    try {
      const running = publish;
      await withSpan("fanout", { "herald.app": app, "herald.publish_id": id, "herald.fanout.resumed_after": running.fanoutCursor }, () => this.fanOut(running, request, planner, shouldYield));
    } catch (err) {
      if (err instanceof Yielded) return YIELDED;
      if (!(err instanceof Cancelled)) throw err;
      // The devices the stopped fan-out had not reached count as targeted and cancelled.
      const at = (await publishes.get(app, id))?.fanoutCursor ?? publish.fanoutCursor;
      const rest = await countRecipients(this.deps.recipients, app, request, at);
      if (rest) await publishes.countResult(app, id, "cancel:unsent", { targeted: rest, cancelled: rest }, now());
      return;
    }
    this.deps.metrics?.fanoutDone(app, (performance.now() - started) / 1000);
    // One write ends the fan-out: a crash before it resumes the fan-out after its cursor (nothing
    // is left) and ends it then.
    const sending = await publishes.transition(app, id, ["fanning_out"], "sending", { fanoutDone: true, now: now() });
    if (sending) await completeIfSettled(publishes, this.deps.bus, app, id, now(), sending);
  }

  private async fanOut(publish: PublishRecord, request: dispatch.PublishRequest, planner: JobPlanner, shouldYield?: () => boolean): Promise<void> {
    const target = request.recipients?.target;
    if (!target) return;
    if ((target.$case === "tokens" || target.$case === "native") && !planner.configured.has(PROVIDER_NAMES[target.value.provider]!)) {
      // Checked when published; the provider was removed from the app since.
      const provider = PROVIDER_NAMES[target.value.provider]!;
      const n = target.$case === "tokens" ? target.value.tokens.length : 1;
      await this.deps.publishes.countResult(publish.app, publish.id, "fanout:unconfigured", { targeted: n, failed: n, failedByReason: { [unconfiguredReason(provider)]: n } }, this.deps.now());
      return;
    }
    if (target.$case === "tokens") {
      const provider = PROVIDER_NAMES[target.value.provider]!;
      const recipients = target.value.tokens.map((token) => ({ deviceId: "", token, provider: target.value.provider }));
      return this.handOn(publish, planner, planner.jobs(provider, recipients, "t"), recipients.length, "");
    }
    if (target.$case === "native") {
      const provider = PROVIDER_NAMES[target.value.provider]!;
      const job = planner.nativeJob(provider, target.value.target);
      return this.handOn(publish, planner, job ? [job] : [], job ? 1 : 0, "");
    }
    const controller = new AbortController();
    let batches = 0;
    await this.deps.recipients.forEachBatch(publish.app, streamRequest(request, publish.fanoutCursor, STREAM_BATCH), controller.signal, async (recipients) => {
      // Cancellation is checked between batches: a cancelled broadcast stops within one batch.
      if (++batches % 4 === 0 && (await this.deps.publishes.get(publish.app, publish.id))?.state !== "fanning_out") {
        controller.abort();
        throw new Cancelled();
      }
      const byProvider = new Map<ProviderName, topic.Recipient[]>();
      for (const r of recipients) {
        const name = PROVIDER_NAMES[r.provider];
        if (name) byProvider.set(name, [...(byProvider.get(name) ?? []), r]);
      }
      const jobs: events.DeliveryJob[] = [];
      let targeted = 0;
      const unconfigured: Record<string, number> = {};
      for (const [provider, list] of byProvider) {
        if (!planner.hasPayload(provider)) continue;
        if (!planner.configured.has(provider)) {
          unconfigured[unconfiguredReason(provider)] = list.length;
          continue;
        }
        const cut = planner.jobs(provider, list, list[0]!.deviceId);
        jobs.push(...cut);
        targeted += cut.reduce((n, j) => n + j.targets.length, 0);
      }
      const cursor = recipients.at(-1)?.deviceId ?? "";
      // Devices of a provider the app no longer has (registered before it was removed) fail with
      // a reason instead of becoming jobs that no sender consumes; keyed by batch, so a resumed
      // fan-out does not count them twice.
      const failed = Object.values(unconfigured).reduce((a, b) => a + b, 0);
      if (failed) await this.deps.publishes.countResult(publish.app, publish.id, `fanout:unconfigured:${cursor}`, { targeted: failed, failed, failedByReason: unconfigured }, this.deps.now());
      await this.handOn(publish, planner, jobs, targeted, cursor);
      // A short batch is the stream's last: nothing to come back for.
      if (recipients.length >= STREAM_BATCH && shouldYield?.()) {
        controller.abort();
        throw new Yielded();
      }
    });
  }

  // The jobs travel on the publish's lane, as the publish did, to the app's senders' topics.
  private async handOn(publish: PublishRecord, planner: JobPlanner, jobs: events.DeliveryJob[], targeted: number, cursor: string): Promise<void> {
    const byTopic = new Map<string, events.DeliveryJob[]>();
    for (const job of jobs) {
      const name = planner.topicOf(PROVIDER_NAMES[job.provider]!);
      byTopic.set(name, [...(byTopic.get(name) ?? []), job]);
    }
    for (const [name, list] of byTopic) {
      await this.deps.bus.publish(name, list.map((job) => ({ key: job.jobId, value: events.DeliveryJob.encode(job).finish() })));
    }
    for (const job of jobs) this.deps.metrics?.handedOn(job.app, PROVIDER_NAMES[job.provider]!, job.targets.length || 1);
    await this.deps.publishes.saveFanout(publish.app, publish.id, { cursor, targetedDelta: targeted, done: false, now: this.deps.now() });
  }
}

// Builds each provider's payload once per publish, and per device only when templated.
class JobPlanner {
  private readonly payloads = new Map<ProviderName, { payload?: ProviderPayload; bytes?: Buffer; templated: boolean }>();
  constructor(
    private readonly publish: PublishRecord,
    private readonly request: dispatch.PublishRequest,
    // The providers the app has senders for.
    readonly configured: ReadonlySet<ProviderName>,
    // The publish's lane (the one it arrived on), which its jobs travel on.
    readonly lane: Lane,
    // Whether the installation's pooled senders deliver the app's jobs, read when this run of the
    // fan-out started: a move between modes applies from the next batch of a resumed fan-out,
    // and each job is on exactly one topic either way.
    private readonly pooled: boolean,
  ) {}

  topicOf(provider: ProviderName): string {
    return this.pooled ? BusTopics.pooled(this.publish.app, provider, this.lane) : BusTopics.deliveries(this.publish.app, provider, this.lane);
  }

  hasPayload(provider: ProviderName): boolean {
    return this.payloadFor(provider).payload !== undefined;
  }

  private payloadFor(provider: ProviderName) {
    let entry = this.payloads.get(provider);
    if (!entry) {
      const payload = this.request.notification ? buildPayload(provider, this.request.notification, this.request.priority) : undefined;
      entry = payload
        ? { payload, bytes: Buffer.from(JSON.stringify(payload.body)), templated: !!this.request.notification?.templated && hasPlaceholders(payload.body) }
        : { templated: false };
      this.payloads.set(provider, entry);
    }
    return entry;
  }

  // Devices of a provider the notification has no payload for are not targeted.
  jobs(provider: ProviderName, recipients: Array<Pick<topic.Recipient, "deviceId" | "token"> & Partial<topic.Recipient>>, idSeed: string): events.DeliveryJob[] {
    const { payload, bytes, templated } = this.payloadFor(provider);
    if (!payload || !bytes) return [];
    const size = JOB_SIZE[provider];
    const jobs: events.DeliveryJob[] = [];
    for (let i = 0; i < recipients.length; i += size) {
      const slice = recipients.slice(i, i + size);
      jobs.push({
        ...this.base(provider, payload, bytes),
        // Deterministic: a resumed fan-out re-creates the same job ids, so results count once.
        jobId: `${this.publish.id}:${provider}:${idSeed}:${i}`,
        targets: slice.map((r) => ({
          deviceId: r.deviceId,
          token: r.token,
          payload: templated
            ? Buffer.from(JSON.stringify(renderTemplate(payload.body, { deviceId: r.deviceId, user: r.user ?? "", locale: r.locale ?? "", timezone: r.timezone ?? "", meta: r.meta ?? {} })))
            : Buffer.alloc(0),
        })),
      });
    }
    return jobs;
  }

  nativeJob(provider: ProviderName, target: dispatch.NativeTarget["target"]): events.DeliveryJob | undefined {
    const { payload, bytes } = this.payloadFor(provider);
    if (!payload || !bytes || !target) return undefined;
    return {
      ...this.base(provider, payload, bytes),
      jobId: `${this.publish.id}:${provider}:native`,
      targets: [],
      nativeTopic: target.$case === "topic" ? target.value : "",
      nativeCondition: target.$case === "condition" ? target.value : "",
    };
  }

  private base(provider: ProviderName, payload: ProviderPayload, bytes: Buffer): Omit<events.DeliveryJob, "jobId" | "targets"> {
    return {
      app: this.publish.app,
      publishId: this.publish.id,
      provider: providerEnum(provider),
      payload: bytes,
      headers: payload.headers,
      priority: this.request.priority,
      ...(this.publish.expireAt ? { expireAt: this.publish.expireAt } : {}),
      attempt: 0,
      nativeTopic: "",
      nativeCondition: "",
    };
  }
}

const providerEnum = (name: ProviderName) => Number(Object.entries(PROVIDER_NAMES).find(([, v]) => v === name)![0]);
