import {
  bindService,
  invalidArgument,
  notFound,
  permissionDenied,
  resourceExhausted,
  type CallContext,
  type ServiceBinding,
} from "@herald/platform";
import { topic, type common } from "@herald/proto";
import {
  checkTopics,
  checkUserId,
  deviceQueryOf,
  followsSubscriber,
  pageLimit,
  PRIVATE_TOPIC_PREFIX,
  toDeviceProto,
  type AppRecord,
  type DeviceRecord,
  type Store,
  type TopicCount,
} from "@herald/store";
import { streamRecipients } from "./recipient.stream.js";

export interface TopicDeps {
  store: Store;
  now: () => Date;
}

const MAX_STATS_TOPICS = 100;
// Devices a ListDeviceTopics device_filter may match (it is resolved to their ids).
export const MAX_FILTER_DEVICES = 10_000;

// Device and user subscriptions. A device holds a topic through its own list ("device" source)
// or through its bound user's topics ("user" source); see SubscriptionRepository.
export class TopicService {
  constructor(private readonly deps: TopicDeps) {}

  binding(): ServiceBinding {
    return bindService("herald.topic.v1.TopicService", topic.TopicServiceService, {
      updateDeviceTopics: { access: "client", handle: (req, ctx) => this.updateDeviceTopics(req, ctx) },
      listDeviceTopics: { access: "server", handle: (req, ctx) => this.listDeviceTopics(req, ctx) },
      updateUserTopics: { access: "server", handle: (req, ctx) => this.updateUserTopics(req, ctx) },
      listUserTopics: { access: "server", handle: (req, ctx) => this.listUserTopics(req, ctx) },
      getTopicStats: { access: "server", handle: (req, ctx) => this.stats(req, ctx) },
      listTopics: { access: "server", handle: (req, ctx) => this.listTopics(req, ctx) },
      listTopicUsers: { access: "server", handle: (req, ctx) => this.listTopicUsers(req, ctx) },
      streamRecipients: { access: "server", handle: (req, ctx, send) => streamRecipients(this.deps.store, req, ctx, send) },
    });
  }

  async updateDeviceTopics(req: topic.UpdateDeviceTopicsRequest, ctx: CallContext): Promise<topic.UpdateDeviceTopicsResponse> {
    const app = await this.app(ctx.app);
    const op = checkOp(req.op);
    const topics = checkTopics(req.topics, "topics");
    if (isClient(ctx) && op !== topic.TopicOp.TOPIC_OP_REMOVE) refusePrivate(topics);
    if (!req.deviceId) throw invalidArgument("device_id", "is required");
    const device = await this.deps.store.devices.get(app.id, req.deviceId);
    if (!device) throw notFound("device", req.deviceId);
    const subs = this.deps.store.subscriptions;
    const limit = app.limits.maxTopicsPerDevice;
    if (op === topic.TopicOp.TOPIC_OP_SET) {
      if (topics.length > limit) throw tooMany(limit);
      await subs.set(app.id, device.id, device, topics, "device");
    } else if (op === topic.TopicOp.TOPIC_OP_ADD) {
      const current = new Set((await subs.topicsOf(app.id, [device.id])).get(device.id) ?? []);
      const added = topics.filter((t) => !current.has(t)).length;
      if (current.size + added > limit) throw tooMany(limit);
      await subs.add(app.id, device.id, device, topics, "device");
    } else {
      await subs.removeSource(app.id, device.id, topics, "device");
    }
    if (op !== topic.TopicOp.TOPIC_OP_REMOVE) await this.settle(app.id, device);
    return { topics: (await subs.topicsOf(app.id, [device.id])).get(device.id) ?? [] };
  }

