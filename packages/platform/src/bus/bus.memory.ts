import { setImmediate as nextTurn } from "node:timers/promises";
import { ROOT_CONTEXT, context } from "@opentelemetry/api";
import { consoleBusLogger, type BusLogger } from "./bus.logger.js";
import { backoffDelay, retryPolicy, type RetryPolicy } from "./bus.retry.js";
import { processWithTrace, publishWithTrace } from "./bus.tracing.js";
import { deferredMs, YIELDED, type Bus, type BusMessage, type HandlerOutcome, type OutgoingMessage, type PartitionLag, type SubscribeOptions, type Subscription, type TopicSpec } from "./bus.types.js";
import { compileTopicPatterns, validateMessages, validateSubscribeOptions, validateTopicSpec, type TopicPatterns } from "./bus.validate.js";

// The longest a partition worker runs messages back to back before it lets the event loop turn.
const TURN_EVERY_MS = 10;

// In-process bus for the embedded mode. It keeps Kafka's delivery model rather than a simple
// event emitter so that code written against it behaves the same on Kafka: partitioned topics
// with a retained log, consumer groups with committed offsets, partitions split among a group's
// members, sequential delivery per partition and commit only after the handler resolved.

export interface MemoryBusOptions {
  // Partitions of a topic created implicitly (publish or subscribe to a topic nobody ensured),
  // like the broker's num.partitions.
  defaultPartitions?: number;
  // Messages kept per partition. Older ones are dropped, as Kafka's retention drops segments, so
  // an embedded process running for days does not grow without bound.
  retainPerPartition?: number;
  logger?: BusLogger;
}

export class MemoryBus implements Bus {
  private readonly topics = new Map<string, MemoryTopic>();
  private readonly groups = new Map<string, MemoryGroup>();
  private readonly subscriptions = new Set<MemorySubscription>();
  private readonly defaultPartitions: number;
  private readonly retain: number;
  private readonly logger: BusLogger;
  private closed = false;

  constructor(options: MemoryBusOptions = {}) {
    this.defaultPartitions = options.defaultPartitions ?? 4;
    this.retain = options.retainPerPartition ?? 100_000;
    this.logger = options.logger ?? consoleBusLogger;
    if (!Number.isInteger(this.defaultPartitions) || this.defaultPartitions < 1) throw new RangeError("MemoryBus: defaultPartitions must be a positive integer");
    if (!Number.isInteger(this.retain) || this.retain < 1) throw new RangeError("MemoryBus: retainPerPartition must be a positive integer");
  }

  async publish(topic: string, messages: OutgoingMessage[]): Promise<void> {
    this.assertOpen();
    validateMessages(topic, messages);
    if (messages.length === 0) return;
    await publishWithTrace("memory", topic, messages, async (traced) => {
      const target = this.topics.get(topic) ?? this.createTopic(topic, this.defaultPartitions);
      const timestamp = new Date();
      const touched = new Set<PartitionLog>();
      for (const m of traced) {
        const log = target.logs[target.partitionFor(m.key)]!;
        // Copied so a caller reusing its buffer cannot change what was published.
        log.append({ key: m.key, value: m.value.slice(), headers: m.headers, timestamp });
        touched.add(log);
      }
      for (const log of touched) log.notify();
    });
  }

  async subscribe(options: SubscribeOptions): Promise<Subscription> {
    this.assertOpen();
    validateSubscribeOptions(options);
    // Like Kafka's topic auto-creation: a named topic exists once somebody subscribes to it.
    for (const name of options.topics) {
      if (typeof name === "string" && !this.topics.has(name)) this.createTopic(name, this.defaultPartitions);
    }
    let group = this.groups.get(options.group);
    if (!group) {
      group = new MemoryGroup(options.group, this.topics);
      this.groups.set(options.group, group);
    }
    const subscription = new MemorySubscription(group, options, this.logger, (s) => this.subscriptions.delete(s));
    this.subscriptions.add(subscription);
    group.join(subscription);
    return subscription;
  }

  async ensureTopics(specs: TopicSpec[]): Promise<void> {
    this.assertOpen();
    specs.forEach(validateTopicSpec);
    let changed = false;
    for (const spec of specs) {
      const existing = this.topics.get(spec.name);
      if (!existing) {
        this.topics.set(spec.name, new MemoryTopic(spec.name, spec.partitions, this.retain));
        changed = true;
      } else if (existing.logs.length < spec.partitions) {
        existing.grow(spec.partitions);
        changed = true;
      }
    }
    if (changed) this.rebalanceAll();
  }

