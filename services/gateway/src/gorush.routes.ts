import { dispatch, Provider } from "@herald/proto";
import { AppSecrets, basicCredentials, rpc, schemeToken, type AdminClients, type CallScope } from "./admin.clients.js";
import { HttpError } from "./http.errors.js";
import type { HttpRequest, Route } from "./http.router.js";
import { MAX_BODY_DEPTH, MAX_PAYLOAD_DEPTH, tooDeepAt } from "./json.limits.js";

// gorush's HTTP API: POST /api/push with its notification array (platform 1 iOS, 2 Android,
// 3 Huawei; raw tokens, or an FCM/HMS topic or condition), answered {success, counts, logs}, and
// GET /api/stat/app. Each notification is one publish to raw tokens (a device registry is not
// needed, as with gorush). gorush has no authentication; Herald always asks for the app's
// credentials: `Authorization: Bearer <SERVER key>` (the key names its app) or Basic
// `<app>:<app secret or SERVER key>`.

// gorush's core.max_notification default, and its Android/Huawei token cap per notification.
const MAX_NOTIFICATIONS = 100;
const MAX_FCM_TOKENS = 500;
// A publish takes at most 1000 raw tokens: longer iOS lists are cut into several publishes.
const TOKENS_PER_PUBLISH = 1000;
// Publishes summed by GET /api/stat/app (newest first).
const MAX_STAT_PUBLISHES = 10_000;

const PLATFORMS = {
  1: { provider: Provider.PROVIDER_APNS, name: "ios" },
  2: { provider: Provider.PROVIDER_FCM, name: "android" },
  3: { provider: Provider.PROVIDER_HMS, name: "huawei" },
} as const;
type Platform = keyof typeof PLATFORMS;

// gorush's error body {code, message}; `error` added (the message again) because every refusal of
// the gateway names its error there.
export const gorushError = (e: HttpError) => ({ code: e.status, message: e.message, error: e.message });
const fail = (status: number, message: string) => new HttpError(status, message, message);

interface LogEntry {
  type: "failed-push";
  platform: string;
  token: string;
  message: string;
  error: string;
  notif_id?: string;
}

