import type { Bus, OutgoingMessage, SubscribeOptions, Subscription, TopicSpec } from "./bus.types.js";
import { validateTopicName } from "./bus.validate.js";

// Several Herald installations (staging and production, or parallel test runs) can share one
// Kafka cluster: each prefixes its topics and consumer groups with its own namespace, so none
// consumes another's publishes, results or token feedback. Services keep using the plain names.
export function namespacedBus(bus: Bus, namespace: string): Bus {
  if (!namespace) return bus;
  validateTopicName(`${namespace}x`);
  const name = (topic: string) => `${namespace}${topic}`;
  const pattern = (p: RegExp) => {
    // Matches the namespaced name exactly when `p` matches the name without the namespace.
    const source = p.source.startsWith("^") ? p.source.slice(1) : `.*?(?:${p.source})`;
    return new RegExp(`^${namespace.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}${source}`, p.flags.replace(/[gy]/g, ""));
  };
  return {
    publish: (topic: string, messages: OutgoingMessage[]) => bus.publish(name(topic), messages),
    subscribe: (options: SubscribeOptions): Promise<Subscription> =>
      bus.subscribe({
        ...options,
        group: name(options.group),
        topics: options.topics.map((t) => (typeof t === "string" ? name(t) : pattern(t))),
        handler: (m) => options.handler({ ...m, topic: m.topic.slice(namespace.length) }),
      }),
    ensureTopics: (topics: TopicSpec[]) => bus.ensureTopics(topics.map((t) => ({ ...t, name: name(t.name) }))),
    deleteTopics: (names: string[]) => bus.deleteTopics(names.map(name)),
    lag: async (group: string, topics: string[]) => (await bus.lag(name(group), topics.map(name))).map((l) => ({ ...l, topic: l.topic.slice(namespace.length) })),
    close: () => bus.close(),
  };
}
