import { dispatch, Platform, Provider, topic } from "@herald/proto";
import { AppSecrets, deviceByToken, deviceOwnTopics, reRegister, rpc, schemeToken, type AdminClients, type CallScope } from "./admin.clients.js";
import { compatRoutes, jsonObject, type CompatCall, type CompatEndpoint, type CompatSystem, type JsonObject } from "./compat.api.js";
import { HttpError } from "./http.errors.js";
import type { HttpRequest, Route } from "./http.router.js";
import { MAX_PAYLOAD_DEPTH, tooDeepAt } from "./json.limits.js";

// Pusher Beams compatibility: the paths, bodies, answers, errors and limits of the Beams
// publish, user and device APIs, so an app moves to Herald by pointing its Beams SDKs at the
// gateway. The Beams instance id is the Herald app id; the Beams secret key is the app's user
// token secret (it signs Beams tokens, exactly as Beams does, and authenticates server calls; a
// Herald SERVER key of the app works too). The gateway calls the services with the admin key,
// scoped to the app, and as a CLIENT for the device API, which Beams leaves unauthenticated.

// Beams' limits (its server SDKs check the same).
const MAX_INTERESTS = 100;
const MAX_USERS = 1000;
const MAX_NAME = 164;
const MAX_DEVICE_INTERESTS = 5000;
const INTEREST = /^[A-Za-z0-9_\-=@,.;]+$/;
// Beams' publish body limits: 10 KiB to interests, 200 KiB to users (413 above).
const MAX_INTERESTS_BODY = 10 * 1024;
const MAX_USERS_BODY = 200 * 1024;

const PLATFORMS = {
  apns: { provider: Provider.PROVIDER_APNS, platform: Platform.PLATFORM_IOS },
  fcm: { provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID },
  web: { provider: Provider.PROVIDER_WEBPUSH, platform: Platform.PLATFORM_WEB },
} as const;
type BeamsPlatform = keyof typeof PLATFORMS;

// Beams' error bodies: {error: <status title>, description}. Beams answers 400 for a body that
// is not JSON, 422 for JSON that breaks its schema (counts, names, payloads), 401 for a wrong
// key and 404 for an unknown instance.
const TITLES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  413: "Request Entity Too Large",
  415: "Unsupported Media Type",
  422: "Unprocessable Entity",
  429: "Too Many Requests",
  500: "Internal Server Error",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};
export const beamsError = (e: HttpError) => ({ error: TITLES[e.status] ?? "Error", description: e.message, ...(e.field ? { field: e.field } : {}) });

const fail = (status: number, description: string, field?: string) => new HttpError(status, TITLES[status] ?? "Error", description, field);

// A service refusal as Beams reports it: what the services find wrong in the input (a payload
// over APNs' size, a malformed token, a device over its user's cap) is Beams' 422. A publish
// over the app's max_publish_rate stays 429 (Beams' answer over its own rate limit), with the
// Retry-After header fromGrpcError set, in Beams' body: {error: "Too Many Requests", description}.
const fromService = (e: HttpError) => (e.status === 400 || e.error === "TOO_MANY_DEVICES" ? new HttpError(422, e.error, e.message, e.field) : e);

// Bodies are JSON objects; what breaks Beams' schema, nesting included, is its 422.
function decode(req: HttpRequest): JsonObject {
  try {
    return jsonObject((why) => fail(422, why))(req);
  } catch (err) {
    if (err instanceof HttpError && err.error === "NESTING_TOO_DEEP") throw fail(422, err.message, err.field);
    throw err;
  }
}

