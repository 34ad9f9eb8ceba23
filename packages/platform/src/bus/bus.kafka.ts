import kafkajs from "kafkajs";
import type { Admin, Consumer, EachBatchPayload, IHeaders, Kafka, KafkaMessage, LogEntry, Producer, ProducerRecord, logCreator } from "kafkajs";
import { consoleBusLogger, type BusLogger } from "./bus.logger.js";
import { backoffDelay, retryPolicy, type RetryPolicy } from "./bus.retry.js";
import { processWithTrace, publishWithTrace } from "./bus.tracing.js";
import { deferredMs, YIELDED, type Bus, type BusMessage, type HandlerOutcome, type OutgoingMessage, type PartitionLag, type SubscribeOptions, type Subscription, type TopicSpec } from "./bus.types.js";
import { compileTopicPatterns, validateMessages, validateSubscribeOptions, validateTopicSpec, type TopicPatterns } from "./bus.validate.js";

// How long ensureTopics and a subscription's start keep retrying while topics other processes
// create (and the group coordinator) settle.
const SETTLE_DEADLINE_MS = 60_000;
// Lag is polled (metrics, scaling): a short wait, and the next poll tries again.
const LAG_DEADLINE_MS = 10_000;

// Errors that another attempt can cure: kafkajs marks its retriable protocol errors, wraps them
// when its own retries run out, aggregates them per topic; INVALID_PARTITIONS comes from
// metadata that lagged behind another process's partition increase.
function transientKafkaError(err: unknown): boolean {
  if (typeof err !== "object" || err === null) return false;
  const e = err as { retriable?: boolean; type?: string; originalError?: unknown; cause?: unknown; errors?: unknown[] };
  if (e.retriable === true || e.type === "INVALID_PARTITIONS") return true;
  if (Array.isArray(e.errors) && e.errors.length > 0) return e.errors.every(transientKafkaError);
  return transientKafkaError(e.originalError) || transientKafkaError(e.cause);
}

// Whether kafkajs's error (or one it wraps) is of this protocol error type.
function kafkaErrorIs(err: unknown, type: string): boolean {
  if (typeof err !== "object" || err === null) return false;
  const e = err as { type?: string; originalError?: unknown; cause?: unknown; errors?: unknown[] };
  if (e.type === type) return true;
  if (Array.isArray(e.errors) && e.errors.some((x) => kafkaErrorIs(x, type))) return true;
  return kafkaErrorIs(e.originalError, type) || kafkaErrorIs(e.cause, type);
}

// Repeats an idempotent Kafka procedure while it fails transiently, until the deadline.
async function untilSettled<T>(deadlineMs: number, attemptOnce: () => Promise<T>, onRetry: (err: unknown, attempt: number) => void): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return await attemptOnce();
    } catch (err) {
      if (!transientKafkaError(err) || Date.now() > deadline) throw err;
      onRetry(err, attempt);
      await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, 2000)));
    }
  }
}

// Which of `names` exist: the metadata of those topics alone when they all do (the usual case: a
// reconcile asks about one app's), else the broker's whole list. kafkajs's listTopics fetches the
// metadata of every topic of the cluster, thousands with many apps.
async function existingOf(admin: Admin, names: string[]): Promise<Set<string>> {
  try {
    const { topics } = await admin.fetchTopicMetadata({ topics: names });
    return new Set(topics.map((t) => t.name));
  } catch (err) {
    if (!kafkaErrorIs(err, "UNKNOWN_TOPIC_OR_PARTITION")) throw err;
    return new Set(await admin.listTopics());
  }
}

// kafkajs 2.2.4's fetchTopicOffsets destructures an empty ListOffsets answer (a TypeError) when
// a partition has no known leader yet, as right after the topic was created or grown: transient.
async function topicOffsets(admin: Admin, topic: string): ReturnType<Admin["fetchTopicOffsets"]> {
  try {
    return await admin.fetchTopicOffsets(topic);
  } catch (err) {
    if (err instanceof TypeError) throw Object.assign(new Error(`offsets of ${topic} not known yet: ${err.message}`), { retriable: true, cause: err });
    throw err;
  }
}

// kafkajs is CommonJS; its named exports are not all visible to Node's ESM loader.
const { Kafka: KafkaClient, Partitioners, logLevel } = kafkajs;

