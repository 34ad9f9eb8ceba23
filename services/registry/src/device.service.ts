import {
  bindService,
  invalidArgument,
  notFound,
  permissionDenied,
  resourceExhausted,
  type CallContext,
  type ServiceBinding,
} from "@herald/platform";
import { registry, type common } from "@herald/proto";
import {
  checkLocale,
  checkProviderConfigured,
  checkStringMap,
  checkTimezone,
  checkTopics,
  checkUserId,
  deviceQueryOf,
  normalizeToken,
  pageLimit,
  parsePlatform,
  providerEnum,
  tokenFeedbackCursor,
  parseProvider,
  PRIVATE_TOPIC_PREFIX,
  toDeviceProto,
  type AppRecord,
  type DeviceQuery,
  type DeviceRecord,
  type PlatformName,
  type ProviderName,
  type Store,
  type TokenRules,
} from "@herald/store";
import { DeviceEventKind, type DeviceEvents, type RemovalReason } from "./device.events.js";
import type { UserTokens } from "./usertoken.jwt.js";

export interface RegistryDeps {
  store: Store;
  events: DeviceEvents;
  userTokens: UserTokens;
  tokenRules: TokenRules;
  now: () => Date;
}

const SCAN_BATCH = 500;
const DEFAULT_USER_TOKEN_TTL = 24 * 3600;
const MAX_USER_TOKEN_TTL = 30 * 24 * 3600;

// Devices and users of one app. Every write goes device first, subscriptions second: a crash in
// between leaves a state that the client's retry of the same (idempotent) call repairs.
export class DeviceService {
  constructor(private readonly deps: RegistryDeps) {}

  binding(): ServiceBinding {
    return bindService("herald.registry.v1.RegistryService", registry.RegistryServiceService, {
      registerDevice: { access: "client", handle: (req, ctx) => this.register(req, ctx) },
      getDevice: { access: "client", handle: (req, ctx) => this.get(req, ctx) },
      updateDevices: { access: "server", handle: (req, ctx) => this.updateMany(req, ctx) },
      removeDevices: { access: "server", handle: (req, ctx) => this.removeMany(req, ctx) },
      listDevices: { access: "server", handle: (req, ctx) => this.list(req, ctx) },
      bindUser: { access: "client", handle: (req, ctx) => this.bindUser(req, ctx) },
      unbindUser: { access: "client", handle: (req, ctx) => this.unbindUser(req, ctx) },
      deleteUser: { access: "server", handle: (req, ctx) => this.deleteUser(req, ctx) },
      createUserToken: { access: "server", handle: (req, ctx) => this.createUserToken(req, ctx) },
      listTokenFeedback: { access: "server", handle: (req, ctx) => this.listTokenFeedback(req, ctx) },
    });
  }

  async register(req: registry.RegisterDeviceRequest, ctx: CallContext): Promise<registry.RegisterDeviceResponse> {
    const app = await this.app(ctx.app);
    const provider = parseProvider(req.provider, "provider");
    const platform = parsePlatform(req.platform, provider, "platform");
    checkProviderConfigured(app, provider, "provider");
    const token = normalizeToken(provider, req.token, this.deps.tokenRules, "token");
    if (req.user && isClient(ctx)) {
      throw permissionDenied("USER_TOKEN_REQUIRED", "CLIENT keys cannot set `user`; call BindUser with a user token");
    }
    // An app SDK re-registers its token on every start with a CLIENT key, which cannot name the
    // user: the user bound with BindUser stays (a SERVER key's registration is a full-state write).
    const user = req.user ? checkUserId(req.user, "user") : isClient(ctx) ? await this.boundUser(app.id, provider, token, req.id) : "";
    const topics = this.checkDeviceTopics(req.topics, "topics", app, !isClient(ctx));
    const tags = checkStringMap(req.tags, "tags");
    const meta = checkStringMap(req.meta, "meta");
    const locale = checkLocale(req.locale, "locale");
    const timezone = checkTimezone(req.timezone, "timezone");
    if (user) await this.refuseOverCap(app, user, platform, { token, id: req.id });

    const now = this.deps.now();
    const { store } = this.deps;
    const written = await store.devices.write({
      app: app.id, provider, platform, token, user, tags, meta, locale, timezone, now,
      ...(req.id ? { id: req.id } : {}),
    });
    const device = written.device;
    if (written.replacedDeviceId) {
      const replaced = { ...device, id: written.replacedDeviceId };
      // The store removed its rows before it; again after, as in removeDevices.
      await store.subscriptions.removeDevices(app.id, [written.replacedDeviceId]);
      await this.deps.events.emit(DeviceEventKind.DEVICE_EVENT_KIND_REMOVED, [replaced], { reason: "replaced" });
    }
    await store.subscriptions.set(app.id, device.id, device, topics, "device");
    if (written.created || written.previousUser !== user) await this.moveUserTopics(app.id, device, written.previousUser);
    const evicted = user ? await this.evictOverCap(app, user, platform, device.id) : [];
    await this.deps.events.emit(written.created ? DeviceEventKind.DEVICE_EVENT_KIND_REGISTERED : DeviceEventKind.DEVICE_EVENT_KIND_UPDATED, [device]);
    if (!written.created && written.previousUser !== user) {
      await this.deps.events.emit(DeviceEventKind.DEVICE_EVENT_KIND_USER_CHANGED, [device], { previousUser: written.previousUser });
    }
    return { device: await this.view(device), created: written.created, evictedDeviceIds: evicted };
  }

