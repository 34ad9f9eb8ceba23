import { status as GrpcStatus } from "@grpc/grpc-js";
import { dispatch, Provider } from "@herald/proto";
import { AppSecrets, basicCredentials, rpc, schemeToken, type AdminClients, type CallScope } from "./admin.clients.js";
import { compatRoutes, formOrJson, type CompatSystem, type JsonObject } from "./compat.api.js";
import { HttpError } from "./http.errors.js";
import type { HttpRequest, Route } from "./http.router.js";
import { MAX_PAYLOAD_DEPTH, tooDeepAt } from "./json.limits.js";

// Pushlet's stateless API: send one notification to a raw device token, registering nothing,
// and read back the tokens the providers declared dead. Same paths, parameters (form or JSON)
// and answers as Pushlet; credentials are the app's (HTTP basic auth, user = the app id,
// password = the app's secret or a SERVER key), provider credentials live in the PushApp.

const WAIT_MS = 25_000;
const MAX_FEEDBACK = 10_000;

const TYPES: Record<string, Provider> = {
  apns: Provider.PROVIDER_APNS,
  gcm: Provider.PROVIDER_FCM,
  fcm: Provider.PROVIDER_FCM,
  hms: Provider.PROVIDER_HMS,
  webpush: Provider.PROVIDER_WEBPUSH,
};
const TYPE_OF: Partial<Record<Provider, string>> = {
  [Provider.PROVIDER_APNS]: "apns",
  [Provider.PROVIDER_FCM]: "fcm",
  [Provider.PROVIDER_HMS]: "hms",
  [Provider.PROVIDER_WEBPUSH]: "webpush",
};