export interface KafkaBusOptions {
  brokers: string[];
  clientId: string;
  logger?: BusLogger;
  // Consumer timings. The defaults suit production; tests shorten them to keep rebalances quick.
  consumer?: {
    // How often a member heartbeats (also while a handler runs); bounds how soon it notices a
    // rebalance. Default 1000.
    heartbeatIntervalMs?: number;
    // How long a member that stopped heartbeating (a SIGKILLed process) keeps its partitions
    // before the group hands them on: what a crash costs in delivery time (a restarted sender
    // delivers again ~0.3 s after it). Default 6000, the broker's group.min.session.timeout.ms:
    // with a heartbeat every second, a member is evicted only after its event loop or network
    // stalled for 5 s.
    sessionTimeoutMs?: number;
    // Longest a fetch waits for data; bounds how long stop() and resume() take to be noticed.
    // Default 500 (the Java client's fetch.max.wait.ms).
    maxWaitTimeMs?: number;
    // How often pattern subscriptions look for newly created matching topics. Default 30000.
    topicRefreshMs?: number;
    // The least time between two re-subscriptions of a pattern subscription (each is a consumer
    // group rebalance over all its topics): topics that appear meanwhile are taken on together,
    // at the end of it. The first change after a quiet spell, and any topic deleted, are taken
    // on at the next refresh. Default topicRefreshMs.
    resubscribeMinIntervalMs?: number;
  };
}

interface Tuning {
  heartbeatIntervalMs: number;
  sessionTimeoutMs: number;
  maxWaitTimeMs: number;
  topicRefreshMs: number;
  resubscribeMinIntervalMs: number;
}

interface AdminLease {
  ready: Promise<Admin>;
  users: number;
  retired: boolean;
  // The topics it read the offsets of: kafkajs keeps each as a target whose metadata every later
  // offsets read may refresh, so a lease that has read many is replaced (ADMIN_TARGET_LIMIT).
  targets: Set<string>;
}

// Past this many topics read, an admin's metadata refreshes cost more than a new connection.
const ADMIN_TARGET_LIMIT = 256;

export class KafkaBus implements Bus {
  private readonly kafka: Kafka;
  private readonly logger: BusLogger;
  private readonly tuning: Tuning;
  private readonly subscriptions = new Set<KafkaSubscription>();
  private producer?: ProducerHandle;
  // Producers replaced after a partition increase, still finishing their in-flight sends.
  private readonly retiring = new Set<Promise<void>>();
  // The admin client and the calls using it: one retired is disconnected by its last call.
  private adminLease?: AdminLease;
  private closing?: Promise<void>;

  constructor(options: KafkaBusOptions) {
    if (!options.brokers?.length) throw new TypeError("KafkaBus: brokers must not be empty");
    this.logger = options.logger ?? consoleBusLogger;
    const topicRefreshMs = options.consumer?.topicRefreshMs ?? 30_000;
    this.tuning = {
      heartbeatIntervalMs: options.consumer?.heartbeatIntervalMs ?? 1000,
      sessionTimeoutMs: options.consumer?.sessionTimeoutMs ?? 6000,
      maxWaitTimeMs: options.consumer?.maxWaitTimeMs ?? 500,
      topicRefreshMs,
      resubscribeMinIntervalMs: options.consumer?.resubscribeMinIntervalMs ?? topicRefreshMs,
    };
    this.kafka = new KafkaClient({
      clientId: options.clientId,
      brokers: options.brokers,
      logLevel: logLevel.WARN,
      logCreator: kafkaLogCreator(this.logger),
    });
  }

  async publish(topic: string, messages: OutgoingMessage[]): Promise<void> {
    this.assertOpen();
    validateMessages(topic, messages);
    if (messages.length === 0) return;
    await publishWithTrace("kafka", topic, messages, (traced) =>
      this.send({
        topic,
        // All in-sync replicas: "durable" in the Bus contract. Required by the idempotent producer anyway.
        acks: -1,
        messages: traced.map((m) => ({
          key: m.key,
          value: Buffer.from(m.value.buffer, m.value.byteOffset, m.value.byteLength),
          headers: m.headers,
        })),
      }),
    );
  }

  // kafkajs's producer refreshes the metadata of every topic it ever sent to whenever it meets a
  // new one, and a topic deleted since (a deleted app's, by the operator) fails that refresh for
  // good: no publish to a new topic would get through again. Such a producer is replaced and the
  // send tried once more on a new one, which knows only this topic (if this one is gone, the
  // retry fails the same way and the caller hears it).
  private async send(record: ProducerRecord): Promise<void> {
    const handle = this.producerHandle();
    try {
      await handle.send(record);
    } catch (err) {
      if (!kafkaErrorIs(err, "UNKNOWN_TOPIC_OR_PARTITION")) throw err;
      this.logger.warn({ topic: record.topic }, "bus: the producer knows a deleted topic; sending again on a new producer");
      this.replaceProducer(handle);
      await this.producerHandle().send(record);
    }
  }

  async subscribe(options: SubscribeOptions): Promise<Subscription> {
    this.assertOpen();
    validateSubscribeOptions(options);
    const subscription = new KafkaSubscription(
      {
        kafka: this.kafka,
        logger: this.logger,
        tuning: this.tuning,
        listTopics: () => this.withAdmin((admin) => admin.listTopics()),
        fetchCommitted: async (group, topic) => {
          const [t] = await this.withAdmin((admin) => admin.fetchOffsets({ groupId: group, topics: [topic] }));
          return (t?.partitions ?? []).map((p) => ({ partition: p.partition, offset: p.offset, metadata: p.metadata ?? "" }));
        },
        onStop: (s) => this.subscriptions.delete(s),
      },
      options,
    );
    this.subscriptions.add(subscription);
    try {
      await subscription.start();
    } catch (err) {
      await subscription.stop().catch(() => {});
      throw err;
    }
    return subscription;
  }

