import { createHash } from "node:crypto";
import { dispatch, topic } from "@herald/proto";
import { AppSecrets, rpc, type AdminClients, type CallScope } from "./admin.clients.js";
import { channelsError, channelsFail, checkChannelAuth, checkChannelsSignature } from "./channels.signature.js";
import { HttpError } from "./http.errors.js";
import type { HttpRequest, Route } from "./http.router.js";
import { compatRoutes, jsonObject, type CompatCall, type CompatEndpoint, type CompatSystem } from "./compat.api.js";

// Pusher Channels' HTTP API (trigger, batch trigger, channel state, presence users, sendToUser),
// so a backend that uses a Channels server library moves to Herald by changing its host. A
// channel is a Herald topic, an event a publish to the devices subscribed to it (mapped to a push
// notification by eventNotification), a presence member a Herald user with a device on the
// topic. Devices join channels through /apps/:app/subscribe, with Channels' `auth` for private
// and presence channels; a device's socket_id is its `pusher_socket_id` tag.

// Channels' limits.
const MAX_CHANNELS = 100;
const MAX_NAME = 200;
const MAX_DATA_BYTES = 10 * 1024;
const MAX_BATCH = 10;
const CHANNEL = /^[A-Za-z0-9_\-=@,.;]+$/;
const SOCKET_ID = /^\d+\.\d+$/;
// What sendToUser triggers on: the user's own channel.
const USER_CHANNEL = "#server-to-user-";
// Herald's topic names are at most 164 characters.
const MAX_TOPIC = 164;
// Body limits: 100 channel names and 10 KiB of data, or 10 such events.
const MAX_EVENTS_BODY = 64 * 1024;
const MAX_BATCH_BODY = 256 * 1024;
// Channel listings and presence users are answered whole (Channels does not page them).
const MAX_LISTED = 10_000;
export const SOCKET_TAG = "pusher_socket_id";

const INFO = new Set(["user_count", "subscription_count"]);

// A channel name as a Herald topic: itself up to 164 characters; a longer one (Channels allows
// 200) its first 120 characters, "=" and the base64url SHA-256 of the whole name (43), so it keeps
// its prefix (private-, presence-) and two long names never share a topic.
export function topicOf(channel: string): string {
  if (channel.length <= MAX_TOPIC) return channel;
  return `${channel.slice(0, 120)}=${createHash("sha256").update(channel).digest("base64url")}`;
}

const isPresence = (channel: string) => channel.startsWith("presence-");

function checkChannel(value: unknown, field: string): string {
  if (typeof value !== "string" || !value) throw channelsFail(400, `Missing required parameter: ${field}`, field);
  if (value.length > MAX_NAME) throw channelsFail(400, `Channel name too long: at most ${MAX_NAME} characters`, field);
  if (value.startsWith(USER_CHANNEL) && value.length > USER_CHANNEL.length) return value;
  if (!CHANNEL.test(value)) throw channelsFail(400, `Invalid channel name: only A-Z a-z 0-9 _ - = @ , . ; are allowed`, field);
  return value;
}

function infoOf(value: unknown, field = "info"): Set<string> {
  if (value === undefined || value === null || value === "") return new Set();
  if (typeof value !== "string") throw channelsFail(400, "info must be a comma-separated list of attributes", field);
  const attrs = new Set(value.split(",").map((s) => s.trim()).filter(Boolean));
  for (const a of attrs) if (!INFO.has(a)) throw channelsFail(400, `Unknown info attribute ${JSON.stringify(a.slice(0, 40))}: user_count or subscription_count`, field);
  return attrs;
}

interface ChannelsEvent {
  name: string;
  data: string;
  channels: string[];
  socketId?: string;
  info: Set<string>;
}

function eventOf(body: Record<string, unknown>, at: string, batch: boolean): ChannelsEvent {
  const f = (name: string) => (at ? `${at}.${name}` : name);
  const { name, data, socket_id: socketId } = body;
  if (typeof name !== "string" || !name) throw channelsFail(400, `Missing required parameter: ${f("name")}`, f("name"));
  if (name.length > MAX_NAME) throw channelsFail(400, `Event name too long: at most ${MAX_NAME} characters`, f("name"));
  if (typeof data !== "string") throw channelsFail(400, `Missing required parameter: ${f("data")} (a string, usually JSON)`, f("data"));
  if (Buffer.byteLength(data) > MAX_DATA_BYTES) throw channelsFail(413, `Payload too large: data is ${Buffer.byteLength(data)} bytes, at most ${MAX_DATA_BYTES}`, f("data"));
  let channels: string[];
  if (batch) channels = [checkChannel(body.channel, f("channel"))];
  else if (body.channels !== undefined) {
    if (!Array.isArray(body.channels) || body.channels.length === 0) throw channelsFail(400, "channels must be a non-empty array of channel names", "channels");
    if (body.channels.length > MAX_CHANNELS) throw channelsFail(400, `Too many channels: ${body.channels.length}, at most ${MAX_CHANNELS}`, "channels");
    channels = [...new Set(body.channels.map((c: unknown, i) => checkChannel(c, `channels[${i}]`)))];
  } else channels = [checkChannel(body.channel, "channels")];
  if (socketId !== undefined && (typeof socketId !== "string" || !SOCKET_ID.test(socketId))) throw channelsFail(400, `Invalid socket_id: it looks like 123.456`, f("socket_id"));
  return { name, data, channels, ...(socketId ? { socketId: socketId as string } : {}), info: infoOf(body.info, f("info")) };
}