  private async boundUser(app: string, provider: ProviderName, token: string, id: string): Promise<string> {
    const existing = id ? await this.deps.store.devices.get(app, id) : (await this.deps.store.devices.list(app, { tokens: [{ provider, token }] }, { limit: 1 }))[0];
    return existing?.user ?? "";
  }

  async get(req: registry.GetDeviceRequest, ctx: CallContext): Promise<registry.GetDeviceResponse> {
    return { device: await this.view(await this.device(ctx.app, req.id, "id")) };
  }

  async bindUser(req: registry.BindUserRequest, ctx: CallContext): Promise<registry.BindUserResponse> {
    const app = await this.app(ctx.app);
    const device = await this.device(app.id, req.deviceId, "device_id");
    const claims = this.deps.userTokens.verifyClaims(app.id, app.secretVersion, req.userToken);
    const user = checkUserId(claims.user, "user_token.sub");
    // Private topics join only with a SERVER key or a user token that carries them; they are the
    // user's on this device, so they leave it with the user.
    const tokenTopics = claims.topics.length ? this.checkDeviceTopics(claims.topics, "user_token.topics", app, true) : [];
    let updated = device;
    let evicted: string[] = [];
    if (device.user !== user) {
      await this.refuseOverCap(app, user, device.platform, { id: device.id });
      updated = await this.changeUser(app.id, device, user);
      evicted = await this.evictOverCap(app, user, device.platform, device.id);
    }
    if (tokenTopics.length) await this.deps.store.subscriptions.add(app.id, device.id, updated, tokenTopics, "user");
    return { device: await this.view(updated), evictedDeviceIds: evicted };
  }

  async unbindUser(req: registry.UnbindUserRequest, ctx: CallContext): Promise<registry.UnbindUserResponse> {
    const device = await this.device(ctx.app, req.deviceId, "device_id");
    const updated = device.user ? await this.changeUser(ctx.app, device, "") : device;
    return { device: await this.view(updated) };
  }