  async listDeviceTopics(req: topic.ListDeviceTopicsRequest, ctx: CallContext): Promise<topic.ListDeviceTopicsResponse> {
    const limit = pageLimit(req.page?.limit);
    const query = {
      ...(req.deviceIds.length ? { deviceIds: req.deviceIds } : {}),
      ...(req.topics.length ? { topics: checkTopics(req.topics, "topics") } : {}),
      ...(req.topicPrefix ? { prefix: req.topicPrefix } : {}),
    };
    const filtered = await this.filterDevices(ctx.app, req.deviceFilter, req.deviceIds);
    if (filtered) {
      // No device matches: nothing to list (an empty id list would mean "every device").
      if (!filtered.length) return { items: [], nextCursor: "", hasMore: false, ...(req.includeTotalCount ? { totalCount: 0 } : {}) };
      query.deviceIds = filtered;
    }
    const found = await this.deps.store.subscriptions.list(ctx.app, query, { ...(req.page?.cursor ? { after: req.page.cursor } : {}), limit: limit + 1 });
    const totalCount = req.includeTotalCount ? await this.deps.store.subscriptions.count(ctx.app, query) : undefined;
    const page = found.slice(0, limit);
    const devices = req.includeDevice ? await this.deps.store.devices.getMany(ctx.app, [...new Set(page.map((s) => s.deviceId))]) : [];
    const byId = new Map(devices.map((d) => [d.id, d]));
    const last = page.at(-1);
    return {
      items: page.map((s) => {
        const device = byId.get(s.deviceId);
        return { deviceId: s.deviceId, topic: s.topic, fromDevice: s.fromDevice, fromUser: s.fromUser, ...(device ? { device: toDeviceProto(device) } : {}) };
      }),
      nextCursor: found.length > limit && last ? `${last.deviceId}\n${last.topic}` : "",
      hasMore: found.length > limit,
      ...(totalCount !== undefined ? { totalCount } : {}),
    };
  }

  // The ids of the devices a device_filter matches (within device_ids when given), or undefined
  // without a filter.
  private async filterDevices(app: string, filter: common.DeviceFilter | undefined, within: string[]): Promise<string[] | undefined> {
    if (!filter || (!filter.ids.length && !filter.users.length && !filter.providers.length && !filter.platforms.length && !filter.tags?.all.length && !filter.topics.length && !filter.providerTokens.length)) return undefined;
    if (filter.topics.length) throw invalidArgument("device_filter.topics", "filter subscriptions by topic with `topics`");
    const ids = filter.ids.length && within.length ? filter.ids.filter((id) => within.includes(id)) : filter.ids.length ? filter.ids : within;
    if (filter.ids.length && within.length && !ids.length) return [];
    const query = deviceQueryOf({ ...filter, ids }, "device_filter");
    const found = await this.deps.store.devices.list(app, query, { limit: MAX_FILTER_DEVICES + 1 });
    if (found.length > MAX_FILTER_DEVICES) throw invalidArgument("device_filter", `matches more than ${MAX_FILTER_DEVICES} devices; narrow it`, "FILTER_TOO_BROAD");
    return found.map((d) => d.id);
  }

  // The user's topics change first, then each of the user's devices follows; a crash in between is
  // repaired by repeating the call (both steps are idempotent).
  // The rows just written copied `device` as read before the write. Had the registry changed the
  // device's token or user, or removed it, in between, the rows would not follow it (a broadcast
  // reads the rows alone): reading the device again after the write closes that window, because
  // the registry writes the device before its rows and removes its rows after the device too.
  private async settle(app: string, device: DeviceRecord): Promise<void> {
    const { devices, subscriptions } = this.deps.store;
    const current = await devices.get(app, device.id);
    if (!current) await subscriptions.removeDevices(app, [device.id]);
    else if (!followsSubscriber(device, current)) await subscriptions.setSubscriber(app, device.id, current);
  }

  async updateUserTopics(req: topic.UpdateUserTopicsRequest, ctx: CallContext): Promise<topic.UpdateUserTopicsResponse> {
    const app = await this.app(ctx.app);
    const user = checkUserId(req.user, "user");
    const op = checkOp(req.op);
    const topics = checkTopics(req.topics, "topics");
    const subs = this.deps.store.subscriptions;
    const before = await subs.userTopicsOf(app.id, user);
    const after =
      op === topic.TopicOp.TOPIC_OP_SET ? topics
      : op === topic.TopicOp.TOPIC_OP_ADD ? [...new Set([...before, ...topics])]
      : before.filter((t) => !topics.includes(t));
    if (after.length > app.limits.maxTopicsPerDevice) throw tooMany(app.limits.maxTopicsPerDevice);
    const gone = before.filter((t) => !after.includes(t));
    const added = after.filter((t) => !before.includes(t));
    if (added.length) await subs.addUserTopics(app.id, user, added);
    if (gone.length) await subs.removeUserTopics(app.id, user, gone);
    let devicesUpdated = 0;
    for await (const batch of this.deps.store.devices.scan(app.id, { users: [user] }, { batchSize: 500 })) {
      for (const device of batch) {
        await subs.set(app.id, device.id, device, after, "user");
        await this.settle(app.id, device);
        devicesUpdated++;
      }
    }
    return { topics: [...after].sort(), devicesUpdated };
  }

