// Persistence contracts shared by the registry and topic services. Memory and MongoDB
// implementations pass one contract suite (store.contract.ts). Every call is scoped to an app.
// Nothing here relies on transactions, TTL indexes, $lookup or change streams (FerretDB has none):
// writes are idempotent and multi-document changes are ordered so a retry converges.

export type ProviderName = "apns" | "fcm" | "hms" | "webpush";
export type PlatformName = "ios" | "android" | "web";

export interface DeviceRecord {
  id: string;
  app: string;
  provider: ProviderName;
  platform: PlatformName;
  token: string;
  // "" when no user is bound.
  user: string;
  tags: Record<string, string>;
  meta: Record<string, string>;
  locale: string;
  timezone: string;
  createdAt: Date;
  updatedAt: Date;
  lastSeenAt: Date;
}

export interface TagCondition {
  key: string;
  // Any of these values; empty means the tag merely exists.
  values: string[];
}

// AND across fields, OR inside one field. An empty query matches every device of the app.
export interface DeviceQuery {
  ids?: string[];
  users?: string[];
  tokens?: Array<{ provider: ProviderName; token: string }>;
  providers?: ProviderName[];
  platforms?: PlatformName[];
  tags?: TagCondition[];
  excludeIds?: string[];
  // Only devices with a bound user (any user).
  hasUser?: boolean;
}

// Keyset pagination: results sorted by the repository's key, strictly after `after`.
export interface PageQuery {
  after?: string;
  limit: number;
}

export interface DeviceWrite {
  app: string;
  provider: ProviderName;
  platform: PlatformName;
  token: string;
  user: string;
  tags: Record<string, string>;
  meta: Record<string, string>;
  locale: string;
  timezone: string;
  // When set and the device exists, that device takes the new token (token refresh). If another
  // device of the app already holds the token, that other device is removed and reported.
  id?: string;
  now: Date;
}

export interface DeviceWriteResult {
  device: DeviceRecord;
  created: boolean;
  // Set when the write replaced a different device that held the token.
  replacedDeviceId?: string;
  // The user the device had before this write ("" for none or a new device).
  previousUser: string;
}

// One device of a bulk import (DeviceRepository.importMany): the device as a registration would
// write it, plus the topics it holds itself (source "device").
export type DeviceImport = Pick<DeviceRecord, "provider" | "platform" | "token" | "user" | "tags" | "meta" | "locale" | "timezone"> & { topics: string[] };

export interface DevicePatch {
  user?: string;
  meta?: Record<string, string>;
  tags?: Record<string, string>;
  // "" clears it (Centrifugo's locale_update / timezone_update).
  locale?: string;
  timezone?: string;
  lastSeenAt?: Date;
  now: Date;
}

export interface DeviceRepository {
  // Full-state write keyed by (app, provider, token): never two devices for one token.
  // Safe under concurrent writes of the same token (one wins, the other becomes an update).
  write(input: DeviceWrite): Promise<DeviceWriteResult>;
  get(app: string, id: string): Promise<DeviceRecord | null>;
  getMany(app: string, ids: string[]): Promise<DeviceRecord[]>;
  // Sorted by id ascending.
  list(app: string, query: DeviceQuery, page: PageQuery): Promise<DeviceRecord[]>;
  // Streams every match in id order, `batchSize` at a time, from a server-side cursor
  // (never the whole result in memory). Starts after `after` when given.
  scan(app: string, query: DeviceQuery, options: { after?: string; batchSize: number }): AsyncIterable<DeviceRecord[]>;
  // The devices of `ids` (ascending batches, as subscriptions.scanDeviceIds yields them; every id
  // after `after` when given) that match `query`, in id order, a batch per input batch; ids
  // without a device are skipped. How it reads depends on the database (see MongoJoin).
  join(app: string, ids: AsyncIterable<string[]>, query: DeviceQuery, options: { after?: string }): AsyncIterable<DeviceRecord[]>;
  count(app: string, query: DeviceQuery): Promise<number>;
  // Applies the patch to the listed devices; returns how many exist.
  update(app: string, ids: string[], patch: DevicePatch): Promise<number>;
  remove(app: string, ids: string[]): Promise<number>;
  // The user's devices on one platform, least recently seen first.
  listForUser(app: string, user: string, platform: PlatformName): Promise<DeviceRecord[]>;
  // Devices whose lastSeenAt is before `seenBefore`, by id, at most `limit`.
  listInactive(app: string, seenBefore: Date, limit: number): Promise<DeviceRecord[]>;
  removeApp(app: string): Promise<number>;
  // Devices per app and provider, for the size metrics: the one read across apps, never exposed
  // through an API.
  sizes(): Promise<AppDeviceCount[]>;
  // Bulk import, for migrating from another push service (and seeding benchmarks): creates the
  // devices whose (provider, token) the app does not hold yet, with their device topics, a batch
  // of documents per database round trip. Returns the new ids in input order; null where the token
  // was already registered (that device is left as it is) or repeats an earlier input. No domain
  // rules, app limits or user topics are applied: the caller validates. Devices are written before
  // their topics, so an import cut off between the two leaves some new devices without topics.
  importMany(app: string, devices: DeviceImport[], now: Date): Promise<Array<string | null>>;
}

