// Kafka topic names: part of the contract, next to the messages they carry (events.proto).
export const BusTopics = {
  publishes: "herald.publishes",
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
  deliveries: (app: string, provider: string) => `herald.deliveries.${app}.${provider}`,
} as const;

// Consumer group names: part of the contract too, since the operator scales senders on their
// lag and every consumer reports its own lag as a metric.
export const BusGroups = {
  fanout: "herald-fanout",
  results: "herald-results",
  tokenFeedback: "herald-registry-token-feedback",
  // The webhook worker: turning events into webhook calls, making the calls, retrying them.
  webhookEvents: "herald-webhook-events",
  webhooks: "herald-webhooks",
  webhookRetries: "herald-webhook-retries",
  sender: (app: string, provider: string) => `herald-sender-${app}-${provider}`,
  senderRetries: (app: string, provider: string) => `herald-sender-${app}-${provider}-retries`,
} as const;

// The event types of app webhooks (and of the WebhookDelivery messages carrying them).
export const WEBHOOK_EVENTS = ["publish.completed", "delivery.failed", "token.invalidated", "device.acknowledged", "device.opened"] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];