  async ensureTopics(specs: TopicSpec[]): Promise<void> {
    this.assertOpen();
    specs.forEach(validateTopicSpec);
    // The same name twice: the larger count wins, as two callers' ensureTopics would end.
    const wanted = new Map<string, number>();
    for (const s of specs) wanted.set(s.name, Math.max(s.partitions, wanted.get(s.name) ?? 0));
    if (wanted.size === 0) return;
    // Several services ensure the same topics as they start. While another process's topic is
    // still being created, metadata answers LEADER_NOT_AVAILABLE or shows it unfinished; the
    // whole procedure is idempotent, so it is simply repeated until the deadline.
    const progress = { raised: false };
    await untilSettled(
      SETTLE_DEADLINE_MS,
      () => this.withAdmin((admin) => this.ensureTopicsOnce(admin, wanted, progress)),
      (err, attempt) => this.logger.warn({ err, topics: [...wanted.keys()], attempt }, "bus: kafka topics not settled yet; retrying"),
    );
    // kafkajs refreshes a producer's metadata only every metadataMaxAge (5 min); until then
    // it would keep hashing keys over the old partition count. A fresh producer sees the new one.
    if (progress.raised) this.replaceProducer();
  }

  private async ensureTopicsOnce(admin: Admin, wanted: Map<string, number>, progress: { raised: boolean }): Promise<void> {
    const existing = await existingOf(admin, [...wanted.keys()]);
    const missing = [...wanted].filter(([name]) => !existing.has(name));
    if (missing.length > 0) {
      // Resolves false when another process created one of them first; the check below still
      // raises its partitions if that process asked for fewer.
      await admin.createTopics({ topics: missing.map(([topic, numPartitions]) => ({ topic, numPartitions })), waitForLeaders: true, timeout: 30_000 });
    }
    const short = await this.topicsShort(admin, wanted);
    if (short.length === 0) return;
    progress.raised = true;
    try {
      await admin.createPartitions({ topicPartitions: short.map(([topic, count]) => ({ topic, count })) });
    } catch (err) {
      // Lost a race with another process raising them: fine if the count is now high enough.
      if ((await this.topicsShort(admin, wanted)).length > 0) throw err;
    }
    // An increase racing a topic's creation can be acknowledged and still not stick (seen on
    // KRaft): only the metadata says it is done, otherwise ensureTopics goes round again.
    const still = await this.topicsShort(admin, wanted);
    if (still.length) throw Object.assign(new Error(`partitions not raised yet: ${still.map(([t, n]) => `${t}→${n}`).join(", ")}`), { retriable: true });
  }

  async deleteTopics(names: string[]): Promise<void> {
    this.assertOpen();
    if (names.length === 0) return;
    await this.withAdmin(async (admin) => {
      const unique = [...new Set(names)];
      const existing = await existingOf(admin, unique);
      // Deleting a topic that does not exist is not an error, so cleanup can be repeated.
      const topics = unique.filter((n) => existing.has(n));
      if (topics.length > 0) await admin.deleteTopics({ topics });
    });
  }

  async lag(group: string, topics: string[]): Promise<PartitionLag[]> {
    this.assertOpen();
    // A topic created a moment ago may have no partition leader yet (NOT_LEADER_FOR_PARTITION),
    // which kafkajs's admin does not retry itself.
    return untilSettled(
      LAG_DEADLINE_MS,
      () =>
        this.withAdmin(async (admin, lease) => {
          const unique = [...new Set(topics)];
          if (unique.length === 0) return [];
          const existing = await existingOf(admin, unique);
          const names = unique.filter((t) => existing.has(t));
          for (const name of names) lease.targets.add(name);
          return names.length === 0 ? [] : this.lagOnce(admin, group, names);
        }),
      (err, attempt) => this.logger.warn({ err, group, attempt }, "bus: kafka offsets not readable yet; retrying"),
    );
  }

