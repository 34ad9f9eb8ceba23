import { dispatch, Provider } from "@herald/proto";
import { AppSecrets, basicCredentials, rpc, schemeToken, serverKeyApp, type AdminClients, type CallScope } from "./admin.clients.js";
import { HttpError } from "./http.errors.js";
import { MAX_PAYLOAD_DEPTH, tooDeepAt } from "./json.limits.js";

// gorush's notification, as its HTTP API (POST /api/push) and its gRPC API (Gorush.Send) both
// take it, mapped to Herald: one publish to raw tokens (no device registry, as with gorush), or to
// an FCM/HMS topic or condition. gorush has no authentication; Herald always asks for the app's
// credentials: `Bearer <SERVER key>` (the key names its app) or Basic `<app>:<app secret or
// SERVER key>`, in the Authorization header or gRPC metadata.

// gorush's Android/Huawei token cap per notification.
export const MAX_FCM_TOKENS = 500;
// A publish takes at most 1000 raw tokens: longer iOS lists are cut into several publishes.
const TOKENS_PER_PUBLISH = 1000;

export const PLATFORMS = {
  1: { provider: Provider.PROVIDER_APNS, name: "ios" },
  2: { provider: Provider.PROVIDER_FCM, name: "android" },
  3: { provider: Provider.PROVIDER_HMS, name: "huawei" },
} as const;
type Platform = keyof typeof PLATFORMS;

export type GorushNotification = Record<string, unknown>;

// A refusal in gorush's words: its message is the error.
export const gorushFail = (status: number, message: string, field?: string) => new HttpError(status, message, message, field);

// The app of the credentials and how to call for it; 401 when they are missing or not the app's.
export async function gorushScope(secrets: AppSecrets, authorization: string | undefined): Promise<CallScope> {
  const basic = basicCredentials(authorization);
  const bearer = schemeToken(authorization, "Bearer");
  const app = basic?.user ?? serverKeyApp(bearer);
  const secret = basic?.password ?? bearer;
  if (!app || !secret) throw gorushFail(401, "send the app's credentials: Authorization: Bearer <SERVER key>, or Basic <app>:<secret>");
  if (!(await secrets.exists(app))) throw gorushFail(401, "the credentials are not valid for any app");
  return secrets.check(app, secret, () => gorushFail(401, "the credentials are not valid for this app"));
}

// What one notification is sent to, as gorush counts it (a topic message counts once).
export function gorushTargets(n: GorushNotification): { tokens: string[]; platform?: (typeof PLATFORMS)[Platform]; native?: dispatch.NativeTarget; counts: number } {
  const tokens = Array.isArray(n.tokens) ? n.tokens.filter((t): t is string => typeof t === "string") : [];
  if (typeof n.to === "string" && n.to && !n.to.startsWith("/topics/")) tokens.push(n.to);
  const platform = PLATFORMS[n.platform as Platform];
  const native = platform && platform.provider !== Provider.PROVIDER_APNS ? nativeTarget(n) : undefined;
  return { tokens, ...(platform ? { platform } : {}), ...(native ? { native } : {}), counts: tokens.length + (native ? 1 : 0) };
}

// Checks one notification as gorush's worker does and publishes it; a refusal (gorush's, or a
// Herald service's) is thrown as an HttpError.
export async function sendGorush(c: AdminClients, as: CallScope, n: GorushNotification): Promise<void> {
  const { tokens, platform, native } = gorushTargets(n);
  if (!platform) throw gorushFail(400, "platform must be 1 (iOS), 2 (Android) or 3 (Huawei)", "platform");
  if (!native && tokens.length === 0) throw gorushFail(400, "tokens must not be nil or empty", "tokens");
  if (platform.provider !== Provider.PROVIDER_APNS && tokens.length > MAX_FCM_TOKENS) throw gorushFail(400, `tokens must not contain more than ${MAX_FCM_TOKENS} elements`, "tokens");
  if (tokens.some((t) => t === "")) throw gorushFail(400, "the token must not be empty", "tokens");
  const deep = tooDeepAt(n, MAX_PAYLOAD_DEPTH);
  if (deep) throw gorushFail(400, `${deep.join(".")}: nested more than ${MAX_PAYLOAD_DEPTH} levels deep`, deep.join("."));
  const request = {
    notification: notificationOf(platform.provider, n),
    priority: n.priority === "high" ? dispatch.Priority.PRIORITY_HIGH : n.priority === "normal" ? dispatch.Priority.PRIORITY_NORMAL : dispatch.Priority.PRIORITY_UNSPECIFIED,
    labels: { source: "gorush", platform: platform.name, ...(typeof n.notif_id === "string" && n.notif_id ? { notif_id: n.notif_id.slice(0, 1024) } : {}) },
  };
  if (native) await rpc(c.dispatch.publish({ ...request, recipients: { target: { $case: "native", value: native } } }, as));
  for (let i = 0; i < tokens.length; i += TOKENS_PER_PUBLISH) {
    await rpc(c.dispatch.publish({ ...request, recipients: { target: { $case: "tokens", value: { provider: platform.provider, tokens: tokens.slice(i, i + TOKENS_PER_PUBLISH) } } } }, as));
  }
}