  async listUserTopics(req: topic.ListUserTopicsRequest, ctx: CallContext): Promise<topic.ListUserTopicsResponse> {
    const limit = pageLimit(req.page?.limit);
    const query = {
      ...(req.users.length ? { users: req.users.map((u, i) => checkUserId(u, `users[${i}]`)) } : {}),
      ...(req.topics.length ? { topics: checkTopics(req.topics, "topics") } : {}),
      ...(req.topicPrefix ? { prefix: req.topicPrefix } : {}),
    };
    const found = await this.deps.store.subscriptions.listUserTopics(ctx.app, query, { ...(req.page?.cursor ? { after: req.page.cursor } : {}), limit: limit + 1 });
    const totalCount = req.includeTotalCount ? await this.deps.store.subscriptions.countUserTopics(ctx.app, query) : undefined;
    const page = found.slice(0, limit);
    const last = page.at(-1);
    return {
      items: page.map((u) => ({ user: u.user, topic: u.topic })),
      nextCursor: found.length > limit && last ? `${last.user}\n${last.topic}` : "",
      hasMore: found.length > limit,
      ...(totalCount !== undefined ? { totalCount } : {}),
    };
  }

  async stats(req: topic.GetTopicStatsRequest, ctx: CallContext): Promise<topic.GetTopicStatsResponse> {
    // The limit counts the list as sent, repeats included, as the OpenAPI document's maxItems does.
    if (req.topics.length > MAX_STATS_TOPICS) throw invalidArgument("topics", `at most ${MAX_STATS_TOPICS} topics per call`);
    const topics = checkTopics(req.topics, "topics");
    if (topics.length === 0) throw invalidArgument("topics", "name at least one topic");
    return { stats: (await this.deps.store.subscriptions.stats(ctx.app, topics)).map(toStats) };
  }

  async listTopics(req: topic.ListTopicsRequest, ctx: CallContext): Promise<topic.ListTopicsResponse> {
    const limit = pageLimit(req.page?.limit);
    const found = await this.deps.store.subscriptions.listTopics(ctx.app, req.prefix, { ...(req.page?.cursor ? { after: req.page.cursor } : {}), limit: limit + 1 });
    const page = found.slice(0, limit);
    return { topics: page.map(toStats), nextCursor: found.length > limit ? (page.at(-1)?.topic ?? "") : "", hasMore: found.length > limit };
  }

  async listTopicUsers(req: topic.ListTopicUsersRequest, ctx: CallContext): Promise<topic.ListTopicUsersResponse> {
    const [name] = checkTopics([req.topic], "topic");
    const limit = pageLimit(req.page?.limit);
    const found = await this.deps.store.subscriptions.listTopicUsers(ctx.app, name!, { ...(req.page?.cursor ? { after: req.page.cursor } : {}), limit: limit + 1 });
    const page = found.slice(0, limit);
    return { users: page, nextCursor: found.length > limit ? (page.at(-1) ?? "") : "", hasMore: found.length > limit };
  }

  private async app(id: string): Promise<AppRecord> {
    const app = await this.deps.store.apps.get(id);
    if (!app) throw notFound("app", id);
    return app;
  }
}

const toStats = (s: TopicCount): topic.TopicStats => ({
  topic: s.topic,
  deviceCount: s.deviceCount,
  userCount: s.userCount,
  userTopicCount: s.userTopicCount,
});

function checkOp(op: topic.TopicOp): topic.TopicOp {
  if (op !== topic.TopicOp.TOPIC_OP_ADD && op !== topic.TopicOp.TOPIC_OP_REMOVE && op !== topic.TopicOp.TOPIC_OP_SET) {
    throw invalidArgument("op", "must be TOPIC_OP_ADD, TOPIC_OP_REMOVE or TOPIC_OP_SET", "INVALID_OP");
  }
  return op;
}

const tooMany = (limit: number) => resourceExhausted("TOO_MANY_TOPICS", `at most ${limit} topics per device`, "topics");

function refusePrivate(topics: string[]): void {
  const t = topics.find((name) => name.startsWith(PRIVATE_TOPIC_PREFIX));
  if (t) throw permissionDenied("PRIVATE_TOPIC", `topic "${t}" is private: only a SERVER key can subscribe to it`);
}

const isClient = (ctx: CallContext) => ctx.principal?.kind === "app" && ctx.principal.role === "client";
