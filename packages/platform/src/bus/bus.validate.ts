import type { OutgoingMessage, SubscribeOptions, TopicSpec } from "./bus.types.js";

// Argument checks shared by both buses, so that what the memory bus accepts in embedded mode is
// exactly what Kafka will accept in production (topic names follow Kafka's rules).

const TOPIC_NAME = /^[a-zA-Z0-9._-]{1,249}$/;

export function validateTopicName(name: string): void {
  if (typeof name !== "string" || !TOPIC_NAME.test(name) || name === "." || name === "..") {
    throw new TypeError(`bus: invalid topic name ${JSON.stringify(name)} (1-249 of [a-zA-Z0-9._-])`);
  }
}

export function validateTopicSpec(spec: TopicSpec): void {
  validateTopicName(spec.name);
  if (!Number.isInteger(spec.partitions) || spec.partitions < 1) {
    throw new RangeError(`bus: topic ${spec.name}: partitions must be a positive integer, got ${spec.partitions}`);
  }
}

export function validateMessages(topic: string, messages: OutgoingMessage[]): void {
  validateTopicName(topic);
  for (const m of messages) {
    if (typeof m.key !== "string") throw new TypeError(`bus: publish to ${topic}: key must be a string`);
    if (!(m.value instanceof Uint8Array)) throw new TypeError(`bus: publish to ${topic}: value must be a Uint8Array`);
    for (const [name, value] of Object.entries(m.headers ?? {})) {
      if (typeof value !== "string") throw new TypeError(`bus: publish to ${topic}: header ${name} must be a string`);
    }
  }
}

export function validateSubscribeOptions(options: SubscribeOptions): void {
  if (typeof options.group !== "string" || options.group.length === 0) throw new TypeError("bus: subscribe needs a group");
  if (!Array.isArray(options.topics) || options.topics.length === 0) throw new TypeError("bus: subscribe needs at least one topic");
  for (const topic of options.topics) if (!(topic instanceof RegExp)) validateTopicName(topic);
  if (typeof options.handler !== "function") throw new TypeError("bus: subscribe needs a handler");
  const concurrency = options.partitionsConcurrently;
  if (concurrency !== undefined && (!Number.isInteger(concurrency) || concurrency < 1)) {
    throw new RangeError("bus: partitionsConcurrently must be a positive integer");
  }
  const budget = options.yieldAfterMs;
  if (budget !== undefined && (!Number.isFinite(budget) || budget <= 0)) throw new RangeError("bus: yieldAfterMs must be a positive number of milliseconds");
}

export interface TopicPatterns {
  readonly names: readonly string[];
  readonly hasPatterns: boolean;
  matches(topic: string): boolean;
}

export function compileTopicPatterns(topics: Array<string | RegExp>): TopicPatterns {
  const names = topics.filter((t): t is string => typeof t === "string");
  // Copies without g/y: those flags make test() stateful through lastIndex.
  const patterns = topics.filter((t): t is RegExp => t instanceof RegExp).map((r) => new RegExp(r.source, r.flags.replace(/[gy]/g, "")));
  const exact = new Set(names);
  return {
    names,
    hasPatterns: patterns.length > 0,
    // Internal topics (__consumer_offsets, ...) never match a pattern, as in Kafka's clients.
    matches: (topic) => exact.has(topic) || (!topic.startsWith("__") && patterns.some((p) => p.test(topic))),
  };
}
