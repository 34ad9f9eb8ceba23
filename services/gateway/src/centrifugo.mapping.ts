import { randomUUID } from "node:crypto";
import { common, dispatch, Platform, Provider, registry, topic } from "@herald/proto";
import { HttpError } from "./http.errors.js";
import { MAX_PAYLOAD_DEPTH, tooDeepAt } from "./json.limits.js";

// Centrifugo PRO's push API (what the `cent` clients send) as Herald's native requests, and
// Herald's answers as Centrifugo's results. Pure functions: every field of the params is checked
// here, so hostile input is a CentrifugoError (code 107), never a throw further down.

// Centrifugo's error codes (centrifugal/centrifugo internal/apiproto).
export const CENT = {
  internal: 100,
  unauthorized: 101,
  unknownChannel: 102,
  permissionDenied: 103,
  methodNotFound: 104,
  limitExceeded: 106,
  badRequest: 107,
  notAvailable: 108,
  tooManyRequests: 111,
} as const;

export class CentrifugoError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

const bad = (message: string) => new CentrifugoError(CENT.badRequest, message);

// A refusal of a Herald service (an HttpError from fromGrpcError) as Centrifugo's error. 5xx stay
// internal (100) or not available (108); the message names Herald's reason and field.
export function centrifugoErrorOf(e: HttpError): CentrifugoError {
  const detail = `${e.error}: ${e.field ? `${e.field}: ` : ""}${e.message}`;
  if (e.status === 401) return new CentrifugoError(CENT.unauthorized, "unauthorized");
  if (e.status === 403) return new CentrifugoError(CENT.permissionDenied, `permission denied (${detail})`);
  if (e.status === 429) return new CentrifugoError(e.error === "TOO_MANY_TOPICS" || e.error === "TOO_MANY_DEVICES" ? CENT.limitExceeded : CENT.tooManyRequests, detail);
  if (e.status === 501 || e.status === 503 || e.status === 504) return new CentrifugoError(CENT.notAvailable, `not available (${detail})`);
  if (e.status >= 500) return new CentrifugoError(CENT.internal, "internal server error");
  return new CentrifugoError(CENT.badRequest, `bad request (${detail})`);
}

export type Params = Record<string, unknown>;

export function objectOf(value: unknown, field: string): Params {
  if (value === undefined || value === null) return {};
  if (typeof value !== "object" || Array.isArray(value)) throw bad(`${field} must be an object`);
  return value as Params;
}

const present = (o: Params, key: string) => o[key] !== undefined && o[key] !== null;

function str(o: Params, key: string, field = key): string {
  const v = o[key];
  if (v === undefined || v === null) return "";
  if (typeof v !== "string") throw bad(`${field} must be a string`);
  return v;
}

function required(o: Params, key: string, field = key): string {
  const v = str(o, key, field);
  if (!v) throw bad(`${field} is required`);
  return v;
}

function strings(o: Params, key: string, field = key): string[] {
  const v = o[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== "string")) throw bad(`${field} must be an array of strings`);
  return v as string[];
}

function bool(o: Params, key: string): boolean {
  const v = o[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== "boolean") throw bad(`${key} must be a boolean`);
  return v;
}

function stringMap(o: Params, key: string, field = key): Record<string, string> {
  const v = objectOf(o[key], field);
  for (const [k, s] of Object.entries(v)) if (typeof s !== "string") throw bad(`${field}.${k.slice(0, 40)} must be a string`);
  return v as Record<string, string>;
}

// Centrifugo's limit: Herald pages hold 1..1000 (0 = 100); more is served as 1000.
function limitOf(o: Params): number {
  const v = o.limit;
  if (v === undefined || v === null) return 0;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) throw bad("limit must be a non-negative integer");
  return Math.min(v, 1000);
}

// Unix seconds (Centrifugo's expire_at, send_at) as a Date.
function unixSeconds(o: Params, key: string, field = key): Date | undefined {
  const v = o[key];
  if (v === undefined || v === null || v === 0) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 253_402_300_799) throw bad(`${field} must be a unix time in seconds`);
  return new Date(v * 1000);
}

const PROVIDERS: Record<string, Provider> = { fcm: Provider.PROVIDER_FCM, hms: Provider.PROVIDER_HMS, apns: Provider.PROVIDER_APNS, webpush: Provider.PROVIDER_WEBPUSH };
const PLATFORMS: Record<string, Platform> = { ios: Platform.PLATFORM_IOS, android: Platform.PLATFORM_ANDROID, web: Platform.PLATFORM_WEB };
const PROVIDER_NAMES = new Map(Object.entries(PROVIDERS).map(([k, v]) => [v, k]));
const PLATFORM_NAMES = new Map(Object.entries(PLATFORMS).map(([k, v]) => [v, k]));