  async deleteTopics(names: string[]): Promise<void> {
    this.assertOpen();
    let changed = false;
    for (const name of names) {
      if (!this.topics.delete(name)) continue;
      for (const group of this.groups.values()) group.forgetTopic(name);
      changed = true;
    }
    if (changed) this.rebalanceAll();
  }

  async lag(group: string, topics: string[]): Promise<PartitionLag[]> {
    this.assertOpen();
    const out: PartitionLag[] = [];
    for (const name of new Set(topics)) {
      const topic = this.topics.get(name);
      if (!topic) continue;
      topic.logs.forEach((log, partition) => {
        const committed = this.groups.get(group)?.committedOffset(name, partition) ?? null;
        out.push({ topic: name, partition, end: log.end, committed, lag: log.end - Math.max(committed ?? log.start, log.start) });
      });
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.subscriptions].map((s) => s.stop()));
    this.topics.clear();
    this.groups.clear();
  }

  private createTopic(name: string, partitions: number): MemoryTopic {
    const topic = new MemoryTopic(name, partitions, this.retain);
    this.topics.set(name, topic);
    // Pattern subscriptions of every group may match the new topic.
    this.rebalanceAll();
    return topic;
  }

  private rebalanceAll(): void {
    for (const group of this.groups.values()) group.rebalance();
  }

  private assertOpen(): void {
    if (this.closed) throw new Error("MemoryBus is closed");
  }
}

interface StoredMessage {
  key: string;
  value: Uint8Array;
  headers: Record<string, string>;
  timestamp: Date;
}

class PartitionLog {
  private base = 0;
  private entries: StoredMessage[] = [];
  // Workers to wake when messages arrive.
  readonly watchers = new Set<PartitionWorker>();

  constructor(private readonly retain: number) {}

  get start(): number {
    return this.base;
  }

  get end(): number {
    return this.base + this.entries.length;
  }

  read(offset: number): StoredMessage | undefined {
    return offset >= this.base ? this.entries[offset - this.base] : undefined;
  }

  append(message: StoredMessage): void {
    this.entries.push(message);
    // Trim in chunks so retention costs O(1) per message instead of a shift per append.
    const excess = this.entries.length - this.retain;
    if (excess > Math.max(1, this.retain >> 2)) {
      this.entries = this.entries.slice(excess);
      this.base += excess;
    }
  }

  notify(): void {
    for (const worker of this.watchers) worker.onAppend();
  }
}

class MemoryTopic {
  readonly logs: PartitionLog[] = [];

  constructor(
    readonly name: string,
    partitions: number,
    private readonly retain: number,
  ) {
    this.grow(partitions);
  }

  grow(partitions: number): void {
    while (this.logs.length < partitions) this.logs.push(new PartitionLog(this.retain));
  }

  // FNV-1a: stable across processes and runs, which is what keying needs (not Kafka's murmur2:
  // memory and Kafka never share a topic).
  partitionFor(key: string): number {
    let hash = 0x811c9dc5;
    for (let i = 0; i < key.length; i++) {
      hash ^= key.charCodeAt(i);
      hash = Math.imul(hash, 0x01000193);
    }
    return (hash >>> 0) % this.logs.length;
  }
}

interface Assignment {
  topic: MemoryTopic;
  partition: number;
  member: MemorySubscription;
}

const slotKey = (topic: string, partition: number) => `${partition}:${topic}`;

class MemoryGroup {
  readonly members: MemorySubscription[] = [];
  // topic → partition → next offset to consume.
  private readonly committed = new Map<string, Map<number, number>>();
  private readonly owners = new Map<string, PartitionWorker>();
  // A partition taken from one member is started on the next only after the previous worker has
  // finished its in-flight message and committed it, as Kafka's rebalance waits for members to
  // rejoin: without this the new owner would read the old committed offset and duplicate work.
  private readonly handoffs = new Map<string, Promise<void>>();

  constructor(
    readonly name: string,
    private readonly topics: ReadonlyMap<string, MemoryTopic>,
  ) {}

