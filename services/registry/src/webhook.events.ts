import { dispatch, events, Provider, type WebhookEvent } from "@herald/proto";
import { PROVIDER_NAMES } from "@herald/store";
import { tokenHash } from "@herald/platform";

// What each bus message means to an app's webhooks: its type, a stable id (receivers dedupe
// by it: every source is at-least-once) and the data sent. Pure functions of the messages.

export interface AppEvent {
  app: string;
  id: string;
  type: WebhookEvent;
  at: Date;
  data: Record<string, unknown>;
}

const providerName = (p: Provider) => PROVIDER_NAMES[p] ?? "unknown";
const stateName = (s: dispatch.PublishState) => dispatch.publishStateToJSON(s).replace("PUBLISH_STATE_", "").toLowerCase();

// herald.publish-events: a publish ended (done, cancelled, expired).
export function publishCompleted(m: events.PublishFinished): AppEvent {
  const c = m.counts;
  return {
    app: m.app,
    id: `publish.completed:${m.publishId}`,
    type: "publish.completed",
    at: m.at ?? new Date(),
    data: {
      publishId: m.publishId,
      state: stateName(m.state),
      counts: c && {
        targeted: c.targeted,
        sent: c.sent,
        failed: c.failed,
        invalidTokens: c.invalidTokens,
        expired: c.expired,
        cancelled: c.cancelled,
        deadLettered: c.deadLettered,
        duplicates: c.duplicates,
        retries: c.retries,
        failedByReason: c.failedByReason,
      },
    },
  };
}

// herald.results: a job attempt with deliveries that failed for good (not dead tokens, which are
// token.invalidated, nor retries, which may still succeed).
export function deliveryFailed(m: events.DeliveryResult): AppEvent | undefined {
  if (m.failed <= 0 && m.deadLettered <= 0) return undefined;
  return {
    app: m.app,
    id: `delivery.failed:${m.jobId}:${m.attempt}`,
    type: "delivery.failed",
    at: m.at ?? new Date(),
    data: { publishId: m.publishId, jobId: m.jobId, provider: providerName(m.provider), attempt: m.attempt, failed: m.failed, deadLettered: m.deadLettered, failedByReason: m.failedByReason },
  };
}

// herald.token-feedback: a provider declared a token dead (its device, if any, is removed).
export function tokenInvalidated(m: events.TokenFeedback): AppEvent {
  const at = m.invalidSince ?? new Date();
  const hash = tokenHash(m.token);
  return {
    app: m.app,
    id: `token.invalidated:${providerName(m.provider)}:${hash}:${at.getTime()}`,
    type: "token.invalidated",
    at,
    data: { provider: providerName(m.provider), token: m.token, deviceId: m.deviceId, reason: m.reason, publishId: m.publishId, invalidSince: at.toISOString() },
  };
}

// herald.receipts: a device reported a notification delivered or opened.
export function deviceReceipt(m: events.Receipt): AppEvent | undefined {
  const type = m.status === dispatch.ReceiptStatus.RECEIPT_STATUS_DELIVERED ? "device.acknowledged" : m.status === dispatch.ReceiptStatus.RECEIPT_STATUS_OPENED ? "device.opened" : undefined;
  if (!type) return undefined;
  const at = m.at ?? new Date();
  return { app: m.app, id: `${type}:${m.publishId}:${m.deviceId}`, type, at, data: { publishId: m.publishId, deviceId: m.deviceId, at: at.toISOString() } };
}