export function beamsRoutes(c: AdminClients, secrets: AppSecrets): Route[] {
  // The instance of the path, which must exist (an id no app can have, non-ASCII included, is
  // as unknown as any other).
  const instance = async (req: HttpRequest): Promise<string> => {
    const app = req.params.instance!;
    if (!(await secrets.exists(app))) throw fail(404, "Instance not found");
    return app;
  };

  const system: CompatSystem<CallScope, "secret" | "device"> = {
    tag: "PusherBeams",
    errorBody: beamsError,
    fromService,
    decode,
    auth: {
      // Server calls: `Authorization: Bearer <secret key>` for the instance in the path.
      secret: async (req) => {
        const app = await instance(req);
        const secret = schemeToken(req.headers.authorization, "Bearer");
        if (!secret) throw fail(401, "Missing or malformed Authorization header: send `Authorization: Bearer <secret key>`");
        return secrets.check(app, secret, () => fail(401, "Incorrect API Key"));
      },
      // The device API is public, as in Beams: the instance of the path, called for as a CLIENT
      // where the services distinguish.
      device: async (req) => ({ app: await instance(req) }),
    },
  };

  const publish = async ({ as, body }: CompatCall<CallScope>, target: "interests" | "users") => {
    const names = checkNames(body()[target], target);
    if (body().webhookUrl !== undefined) throw fail(422, "webhookUrl is not supported: configure the app's webhooks instead", "webhookUrl");
    const notification = notificationOf(body());
    const recipients: dispatch.Recipients = {
      target: target === "interests" ? { $case: "topics", value: { values: names } } : { $case: "users", value: { values: names } },
      excludeDeviceIds: [],
      providers: [],
      platforms: [],
    };
    const res = await rpc(c.dispatch.publish({ recipients, notification }, as));
    return { body: { publishId: res.id } };
  };

  const deviceOf = async ({ req, as }: CompatCall<CallScope>) => {
    const platform = platformOf(req.params.platform!);
    const { device } = await rpc(c.registry.getDevice({ id: req.params.device! }, as)).catch((err: unknown) => {
      throw err instanceof HttpError && err.status === 404 ? fail(404, "Device not found") : err;
    });
    if (!device || device.provider !== PLATFORMS[platform].provider) throw fail(404, "Device not found");
    return { app: as.app, platform, device };
  };

  const register = (platform: BeamsPlatform) => async ({ as, body }: CompatCall<CallScope>) => {
    const token = tokenOf(platform, body().token);
    const metadata = metadataOf(body().metadata);
    const { provider, platform: devicePlatform } = PLATFORMS[platform];
    // A token Beams knows keeps its device: same id, user and interests.
    const known = await deviceByToken(c, as, { provider, token });
    if (known) return { body: { id: known.id, initialInterestSet: await reRegister(c, as, known, { meta: { ...known.meta, ...metadata } }) } };
    const { device } = await rpc(c.registry.registerDevice({ provider, platform: devicePlatform, token, meta: metadata }, { ...as, role: "client" }));
    return { body: { id: device!.id, initialInterestSet: [] as string[] } };
  };

  const deleteUser = async ({ req, as }: CompatCall<CallScope>) => {
    await rpc(c.registry.deleteUser({ user: checkName(req.params.user!, "user", 400) }, as));
    return { status: 200 };
  };

  const interests = (op: topic.TopicOp) => async (call: CompatCall<CallScope>) => {
    const { app, device: d } = await deviceOf(call);
    await rpc(c.topic.updateDeviceTopics({ deviceId: d.id, op, topics: [checkName(call.req.params.interest!, "interest", 400)] }, { app, role: "client" }));
    return { status: 200 };
  };

  type Endpoint = CompatEndpoint<CallScope, "secret" | "device">;
  const server = (method: Route["method"], pattern: string, summary: string, handle: Endpoint["handle"], maxBodyBytes?: number): Endpoint => ({ method, pattern, summary, auth: "secret", handle, ...(maxBodyBytes ? { maxBodyBytes } : {}) });
  const deviceApi = (method: Route["method"], pattern: string, summary: string, handle: Endpoint["handle"]): Endpoint => ({ method, pattern, summary, auth: "device", handle, cors: true, security: "none" });
  const device = "/device_api/v1/instances/:instance/devices/:platform/:device";

  return compatRoutes(system, [
    server("POST", "/publish_api/v1/instances/:instance/publishes/interests", "Beams: publish to 1-100 interests (Authorization: Bearer <secret key>, body at most 10 KiB); answers {publishId}", (call) => publish(call, "interests"), MAX_INTERESTS_BODY),
    server("POST", "/publish_api/v1/instances/:instance/publishes/users", "Beams: publish to 1-1000 users (body at most 200 KiB); answers {publishId}", (call) => publish(call, "users"), MAX_USERS_BODY),
    server("DELETE", "/user_api/v1/instances/:instance/users/:user", "Beams: delete a user and every device of theirs", deleteUser),
    // Also under customer_api, the older path of the same call.
    server("DELETE", "/customer_api/v1/instances/:instance/users/:user", "Beams: delete a user (older path)", deleteUser),

    deviceApi("POST", "/device_api/v1/instances/:instance/devices/apns", "Beams device API: register an APNs device {token, bundleIdentifier, metadata}; answers {id, initialInterestSet}", register("apns")),
    deviceApi("POST", "/device_api/v1/instances/:instance/devices/fcm", "Beams device API: register an FCM device {token, metadata}", register("fcm")),
    deviceApi("POST", "/device_api/v1/instances/:instance/devices/web", "Beams device API: register a browser {token: base64 of the PushSubscription JSON, metadata}", register("web")),
    deviceApi("GET", device, "Beams device API: the device {id, userId, metadata}", async (call) => {
      const { device: d } = await deviceOf(call);
      return { body: { id: d.id, userId: d.user, metadata: d.meta } };
    }),
    deviceApi("DELETE", device, "Beams device API: delete the device (clearAllState)", async (call) => {
      const { app, device: d } = await deviceOf(call);
      await rpc(c.registry.removeDevices({ filter: { ids: [d.id] } }, { app }));
      return { status: 200 };
    }),
    deviceApi("PUT", `${device}/metadata`, "Beams device API: replace the SDK metadata", async (call) => {
      const { app, device: d } = await deviceOf(call);
      await rpc(c.registry.updateDevices({ filter: { ids: [d.id] }, metaUpdate: { meta: { ...d.meta, ...metadataOf(call.body()) } } }, { app }));
      return { status: 200 };
    }),
    // FCM token refresh: the same device, a new token.
    deviceApi("PUT", `${device}/token`, "Beams device API: a new token for the device (FCM refresh)", async (call) => {
      const { app, platform, device: d } = await deviceOf(call);
      const token = tokenOf(platform, call.body().token);
      await reRegister(c, { app }, d, { token });
      return { status: 200 };
    }),
    deviceApi("GET", `${device}/interests`, "Beams device API: the device's interests", async (call) => {
      const { app, device: d } = await deviceOf(call);
      return { body: { interests: await deviceOwnTopics(c, { app }, d.id), responseMetadata: {} } };
    }),
    deviceApi("PUT", `${device}/interests`, "Beams device API: set the device's interests {interests}", async (call) => {
      const { app, device: d } = await deviceOf(call);
      const interests = checkNames(call.body().interests, "interests", MAX_DEVICE_INTERESTS, 0);
      await rpc(c.topic.updateDeviceTopics({ deviceId: d.id, op: topic.TopicOp.TOPIC_OP_SET, topics: interests }, { app, role: "client" }));
      return { status: 200 };
    }),
    deviceApi("POST", `${device}/interests/:interest`, "Beams device API: add an interest", interests(topic.TopicOp.TOPIC_OP_ADD)),
    deviceApi("DELETE", `${device}/interests/:interest`, "Beams device API: remove an interest", interests(topic.TopicOp.TOPIC_OP_REMOVE)),
    // setUserId: the Beams token (signed by the app's backend with the secret key) proves the user.
    deviceApi("PUT", `${device}/user`, "Beams device API: bind the user of the Beams token (Authorization: Bearer <Beams token>)", async (call) => {
      const { app, device: d } = await deviceOf(call);
      const token = schemeToken(call.req.headers.authorization, "Bearer");
      if (!token) throw fail(401, "Missing Beams token: send `Authorization: Bearer <token from your auth endpoint>`");
      await rpc(c.registry.bindUser({ deviceId: d.id, userToken: token }, { app, role: "client" }));
      return { status: 200 };
    }),
    deviceApi("GET", "/device_api/v1/instances/:instance/web-vapid-public-key", "Beams device API: the VAPID public key browsers subscribe with", async ({ as }) => {
      const { app } = await rpc(c.apps.getApp({ id: as.app })).catch((err: unknown) => {
        throw err instanceof HttpError && err.status === 404 ? fail(404, "Instance not found") : err;
      });
      if (!app?.vapidPublicKey) throw fail(404, "Web Push is not configured for this instance (no VAPID key)");
      return { body: { vapidPublicKey: app.vapidPublicKey } };
    }),
  ]);
}