// Whether a refusal is the notification's own (logged per notification by gorush) rather than
// the request's (credentials, rate, a service down).
export const notificationFault = (err: unknown): err is HttpError => err instanceof HttpError && err.status !== 401 && err.status !== 403 && err.status !== 429 && err.status < 500;

// An Android/Huawei notification to an FCM/HMS topic or condition (gorush's `topic`,
// `condition`, or `to: "/topics/<name>"`).
function nativeTarget(n: Record<string, unknown>): dispatch.NativeTarget | undefined {
  const provider = n.platform === 3 ? Provider.PROVIDER_HMS : Provider.PROVIDER_FCM;
  if (typeof n.condition === "string" && n.condition) return { provider, target: { $case: "condition", value: n.condition } };
  const topic = typeof n.topic === "string" && n.topic ? n.topic : typeof n.to === "string" && n.to.startsWith("/topics/") ? n.to.slice("/topics/".length) : "";
  return topic ? { provider, target: { $case: "topic", value: topic } } : undefined;
}

const str = (v: unknown) => (typeof v === "string" ? v : undefined);
const drop = <T extends Record<string, unknown>>(o: T) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== "")) as Partial<T>;
const object = (v: unknown) => (v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined);

// gorush's fields as each provider's own payload, as gorush builds them.
function notificationOf(provider: Provider, n: Record<string, unknown>): dispatch.Notification {
  const data = object(n.data) ?? {};
  if (provider === Provider.PROVIDER_APNS) {
    const alertFields = object(n.alert) ?? {};
    const alert = drop({ ...alertFields, title: str(n.title) ?? str(alertFields.title), body: str(n.message) ?? str(alertFields.body) });
    const aps = drop({
      alert: Object.keys(alert).length ? alert : undefined,
      badge: typeof n.badge === "number" ? n.badge : undefined,
      sound: typeof n.sound === "string" || object(n.sound) ? n.sound : str(n.name),
      category: str(n.category),
      "thread-id": str(n["thread-id"]),
      "content-available": n.content_available === true ? 1 : undefined,
      "mutable-content": n.mutable_content === true ? 1 : undefined,
      "interruption-level": str(n.interruption_level),
      "url-args": Array.isArray(n["url-args"]) ? n["url-args"] : undefined,
    });
    const silent = !aps.alert && !aps.badge && !aps.sound;
    const headers = drop({
      "apns-topic": str(n.topic),
      "apns-priority": n.priority === "normal" || silent ? "5" : n.priority === "high" ? "10" : undefined,
      "apns-expiration": typeof n.expiration === "number" ? String(n.expiration) : undefined,
      "apns-collapse-id": str(n.collapse_id),
      "apns-push-type": str(n.push_type) ?? (silent ? "background" : "alert"),
      "apns-id": str(n.apns_id),
    }) as Record<string, string>;
    return { apns: { headers, payload: { ...data, aps } }, templated: false };
  }
  const fcmNotification = object(n.notification) ?? {};
  const title = str(n.title) ?? str(fcmNotification.title);
  const body = str(n.message) ?? str(fcmNotification.body);
  const image = str(n.image) ?? str(fcmNotification.image);
  const strings = Object.fromEntries(Object.entries(data).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
  if (provider === Provider.PROVIDER_FCM) {
    const android = object(n.android) ?? {};
    const androidNotification = drop({ ...(object(android.notification) ?? {}), sound: str(n.sound) });
    const message = drop({
      notification: title || body || image ? drop({ title, body, image }) : undefined,
      data: Object.keys(strings).length ? strings : undefined,
      android: drop({
        priority: n.priority === "high" ? "HIGH" : n.priority === "normal" ? "NORMAL" : str(android.priority)?.toUpperCase(),
        collapse_key: str(android.collapse_key),
        restricted_package_name: str(android.restricted_package_name),
        notification: Object.keys(androidNotification).length ? androidNotification : undefined,
      }),
    });
    if (message.android && Object.keys(message.android).length === 0) delete message.android;
    return { fcm: { message }, templated: false };
  }
  const huawei = object(n.huawei_notification) ?? {};
  const shown = title || body || Object.keys(huawei).length;
  const message = drop({
    data: str(n.huawei_data) ?? (Object.keys(strings).length ? JSON.stringify(strings) : undefined),
    android: drop({
      urgency: n.priority === "high" ? "HIGH" : n.priority === "normal" ? "NORMAL" : undefined,
      collapse_key: typeof n.huawei_collapse_key === "number" ? n.huawei_collapse_key : undefined,
      ttl: str(n.huawei_ttl),
      bi_tag: str(n.bi_tag),
      fast_app_target: typeof n.fast_app_target === "number" ? n.fast_app_target : undefined,
      notification: shown ? drop({ title, body, image, sound: str(n.sound), click_action: { type: 3 }, ...huawei }) : undefined,
    }),
  });
  return { hms: { message }, templated: false };
}