  private async lagOnce(admin: Admin, group: string, names: string[]): Promise<PartitionLag[]> {
    const committed = new Map<string, number>();
    // Offsets are "-1" where the group never committed.
    for (const t of await admin.fetchOffsets({ groupId: group, topics: names })) {
      for (const p of t.partitions) if (Number(p.offset) >= 0) committed.set(`${t.topic}/${p.partition}`, Number(p.offset));
    }
    const out: PartitionLag[] = [];
    for (const topic of names) {
      for (const p of await topicOffsets(admin, topic)) {
        const end = Number(p.high);
        const start = Number(p.low);
        const at = committed.get(`${topic}/${p.partition}`);
        out.push({ topic, partition: p.partition, end, committed: at ?? null, lag: Math.max(0, end - Math.max(at ?? start, start)) });
      }
    }
    return out.sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.allSettled([...this.subscriptions].map((s) => s.stop()));
      const producer = this.producer;
      this.producer = undefined;
      const admin = this.adminLease;
      this.adminLease = undefined;
      await Promise.allSettled([producer?.retire(), ...this.retiring, admin?.ready.then((a) => a.disconnect())]);
    })();
    return this.closing;
  }

  private async topicsShort(admin: Admin, wanted: Map<string, number>): Promise<Array<[string, number]>> {
    const { topics } = await admin.fetchTopicMetadata({ topics: [...wanted.keys()] });
    const counts = new Map(topics.map((t) => [t.name, t.partitions.length]));
    const unseen = [...wanted.keys()].filter((name) => !counts.has(name));
    // Created a moment ago by another process and not in the metadata yet: not known to be
    // large enough, so ensureTopics tries again.
    if (unseen.length) throw Object.assign(new Error(`topics not in the metadata yet: ${unseen.join(", ")}`), { retriable: true });
    return [...wanted].filter(([name, partitions]) => counts.get(name)! < partitions);
  }

  // Connected on first use and reused; a failed connect is forgotten so the next publish retries.
  private producerHandle(): ProducerHandle {
    if (!this.producer) {
      const handle = new ProducerHandle(
        this.kafka.producer({
          idempotent: true,
          // kafkajs keeps the idempotent sequence numbers correct only with one request in flight.
          maxInFlightRequests: 1,
          // Explicit, which also silences kafkajs' warning about the v2 default partitioner.
          createPartitioner: Partitioners.DefaultPartitioner,
          // Topics are made by ensureTopics only, with their partition count. A broker's default
          // auto.create.topics.enable=true would otherwise bring back a deleted app's topics
          // (with the broker's partition count) the moment a late message is sent to them.
          allowAutoTopicCreation: false,
        }),
      );
      handle.ready.catch(() => {
        if (this.producer === handle) this.producer = undefined;
      });
      this.producer = handle;
    }
    return this.producer;
  }

  // The current producer, or only `which` if it still is the current one.
  private replaceProducer(which?: ProducerHandle): void {
    const old = this.producer;
    if (!old || (which && old !== which)) return;
    this.producer = undefined;
    const retired: Promise<void> = old
      .retire()
      .catch((err) => this.logger.warn({ err }, "bus: disconnecting a replaced producer failed"))
      .finally(() => this.retiring.delete(retired));
    this.retiring.add(retired);
  }

  // Connected on first use and shared. kafkajs's admin refreshes the metadata of every topic it
  // was ever asked about, so once another client deletes one of them each refresh (and so each
  // createTopics) fails UNKNOWN_TOPIC_OR_PARTITION, for good: such an admin, like one that failed
  // to connect, is replaced, and the caller's retry gets a new one that knows no topic.
  private async withAdmin<T>(work: (admin: Admin, lease: AdminLease) => Promise<T>): Promise<T> {
    let lease = this.adminLease;
    if (!lease) {
      const admin = this.kafka.admin();
      lease = this.adminLease = { ready: admin.connect().then(() => admin), users: 0, retired: false, targets: new Set() };
    }
    lease.users++;
    try {
      const result = await work(await lease.ready, lease);
      if (lease.targets.size > ADMIN_TARGET_LIMIT) {
        lease.retired = true;
        if (this.adminLease === lease) this.adminLease = undefined;
      }
      return result;
    } catch (err) {
      const connected = await lease.ready.then(() => true, () => false);
      if (!connected || kafkaErrorIs(err, "UNKNOWN_TOPIC_OR_PARTITION")) {
        lease.retired = true;
        if (this.adminLease === lease) this.adminLease = undefined;
      }
      throw err;
    } finally {
      lease.users--;
      if (lease.retired && lease.users === 0) lease.ready.then((a) => a.disconnect()).catch(() => {});
    }
  }

  private assertOpen(): void {
    if (this.closing) throw new Error("KafkaBus is closed");
  }
}

class ProducerHandle {
  readonly ready: Promise<void>;
  private readonly inflight = new Set<Promise<unknown>>();

  constructor(private readonly producer: Producer) {
    this.ready = producer.connect();
  }

  send(record: ProducerRecord): Promise<unknown> {
    const op = this.ready.then(() => this.producer.send(record));
    this.inflight.add(op);
    op.finally(() => this.inflight.delete(op)).catch(() => {});
    return op;
  }

  async retire(): Promise<void> {
    await Promise.allSettled([...this.inflight]);
    await this.producer.disconnect();
  }
}

interface SubscriptionDeps {
  kafka: Kafka;
  logger: BusLogger;
  tuning: Tuning;
  listTopics: () => Promise<string[]>;
  // The group's committed offsets of a topic, with the metadata committed along.
  fetchCommitted: (group: string, topic: string) => Promise<Array<{ partition: number; offset: string; metadata: string }>>;
  onStop: (s: KafkaSubscription) => void;
}