function platformOf(value: string): BeamsPlatform {
  if (value === "apns" || value === "fcm" || value === "web") return value;
  throw fail(404, `Unknown device platform "${value}": apns, fcm or web`);
}

// Web devices send their PushSubscription as base64 of its JSON (what the Beams web SDK does).
function tokenOf(platform: BeamsPlatform, value: unknown): string {
  if (typeof value !== "string" || !value) throw fail(422, "token is required", "token");
  if (platform !== "web") return value;
  const decoded = Buffer.from(value, "base64").toString("utf8");
  try {
    JSON.parse(decoded);
  } catch {
    throw fail(422, "token must be the base64 of the PushSubscription's JSON", "token");
  }
  return decoded;
}

function metadataOf(value: unknown): Record<string, string> {
  if (value === undefined || value === null) return {};
  if (typeof value !== "object" || Array.isArray(value)) throw fail(422, "metadata must be an object", "metadata");
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) if (typeof v === "string" && v) out[k] = v;
  return out;
}

// `status`: 422 for a name in the body (schema), 400 for one in the path.
function checkName(value: string, what: string, status: 400 | 422 = 422): string {
  if (value.length === 0 || value.length > MAX_NAME) throw fail(status, `${what} must be 1-${MAX_NAME} characters`, what);
  if (what !== "user" && !INTEREST.test(value)) {
    throw fail(status, `${what} "${value}" contains a forbidden character. Allowed characters are: ASCII upper/lower-case letters, numbers or one of _-=@,.;`, what);
  }
  return value;
}

