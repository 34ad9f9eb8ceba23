import { invalidArgument } from "@herald/platform";
import { dispatch } from "@herald/proto";
import type { ProviderName } from "@herald/store";

// Turns a publish's notification into each provider's own wire payload: the raw provider payload
// when the caller gave one (sent as given), otherwise the portable alert mapped to that provider.
// The fan-out renders it once per publish (or once per device when templated) and the senders
// send the bytes as they are.

export interface ProviderPayload {
  // APNs: the JSON body. FCM / HMS: the `message` without its target. Web Push: the plaintext.
  body: Record<string, unknown>;
  headers: Record<string, string>;
}

export const PAYLOAD_LIMITS: Record<ProviderName, number> = { apns: 4096, fcm: 4096, hms: 4096, webpush: 3993 };
const APNS_VOIP_LIMIT = 5120;
const TARGET_FIELDS = ["token", "topic", "condition"] as const;

// How deeply a raw payload (a google.protobuf.Struct) may nest objects and arrays, the payload
// itself being level 1. ts-proto's decoders give up past 100 nested messages and every JSON
// object level costs three (Struct, its field entry, Value); the deepest carrier of a payload,
// GetPublishResponse → Publish → PublishRequest → Notification → ApnsNotification, adds five,
// so 31 levels is the most every reader decodes. 30 keeps a level in hand, and refusing here
// (rather than letting a reader fail later) is only possible below what the request itself
// decodes, 32. Real APNs/FCM payloads nest a handful of levels.
export const MAX_PAYLOAD_DEPTH = 30;

type Priority = dispatch.Priority;
const { Priority: P } = dispatch;

// Builds the payload for one provider, or undefined when the notification has nothing for it.
export function buildPayload(provider: ProviderName, n: dispatch.Notification, priority: Priority): ProviderPayload | undefined {
  switch (provider) {
    case "apns":
      if (n.apns?.payload) return { body: n.apns.payload, headers: { ...n.apns.headers } };
      return n.alert ? apnsFromAlert(n.alert, priority, n.apns?.headers ?? {}) : undefined;
    case "fcm":
      if (n.fcm?.message) return { body: n.fcm.message, headers: {} };
      return n.alert ? { body: fcmFromAlert(n.alert, priority), headers: {} } : undefined;
    case "hms":
      if (n.hms?.message) return { body: n.hms.message, headers: {} };
      return n.alert ? { body: hmsFromAlert(n.alert, priority), headers: {} } : undefined;
    case "webpush":
      if (n.webpush?.payload) return { body: n.webpush.payload, headers: webPushHeaders(n.webpush.headers, priority) };
      return n.alert ? { body: webPushFromAlert(n.alert), headers: webPushHeaders(n.webpush?.headers ?? {}, priority) } : undefined;
  }
}

// Validates what the caller sent for the given providers: each has a payload, raw messages carry
// no target (Herald sets it), and every payload fits its provider's limit. Errors name the field.
export function checkNotification(n: dispatch.Notification | undefined, providers: ProviderName[], priority: Priority): void {
  if (!n) throw invalidArgument("notification", "is required");
  for (const [field, payload] of [
    ["notification.apns.payload", n.apns?.payload],
    ["notification.fcm.message", n.fcm?.message],
    ["notification.hms.message", n.hms?.message],
    ["notification.webpush.payload", n.webpush?.payload],
  ] as const) {
    if (payload && nestingDepthOver(payload, MAX_PAYLOAD_DEPTH)) {
      throw invalidArgument(field, `nests objects and arrays more than ${MAX_PAYLOAD_DEPTH} levels deep`, "PAYLOAD_TOO_DEEP");
    }
  }
  for (const [field, message] of [["notification.fcm.message", n.fcm?.message], ["notification.hms.message", n.hms?.message]] as const) {
    for (const key of TARGET_FIELDS) {
      if (message && key in message) throw invalidArgument(`${field}.${key}`, "is set by Herald from the recipients; leave it out", "TARGET_IN_PAYLOAD");
    }
  }
  let any = false;
  for (const provider of providers) {
    const payload = buildPayload(provider, n, priority);
    if (!payload) continue;
    any = true;
    const size = Buffer.byteLength(JSON.stringify(payload.body));
    const limit = provider === "apns" && payload.headers["apns-push-type"] === "voip" ? APNS_VOIP_LIMIT : PAYLOAD_LIMITS[provider];
    if (size > limit) {
      const field = n[provider] && (provider === "apns" || provider === "webpush" ? n[provider]?.payload : n[provider]?.message) ? `notification.${provider}` : "notification.alert";
      throw invalidArgument(field, `the ${provider} payload is ${size} bytes; the limit is ${limit}`, "PAYLOAD_TOO_LARGE");
    }
  }
  if (!any) throw invalidArgument("notification", `give an alert or a payload for ${providers.join(", ")}`, "PAYLOAD_REQUIRED");
}