// What a Channels event becomes as a push notification. Channels carries in-app events, which
// must not pop up as notifications: an event is a data message ({event, channel, data} as custom
// data, APNs background push) unless its data is a JSON object with a `title` or `body` (or
// `message`) string, which is shown as the notification's title and body, the same custom data
// alongside.
export function eventNotification(name: string, channels: string[], data: string): dispatch.Notification {
  const custom: Record<string, string> = { event: name, data, ...(channels.length === 1 ? { channel: channels[0]! } : { channels: JSON.stringify(channels) }) };
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    parsed = undefined;
  }
  const o = parsed !== null && typeof parsed === "object" && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
  const text = (v: unknown) => (typeof v === "string" ? v : "");
  const title = text(o.title);
  const body = text(o.body) || text(o.message);
  if (title || body) return { alert: dispatch.Alert.fromPartial({ title, body, data: custom }), templated: false };
  return {
    alert: dispatch.Alert.fromPartial({ data: custom }),
    apns: { headers: { "apns-push-type": "background", "apns-priority": "5" }, payload: { aps: { "content-available": 1 }, ...custom } },
    templated: false,
  };
}

export function channelsRoutes(c: AdminClients, secrets: AppSecrets): Route[] {
  const app = async (req: HttpRequest): Promise<string> => {
    const id = req.params.app_id!;
    if (!(await secrets.exists(id))) throw channelsFail(404, "Unknown app");
    return id;
  };
  const system: CompatSystem<CallScope, "signed" | "device"> = {
    tag: "PusherChannels",
    errorBody: channelsError,
    decode: jsonObject((why, field) => channelsFail(400, why, field)),
    security: "none",
    auth: {
      // Server calls: the app of the path, signed with its secret.
      signed: async (req) => {
        const id = await app(req);
        await checkChannelsSignature(c, req, id);
        return { app: id };
      },
      // The device side: the app of the path; the device proves itself by its socket_id and,
      // for private and presence channels, the app's `auth`.
      device: async (req) => ({ app: await app(req) }),
    },
  };

  // The devices a socket_id names (Channels excludes that connection from a trigger).
  const devicesOf = async (as: CallScope, socketId: string): Promise<string[]> => {
    const page = await rpc(c.registry.listDevices({ filter: { tags: { all: [{ key: SOCKET_TAG, values: [socketId] }] } }, page: { limit: 100 } }, as));
    return page.devices.map((d) => d.id);
  };

  const stats = async (as: CallScope, channels: string[]): Promise<Map<string, topic.TopicStats>> => {
    const topics = channels.filter((ch) => !ch.startsWith(USER_CHANNEL)).map(topicOf);
    const out = new Map<string, topic.TopicStats>();
    if (!topics.length) return out;
    for (const s of (await rpc(c.topic.getTopicStats({ topics }, as))).stats) out.set(s.topic, s);
    return out;
  };
  const infoFor = (channel: string, info: Set<string>, s: topic.TopicStats | undefined) => ({
    ...(info.has("user_count") && isPresence(channel) ? { user_count: Number(s?.userCount ?? 0) } : {}),
    ...(info.has("subscription_count") ? { subscription_count: Number(s?.deviceCount ?? 0) } : {}),
  });

  // One publish to the event's topics (a device on several of them gets it once) and one to
  // its users' channels.
  const trigger = async (as: CallScope, e: ChannelsEvent): Promise<void> => {
    const exclude = e.socketId ? await devicesOf(as, e.socketId) : [];
    const users = e.channels.filter((ch) => ch.startsWith(USER_CHANNEL)).map((ch) => ch.slice(USER_CHANNEL.length));
    const topics = [...new Set(e.channels.filter((ch) => !ch.startsWith(USER_CHANNEL)).map(topicOf))];
    const notification = eventNotification(e.name, e.channels, e.data);
    const publish = (target: dispatch.Recipients["target"]) =>
      rpc(c.dispatch.publish(dispatch.PublishRequest.fromPartial({ recipients: { target, excludeDeviceIds: exclude }, notification, labels: { source: "pusher-channels", event: e.name } }), as)).catch((err: unknown) => {
        // Channels takes 10 KiB of data; a provider's payload limit (APNs and FCM: 4 KiB) is
        // lower, and over it is Channels' 413 too.
        throw err instanceof HttpError && err.error === "PAYLOAD_TOO_LARGE" ? channelsFail(413, `Payload too large for push: ${err.message}`, "data") : err;
      });
    if (topics.length) await publish({ $case: "topics", value: { values: topics } });
    if (users.length) await publish({ $case: "users", value: { values: users } });
  };

  type Endpoint = CompatEndpoint<CallScope, "signed" | "device">;
  const route = (method: Route["method"], pattern: string, summary: string, handle: Endpoint["handle"], extra: Partial<Endpoint> = {}): Endpoint => ({ method, pattern, summary, auth: "signed", handle, ...extra });

  const subscription = async ({ as, body: decoded }: CompatCall<CallScope>, join: boolean) => {
    const id = as.app;
    const body = decoded();
    const socketId = body.socket_id;
    if (typeof socketId !== "string" || !SOCKET_ID.test(socketId)) throw channelsFail(400, "Invalid socket_id: it looks like 123.456", "socket_id");
    const channel = checkChannel(body.channel, "channel");
    if (channel.startsWith(USER_CHANNEL)) throw channelsFail(400, "User channels are joined by binding the device to the user", "channel");
    const [device, more] = await devicesOf({ app: id }, socketId);
    if (!device || more) throw channelsFail(404, `No device has the socket_id: register the device with the tag ${SOCKET_TAG}=<socket_id>`, "socket_id");
    const guarded = channel.startsWith("private-") || isPresence(channel);
    if (join && guarded) {
      const auth = typeof body.auth === "string" ? body.auth : "";
      const channelData = typeof body.channel_data === "string" ? body.channel_data : undefined;
      if (isPresence(channel) && channelData === undefined) throw channelsFail(400, "Presence channels need channel_data (what authorizeChannel was given)", "channel_data");
      if (!auth || !(await checkChannelAuth(c, id, auth, [socketId, channel, ...(channelData !== undefined ? [channelData] : [])].join(":")))) throw channelsFail(403, "Invalid signature: auth is not the app's signature of socket_id:channel[:channel_data]", "auth");
      if (channelData !== undefined) {
        let member: unknown;
        try {
          member = JSON.parse(channelData);
        } catch {
          member = undefined;
        }
        const userId = member && typeof member === "object" ? (member as { user_id?: unknown }).user_id : undefined;
        const { device: d } = await rpc(c.registry.getDevice({ id: device }, { app: id }));
        // A presence member is a Herald user: the device must be bound to the user it claims.
        if (String(userId ?? "") === "" || d?.user !== String(userId)) throw channelsFail(403, "channel_data.user_id must be the user the device is bound to", "channel_data");
      }
    }
    // Joining a private topic takes SERVER rights, which the auth just proved; a public one a
    // device's own. Leaving is always allowed.
    const request = { deviceId: device, op: join ? topic.TopicOp.TOPIC_OP_ADD : topic.TopicOp.TOPIC_OP_REMOVE, topics: [topicOf(channel)] };
    await rpc(join && !guarded ? c.topic.updateDeviceTopics(request, { app: id, role: "client" }) : c.topic.updateDeviceTopics(request, { app: id }));
    return { body: {} };
  };

  return compatRoutes(system, [
    route("POST", "/apps/:app_id/events", "Channels: trigger an event on 1-100 channels {name, data, channels | channel, socket_id, info} (signed with the app's secret); answers {} or {channels: {<name>: {user_count, subscription_count}}}", async ({ as, body }) => {
      const e = eventOf(body(), "", false);
      const before = e.info.size ? await stats(as, e.channels) : undefined;
      await trigger(as, e);
      if (!before) return { body: {} };
      return { body: { channels: Object.fromEntries(e.channels.filter((ch) => !ch.startsWith(USER_CHANNEL)).map((ch) => [ch, infoFor(ch, e.info, before.get(topicOf(ch)))])) } };
    }, { maxBodyBytes: MAX_EVENTS_BODY }),
    route("POST", "/apps/:app_id/batch_events", "Channels: trigger 1-10 events {batch: [{channel, name, data, socket_id, info}]}; answers {} or {batch: [{user_count, subscription_count}]}", async ({ as, body }) => {
      const { batch } = body();
      if (!Array.isArray(batch) || batch.length === 0) throw channelsFail(400, "Missing required parameter: batch (a non-empty array of events)", "batch");
      if (batch.length > MAX_BATCH) throw channelsFail(400, `Batch too large: ${batch.length} events, at most ${MAX_BATCH}`, "batch");
      // All refused or none sent: every event is checked before the first is published.
      const events = batch.map((b: unknown, i) => {
        if (b === null || typeof b !== "object" || Array.isArray(b)) throw channelsFail(400, `batch[${i}] must be an object`, `batch[${i}]`);
        return eventOf(b as Record<string, unknown>, `batch[${i}]`, true);
      });
      const wanted = events.some((e) => e.info.size);
      const before = wanted ? await stats(as, events.flatMap((e) => e.channels)) : undefined;
      for (const e of events) await trigger(as, e);
      if (!before) return { body: {} };
      return { body: { batch: events.map((e) => infoFor(e.channels[0]!, e.info, before.get(topicOf(e.channels[0]!)))) } };
    }, { maxBodyBytes: MAX_BATCH_BODY }),
    route("GET", "/apps/:app_id/channels", "Channels: the occupied channels {channels: {<name>: {user_count}}} (filter_by_prefix, info=user_count for presence- prefixes, subscription_count)", async ({ req, as }) => {
      const prefix = req.query.get("filter_by_prefix") ?? "";
      if (prefix && (prefix.length > MAX_NAME || !CHANNEL.test(prefix))) throw channelsFail(400, "Invalid filter_by_prefix: a channel name prefix", "filter_by_prefix");
      const info = infoOf(req.query.get("info"));
      if (info.has("user_count") && !isPresence(prefix)) throw channelsFail(400, "user_count may only be requested for presence channels: use filter_by_prefix=presence-", "info");
      const channels: Record<string, unknown> = {};
      let cursor = "";
      let listed = 0;
      while (listed < MAX_LISTED) {
        const page = await rpc(c.topic.listTopics({ prefix: prefix.slice(0, 120), page: { cursor, limit: 1000 } }, as));
        for (const s of page.topics) {
          listed++;
          if (Number(s.deviceCount) > 0 && s.topic.startsWith(prefix.slice(0, MAX_TOPIC))) channels[s.topic] = infoFor(s.topic, info, s);
        }
        if (!page.hasMore) break;
        cursor = page.nextCursor;
      }
      return { body: { channels } };
    }),
    route("GET", "/apps/:app_id/channels/:channel_name", "Channels: one channel's state {occupied, user_count (presence-), subscription_count}", async ({ req, as }) => {
      const channel = checkChannel(req.params.channel_name, "channel_name");
      const info = infoOf(req.query.get("info"));
      if (info.has("user_count") && !isPresence(channel)) throw channelsFail(400, "user_count may only be requested for presence channels", "info");
      const s = (await stats(as, [channel])).get(topicOf(channel));
      return { body: { occupied: Number(s?.deviceCount ?? 0) > 0, ...infoFor(channel, info, s) } };
    }),
    route("GET", "/apps/:app_id/channels/:channel_name/users", "Channels: the users of a presence channel {users: [{id}]} (Herald users with a device on the topic)", async ({ req, as }) => {
      const channel = checkChannel(req.params.channel_name, "channel_name");
      if (!isPresence(channel)) throw channelsFail(400, "Users can only be retrieved for presence channels", "channel_name");
      const users: Array<{ id: string }> = [];
      let cursor = "";
      while (users.length < MAX_LISTED) {
        const page = await rpc(c.topic.listTopicUsers({ topic: topicOf(channel), page: { cursor, limit: 1000 } }, as));
        users.push(...page.users.map((id) => ({ id })));
        if (!page.hasMore) break;
        cursor = page.nextCursor;
      }
      return { body: { users } };
    }),
    // The device side, which Channels does over its WebSocket (pusher:subscribe): a device
    // names itself by its socket_id; private and presence channels take the `auth` the app's
    // auth endpoint made with pusher.authorizeChannel.
    route("POST", "/apps/:app_id/subscribe", "Channels device side: the device tagged pusher_socket_id joins a channel {socket_id, channel, auth, channel_data} (auth from pusher.authorizeChannel for private-/presence-)", (call) => subscription(call, true), { auth: "device", cors: true }),
    route("POST", "/apps/:app_id/unsubscribe", "Channels device side: the device tagged pusher_socket_id leaves a channel {socket_id, channel}", (call) => subscription(call, false), { auth: "device", cors: true }),
  ]);
}