// What a Kafka subscription hands its handler beyond the Bus contract (bus.types.ts has no place
// for it yet; handlers use it where present, duck-typed): a handler that works through a large
// message in steps records how far it got with checkpoint(), which commits the message's own
// offset (still unhandled) with `progress` as the offset's metadata. Whoever gets the message
// next — this process after a rebalance or a consumer restart, or another member after a crash —
// finds it in `progress` and carries on from there instead of redoing the steps.
export interface CheckpointedBusMessage extends BusMessage {
  // The last checkpoint of this very message (same partition and offset), if any.
  progress?: string;
  // Durable when it resolves (a failed commit is logged; the step is then redone after a crash).
  checkpoint(progress: string): Promise<void>;
  // True once the batch has used up the subscription's yieldAfterMs: the handler should stop at
  // its next checkpoint and answer YIELDED (it gets the message again, with that progress).
  shouldYield(): boolean;
}

// This process's memory of one partition: the offsets its handler finished (one contiguous run,
// [from, below)), the handler running now, and the last checkpoint.
interface PartitionMemory {
  from: bigint;
  below: bigint;
  running?: Promise<void>;
  checkpoint?: { offset: string; progress: string };
}

// Backoff for rebuilding a consumer that kafkajs gave up on.
const RELAUNCH: RetryPolicy = { initialMs: 1000, maxMs: 30_000 };

const partitionKey = (topic: string, partition: number) => `${partition}:${topic}`;

// One kafkajs consumer per subscription, replaced when kafkajs gives up on it after a crash or
// when a pattern starts matching other topics (kafkajs resolves patterns only once, at subscribe).
//
// Delivery uses eachBatch without auto-resolve: an offset is resolved only after its handler
// resolved, and committed at once (a failed commit is left to kafkajs, which commits resolved
// offsets at the end of each batch, before a rebalance and when stopping): a crashed consumer
// hands on at most the message it was working on, not a second's worth of finished ones.
// A message this process already handled is not handed to the handler again when kafkajs
// delivers it once more (its consumer restarted after a broker failure, a rebalance gave the
// partition back before the commit got through), and a new kafkajs runner waits for the handler
// an old one left running on the partition, so one process never works on a message twice. A failed message is not waited on inside
// the batch: its partition is paused for the backoff and the batch returns, so the partitions
// fetched with it keep flowing; on resume kafkajs fetches again from the last resolved offset,
// i.e. from the failed message. Nothing is skipped and nothing is committed unhandled.
class KafkaSubscription implements Subscription {
  private readonly logger: BusLogger;
  private readonly retry: RetryPolicy;
  private readonly patterns: TopicPatterns;
  private readonly fromBeginning: boolean;
  private consumer?: Consumer;
  private topics: string[] = [];
  private paused = false;
  private stopping = false;
  private stopped?: Promise<void>;
  // Consumer replacements and the final teardown run one at a time, in order.
  private lifecycle: Promise<void> = Promise.resolve();
  private readonly retryPaused = new Map<string, { topic: string; partition: number; timer: NodeJS.Timeout }>();
  private readonly failures = new Map<string, { offset: string; attempts: number }>();
  private relaunchAttempts = 0;
  private relaunchTimer?: NodeJS.Timeout;
  private readonly memory = new Map<string, PartitionMemory>();
  // The group's committed offset and metadata per partition, read once per assignment.
  private readonly committed = new Map<string, Promise<{ offset: string; metadata: string } | undefined>>();
  private watchTimer?: NodeJS.Timeout;
  // When the pattern's topics were last re-subscribed to (0: never).
  private resubscribedAt = 0;

  constructor(
    private readonly deps: SubscriptionDeps,
    private readonly options: SubscribeOptions,
  ) {
    this.logger = deps.logger;
    this.retry = retryPolicy(options.retry);
    this.patterns = compileTopicPatterns(options.topics);
    this.fromBeginning = options.fromBeginning ?? true;
  }

