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
} as const;

// Every delivery topic of an app's provider, with the group consuming it: what the sender and the
// operator ensure, delete and read the lag of. Retries of both lanes share herald.retries.<app>.
// <provider>: a retry waits out its backoff anyway.
export const deliveryTopicsOf = (app: string, provider: string): Array<{ lane: Lane; topic: string; group: string }> =>
  LANES.map((lane) => ({ lane, topic: BusTopics.deliveries(app, provider, lane), group: BusGroups.sender(app, provider, lane) }));

// The event types of app webhooks (and of the WebhookDelivery messages carrying them).
export const WEBHOOK_EVENTS = ["publish.completed", "delivery.failed", "token.invalidated", "device.acknowledged", "device.opened"] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];