  join(member: MemorySubscription): void {
    this.members.push(member);
    this.rebalance();
  }

  leave(member: MemorySubscription): void {
    const index = this.members.indexOf(member);
    if (index >= 0) this.members.splice(index, 1);
    this.rebalance();
  }

  forgetTopic(name: string): void {
    this.committed.delete(name);
  }

  committedOffset(topic: string, partition: number): number | undefined {
    return this.committed.get(topic)?.get(partition);
  }

  position(topic: string, partition: number, log: PartitionLog): number {
    const offset = this.committed.get(topic)?.get(partition) ?? log.end;
    // Behind retention: continue at the oldest message still kept.
    return Math.max(offset, log.start);
  }

  commit(topic: MemoryTopic, partition: number, next: number): void {
    // A handler that finishes after its topic was deleted must not leave an offset behind for
    // a new topic of the same name.
    if (this.topics.get(topic.name) !== topic) return;
    let partitions = this.committed.get(topic.name);
    if (!partitions) this.committed.set(topic.name, (partitions = new Map()));
    partitions.set(partition, next);
  }

  // Partitions of every topic some member subscribes to, dealt round-robin over the interested
  // members in join order. Only partitions whose owner changes are stopped and restarted.
  rebalance(): void {
    const desired = new Map<string, Assignment>();
    let turn = 0;
    const topics = [...this.topics.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const topic of topics) {
      const members = this.members.filter((m) => m.wants(topic.name));
      if (members.length === 0) continue;
      for (let partition = 0; partition < topic.logs.length; partition++) {
        desired.set(slotKey(topic.name, partition), { topic, partition, member: members[turn++ % members.length]! });
      }
    }
    for (const [key, worker] of this.owners) {
      const want = desired.get(key);
      if (want && want.member === worker.owner && want.topic === worker.topic) continue;
      this.owners.delete(key);
      worker.revoke();
      this.handoffs.set(key, worker.finished);
      void worker.finished.finally(() => {
        if (this.handoffs.get(key) === worker.finished) this.handoffs.delete(key);
      });
    }
    for (const [key, want] of desired) {
      if (this.owners.has(key)) continue;
      // Fixed now, not when the worker first reads: a message published right after subscribe
      // must not be skipped by a later "start at the end".
      if (this.committed.get(want.topic.name)?.get(want.partition) === undefined) {
        const log = want.topic.logs[want.partition]!;
        this.commit(want.topic, want.partition, want.member.fromBeginning ? log.start : log.end);
      }
      const handoff = this.handoffs.get(key) ?? Promise.resolve();
      this.owners.set(key, new PartitionWorker(this, want.topic, want.partition, want.member, handoff));
    }
  }
}

class MemorySubscription implements Subscription {
  paused = false;
  readonly workers = new Set<PartitionWorker>();
  readonly retry: RetryPolicy;
  readonly slots: Slots;
  readonly fromBeginning: boolean;
  private readonly patterns: TopicPatterns;
  private stopped?: Promise<void>;

  constructor(
    readonly group: MemoryGroup,
    private readonly options: SubscribeOptions,
    readonly logger: BusLogger,
    private readonly onStop: (s: MemorySubscription) => void,
  ) {
    this.retry = retryPolicy(options.retry);
    this.slots = new Slots(options.partitionsConcurrently ?? 1);
    this.fromBeginning = options.fromBeginning ?? true;
    this.patterns = compileTopicPatterns(options.topics);
  }

  wants(topic: string): boolean {
    return this.patterns.matches(topic);
  }

  handle(message: BusMessage): Promise<HandlerOutcome> {
    return this.options.handler(message);
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    for (const worker of this.workers) worker.onResume();
  }

  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.onStop(this);
      // Leaving revokes every partition of this member; each worker ends after its in-flight
      // message, so waiting for them is "finish, commit, leave".
      this.group.leave(this);
      await Promise.all([...this.workers].map((w) => w.finished));
    })();
    return this.stopped;
  }
}

type WorkerState = "busy" | "idle" | "paused" | "backoff";

// Consumes one partition for one member: read at the committed offset, handle, commit, repeat.
class PartitionWorker {
  readonly finished: Promise<void>;
  private revoked = false;
  private state: WorkerState = "busy";
  private wake?: () => void;
  private timer?: NodeJS.Timeout;
  private readonly log: PartitionLog;