function providerOf(name: string, field: string): Provider {
  const p = Object.hasOwn(PROVIDERS, name) ? PROVIDERS[name] : undefined;
  if (p === undefined) throw bad(`${field} must be fcm, hms or apns`);
  return p;
}

function platformOf(name: string, field: string): Platform {
  const p = Object.hasOwn(PLATFORMS, name) ? PLATFORMS[name] : undefined;
  if (p === undefined) throw bad(`${field} must be ios, android or web`);
  return p;
}

const providers = (o: Params, key: string, field = key) => strings(o, key, field).map((p, i) => providerOf(p, `${field}[${i}]`));
const platforms = (o: Params, key: string, field = key) => strings(o, key, field).map((p, i) => platformOf(p, `${field}[${i}]`));

// Centrifugo's provider_tokens: [{provider, tokens: [...]}].
function providerTokens(o: Params, key: string): common.ProviderToken[] {
  const v = o[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw bad(`${key} must be an array of {provider, tokens}`);
  return v.flatMap((entry, i) => {
    const e = objectOf(entry, `${key}[${i}]`);
    const provider = providerOf(required(e, "provider", `${key}[${i}].provider`), `${key}[${i}].provider`);
    return strings(e, "tokens", `${key}[${i}].tokens`).map((token) => ({ provider, token }));
  });
}

// Centrifugo's op: add, remove or set.
function topicOp(o: Params, field: string): topic.TopicOp {
  const op = str(o, "op", field);
  if (op === "add") return topic.TopicOp.TOPIC_OP_ADD;
  if (op === "remove") return topic.TopicOp.TOPIC_OP_REMOVE;
  if (op === "set") return topic.TopicOp.TOPIC_OP_SET;
  throw bad(`${field} must be add, remove or set`);
}

const emptyFilter = (): common.DeviceFilter => common.DeviceFilter.fromPartial({});

// ---- devices ---------------------------------------------------------------------------------

export function registerRequest(p: Params): registry.RegisterDeviceRequest {
  return registry.RegisterDeviceRequest.fromPartial({
    id: str(p, "id"),
    provider: providerOf(required(p, "provider"), "provider"),
    token: required(p, "token"),
    platform: platformOf(required(p, "platform"), "platform"),
    user: str(p, "user"),
    timezone: str(p, "timezone"),
    locale: str(p, "locale"),
    meta: stringMap(p, "meta"),
    tags: stringMap(p, "tags"),
    topics: strings(p, "topics"),
  });
}

// device_update and device_remove name devices by ids, users or provider tokens.
function targetFilter(p: Params): common.DeviceFilter {
  const filter = { ...emptyFilter(), ids: strings(p, "ids"), users: strings(p, "users"), providerTokens: providerTokens(p, "provider_tokens") };
  if (!filter.ids.length && !filter.users.length && !filter.providerTokens.length) throw bad("name the devices with ids, users or provider_tokens");
  return filter;
}

export function updateRequest(p: Params): registry.UpdateDevicesRequest {
  const filter = targetFilter(p);
  const req = registry.UpdateDevicesRequest.fromPartial({ filter });
  if (present(p, "user_update")) req.userUpdate = { user: str(objectOf(p.user_update, "user_update"), "user", "user_update.user") };
  if (present(p, "meta_update")) req.metaUpdate = { meta: stringMap(objectOf(p.meta_update, "meta_update"), "meta", "meta_update.meta") };
  if (present(p, "tags_update")) req.tagsUpdate = { tags: stringMap(objectOf(p.tags_update, "tags_update"), "tags", "tags_update.tags") };
  if (present(p, "locale_update")) req.localeUpdate = { locale: str(objectOf(p.locale_update, "locale_update"), "locale", "locale_update.locale") };
  if (present(p, "timezone_update")) req.timezoneUpdate = { timezone: str(objectOf(p.timezone_update, "timezone_update"), "timezone", "timezone_update.timezone") };
  if (present(p, "topics_update")) {
    const u = objectOf(p.topics_update, "topics_update");
    // The seed's DeviceChannelsUpdate has no op: a missing op replaces, as it did there.
    const op = present(u, "op") ? topicOp(u, "topics_update.op") : topic.TopicOp.TOPIC_OP_SET;
    const ops = { [topic.TopicOp.TOPIC_OP_ADD]: registry.TopicsUpdateOp.TOPICS_UPDATE_OP_ADD, [topic.TopicOp.TOPIC_OP_REMOVE]: registry.TopicsUpdateOp.TOPICS_UPDATE_OP_REMOVE } as Partial<Record<topic.TopicOp, registry.TopicsUpdateOp>>;
    req.topicsUpdate = { topics: strings(u, "topics", "topics_update.topics"), op: ops[op] ?? registry.TopicsUpdateOp.TOPICS_UPDATE_OP_SET };
  }
  return req;
}

export const removeRequest = (p: Params): registry.RemoveDevicesRequest => ({ filter: targetFilter(p) });

// cent's DeviceFilter {ids, users, topics, providers, platforms}; the seed's flat fields (and
// provider_tokens) are read too when there is no filter object.
function deviceFilter(p: Params): common.DeviceFilter {
  const f = present(p, "filter") ? objectOf(p.filter, "filter") : p;
  const at = f === p ? "" : "filter.";
  return {
    ...emptyFilter(),
    ids: strings(f, "ids", `${at}ids`),
    users: strings(f, "users", `${at}users`),
    topics: strings(f, "topics", `${at}topics`),
    providers: providers(f, "providers", `${at}providers`),
    platforms: platforms(f, "platforms", `${at}platforms`),
    providerTokens: providerTokens(f, "provider_tokens"),
  };
}

// The cursor: cent's `cursor`, the seed's `since`.
const cursorOf = (p: Params) => str(p, "cursor") || str(p, "since");

export function listRequest(p: Params): registry.ListDevicesRequest {
  return {
    filter: deviceFilter(p),
    page: { cursor: cursorOf(p), limit: limitOf(p) },
    includeTopics: bool(p, "include_topics"),
    includeTags: bool(p, "include_tags"),
    includeMeta: bool(p, "include_meta"),
    includeTotalCount: bool(p, "include_total_count"),
  };
}

const unix = (d: Date | undefined) => (d ? Math.floor(d.getTime() / 1000) : 0);

// Herald's device as Centrifugo's Device (created_at/updated_at in unix seconds).
export function deviceOf(d: common.Device, include: { topics?: boolean; tags?: boolean; meta?: boolean }): Params {
  return {
    id: d.id,
    platform: PLATFORM_NAMES.get(d.platform) ?? "",
    provider: PROVIDER_NAMES.get(d.provider) ?? "",
    token: d.token,
    user: d.user,
    timezone: d.timezone,
    locale: d.locale,
    created_at: unix(d.createdAt),
    updated_at: unix(d.updatedAt),
    ...(include.meta ? { meta: d.meta } : {}),
    ...(include.tags ? { tags: d.tags } : {}),
    ...(include.topics ? { topics: d.topics } : {}),
  };
}

const page = (r: { nextCursor: string; hasMore: boolean; totalCount?: number | undefined }) => ({
  next_cursor: r.nextCursor,
  has_more: r.hasMore,
  ...(r.totalCount !== undefined ? { total_count: r.totalCount } : {}),
});

export function listResult(req: registry.ListDevicesRequest, r: registry.ListDevicesResponse): Params {
  return { items: r.devices.map((d) => deviceOf(d, { topics: req.includeTopics, tags: req.includeTags, meta: req.includeMeta })), ...page(r) };
}

// ---- topics ----------------------------------------------------------------------------------

export function deviceTopicListRequest(p: Params): topic.ListDeviceTopicsRequest {
  const f = present(p, "filter") ? objectOf(p.filter, "filter") : p;
  const at = f === p ? "" : "filter.";
  const users = strings(f, "device_users", `${at}device_users`);
  const byProvider = providers(f, "device_providers", `${at}device_providers`);
  const byPlatform = platforms(f, "device_platforms", `${at}device_platforms`);
  const tokens = providerTokens(f, "device_provider_tokens");
  if (tokens.length) throw new CentrifugoError(CENT.notAvailable, "not available (device_provider_tokens: filter device_topic_list by device_ids)");
  const narrowed = users.length || byProvider.length || byPlatform.length;
  return {
    deviceIds: strings(f, "device_ids", `${at}device_ids`),
    topics: strings(f, "topics", `${at}topics`),
    topicPrefix: str(f, "topic_prefix", `${at}topic_prefix`),
    page: { cursor: cursorOf(p), limit: limitOf(p) },
    includeDevice: bool(p, "include_device"),
    includeTotalCount: bool(p, "include_total_count"),
    ...(narrowed ? { deviceFilter: { ...emptyFilter(), users, providers: byProvider, platforms: byPlatform } } : {}),
  };
}

// A subscription has no id in Herald: Centrifugo's id is `<device id>:<topic>` (":" is in no
// topic name).
export function deviceTopicListResult(r: topic.ListDeviceTopicsResponse): Params {
  return {
    items: r.items.map((s) => ({ id: `${s.deviceId}:${s.topic}`, device_id: s.deviceId, topic: s.topic, device: s.device ? deviceOf(s.device, {}) : { id: s.deviceId } })),
    ...page(r),
  };
}

export const deviceTopicUpdateRequest = (p: Params): topic.UpdateDeviceTopicsRequest => ({ deviceId: required(p, "device_id"), op: topicOp(p, "op"), topics: strings(p, "topics") });

export function userTopicListRequest(p: Params): topic.ListUserTopicsRequest {
  const f = present(p, "filter") ? objectOf(p.filter, "filter") : p;
  const at = f === p ? "" : "filter.";
  return {
    users: strings(f, "users", `${at}users`),
    topics: strings(f, "topics", `${at}topics`),
    topicPrefix: str(f, "topic_prefix", `${at}topic_prefix`),
    page: { cursor: cursorOf(p), limit: limitOf(p) },
    includeTotalCount: bool(p, "include_total_count"),
  };
}

export function userTopicListResult(r: topic.ListUserTopicsResponse): Params {
  return { items: r.items.map((u) => ({ id: `${u.user}:${u.topic}`, user: u.user, topic: u.topic })), ...page(r) };
}

export const userTopicUpdateRequest = (p: Params): topic.UpdateUserTopicsRequest => ({ user: required(p, "user"), op: topicOp(p, "op"), topics: strings(p, "topics") });

// ---- pushes ----------------------------------------------------------------------------------

// The recipient kinds: cent's filter, the seed's device_ids/topics, and the raw provider ones.
// Exactly one.
function recipientsOf(r: Params): dispatch.Recipients {
  const kinds: dispatch.Recipients[] = [];
  const only = (target: dispatch.Recipients["target"], restrict: Partial<dispatch.Recipients> = {}) => kinds.push(dispatch.Recipients.fromPartial({ ...restrict, target }));
  const list = (values: string[]) => ({ values });
  if (present(r, "filter")) {
    const f = deviceFilter({ filter: r.filter });
    if (f.providerTokens.length) throw bad("recipient.filter.provider_tokens: send to raw tokens with fcm_tokens, hms_tokens or apns_tokens");
    const restrict = { providers: f.providers, platforms: f.platforms };
    const named = [f.ids.length && "ids", f.users.length && "users", f.topics.length && "topics"].filter(Boolean);
    // Herald's publish targets one kind of device set; the providers and platforms narrow it.
    if (named.length > 1) throw new CentrifugoError(CENT.notAvailable, `not available (recipient.filter combines ${named.join(" and ")}: Herald sends to one of ids, users or topics per push)`);
    if (f.ids.length) only({ $case: "deviceIds", value: list(f.ids) }, restrict);
    else if (f.users.length) only({ $case: "users", value: list(f.users) }, restrict);
    else if (f.topics.length) only({ $case: "topics", value: list(f.topics) }, restrict);
    else only({ $case: "all", value: {} }, restrict);
  }
  if (present(r, "device_ids")) only({ $case: "deviceIds", value: list(strings(r, "device_ids", "recipient.device_ids")) });
  if (present(r, "topics")) only({ $case: "topics", value: list(strings(r, "topics", "recipient.topics")) });
  if (present(r, "users")) only({ $case: "users", value: list(strings(r, "users", "recipient.users")) });
  const raw = (key: string, provider: Provider) => {
    if (present(r, key)) only({ $case: "tokens", value: { provider, tokens: strings(r, key, `recipient.${key}`) } });
  };
  raw("fcm_tokens", Provider.PROVIDER_FCM);
  raw("hms_tokens", Provider.PROVIDER_HMS);
  raw("apns_tokens", Provider.PROVIDER_APNS);
  const native = (key: string, provider: Provider, kind: "topic" | "condition") => {
    if (!present(r, key)) return;
    const value = required(r, key, `recipient.${key}`);
    only({ $case: "native", value: { provider, target: kind === "topic" ? { $case: "topic", value } : { $case: "condition", value } } });
  };
  native("fcm_topic", Provider.PROVIDER_FCM, "topic");
  native("fcm_condition", Provider.PROVIDER_FCM, "condition");
  native("hms_topic", Provider.PROVIDER_HMS, "topic");
  native("hms_condition", Provider.PROVIDER_HMS, "condition");
  if (kinds.length !== 1) throw bad("recipient must set exactly one of filter, device_ids, topics, fcm_tokens, fcm_topic, fcm_condition, hms_tokens, hms_topic, hms_condition, apns_tokens");
  return kinds[0]!;
}

// A provider-native payload: a JSON object, nested no deeper than a Struct decodes.
function payload(o: Params, key: string, field: string, need: boolean): Record<string, unknown> | undefined {
  const v = o[key];
  if (v === undefined || v === null) {
    if (need) throw bad(`${field} is required`);
    return undefined;
  }
  if (typeof v !== "object" || Array.isArray(v)) throw bad(`${field} must be a JSON object`);
  const deep = tooDeepAt(v, MAX_PAYLOAD_DEPTH);
  if (deep) throw bad(`${field}.${deep.join(".").slice(0, 200)}: nested more than ${MAX_PAYLOAD_DEPTH} levels deep`);
  return v as Record<string, unknown>;
}

function notificationOf(n: Params, templated: boolean): dispatch.Notification {
  const out: dispatch.Notification = { templated };
  if (present(n, "fcm")) out.fcm = { message: payload(objectOf(n.fcm, "notification.fcm"), "message", "notification.fcm.message", true) };
  if (present(n, "hms")) out.hms = { message: payload(objectOf(n.hms, "notification.hms"), "message", "notification.hms.message", true) };
  if (present(n, "apns")) {
    const a = objectOf(n.apns, "notification.apns");
    out.apns = { headers: stringMap(a, "headers", "notification.apns.headers"), payload: payload(a, "payload", "notification.apns.payload", true) };
  }
  if (!out.fcm && !out.hms && !out.apns) throw bad("notification must carry fcm, hms or apns");
  return out;
}

// Fields Herald does not apply: refused (108), never silently dropped.
const UNSUPPORTED_PUSH = ["localizations", "limit_strategy"] as const;

// The publish uid: the caller's uid (cent sends it on the request, the seed inside the
// notification), else a new one, so cancel_push by the returned uid finds it.
export function publishRequest(p: Params): dispatch.PublishRequest {
  for (const key of UNSUPPORTED_PUSH) if (present(p, key)) throw new CentrifugoError(CENT.notAvailable, `not available (${key} is not supported by Herald)`);
  if (!present(p, "recipient")) throw bad("recipient is required");
  if (!present(p, "notification")) throw bad("notification is required");
  const recipients = recipientsOf(objectOf(p.recipient, "recipient"));
  const n = objectOf(p.notification, "notification");
  const uid = str(p, "uid") || str(n, "uid", "notification.uid") || randomUUID();
  const analytics = str(p, "analytics_uid");
  const expireAt = unixSeconds(n, "expire_at", "notification.expire_at") ?? unixSeconds(p, "expire_at");
  const sendAt = unixSeconds(p, "send_at");
  bool(p, "optimize_for_reliability");
  bool(p, "use_meta");
  return dispatch.PublishRequest.fromPartial({
    recipients,
    notification: notificationOf(n, bool(p, "use_templating")),
    uid,
    ...(expireAt ? { expireAt } : {}),
    ...(sendAt ? { sendAt } : {}),
    labels: { source: "centrifugo", ...(analytics ? { analytics_uid: analytics.slice(0, 1024) } : {}) },
  });
}

export const cancelRequest = (p: Params): dispatch.CancelPublishRequest => ({ id: "", uid: required(p, "uid") });

// update_push_status: cent's analytics_uid (the seed's uid), status delivered or interacted.
export function receiptRequest(p: Params): { uid: string; request: dispatch.ReportReceiptRequest } {
  const uid = str(p, "analytics_uid") || required(p, "uid", "analytics_uid");
  const status = required(p, "status");
  const s = status === "delivered" ? dispatch.ReceiptStatus.RECEIPT_STATUS_DELIVERED : status === "interacted" ? dispatch.ReceiptStatus.RECEIPT_STATUS_OPENED : undefined;
  if (s === undefined) throw bad("status must be delivered or interacted");
  str(p, "msg_id");
  return { uid, request: { publishId: "", publishUid: uid, deviceId: required(p, "device_id"), status: s } };
}