export type TopicSource = "device" | "user";

export interface SubscriptionRecord {
  app: string;
  deviceId: string;
  topic: string;
  fromDevice: boolean;
  fromUser: boolean;
  // The device's user, kept in sync so topic user counts need no join.
  user: string;
}

// What a subscription row copies from its device, so that a topic broadcast reads the rows alone.
export type Subscriber = Pick<DeviceRecord, "user" | "provider" | "platform" | "token">;

// One device of a topic broadcast as its subscription rows give it. provider, platform and token
// are absent on rows written before the rows carried them: the reader takes those from the device.
export interface TopicRecipient {
  deviceId: string;
  user: string;
  provider?: ProviderName;
  platform?: PlatformName;
  token?: string;
}

export interface SubscriptionQuery {
  deviceIds?: string[];
  topics?: string[];
  prefix?: string;
}

export interface TopicCount {
  topic: string;
  deviceCount: number;
  // Distinct non-empty users among the subscribed devices.
  userCount: number;
  // Users holding the topic as a user topic.
  userTopicCount: number;
}

export interface UserTopicRecord {
  app: string;
  user: string;
  topic: string;
}

export interface SubscriptionRepository {
  // A device holds a topic while at least one source (its own list, its user's topics) holds it.
  // Every row of the device takes the subscriber's fields (the device's current user and token).
  add(app: string, deviceId: string, subscriber: Subscriber, topics: string[], source: TopicSource): Promise<void>;
  // Drops the source; the subscription goes when no source is left. Empty `topics` = every topic.
  removeSource(app: string, deviceId: string, topics: string[] | "all", source: TopicSource): Promise<void>;
  // Makes `topics` exactly the topics held by `source` (others of that source are dropped).
  set(app: string, deviceId: string, subscriber: Subscriber, topics: string[], source: TopicSource): Promise<void>;
  // Topics of each device, sorted; devices with none are absent from the map.
  topicsOf(app: string, deviceIds: string[]): Promise<Map<string, string[]>>;
  countForDevice(app: string, deviceId: string): Promise<number>;
  // Sorted by (deviceId, topic); the page cursor is `${deviceId}\n${topic}`.
  list(app: string, query: SubscriptionQuery, page: PageQuery): Promise<SubscriptionRecord[]>;
  // How many subscriptions `list` would yield over all its pages.
  count(app: string, query: SubscriptionQuery): Promise<number>;
  // After a device's user, token, provider or platform changed: its rows follow.
  setSubscriber(app: string, deviceId: string, subscriber: Subscriber): Promise<void>;
  removeDevices(app: string, deviceIds: string[]): Promise<void>;
  // Distinct device ids subscribed to any of the topics, ascending, streamed from a cursor.
  scanDeviceIds(app: string, topics: string[], options: { after?: string; batchSize: number }): AsyncIterable<string[]>;
  // The same devices with what a delivery needs, from the rows alone (no device read).
  scanRecipients(app: string, topics: string[], options: { after?: string; batchSize: number }): AsyncIterable<TopicRecipient[]>;
  stats(app: string, topics: string[]): Promise<TopicCount[]>;
  // Topics by name (cursor = topic name), with counts.
  listTopics(app: string, prefix: string, page: PageQuery): Promise<TopicCount[]>;
  // Distinct users subscribed to the topic, ascending (cursor = user).
  listTopicUsers(app: string, topic: string, page: PageQuery): Promise<string[]>;

  // User topics: the persistent topics of a user, applied to the user's devices by the services.
  addUserTopics(app: string, user: string, topics: string[]): Promise<void>;
  removeUserTopics(app: string, user: string, topics: string[]): Promise<void>;
  userTopicsOf(app: string, user: string): Promise<string[]>;
  // Sorted by (user, topic); the page cursor is `${user}\n${topic}`.
  listUserTopics(app: string, query: { users?: string[]; topics?: string[]; prefix?: string }, page: PageQuery): Promise<UserTopicRecord[]>;
  // How many user topics `listUserTopics` would yield over all its pages.
  countUserTopics(app: string, query: { users?: string[]; topics?: string[]; prefix?: string }): Promise<number>;
  removeUser(app: string, user: string): Promise<number>;
  removeApp(app: string): Promise<void>;
  // Distinct topics held by devices and device-topic subscriptions per app, for the size metrics.
  sizes(): Promise<AppTopicCount[]>;
}

export type DeviceOverflowPolicyName = "evict" | "reject";

export interface AppLimitsRecord {
  maxDevicesPerUser: number;
  deviceOverflowPolicy: DeviceOverflowPolicyName;
  maxInactiveDays: number;
  maxTopicsPerDevice: number;
  maxPublishRate: number;
  // Small publishes up to this many targets take the urgent lane; 0: the default (100).
  urgentMaxTargets: number;
}