  async start(): Promise<void> {
    this.topics = await this.resolveTopics();
    if (this.topics.length > 0) {
      // Retried: a topic created a moment ago by another process, a coordinator still loading.
      await untilSettled(
        SETTLE_DEADLINE_MS,
        () => {
          const launching = this.lifecycle.then(() => this.launch());
          this.lifecycle = launching.catch(() => {});
          return launching;
        },
        (err, attempt) => this.logger.warn({ err, group: this.options.group, attempt }, "bus: consumer could not start yet; retrying"),
      );
    } else {
      this.logger.info({ group: this.options.group, topics: String(this.options.topics) }, "bus: no topic matches the subscription yet");
    }
    this.scheduleWatch();
  }

  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.applyPauses();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.applyPauses();
  }

  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.stopping = true;
      clearTimeout(this.watchTimer);
      clearTimeout(this.relaunchTimer);
      // kafkajs' disconnect waits for the batch in progress; eachBatch sees `stopping` and ends
      // after the in-flight handler; the runner then commits what was resolved and leaves.
      await this.enqueue(() => this.teardown());
      this.deps.onStop(this);
    })();
    return this.stopped;
  }

  private async launch(): Promise<void> {
    const { group } = this.options;
    const { tuning } = this.deps;
    const consumer = this.deps.kafka.consumer({
      groupId: group,
      sessionTimeout: tuning.sessionTimeoutMs,
      heartbeatInterval: tuning.heartbeatIntervalMs,
      maxWaitTimeInMs: tuning.maxWaitTimeMs,
      // As for the producer: subscribing to a deleted topic must not recreate it.
      allowAutoTopicCreation: false,
      retry: { restartOnFailure: async () => !this.stopping },
    });
    this.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, (event) => {
      this.relaunchAttempts = 0;
      this.committed.clear();
      this.logger.info({ group, memberId: event.payload.memberId, assignment: event.payload.memberAssignment }, "bus: consumer joined its group");
      // A restarted kafkajs consumer starts unpaused; carry over ours.
      this.applyPauses(consumer);
    });
    consumer.on(consumer.events.CRASH, (event) => this.onCrash(consumer, event.payload.error, event.payload.restart));
    try {
      await consumer.connect();
      await consumer.subscribe({ topics: this.topics, fromBeginning: this.fromBeginning });
      // "Start at the end" is resolved by kafkajs at the first fetch, not at join. Waiting for it
      // means a message published after subscribe() resolved is never skipped.
      const positioned = this.fromBeginning ? undefined : firstEvent(consumer, [consumer.events.FETCH, consumer.events.CRASH]);
      await consumer.run({
        autoCommit: true,
        autoCommitInterval: 1000,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: this.options.partitionsConcurrently ?? 1,
        eachBatch: (payload) => this.eachBatch(consumer, payload),
      });
      await positioned;
    } catch (err) {
      if (this.consumer === consumer) this.consumer = undefined;
      await consumer.disconnect().catch(() => {});
      throw err;
    }
  }

  // kafkajs heartbeats only when asked: a handler that runs longer than the session timeout (a
  // retry waiting for its time, a slow provider) would get this member evicted and its
  // partitions moved mid-message. Heartbeats go on while the batch is worked on; a rebalance they
  // report is acted on by the heartbeat before the next message, once the handler is done.
  private async eachBatch(consumer: Consumer, payload: EachBatchPayload): Promise<void> {
    const beating = setInterval(() => void payload.heartbeat().catch(() => {}), this.deps.tuning.heartbeatIntervalMs);
    try {
      await this.workBatch(consumer, payload);
    } finally {
      clearInterval(beating);
    }
  }

  private async workBatch(consumer: Consumer, payload: EachBatchPayload): Promise<void> {
    const { batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, uncommittedOffsets, isRunning, isStale } = payload;
    const { topic, partition } = batch;
    const key = partitionKey(topic, partition);
    const { group } = this.options;
    let memory = this.memory.get(key);
    if (!memory) this.memory.set(key, (memory = { from: 0n, below: 0n }));
    // A kafkajs consumer restarted after a failure leaves the old runner's handler running.
    if (memory.running) await memory.running.catch(() => {});
    const commitNow = async () => {
      try {
        await commitOffsetsIfNecessary(uncommittedOffsets());
      } catch (err) {
        this.logger.warn({ err, topic, partition, group }, "bus: committing offsets failed; kafkajs commits them later");
      }
    };
    const started = performance.now();
    const budget = this.options.yieldAfterMs;
    const overBudget = () => budget !== undefined && performance.now() - started >= budget;
    let first = true;
    for (const raw of batch.messages) {
      // What is left unresolved here is fetched again later, starting at this message.
      if (this.stopping || this.paused || consumer !== this.consumer || !isRunning() || isStale() || this.retryPaused.has(key)) return;
      // The other partitions of the consumer wait for this batch to end before they are fetched.
      if (!first && overBudget()) return;
      first = false;
      // Throws while the group rebalances, which ends the batch before another message is
      // started: a partition being handed over is never worked on by two members at once.
      await heartbeat();
      const at = BigInt(raw.offset);
      if (at >= memory.from && at < memory.below) {
        resolveOffset(raw.offset);
        await commitNow();
        continue;
      }
      const message: CheckpointedBusMessage = Object.assign(toBusMessage(topic, partition, raw), {
        checkpoint: async (progress: string) => {
          memory.checkpoint = { offset: raw.offset, progress };
          try {
            await commitOffsetsIfNecessary({ topics: [{ topic, partitions: [{ partition, offset: raw.offset, metadata: progress } as { partition: number; offset: string }] }] });
          } catch (err) {
            this.logger.warn({ err, topic, partition, offset: raw.offset, group }, "bus: committing a checkpoint failed; only this process remembers it");
          }
        },
        shouldYield: overBudget,
      });
      const progress = memory.checkpoint?.offset === raw.offset ? memory.checkpoint.progress : await this.committedProgress(topic, partition, raw.offset);
      if (progress) message.progress = progress;
      const previous = this.failures.get(key);
      const attempt = previous?.offset === raw.offset ? previous.attempts + 1 : 1;
      const running = processWithTrace(message, { system: "kafka", group, attempt }, () => this.options.handler(message));
      // What a restarted runner waits for: settles either way, and its rejection is handled here.
      const settled = running.then(
        () => undefined,
        () => undefined,
      );
      memory.running = settled;
      let outcome: HandlerOutcome;
      try {
        outcome = await running;
      } catch (err) {
        this.failures.set(key, { offset: raw.offset, attempts: attempt });
        if (this.stopping) {
          this.logger.warn({ err, topic, partition, offset: raw.offset, group, attempt }, "bus handler failed while stopping; left uncommitted for the group's next consumer");
          return;
        }
        const delay = backoffDelay(attempt, this.retry);
        this.logger.warn({ err, topic, partition, offset: raw.offset, group, attempt, retryInMs: delay }, "bus handler failed; retrying the same message after a backoff");
        this.retryLater(consumer, topic, partition, delay);
        return;
      } finally {
        if (memory.running === settled) memory.running = undefined;
      }
      this.failures.delete(key);
      // Stopped at a checkpoint: fetched again (with its progress) after the other partitions.
      if (outcome === YIELDED) return;
      const defer = deferredMs(outcome);
      if (defer !== undefined) {
        this.retryLater(consumer, topic, partition, defer);
        return;
      }
      if (at === memory.below) memory.below = at + 1n;
      else Object.assign(memory, { from: at, below: at + 1n });
      if (memory.checkpoint?.offset === raw.offset) memory.checkpoint = undefined;
      resolveOffset(raw.offset);
      await commitNow();
    }
  }

  // The progress committed with the message's own offset, when the group's committed offset of
  // the partition is this message (read once per partition and assignment; unreadable: none).
  private async committedProgress(topic: string, partition: number, offset: string): Promise<string | undefined> {
    const key = partitionKey(topic, partition);
    let read = this.committed.get(key);
    if (!read) {
      read = this.deps.fetchCommitted(this.options.group, topic).then(
        (partitions) => partitions.find((p) => p.partition === partition),
        (err) => {
          this.logger.warn({ err, topic, partition, group: this.options.group }, "bus: reading the committed offsets failed; no checkpoint");
          return undefined;
        },
      );
      this.committed.set(key, read);
    }
    const c = await read;
    return c && c.offset === offset && c.metadata ? c.metadata : undefined;
  }

  private retryLater(consumer: Consumer, topic: string, partition: number, delayMs: number): void {
    if (consumer !== this.consumer || this.stopping) return;
    const key = partitionKey(topic, partition);
    clearTimeout(this.retryPaused.get(key)?.timer);
    const timer = setTimeout(() => {
      if (this.retryPaused.get(key)?.timer !== timer) return;
      this.retryPaused.delete(key);
      this.applyPauses();
    }, delayMs);
    this.retryPaused.set(key, { topic, partition, timer });
    this.applyPauses(consumer);
  }

  // kafkajs pause state is per consumer incarnation; this derives it from ours every time.
  private applyPauses(consumer = this.consumer): void {
    if (!consumer) return;
    try {
      const all = this.topics.map((topic) => ({ topic }));
      if (this.paused) {
        consumer.pause(all);
        return;
      }
      consumer.resume(all);
      const byTopic = new Map<string, number[]>();
      for (const { topic, partition } of this.retryPaused.values()) byTopic.set(topic, [...(byTopic.get(topic) ?? []), partition]);
      if (byTopic.size > 0) consumer.pause([...byTopic].map(([topic, partitions]) => ({ topic, partitions })));
    } catch (err) {
      // Not running (yet): GROUP_JOIN applies the state once it is.
      this.logger.debug({ err, group: this.options.group }, "bus: pause state deferred until the consumer runs");
    }
  }

  private onCrash(consumer: Consumer, error: Error, restart: boolean): void {
    if (consumer !== this.consumer || this.stopping) return;
    if (restart) {
      this.logger.warn({ err: error, group: this.options.group }, "bus: consumer crashed; kafkajs restarts it");
      return;
    }
    this.logger.error({ err: error, group: this.options.group }, "bus: consumer crashed and kafkajs gave up on it; building a new one");
    this.scheduleRelaunch();
  }

  private scheduleRelaunch(): void {
    if (this.stopping || this.relaunchTimer) return;
    const delay = backoffDelay(++this.relaunchAttempts, RELAUNCH);
    this.relaunchTimer = setTimeout(() => {
      this.relaunchTimer = undefined;
      void this.enqueue(async () => {
        if (this.stopping) return;
        await this.teardown();
        try {
          await this.launch();
        } catch (err) {
          this.logger.error({ err, group: this.options.group, retryInMs: delay }, "bus: starting a new consumer failed");
          this.scheduleRelaunch();
        }
      });
    }, delay);
  }

  private scheduleWatch(): void {
    if (!this.patterns.hasPatterns || this.stopping) return;
    this.watchTimer = setTimeout(() => {
      this.watchTimer = undefined;
      void this.enqueue(async () => {
        if (this.stopping) return;
        const topics = await this.resolveTopics();
        if (sameTopics(topics, this.topics)) return;
        // Many apps created in a row would otherwise rebalance the group at every refresh. A topic
        // gone is taken off at once: a consumer still subscribed to it fails its metadata refreshes.
        const matched = new Set(topics);
        const removed = this.topics.some((t) => !matched.has(t));
        if (!removed && Date.now() - this.resubscribedAt < this.deps.tuning.resubscribeMinIntervalMs) return;
        this.resubscribedAt = Date.now();
        this.logger.info({ group: this.options.group, topics: topics.length <= 20 ? topics : `${topics.length} topics` }, "bus: pattern subscription matches other topics now; re-subscribing");
        await this.teardown();
        this.topics = topics;
        // A topic gone from the list may come back recreated, its offsets starting over.
        for (const key of this.memory.keys()) if (!matched.has(key.slice(key.indexOf(":") + 1))) this.memory.delete(key);
        if (topics.length === 0) return;
        try {
          await this.launch();
        } catch (err) {
          this.logger.error({ err, group: this.options.group }, "bus: starting a new consumer failed");
          this.scheduleRelaunch();
        }
      }).finally(() => this.scheduleWatch());
    }, this.deps.tuning.topicRefreshMs);
  }

  private async resolveTopics(): Promise<string[]> {
    const named = this.patterns.names;
    const matched = this.patterns.hasPatterns ? (await this.deps.listTopics()).filter((t) => this.patterns.matches(t)) : [];
    return [...new Set([...named, ...matched])].sort();
  }

  private async teardown(): Promise<void> {
    const consumer = this.consumer;
    this.consumer = undefined;
    for (const { timer } of this.retryPaused.values()) clearTimeout(timer);
    this.retryPaused.clear();
    if (consumer) await consumer.disconnect().catch((err) => this.logger.warn({ err, group: this.options.group }, "bus: consumer disconnect failed"));
  }

  private enqueue(step: () => Promise<void>): Promise<void> {
    this.lifecycle = this.lifecycle
      .then(step)
      .catch((err) => this.logger.error({ err, group: this.options.group }, "bus: consumer lifecycle step failed"));
    return this.lifecycle;
  }
}