// Whether objects and arrays nest more than `limit` levels (the value itself is level 1). With an
// explicit stack: the value may come from a caller who nested it thousands deep.
export function nestingDepthOver(value: unknown, limit: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== "object") continue;
    if (depth > limit) return true;
    for (const child of Object.values(v)) if (child !== null && typeof child === "object") stack.push([child, depth + 1]);
  }
  return false;
}

function apnsFromAlert(a: dispatch.Alert, priority: Priority, headers: Record<string, string>): ProviderPayload {
  const aps: Record<string, unknown> = {};
  const alert = dropEmpty({ title: a.title, subtitle: a.subtitle, body: a.body });
  if (Object.keys(alert).length) aps.alert = alert;
  if (a.badge !== undefined) aps.badge = a.badge;
  if (a.sound) aps.sound = a.sound;
  if (a.category) aps.category = a.category;
  if (a.threadId) aps["thread-id"] = a.threadId;
  // The notification service extension fetches the image; it needs mutable-content.
  if (a.image) aps["mutable-content"] = 1;
  const custom = dropEmpty({ ...a.data, ...(a.image ? { image: a.image } : {}), ...(a.deepLink ? { deep_link: a.deepLink } : {}) });
  const out: Record<string, string> = { "apns-push-type": "alert", ...headers };
  if (!out["apns-priority"]) out["apns-priority"] = priority === P.PRIORITY_LOW ? "5" : "10";
  if (a.collapseKey && !out["apns-collapse-id"]) out["apns-collapse-id"] = a.collapseKey;
  return { body: { aps, ...custom }, headers: out };
}

function fcmFromAlert(a: dispatch.Alert, priority: Priority): Record<string, unknown> {
  const notification = dropEmpty({ title: a.title, body: a.body, image: a.image });
  const data = dropEmpty({ ...a.data, ...(a.deepLink ? { deep_link: a.deepLink } : {}) });
  const androidNotification = dropEmpty({
    sound: a.sound,
    channel_id: a.channelId,
    click_action: a.category,
    tag: a.collapseKey,
    ...(a.badge !== undefined ? { notification_count: a.badge } : {}),
  });
  return dropEmpty({
    notification: Object.keys(notification).length ? notification : undefined,
    data: Object.keys(data).length ? data : undefined,
    android: dropEmpty({
      priority: priority === P.PRIORITY_HIGH ? "HIGH" : "NORMAL",
      collapse_key: a.collapseKey,
      notification: Object.keys(androidNotification).length ? androidNotification : undefined,
    }),
  });
}

function hmsFromAlert(a: dispatch.Alert, priority: Priority): Record<string, unknown> {
  const data = dropEmpty({ ...a.data, ...(a.deepLink ? { deep_link: a.deepLink } : {}) });
  return dropEmpty({
    // HMS data messages carry one string; the app parses it.
    data: Object.keys(data).length ? JSON.stringify(data) : undefined,
    android: dropEmpty({
      urgency: priority === P.PRIORITY_HIGH ? "HIGH" : "NORMAL",
      collapse_key: a.collapseKey ? 1 : undefined,
      notification: dropEmpty({
        title: a.title,
        body: a.body,
        image: a.image,
        sound: a.sound,
        channel_id: a.channelId,
        tag: a.collapseKey,
        ...(a.badge !== undefined ? { badge: { set_num: a.badge } } : {}),
        // HMS refuses a notification without a click action: open the deep link, else the app.
        click_action: a.deepLink ? { type: 1, intent: a.deepLink } : { type: 3 },
      }),
    }),
  });
}

function webPushFromAlert(a: dispatch.Alert): Record<string, unknown> {
  return dropEmpty({
    title: a.title,
    body: a.body,
    image: a.image,
    badge: a.badge,
    tag: a.collapseKey,
    url: a.deepLink,
    data: Object.keys(a.data).length ? { ...a.data } : undefined,
  });
}

function webPushHeaders(headers: Record<string, string>, priority: Priority): Record<string, string> {
  const urgency = priority === P.PRIORITY_HIGH ? "high" : priority === P.PRIORITY_LOW ? "low" : "normal";
  const out = Object.fromEntries(Object.entries(headers).map(([k, v]) => [canonicalWebPushHeader(k), v]));
  return { Urgency: urgency, ...out };
}

const canonicalWebPushHeader = (name: string) => ({ ttl: "TTL", urgency: "Urgency", topic: "Topic" })[name.toLowerCase()] ?? name;

function dropEmpty<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== "")) as Partial<T>;
}
