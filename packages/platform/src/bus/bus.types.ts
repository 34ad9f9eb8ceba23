// The message bus Herald's services talk through. Kafka in production, memory in embedded mode;
// both pass the same contract suite (bus.contract.ts).

export interface OutgoingMessage {
  // Messages with the same key land on the same partition and are consumed in order.
  key: string;
  value: Uint8Array;
  headers?: Record<string, string>;
}

export interface BusMessage {
  topic: string;
  partition: number;
  // Decimal string (Kafka offsets are 64-bit).
  offset: string;
  key: string;
  value: Uint8Array;
  headers: Record<string, string>;
  timestamp: Date;
}

export interface TopicSpec {
  name: string;
  partitions: number;
}

// What a handler answers when it stopped early at a point it can resume from (its last
// checkpoint), because the bus asked it to (shouldYield on the Kafka bus's messages): the message
// stays unhandled and is delivered again once the consumer's other partitions had their turn.
export const YIELDED = "yielded";
// What a handler answers when the message cannot be worked on before a time (a retry's backoff,
// an app whose credentials are cooling down): the message stays unhandled and its partition is
// paused for deferMs — not a failure, and no handler sits waiting, so the consumer's other
// partitions keep flowing.
export interface Deferred {
  deferMs: number;
}
export type HandlerOutcome = void | typeof YIELDED | Deferred;

export const deferredMs = (outcome: HandlerOutcome): number | undefined => (typeof outcome === "object" && outcome !== null ? Math.max(0, outcome.deferMs) : undefined);

export type MessageHandler = (message: BusMessage) => Promise<HandlerOutcome>;

export interface SubscribeOptions {
  // Consumers sharing a group split the partitions; each group sees every message.
  group: string;
  topics: Array<string | RegExp>;
  // Where a group with no committed offset starts. Default: true (never miss what was produced
  // before the first consumer started).
  fromBeginning?: boolean;
  // Partitions handled at once by this consumer; messages of one partition are always sequential.
  partitionsConcurrently?: number;
  handler: MessageHandler;
  // How long one partition's batch may hold up this consumer's next fetch. kafkajs (2.2.4) fetches
  // again only when every batch of the last fetch is done, so one long message (a broadcast's
  // fan-out, a big job) would keep every other partition of the consumer waiting, however many
  // it handles at once. Past this budget no further message of the batch is started, and a
  // handler that checkpoints is asked (shouldYield) to stop at its next checkpoint. Absent: no
  // budget.
  yieldAfterMs?: number;
  // How a failing handler is retried before the consumer gives the message another try later.
  // The offset is committed only after the handler resolves, so nothing is skipped.
  retry?: { initialMs?: number; maxMs?: number };
}

export interface Subscription {
  pause(): void;
  resume(): void;
  // Finishes the messages in flight, commits them and leaves the group.
  stop(): Promise<void>;
}

// How far a consumer group is behind on one partition.
export interface PartitionLag {
  topic: string;
  partition: number;
  // The next offset to be written.
  end: number;
  // The group's next offset to consume; null when the group never committed here.
  committed: number | null;
  // Messages waiting: end - committed, or everything retained when nothing was committed (groups
  // start from the beginning by default).
  lag: number;
}

export interface Bus {
  // Resolves once every message is durable (Kafka: acks from all in-sync replicas, idempotent
  // producer). Trace context of the caller is added to the headers.
  publish(topic: string, messages: OutgoingMessage[]): Promise<void>;
  subscribe(options: SubscribeOptions): Promise<Subscription>;
  // Creates missing topics; raises the partition count of existing ones when asked for more.
  ensureTopics(topics: TopicSpec[]): Promise<void>;
  deleteTopics(names: string[]): Promise<void>;
  // The group's lag on every partition of the topics that exist (missing topics are left out):
  // what lag-based autoscaling and the lag metrics read.
  lag(group: string, topics: string[]): Promise<PartitionLag[]>;
  close(): Promise<void>;
}