// Pushlet's error bodies: {error: <snake_case code>, message}. Pushlet's documented codes are
// used where Pushlet has the case (missing_application_id, missing_identifier,
// application_not_found, device_token_required, invalid_data_json); the others raised here are
// Herald's additions in Pushlet's style, all listed in PUSHLET_CODES. A refusal from the router
// or a service carries a Herald reason: it is named by its status instead, so Herald's names
// never mix with Pushlet's.
const PUSHLET_CODES = new Set([
  "missing_application_id",
  "missing_identifier",
  "application_not_found",
  "device_token_required",
  "invalid_data_json",
  "unauthorized",
  "application_mismatch",
  "invalid_type",
  "unsupported_gcm_api_key",
  "invalid_since",
  "invalid_badge",
  "empty_notification",
  "unsupported",
  "invalid_device_token",
  "delivery_failed",
]);
const BY_STATUS: Record<number, string> = { 400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed", 413: "request_too_large", 415: "unsupported_media_type", 429: "rate_limited", 503: "unavailable" };
export const pushletError = (e: HttpError) => {
  if (PUSHLET_CODES.has(e.error)) return { error: e.error, message: e.message };
  if (e.error === "INVALID_TOKEN") return { error: "invalid_device_token", message: e.message };
  const error = BY_STATUS[e.status] ?? (e.status >= 500 ? "internal_error" : "invalid_request");
  // Herald's field, in the message: Pushlet's body has no other place for it.
  return { error, message: e.field && !e.message.startsWith(e.field) ? `${e.field}: ${e.message}` : e.message };
};
const fail = (status: number, error: string, message: string) => new HttpError(status, error, message);
const notFound = () => fail(404, "application_not_found", "no application found for the provided application_id");

export function pushletRoutes(c: AdminClients, secrets: AppSecrets): Route[] {
  // The app and how to call for it: basic auth names the app; a Bearer SERVER key with
  // application_id works too. `missing`: Pushlet's refusal when no app is named (send_notification
  // and application_feedback word it differently).
  const auth = (missing: () => HttpError) => async (req: HttpRequest, body: () => JsonObject): Promise<CallScope> => {
    const fields = body();
    const named = typeof fields.application_id === "string" ? fields.application_id : undefined;
    const basic = basicCredentials(req.headers.authorization);
    const bearer = schemeToken(req.headers.authorization, "Bearer");
    const app = basic?.user ?? named;
    if (!app) throw missing();
    if (named && named !== app) throw fail(403, "application_mismatch", "application_id is not the app of the credentials");
    if (!(await secrets.exists(app))) throw notFound();
    const secret = basic?.password ?? bearer;
    if (!secret) throw fail(401, "unauthorized", "send HTTP basic auth: the app id and its secret (or a SERVER key)");
    return secrets.check(app, secret, () => fail(401, "unauthorized", "the credentials are not valid for this application"));
  };

  const system: CompatSystem<CallScope | undefined, "send" | "feedback" | "none"> = {
    tag: "Pushlet",
    errorBody: pushletError,
    decode: formOrJson,
    security: "basic",
    auth: {
      send: auth(() => fail(400, "missing_identifier", "an application_id or gcm_api_key are required for this call")),
      feedback: auth(() => fail(400, "missing_application_id", "an application_id is required for this call")),
      none: async () => undefined,
    },
  };

  return compatRoutes(system, [
    {
      method: "POST",
      pattern: "/send_notification",
      summary: "Pushlet: send to a raw device token {type, application_id, device_token, alert, badge, sound, data}; answered once delivered",
      auth: "send",
      handle: async ({ as, body }) => {
        const fields = body();
        const type = String(fields.type ?? (fields.gcm_api_key !== undefined ? "gcm" : "apns"));
        const provider = TYPES[type];
        if (!provider) throw fail(400, "invalid_type", `type must be one of ${Object.keys(TYPES).join(", ")}`);
        if (fields.gcm_api_key !== undefined) throw fail(400, "unsupported_gcm_api_key", "provider credentials come from the app's PushApp, not from the request");
        const token = typeof fields.device_token === "string" ? fields.device_token : "";
        if (!token) throw fail(400, "device_token_required", "device_token is required, which is registered with the application on your phone");
        const notification = notificationOf(provider, fields);
        const { id } = await rpc(c.dispatch.publish({ recipients: { target: { $case: "tokens", value: { provider, tokens: [token] } } }, notification }, as));
        const done = await settled(c, id, as!);
        return answer(type, id, done);
      },
    },
    {
      method: "POST",
      pattern: "/application_feedback",
      summary: "Pushlet: the tokens providers declared dead {application_id, since}",
      auth: "feedback",
      handle: async ({ as, body }) => {
        const fields = body();
        const since = typeof fields.since === "string" && fields.since ? new Date(fields.since) : undefined;
        if (since && Number.isNaN(since.getTime())) throw fail(400, "invalid_since", "since must be an ISO 8601 time");
        const response: Array<{ device_token: string; timestamp: string; type: string; reason: string }> = [];
        let cursor = "";
        while (response.length < MAX_FEEDBACK) {
          const page = await rpc(c.registry.listTokenFeedback({ ...(since ? { since } : {}), page: { cursor, limit: 1000 } }, as));
          for (const e of page.entries) response.push({ device_token: e.token, timestamp: e.at!.toISOString().replace(/\.\d{3}Z$/, "Z"), type: TYPE_OF[e.provider] ?? "unknown", reason: e.reason });
          if (!page.hasMore) break;
          cursor = page.nextCursor;
        }
        return { body: { response } };
      },
    },
    {
      method: "POST",
      pattern: "/register_application",
      summary: "Pushlet: refused, apps are PushApps",
      auth: "none",
      handle: async () => {
        throw fail(400, "unsupported", "Herald keeps provider credentials in Kubernetes Secrets: describe the application as a PushApp (kubectl apply) instead");
      },
    },
  ]);
}

// Pushlet's parameters as a notification of the token's provider: APNs alert / badge / sound
// plus custom data; FCM, HMS and Web Push carry `data` (a JSON object, or its text).
function notificationOf(provider: Provider, fields: Record<string, unknown>): dispatch.Notification {
  let data: Record<string, unknown> = {};
  if (fields.data !== undefined && fields.data !== "") {
    let parsed = fields.data;
    if (typeof parsed === "string") {
      try {
        parsed = JSON.parse(parsed);
      } catch (err) {
        throw fail(400, "invalid_data_json", `data could not be converted to json: ${(err as Error).message}`);
      }
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw fail(400, "invalid_data_json", "data must be a JSON object");
    // Before anything recursive (JSON.stringify, Struct encoding) sees it; data given as text was
    // not checked by the router.
    if (tooDeepAt(parsed, MAX_PAYLOAD_DEPTH)) throw fail(400, "invalid_data_json", `data nests objects and arrays more than ${MAX_PAYLOAD_DEPTH} levels deep`);
    data = parsed as Record<string, unknown>;
  }
  const strings = Object.fromEntries(Object.entries(data).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
  const n: dispatch.Notification = { templated: false };
  switch (provider) {
    case Provider.PROVIDER_APNS: {
      const aps: Record<string, unknown> = {};
      if (fields.alert !== undefined) aps.alert = String(fields.alert);
      if (fields.badge !== undefined && fields.badge !== "") {
        const badge = Number(fields.badge);
        if (!Number.isInteger(badge) || badge < 0) throw fail(400, "invalid_badge", "badge must be a non-negative integer");
        aps.badge = badge;
      }
      if (fields.sound !== undefined) aps.sound = String(fields.sound);
      if (Object.keys(aps).length === 0 && Object.keys(data).length === 0) throw fail(400, "empty_notification", "send an alert, badge, sound or data");
      n.apns = { headers: Object.keys(aps).length ? {} : { "apns-push-type": "background", "apns-priority": "5" }, payload: { ...data, aps: Object.keys(aps).length ? aps : { "content-available": 1 } } };
      break;
    }
    case Provider.PROVIDER_FCM:
      n.fcm = { message: { ...(Object.keys(strings).length ? { data: strings } : {}), ...(fields.alert !== undefined ? { notification: { body: String(fields.alert) } } : {}) } };
      break;
    case Provider.PROVIDER_HMS:
      n.hms = { message: { data: JSON.stringify(data), ...(fields.alert !== undefined ? { android: { notification: { body: String(fields.alert), click_action: { type: 3 } } } } : {}) } };
      break;
    default:
      n.webpush = { headers: {}, payload: { ...data, ...(fields.alert !== undefined ? { body: String(fields.alert) } : {}) } };
  }
  return n;
}

// Follows the publish until it is final, or answers "accepted" when it takes longer (it will
// still be delivered: the publish is on Kafka).
async function settled(c: AdminClients, id: string, as: { app: string; apiKey?: string }): Promise<dispatch.Publish | undefined> {
  let last: dispatch.Publish | undefined;
  try {
    for await (const update of c.dispatch.watchPublish({ id }, { ...as, deadlineMs: WAIT_MS })) last = update.publish;
  } catch (err) {
    if ((err as { code?: number }).code !== GrpcStatus.DEADLINE_EXCEEDED) throw err; // still running
    return undefined;
  }
  return last;
}

function answer(type: string, id: string, done: dispatch.Publish | undefined) {
  if (!done || dispatch.publishStateToJSON(done.state) !== "PUBLISH_STATE_DONE") return { status: 202, body: { response: "accepted", publish_id: id } };
  const counts = done.counts!;
  const reason = Object.keys(counts.failedByReason)[0] ?? "failed";
  const gcm = type === "gcm" || type === "fcm";
  if (counts.sent > 0) return { body: gcm ? { multicast_id: id, success: 1, failure: 0, canonical_ids: 0, results: [{ message_id: id }] } : { response: "ok", publish_id: id } };
  if (gcm) return { body: { multicast_id: id, success: 0, failure: 1, canonical_ids: 0, results: [{ error: reason }] } };
  if (counts.invalidTokens > 0) throw fail(400, "invalid_device_token", `the provider refused the device token (${reason})`);
  throw fail(502, "delivery_failed", `the provider did not accept the notification (${reason})`);
}