function toBusMessage(topic: string, partition: number, m: KafkaMessage): BusMessage {
  return {
    topic,
    partition,
    offset: m.offset,
    key: m.key ? m.key.toString("utf8") : "",
    value: m.value ?? Buffer.alloc(0),
    headers: decodeHeaders(m.headers),
    timestamp: new Date(Number(m.timestamp)),
  };
}

function decodeHeaders(headers: IHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, raw] of Object.entries(headers ?? {})) {
    // A Kafka header name may repeat; keep the last, the one a re-publisher added.
    const value = Array.isArray(raw) ? raw[raw.length - 1] : raw;
    if (value !== undefined) out[name] = typeof value === "string" ? value : value.toString("utf8");
  }
  return out;
}

function sameTopics(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((t, i) => t === b[i]);
}

function firstEvent(consumer: Consumer, events: string[]): Promise<void> {
  return new Promise((resolve) => {
    const removers = events.map((name) =>
      consumer.on(name as typeof consumer.events.FETCH, () => {
        for (const remove of removers) remove();
        resolve();
      }),
    );
  });
}

// kafkajs logs every rebalance at WARN, yet one happens whenever a member joins or leaves.
const ROUTINE = new Set(["The group is rebalancing, re-joining"]);

function kafkaLogCreator(logger: BusLogger): logCreator {
  return () =>
    ({ namespace, level, log }: LogEntry) => {
      const { message, timestamp: _timestamp, logger: _logger, ...extra } = log;
      const obj = { component: "kafkajs", namespace, ...extra };
      // kafkajs logs each error response of the protocol at ERROR ("Response Heartbeat ... The
      // group is rebalancing") and then throws it to its caller, which retries, rejoins or gives
      // up. Giving up reaches us (crash event, rejected publish) and is logged there, so the
      // response itself is only debug detail.
      const protocolResponse = namespace === "Connection" && message.startsWith("Response ");
      if (level === logLevel.ERROR && !protocolResponse) logger.error(obj, message);
      else if (level === logLevel.WARN && !ROUTINE.has(message)) logger.warn(obj, message);
      else if (level === logLevel.WARN || level === logLevel.INFO) logger.info(obj, message);
      else logger.debug(obj, message);
    };
}