function checkNames(value: unknown, what: "interests" | "users", max = what === "interests" ? MAX_INTERESTS : MAX_USERS, min = 1): string[] {
  if (!Array.isArray(value)) throw fail(422, `${what} must be an array`, what);
  if (value.length < min) throw fail(422, `Publish requests must target at least one ${what === "interests" ? "interest" : "user"}`, what);
  if (value.length > max) throw fail(422, `Number of ${what} (${value.length}) exceeds maximum of ${max}`, what);
  return value.map((v, i) => {
    if (typeof v !== "string") throw fail(422, `${what}[${i}] is not a string`, what);
    return checkName(v, what === "interests" ? "interest" : "user");
  });
}

// The Beams publish body's per-platform payloads as a Herald notification.
export function notificationOf(body: Record<string, unknown>): dispatch.Notification {
  const apns = object(body.apns, "apns");
  const fcm = object(body.fcm, "fcm");
  const web = object(body.web, "web");
  if (!apns && !fcm && !web) throw fail(422, "A publish must contain at least one of apns, fcm or web");
  // Before anything recursive (Struct encoding, JSON.stringify of fcm.data) sees them.
  for (const [platform, payload] of [["apns", apns], ["fcm", fcm], ["web", web]] as const) {
    const deep = payload && tooDeepAt(payload, MAX_PAYLOAD_DEPTH);
    if (deep) throw fail(422, `${platform}.${deep[0]} nests objects and arrays more than ${MAX_PAYLOAD_DEPTH} levels deep (the ${platform} object being the first)`, `${platform}.${deep[0]}`);
  }
  const notification: dispatch.Notification = { templated: false };
  if (apns) {
    const { collapse_id, expiration, priority, ...payload } = apns;
    const headers: Record<string, string> = {};
    if (collapse_id !== undefined) headers["apns-collapse-id"] = String(collapse_id);
    if (expiration !== undefined) headers["apns-expiration"] = String(expiration);
    if (priority !== undefined) headers["apns-priority"] = String(priority);
    notification.apns = { headers, payload };
  }
  if (fcm) notification.fcm = { message: fcmMessageOf(fcm) };
  if (web) {
    const { time_to_live, ...payload } = web;
    notification.webpush = { headers: time_to_live !== undefined ? { TTL: String(time_to_live) } : {}, payload };
  }
  return notification;
}

// Beams' FCM payload is FCM's legacy format; Herald sends FCM HTTP v1 messages.
function fcmMessageOf(fcm: Record<string, unknown>): Record<string, unknown> {
  const { notification, data, time_to_live, collapse_key, priority } = fcm;
  const n = (object(notification, "fcm.notification") ?? {}) as Record<string, unknown>;
  const message: Record<string, unknown> = {};
  const common: Record<string, unknown> = {};
  if (n.title !== undefined) common.title = n.title;
  if (n.body !== undefined) common.body = n.body;
  if (Object.keys(common).length) message.notification = common;
  if (data !== undefined) {
    const d = object(data, "fcm.data")!;
    // v1 data values are strings.
    message.data = Object.fromEntries(Object.entries(d).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
  }
  const androidNotification: Record<string, unknown> = {};
  for (const [from, to] of [
    ["android_channel_id", "channel_id"],
    ["icon", "icon"],
    ["sound", "sound"],
    ["tag", "tag"],
    ["color", "color"],
    ["click_action", "click_action"],
    ["body_loc_key", "body_loc_key"],
    ["body_loc_args", "body_loc_args"],
    ["title_loc_key", "title_loc_key"],
    ["title_loc_args", "title_loc_args"],
  ] as const) {
    if (n[from] !== undefined) androidNotification[to] = n[from];
  }
  const android: Record<string, unknown> = {};
  if (Object.keys(androidNotification).length) android.notification = androidNotification;
  if (time_to_live !== undefined) android.ttl = `${Number(time_to_live)}s`;
  if (collapse_key !== undefined) android.collapse_key = collapse_key;
  if (priority !== undefined) android.priority = priority === "high" ? "HIGH" : "NORMAL";
  if (Object.keys(android).length) message.android = android;
  return message;
}

function object(value: unknown, what: string): Record<string, unknown> | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "object" || Array.isArray(value)) throw fail(422, `${what} must be an object`, what);
  return value as Record<string, unknown>;
}