  constructor(
    private readonly group: MemoryGroup,
    readonly topic: MemoryTopic,
    private readonly partition: number,
    readonly owner: MemorySubscription,
    handoff: Promise<void>,
  ) {
    this.log = topic.logs[partition]!;
    owner.workers.add(this);
    this.log.watchers.add(this);
    // The loop may be started from inside a publish or a subscribe call; it must not inherit
    // that caller's trace context.
    this.finished = context
      .with(ROOT_CONTEXT, () => this.run(handoff))
      .finally(() => {
        owner.workers.delete(this);
        this.log.watchers.delete(this);
      });
  }

  onAppend(): void {
    if (this.state === "idle") this.wake?.();
  }

  onResume(): void {
    if (this.state === "paused") this.wake?.();
  }

  revoke(): void {
    this.revoked = true;
    this.wake?.();
  }

  private async run(handoff: Promise<void>): Promise<void> {
    await handoff;
    const { group, owner, partition } = this;
    const topic = this.topic.name;
    let attempt = 0;
    let turned = performance.now();
    while (!this.revoked) {
      // Handlers on the memory store never wait for I/O: a partition with a backlog would be one
      // chain of microtasks holding the event loop. A turn every 10 ms of work lets timers,
      // sockets and other requests in.
      if (performance.now() - turned > TURN_EVERY_MS) {
        await nextTurn();
        turned = performance.now();
      }
      if (owner.paused) {
        await this.sleep("paused");
        continue;
      }
      const offset = group.position(topic, partition, this.log);
      const stored = this.log.read(offset);
      if (!stored) {
        await this.sleep("idle");
        continue;
      }
      const release = await owner.slots.acquire();
      if (this.revoked || owner.paused) {
        release();
        continue;
      }
      attempt++;
      const message: BusMessage = {
        topic,
        partition,
        offset: String(offset),
        key: stored.key,
        // Each delivery gets its own copy: a handler of one group must not see another's edits.
        value: stored.value.slice(),
        headers: { ...stored.headers },
        timestamp: stored.timestamp,
      };
      let failure: unknown;
      let failed = false;
      let outcome: HandlerOutcome = undefined;
      try {
        outcome = await processWithTrace(message, { system: "memory", group: group.name, attempt }, () => owner.handle(message));
      } catch (err) {
        failed = true;
        failure = err;
      } finally {
        release();
      }
      // Yielded: delivered again, after the other partitions waiting for a slot.
      if (!failed && outcome === YIELDED) {
        attempt = 0;
        continue;
      }
      const defer = failed ? undefined : deferredMs(outcome);
      if (defer !== undefined) {
        attempt = 0;
        if (this.revoked) break;
        await this.sleep("backoff", defer);
        continue;
      }
      if (!failed) {
        group.commit(this.topic, partition, offset + 1);
        attempt = 0;
        continue;
      }
      // Revoked (stop or rebalance): leave the message uncommitted for the next owner.
      if (this.revoked) break;
      const delay = backoffDelay(attempt, owner.retry);
      owner.logger.warn(
        { err: failure, topic, partition, offset: message.offset, group: group.name, attempt, retryInMs: delay },
        "bus handler failed; retrying the same message after a backoff",
      );
      await this.sleep("backoff", delay);
    }
  }

  private sleep(state: WorkerState, ms?: number): Promise<void> {
    // Revoked while it was busy (a handler, a turn of the event loop): nothing will wake it.
    if (this.revoked) return Promise.resolve();
    this.state = state;
    return new Promise<void>((resolve) => {
      this.wake = () => {
        this.wake = undefined;
        if (this.timer) clearTimeout(this.timer);
        this.timer = undefined;
        this.state = "busy";
        resolve();
      };
      if (ms !== undefined) this.timer = setTimeout(() => this.wake?.(), ms);
    });
  }
}

// Counting semaphore for partitionsConcurrently. Held only while a handler runs, not during a
// retry backoff, so a failing partition never holds back the others.
class Slots {
  private readonly waiting: Array<() => void> = [];

  constructor(private free: number) {}

  async acquire(): Promise<() => void> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      // Hand the slot straight to the next waiter so a newcomer cannot overtake it.
      if (next) next();
      else this.free++;
    };
  }
}