  async updateMany(req: registry.UpdateDevicesRequest, ctx: CallContext): Promise<registry.UpdateDevicesResponse> {
    const app = await this.app(ctx.app);
    const query = this.targetQuery(req.filter);
    const newUser = req.userUpdate ? (req.userUpdate.user ? checkUserId(req.userUpdate.user, "user_update.user") : "") : undefined;
    const meta = req.metaUpdate ? checkStringMap(req.metaUpdate.meta, "meta_update.meta") : undefined;
    const tags = req.tagsUpdate ? checkStringMap(req.tagsUpdate.tags, "tags_update.tags") : undefined;
    const topicsOp = req.topicsUpdate?.op ?? registry.TopicsUpdateOp.TOPICS_UPDATE_OP_UNSPECIFIED;
    if (![registry.TopicsUpdateOp.TOPICS_UPDATE_OP_UNSPECIFIED, registry.TopicsUpdateOp.TOPICS_UPDATE_OP_SET, registry.TopicsUpdateOp.TOPICS_UPDATE_OP_ADD, registry.TopicsUpdateOp.TOPICS_UPDATE_OP_REMOVE].includes(topicsOp)) {
      throw invalidArgument("topics_update.op", "must be TOPICS_UPDATE_OP_SET, TOPICS_UPDATE_OP_ADD or TOPICS_UPDATE_OP_REMOVE", "INVALID_OP");
    }
    const topics = req.topicsUpdate ? this.checkDeviceTopics(req.topicsUpdate.topics, "topics_update.topics", app, !isClient(ctx)) : undefined;
    const locale = req.localeUpdate ? checkLocale(req.localeUpdate.locale, "locale_update.locale") : undefined;
    const timezone = req.timezoneUpdate ? checkTimezone(req.timezoneUpdate.timezone, "timezone_update.timezone") : undefined;
    const patched = meta !== undefined || tags !== undefined || locale !== undefined || timezone !== undefined;
    let matched = 0;
    const evicted: string[] = [];
    for await (const batch of this.deps.store.devices.scan(app.id, query, { batchSize: SCAN_BATCH })) {
      matched += batch.length;
      const ids = batch.map((d) => d.id);
      if (patched) {
        await this.deps.store.devices.update(app.id, ids, {
          ...(meta ? { meta } : {}), ...(tags ? { tags } : {}), ...(locale !== undefined ? { locale } : {}), ...(timezone !== undefined ? { timezone } : {}), now: this.deps.now(),
        });
      }
      for (const device of batch) {
        if (topics) await this.updateOwnTopics(app, device, newUser ?? device.user, topics, topicsOp);
        if (newUser !== undefined && newUser !== device.user) {
          if (newUser) await this.refuseOverCap(app, newUser, device.platform, { id: device.id });
          await this.changeUser(app.id, device, newUser);
          if (newUser) evicted.push(...(await this.evictOverCap(app, newUser, device.platform, device.id)));
        }
      }
      if (patched || topics) await this.deps.events.emit(DeviceEventKind.DEVICE_EVENT_KIND_UPDATED, batch);
    }
    return { matched, evictedDeviceIds: evicted };
  }

  async removeMany(req: registry.RemoveDevicesRequest, ctx: CallContext): Promise<registry.RemoveDevicesResponse> {
    const query = this.targetQuery(req.filter);
    return { removed: await this.removeMatching(ctx.app, query, "api") };
  }

  // A device's own topics after a TopicsUpdate: set (the default) replaces them, add and remove
  // change only the named ones, within the app's per-device topic cap.
  private async updateOwnTopics(app: AppRecord, device: DeviceRecord, user: string, topics: string[], op: registry.TopicsUpdateOp): Promise<void> {
    const subs = this.deps.store.subscriptions;
    if (op === registry.TopicsUpdateOp.TOPICS_UPDATE_OP_REMOVE) return subs.removeSource(app.id, device.id, topics, "device");
    if (op === registry.TopicsUpdateOp.TOPICS_UPDATE_OP_ADD) {
      const current = new Set((await subs.topicsOf(app.id, [device.id])).get(device.id) ?? []);
      if (current.size + topics.filter((t) => !current.has(t)).length > app.limits.maxTopicsPerDevice) {
        throw resourceExhausted("TOO_MANY_TOPICS", `at most ${app.limits.maxTopicsPerDevice} topics per device`, "topics_update.topics");
      }
      return subs.add(app.id, device.id, { ...device, user }, topics, "device");
    }
    return subs.set(app.id, device.id, { ...device, user }, topics, "device");
  }

  async list(req: registry.ListDevicesRequest, ctx: CallContext): Promise<registry.ListDevicesResponse> {
    const limit = pageLimit(req.page?.limit);
    const after = req.page?.cursor || undefined;
    const query = this.query(req.filter);
    const topics = req.filter?.topics.length ? checkTopics(req.filter.topics, "filter.topics") : [];
    const found = topics.length
      ? await this.listBySubscription(ctx.app, topics, query, after, limit + 1)
      : await this.deps.store.devices.list(ctx.app, query, { ...(after ? { after } : {}), limit: limit + 1 });
    const page = found.slice(0, limit);
    const totalCount = req.includeTotalCount ? await this.countMatching(ctx.app, topics, query) : undefined;
    const topicMap = req.includeTopics ? await this.deps.store.subscriptions.topicsOf(ctx.app, page.map((d) => d.id)) : undefined;
    return {
      devices: page.map((d) =>
        toDeviceProto(d, { ...(topicMap ? { topics: topicMap.get(d.id) ?? [] } : {}), tags: req.includeTags, meta: req.includeMeta }),
      ),
      nextCursor: found.length > limit ? (page.at(-1)?.id ?? "") : "",
      hasMore: found.length > limit,
      ...(totalCount !== undefined ? { totalCount } : {}),
    };
  }