export function gorushRoutes(c: AdminClients, secrets: AppSecrets, version: string): Route[] {
  const auth = async (req: HttpRequest): Promise<CallScope> => {
    const basic = basicCredentials(req.headers.authorization);
    const bearer = schemeToken(req.headers.authorization, "Bearer");
    // A SERVER key carries its app: hk_s_<app>_<random>.
    const app = basic?.user ?? /^hk_s_([a-z][a-z0-9-]*)_/.exec(bearer ?? "")?.[1];
    const secret = basic?.password ?? bearer;
    if (!app || !secret) throw fail(401, "send the app's credentials: Authorization: Bearer <SERVER key>, or Basic <app>:<secret>");
    if (!(await secrets.exists(app))) throw fail(401, "the credentials are not valid for any app");
    return secrets.check(app, secret, () => fail(401, "the credentials are not valid for this app"));
  };

  const push = async (req: HttpRequest) => {
    const as = await auth(req);
    // gorush decodes the body as JSON whatever its content type (curl -d sends a form type):
    // so does this; what does not decode, or nests too deep, is gorush's answer to a body it
    // cannot bind.
    let body: unknown;
    try {
      body = JSON.parse(req.body.toString("utf8"));
    } catch {
      throw fail(400, "Missing notifications field.");
    }
    if (tooDeepAt(body, MAX_BODY_DEPTH)) throw fail(400, "Missing notifications field.");
    const list = body !== null && typeof body === "object" && !Array.isArray(body) ? (body as { notifications?: unknown }).notifications : undefined;
    if (!Array.isArray(list)) throw fail(400, "Missing notifications field.");
    if (list.length === 0) throw fail(400, "Notifications field is empty.");
    if (list.length > MAX_NOTIFICATIONS) throw fail(400, `Number of notifications(${list.length}) over limit(${MAX_NOTIFICATIONS})`);
    let counts = 0;
    const logs: LogEntry[] = [];
    for (const raw of list) {
      const n = raw !== null && typeof raw === "object" && !Array.isArray(raw) ? (raw as Record<string, unknown>) : {};
      const tokens = Array.isArray(n.tokens) ? n.tokens.filter((t): t is string => typeof t === "string") : [];
      if (typeof n.to === "string" && n.to && !n.to.startsWith("/topics/")) tokens.push(n.to);
      counts += tokens.length;
      const platform = PLATFORMS[n.platform as Platform];
      const native = platform && platform.provider !== Provider.PROVIDER_APNS ? nativeTarget(n) : undefined;
      if (native) counts++;
      // gorush checks each notification in its worker and logs what it refuses: here the same
      // refusals, and a publish Herald refuses, are failed-push log entries.
      const failed = (error: string) => {
        for (const token of tokens.length ? tokens : [""]) logs.push({ type: "failed-push", platform: platform?.name ?? String(n.platform), token, message: typeof n.message === "string" ? n.message : "", error, ...(typeof n.notif_id === "string" ? { notif_id: n.notif_id } : {}) });
      };
      try {
        if (!platform) throw fail(400, "platform must be 1 (iOS), 2 (Android) or 3 (Huawei)");
        if (!native && tokens.length === 0) throw fail(400, "tokens must not be nil or empty");
        if (platform.provider !== Provider.PROVIDER_APNS && tokens.length > MAX_FCM_TOKENS) throw fail(400, `tokens must not contain more than ${MAX_FCM_TOKENS} elements`);
        if (tokens.some((t) => t === "")) throw fail(400, "the token must not be empty");
        const deep = tooDeepAt(n, MAX_PAYLOAD_DEPTH);
        if (deep) throw fail(400, `${deep.join(".")}: nested more than ${MAX_PAYLOAD_DEPTH} levels deep`);
        const request = {
          notification: notificationOf(platform.provider, n),
          priority: n.priority === "high" ? dispatch.Priority.PRIORITY_HIGH : n.priority === "normal" ? dispatch.Priority.PRIORITY_NORMAL : dispatch.Priority.PRIORITY_UNSPECIFIED,
          labels: { source: "gorush", platform: platform.name, ...(typeof n.notif_id === "string" && n.notif_id ? { notif_id: n.notif_id.slice(0, 1024) } : {}) },
        };
        if (native) await rpc(c.dispatch.publish({ ...request, recipients: { target: { $case: "native", value: native } } }, as));
        for (let i = 0; i < tokens.length; i += TOKENS_PER_PUBLISH) {
          await rpc(c.dispatch.publish({ ...request, recipients: { target: { $case: "tokens", value: { provider: platform.provider, tokens: tokens.slice(i, i + TOKENS_PER_PUBLISH) } } } }, as));
        }
      } catch (err) {
        // Not the notification's fault (credentials, rate, a service down): the whole request.
        if (!(err instanceof HttpError) || err.status === 401 || err.status === 403 || err.status === 429 || err.status >= 500) throw err;
        failed(err.field ? `${err.field}: ${err.message}` : err.message);
      }
    }
    return { body: { success: "ok", counts, logs } };
  };

  const stat = async (req: HttpRequest) => {
    const as = await auth(req);
    const by = { ios: { push_success: 0, push_error: 0 }, android: { push_success: 0, push_error: 0 }, huawei: { push_success: 0, push_error: 0 } };
    let total = 0;
    let submitted = 0;
    let succeeded = 0;
    let failed = 0;
    let busy = 0;
    let cursor = "";
    while (submitted < MAX_STAT_PUBLISHES) {
      const page = await rpc(c.dispatch.listPublishes({ labels: { source: "gorush" }, page: { cursor, limit: 1000 } }, as));
      for (const p of page.publishes) {
        submitted++;
        const counts = p.counts;
        total += Number(counts?.targeted ?? 0);
        const platform = by[p.request?.labels.platform as keyof typeof by];
        if (platform) {
          platform.push_success += Number(counts?.sent ?? 0);
          platform.push_error += Number(counts?.failed ?? 0) + Number(counts?.invalidTokens ?? 0) + Number(counts?.expired ?? 0);
        }
        if (p.state === dispatch.PublishState.PUBLISH_STATE_DONE) succeeded++;
        else if (p.state === dispatch.PublishState.PUBLISH_STATE_FAILED || p.state === dispatch.PublishState.PUBLISH_STATE_EXPIRED || p.state === dispatch.PublishState.PUBLISH_STATE_CANCELLED) failed++;
        else busy++;
      }
      if (!page.hasMore) break;
      cursor = page.nextCursor;
    }
    return { body: { version: `herald-${version}`, busy_workers: busy, success_tasks: succeeded, failure_tasks: failed, submitted_tasks: submitted, total_count: total, ...by } };
  };

  const route = (method: Route["method"], pattern: string, summary: string, handle: Route["handle"]): Route => ({ method, pattern, handle, errorBody: gorushError, doc: { tag: "Gorush", summary } });
  return [
    route("POST", "/api/push", "gorush: send {notifications: [{tokens, platform 1|2|3, message, title, topic, data, ...}]} (at most 100) as raw-token publishes; answers {success, counts, logs}", push),
    route("GET", "/api/stat/app", "gorush: the app's gorush publishes summed {total_count, ios/android/huawei {push_success, push_error}, ...}", stat),
  ];
}

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