export interface AppDeviceCount {
  app: string;
  provider: ProviderName;
  devices: number;
}

export interface AppTopicCount {
  app: string;
  topics: number;
  subscriptions: number;
}

export interface WebhookRecord {
  url: string;
  // Event types; empty: every type.
  events: string[];
  // Pusher Channels' webhook format instead of Herald's (absent: Herald's).
  format?: "pusher";
}

export interface AppRecord {
  id: string;
  name: string;
  limits: AppLimitsRecord;
  providers: ProviderName[];
  // Part of the user-token signing key derivation; bumped on rotation.
  secretVersion: number;
  // Who manages the app ("pushapp:<namespace>/<name>" for the operator), "" for API-created apps.
  owner: string;
  // The Web Push VAPID public key browsers subscribe with, "" when none is known.
  vapidPublicKey: string;
  // Where the app's events are POSTed, signed with its secret.
  webhooks: WebhookRecord[];
  // Which senders deliver its jobs (and on which topics); absent: dedicated.
  senders?: SenderModeName;
  createdAt: Date;
  updatedAt: Date;
}

export type SenderModeName = "dedicated" | "pooled";

export interface AppRepository {
  // Throws HeraldError ALREADY_EXISTS when the id is taken.
  create(app: AppRecord): Promise<void>;
  get(id: string): Promise<AppRecord | null>;
  // Sorted by id.
  list(page: PageQuery): Promise<AppRecord[]>;
  update(id: string, patch: Partial<Pick<AppRecord, "name" | "limits" | "providers" | "vapidPublicKey" | "webhooks" | "senders">> & { now: Date }): Promise<AppRecord | null>;
  // Returns the new version, or null when the app does not exist.
  bumpSecretVersion(id: string, now: Date): Promise<number | null>;
  delete(id: string): Promise<boolean>;
}

export type ApiKeyRoleName = "server" | "client";

export interface ApiKeyRecord {
  id: string;
  app: string;
  role: ApiKeyRoleName;
  name: string;
  prefix: string;
  // SHA-256 of the whole key, hex. The key itself is never stored.
  hash: string;
  createdAt: Date;
  revokedAt: Date | null;
}

export interface ApiKeyRepository {
  create(key: ApiKeyRecord): Promise<void>;
  findByHash(hash: string): Promise<ApiKeyRecord | null>;
  list(app: string): Promise<ApiKeyRecord[]>;
  // Returns the revoked key, or null when the app has no such key.
  revoke(app: string, id: string, now: Date): Promise<ApiKeyRecord | null>;
  removeApp(app: string): Promise<number>;
}

// Signatures of signed HTTP requests seen within their replay window: a second claim of the
// same key fails, whichever gateway replica sees it.
export interface NonceRepository {
  // True when the key was new (and is now claimed until expiresAt); false for a replay.
  claim(app: string, key: string, expiresAt: Date): Promise<boolean>;
  // Forgets claims that expired before `now`; returns how many.
  sweep(now: Date): Promise<number>;
}

// A provider's verdict that a token is dead, kept for the app's feedback API (Pushlet's
// application_feedback, APNs' old feedback service), for raw-token sends and devices alike.
export interface TokenFeedbackRecord {
  app: string;
  provider: ProviderName;
  token: string;
  // The provider's reason, e.g. "apns:Unregistered".
  reason: string;
  at: Date;
}

export interface TokenFeedbackRepository {
  // Idempotent per (app, provider, token): a later verdict replaces an earlier one.
  add(records: TokenFeedbackRecord[]): Promise<void>;
  // Oldest first, from `since` on; the page cursor is tokenFeedbackCursor(the last record).
  list(app: string, query: { provider?: ProviderName; since?: Date }, page: PageQuery): Promise<TokenFeedbackRecord[]>;
  // Forgets verdicts older than `before`; returns how many.
  sweep(before: Date): Promise<number>;
}

// Per-app publish-rate windows (AppLimits.max_publish_rate), shared by every dispatcher replica
// over one database: a window admits at most `limit` takes, whichever replica asks. Windows are
// named by the caller (the dispatcher uses the window's start), expire at a time it gives, and
// are forgotten by sweep (no TTL indexes on FerretDB).
export interface RateRepository {
  // Takes one of the app's `limit` slots in `window`: true when one was free (and is now taken),
  // false when all are taken (or limit <= 0). Exact under concurrent callers, in one process or
  // several. A later call with a bigger limit finds the extra slots free.
  take(app: string, window: string, limit: number, expiresAt: Date): Promise<boolean>;
  // Forgets windows whose expiresAt is before `now`; returns how many records went.
  sweep(now: Date): Promise<number>;
}

export interface Store {
  devices: DeviceRepository;
  subscriptions: SubscriptionRepository;
  apps: AppRepository;
  apiKeys: ApiKeyRepository;
  nonces: NonceRepository;
  tokenFeedback: TokenFeedbackRepository;
  rates: RateRepository;
  close(): Promise<void>;
}