  // Devices a list matches over all its pages; with topics, counted batch by batch from the
  // subscription index (never the whole set in memory).
  private async countMatching(app: string, topics: string[], query: DeviceQuery): Promise<number> {
    if (!topics.length) return this.deps.store.devices.count(app, query);
    let n = 0;
    for await (const ids of this.deps.store.subscriptions.scanDeviceIds(app, topics, { batchSize: SCAN_BATCH })) {
      const allowed = query.ids ? ids.filter((id) => query.ids!.includes(id)) : ids;
      if (allowed.length) n += await this.deps.store.devices.count(app, { ...query, ids: allowed });
    }
    return n;
  }

  async deleteUser(req: registry.DeleteUserRequest, ctx: CallContext): Promise<registry.DeleteUserResponse> {
    const user = checkUserId(req.user, "user");
    const devicesRemoved = await this.removeMatching(ctx.app, { users: [user] }, "user_deleted");
    const userTopicsRemoved = await this.deps.store.subscriptions.removeUser(ctx.app, user);
    return { devicesRemoved, userTopicsRemoved };
  }

  async listTokenFeedback(req: registry.ListTokenFeedbackRequest, ctx: CallContext): Promise<registry.ListTokenFeedbackResponse> {
    const limit = pageLimit(req.page?.limit);
    const provider = req.provider ? parseProvider(req.provider, "provider") : undefined;
    const found = await this.deps.store.tokenFeedback.list(ctx.app, { ...(provider ? { provider } : {}), ...(req.since ? { since: req.since } : {}) }, { ...(req.page?.cursor ? { after: req.page.cursor } : {}), limit: limit + 1 });
    const page = found.slice(0, limit);
    const last = page.at(-1);
    return {
      entries: page.map((f) => ({ provider: providerEnum(f.provider), token: f.token, reason: f.reason, at: f.at })),
      nextCursor: found.length > limit && last ? tokenFeedbackCursor(last) : "",
      hasMore: found.length > limit,
    };
  }

  async createUserToken(req: registry.CreateUserTokenRequest, ctx: CallContext): Promise<registry.CreateUserTokenResponse> {
    const app = await this.app(ctx.app);
    const user = checkUserId(req.user, "user");
    const ttl = req.ttlSeconds || DEFAULT_USER_TOKEN_TTL;
    if (ttl < 1 || ttl > MAX_USER_TOKEN_TTL) throw invalidArgument("ttl_seconds", `must be between 1 and ${MAX_USER_TOKEN_TTL}`);
    return this.deps.userTokens.sign(app.id, app.secretVersion, user, ttl);
  }

  // Removes devices (and then their subscriptions) in batches; used by the API, user deletion,
  // the inactivity sweeper and token feedback.
  async removeMatching(app: string, query: DeviceQuery, reason: RemovalReason): Promise<number> {
    let removed = 0;
    for await (const batch of this.deps.store.devices.scan(app, query, { batchSize: SCAN_BATCH })) {
      removed += await this.removeDevices(app, batch, reason);
    }
    return removed;
  }

  async removeDevices(app: string, devices: DeviceRecord[], reason: RemovalReason): Promise<number> {
    if (devices.length === 0) return 0;
    const ids = devices.map((d) => d.id);
    // A broadcast reads the rows alone, so rows outliving their device would still be delivered
    // to. Rows first: a crash before the device goes leaves a device without topics that the
    // retry removes. Rows again after: a topic change that read the device before it went may
    // have written rows since (its own check after the write catches any later write).
    await this.deps.store.subscriptions.removeDevices(app, ids);
    const removed = await this.deps.store.devices.remove(app, ids);
    await this.deps.store.subscriptions.removeDevices(app, ids);
    await this.deps.events.emit(DeviceEventKind.DEVICE_EVENT_KIND_REMOVED, devices, { reason });
    return removed;
  }

  private async changeUser(app: string, device: DeviceRecord, user: string): Promise<DeviceRecord> {
    const now = this.deps.now();
    await this.deps.store.devices.update(app, [device.id], { user, now });
    const updated = { ...device, user, updatedAt: now };
    await this.moveUserTopics(app, updated, device.user);
    await this.deps.events.emit(DeviceEventKind.DEVICE_EVENT_KIND_USER_CHANGED, [updated], { previousUser: device.user });
    return updated;
  }

