// The two lanes a publish travels on from fan-out to sender. "urgent" has topics and consumer
// groups of its own, so a broadcast's fan-out and its queued delivery jobs (lane "bulk", on the
// original topic names) never hold up a password reset. Which lane a publish takes:
// @herald/dispatcher's publish.lane.ts.
export const LANES = ["bulk", "urgent"] as const;
export type Lane = (typeof LANES)[number];

// Kafka topic names: part of the contract, next to the messages they carry (events.proto).
export const BusTopics = {
  publishes: "herald.publishes",
  urgentPublishes: "herald.publishes.urgent",
  results: "herald.results",
  fanoutProgress: "herald.fanout-progress",
  tokenFeedback: "herald.token-feedback",
  devices: "herald.devices",
  deadLetter: "herald.deadletter",
  control: "herald.control",
  receipts: "herald.receipts",
  publishEvents: "herald.publish-events",
  webhooks: "herald.webhooks",
  webhookRetries: "herald.webhook-retries",
  webhookDeadLetter: "herald.webhook-deadletter",
  retries: (app: string, provider: string) => `herald.retries.${app}.${provider}`,
  // App ids have no dots (APP_ID_PATTERN), so the ".urgent" suffix cannot be part of a name.
  deliveries: (app: string, provider: string, lane: Lane = "bulk") => `herald.deliveries.${app}.${provider}${lane === "urgent" ? ".urgent" : ""}`,
  publishesOf: (lane: Lane) => (lane === "urgent" ? "herald.publishes.urgent" : "herald.publishes"),
  // A pooled app's jobs and retries (one partition each: the unit the pooled sender schedules,
  // pauses and reads the lag of). Their own names, so that a move between pooled and dedicated
  // senders never lets two consumer groups read one topic.
  pooled: (app: string, provider: string, lane: Lane = "bulk") => `herald.pool.${provider}.${app}${lane === "urgent" ? ".urgent" : ""}`,
  pooledRetries: (app: string, provider: string) => `herald.pool-retries.${provider}.${app}`,
} as const;

// Consumer group names: part of the contract too, since the operator scales senders on their
// lag and every consumer reports its own lag as a metric.
export const BusGroups = {
  fanout: "herald-fanout",
  urgentFanout: "herald-fanout-urgent",
  results: "herald-results",
  tokenFeedback: "herald-registry-token-feedback",
  // The webhook worker: turning events into webhook calls, making the calls, retrying them.
  webhookEvents: "herald-webhook-events",
  webhooks: "herald-webhooks",
  webhookRetries: "herald-webhook-retries",
  // Bulk keeps the name it had before lanes; a bulk group always ends in the provider's name.
  sender: (app: string, provider: string, lane: Lane = "bulk") => `herald-sender-${app}-${provider}${lane === "urgent" ? "-urgent" : ""}`,
  senderRetries: (app: string, provider: string) => `herald-sender-${app}-${provider}-retries`,
  fanoutOf: (lane: Lane) => (lane === "urgent" ? "herald-fanout-urgent" : "herald-fanout"),
  // The pooled senders of a provider: one group per lane, and one for retries, over every pooled app.
  pool: (provider: string, lane: Lane = "bulk") => `herald-pool-${provider}${lane === "urgent" ? "-urgent" : ""}`,
  poolRetries: (provider: string) => `herald-pool-${provider}-retries`,
} as const;

// Every delivery topic of an app's provider, with the group consuming it: what the sender and the
// operator ensure, delete and read the lag of. Retries of both lanes share herald.retries.<app>.
// <provider>: a retry waits out its backoff anyway.
export const deliveryTopicsOf = (app: string, provider: string): Array<{ lane: Lane; topic: string; group: string }> =>
  LANES.map((lane) => ({ lane, topic: BusTopics.deliveries(app, provider, lane), group: BusGroups.sender(app, provider, lane) }));

// The topics of every pooled app of a provider, per lane and for retries, and the app a topic
// belongs to (undefined: not a pooled topic of that kind).
const poolPattern = (provider: string, kind: "pool" | "pool-retries", suffix: string) => new RegExp(`^herald\\.${kind}\\.${provider}\\.([^.]+)${suffix}$`);
export const pooledTopics = (provider: string) => {
  const lanes = LANES.map((lane) => ({ lane, group: BusGroups.pool(provider, lane), pattern: poolPattern(provider, "pool", lane === "urgent" ? "\\.urgent" : "") }));
  const retries = { group: BusGroups.poolRetries(provider), pattern: poolPattern(provider, "pool-retries", "") };
  const appOf = (topic: string): string | undefined => {
    for (const { pattern } of [...lanes, retries]) {
      const m = pattern.exec(topic);
      if (m) return m[1];
    }
    return undefined;
  };
  return { lanes, retries, appOf };
};

// Every topic of a pooled app's provider, what the operator ensures and deletes.
export const pooledTopicsOf = (app: string, provider: string): string[] => [...LANES.map((lane) => BusTopics.pooled(app, provider, lane)), BusTopics.pooledRetries(app, provider)];

// The event types of app webhooks (and of the WebhookDelivery messages carrying them).
export const WEBHOOK_EVENTS = ["publish.completed", "delivery.failed", "token.invalidated", "device.acknowledged", "device.opened"] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];