  // The previous user's topics leave the device and the new user's topics join it.
  private async moveUserTopics(app: string, device: DeviceRecord, previousUser: string): Promise<void> {
    const subs = this.deps.store.subscriptions;
    const { id: deviceId, user } = device;
    if (previousUser && previousUser !== user) await subs.removeSource(app, deviceId, "all", "user");
    await subs.setSubscriber(app, deviceId, device);
    if (user) {
      const topics = await subs.userTopicsOf(app, user);
      if (topics.length) await subs.add(app, deviceId, device, topics, "user");
    }
  }

  private async refuseOverCap(app: AppRecord, user: string, platform: PlatformName, self: { token?: string; id?: string }): Promise<void> {
    if (app.limits.deviceOverflowPolicy !== "reject") return;
    const others = (await this.deps.store.devices.listForUser(app.id, user, platform)).filter((d) => d.id !== self.id && d.token !== self.token);
    if (others.length >= app.limits.maxDevicesPerUser) {
      throw resourceExhausted("TOO_MANY_DEVICES", `user already has ${others.length} ${platform} devices (limit ${app.limits.maxDevicesPerUser})`, "user");
    }
  }

  private async evictOverCap(app: AppRecord, user: string, platform: PlatformName, keepId: string): Promise<string[]> {
    if (app.limits.deviceOverflowPolicy === "reject") return [];
    const devices = await this.deps.store.devices.listForUser(app.id, user, platform);
    const excess = devices.length - app.limits.maxDevicesPerUser;
    if (excess <= 0) return [];
    const victims = devices.filter((d) => d.id !== keepId).slice(0, excess);
    await this.removeDevices(app.id, victims, "evicted");
    return victims.map((d) => d.id);
  }

  // Private topics only for SERVER keys (allowPrivate) or a user token that carries them.
  private checkDeviceTopics(topics: string[], field: string, app: AppRecord, allowPrivate: boolean): string[] {
    const checked = checkTopics(topics, field);
    if (checked.length > app.limits.maxTopicsPerDevice) {
      throw resourceExhausted("TOO_MANY_TOPICS", `at most ${app.limits.maxTopicsPerDevice} topics per device`, field);
    }
    if (!allowPrivate) {
      const i = checked.findIndex((t) => t.startsWith(PRIVATE_TOPIC_PREFIX));
      if (i >= 0) throw permissionDenied("PRIVATE_TOPIC", `topic "${checked[i]}" is private: only a SERVER key can subscribe to it`);
    }
    return checked;
  }

  // Update and remove must name devices (ids, users or tokens) so no call wipes a whole app by
  // accident.
  private targetQuery(filter: common.DeviceFilter | undefined): DeviceQuery {
    if (!filter || (!filter.ids.length && !filter.users.length && !filter.providerTokens.length)) {
      throw invalidArgument("filter", "name the devices with ids, users or provider_tokens", "FILTER_REQUIRED");
    }
    return this.query(filter);
  }

  private query(filter: common.DeviceFilter | undefined): DeviceQuery {
    return filter ? deviceQueryOf(filter, "filter", this.deps.tokenRules) : {};
  }

  // Devices subscribed to the topics, walked in id order from the subscription index.
  private async listBySubscription(app: string, topics: string[], query: DeviceQuery, after: string | undefined, want: number): Promise<DeviceRecord[]> {
    const out: DeviceRecord[] = [];
    const scan = this.deps.store.subscriptions.scanDeviceIds(app, topics, { ...(after ? { after } : {}), batchSize: Math.max(want, 100) });
    for await (const ids of scan) {
      const allowed = query.ids ? ids.filter((id) => query.ids!.includes(id)) : ids;
      if (allowed.length) out.push(...(await this.deps.store.devices.list(app, { ...query, ids: allowed }, { limit: allowed.length })));
      if (out.length >= want) break;
    }
    return out.slice(0, want);
  }

  private async view(device: DeviceRecord): Promise<common.Device> {
    const topics = (await this.deps.store.subscriptions.topicsOf(device.app, [device.id])).get(device.id) ?? [];
    return toDeviceProto(device, { topics, tags: true, meta: true });
  }

  private async device(app: string, id: string, field: string): Promise<DeviceRecord> {
    if (!id) throw invalidArgument(field, "is required");
    const device = await this.deps.store.devices.get(app, id);
    if (!device) throw notFound("device", id);
    return device;
  }

  private async app(id: string): Promise<AppRecord> {
    const app = await this.deps.store.apps.get(id);
    if (!app) throw notFound("app", id);
    return app;
  }
}

const isClient = (ctx: CallContext) => ctx.principal?.kind === "app" && ctx.principal.role === "client";

