import type { Collection, Document, Filter, ObjectId } from "mongodb";
import { isDuplicateKey } from "./mongo.errors.js";
import { oneOf } from "./mongo.match.js";
import { checkBatchSize, compareStrings, escapeRegex, followsSubscriber, given, splitCursor, subscriberOf } from "./store.query.js";
import type {
  AppTopicCount,
  PlatformName,
  ProviderName,
  PageQuery,
  SubscriptionQuery,
  SubscriptionRecord,
  SubscriptionRepository,
  Subscriber,
  TopicCount,
  TopicRecipient,
  TopicSource,
  UserTopicRecord,
} from "./store.types.js";

// device_topics: one row per (app, deviceId, topic) with a flag per source. Removing a source
// first clears its flag, then deletes the rows no source holds any more. Clearing never races
// with another source's removal (each flag is its own field), and a crash between the two steps
// leaves rows with both flags false that the next removeSource/set of the device (or a retry)
// deletes; until then every read treats such a row as absent (LIVE).
export interface SubscriptionDoc {
  _id?: ObjectId;
  app: string;
  deviceId: string;
  topic: string;
  fromDevice: boolean;
  fromUser: boolean;
  // The device's subscriber fields (Subscriber): a broadcast reads them here, not from the device.
  // provider, platform and token are absent on rows written before the rows carried them.
  user: string;
  provider?: ProviderName;
  platform?: PlatformName;
  token?: string;
}

export interface UserTopicDoc {
  _id?: ObjectId;
  app: string;
  user: string;
  topic: string;
  createdAt?: Date;
}

type Flag = "fromDevice" | "fromUser";
const flagOf = (source: TopicSource): Flag => (source === "device" ? "fromDevice" : "fromUser");
const otherOf = (flag: Flag): Flag => (flag === "fromDevice" ? "fromUser" : "fromDevice");

const LIVE: Filter<SubscriptionDoc> = { $or: [{ fromDevice: true }, { fromUser: true }] };
const DEAD = { fromDevice: false, fromUser: false } as const;

const prefixMatch = (prefix: string) => ({ $regex: `^${escapeRegex(prefix)}` });

// Keyset bound on a two-part sort key (a, b): strictly after (x, y).
const after2 = (a: string, b: string, cursor: string): Document => {
  const [x, y] = splitCursor(cursor);
  return { $or: [{ [a]: { $gt: x } }, { [a]: x, [b]: { $gt: y } }] };
};

const dedupe = (topics: readonly string[]) => [...new Set(topics)];

export class MongoSubscriptions implements SubscriptionRepository {
  constructor(
    private readonly subs: Collection<SubscriptionDoc>,
    private readonly userTopics: Collection<UserTopicDoc>,
  ) {}

  async add(app: string, deviceId: string, subscriber: Subscriber, topics: string[], source: TopicSource): Promise<void> {
    await this.hold(app, deviceId, subscriberOf(subscriber), topics, source, true);
  }

  // Every row of the device follows the subscriber (with no topics, that is all it does). One
  // read of the device's rows and at most three writes whatever the number of topics: FerretDB
  // pays per operation, and per-topic upserts made a 5000-topic device take over 30 s there. An
  // SDK re-registering with nothing changed costs the read alone.
  private async hold(app: string, deviceId: string, subscriber: Subscriber, topics: string[], source: TopicSource, retry: boolean): Promise<void> {
    const flag = flagOf(source);
    const wanted = dedupe(topics);
    const rows = await this.subs
      .find({ app, deviceId }, { projection: { _id: 0, topic: 1, [flag]: 1, user: 1, provider: 1, platform: 1, token: 1 } })
      .toArray();
    if (rows.some((r) => !followsSubscriber(r, subscriber))) await this.subs.updateMany({ app, deviceId }, { $set: subscriber });
    const existing = new Set(rows.map((r) => r.topic));
    const wantedSet = new Set(wanted);
    const unflagged = rows.filter((r) => !r[flag] && wantedSet.has(r.topic)).map((r) => r.topic);
    if (unflagged.length) await this.subs.updateMany({ app, deviceId, topic: { $in: unflagged } }, { $set: { [flag]: true } });
    const fresh = wanted.filter((t) => !existing.has(t));
    if (fresh.length === 0) return;
    const docs = fresh.map((topic) => ({ app, deviceId, topic, ...subscriber, fromDevice: flag === "fromDevice", fromUser: flag === "fromUser" }));
    try {
      await this.subs.insertMany(docs, { ordered: false });
    } catch (error) {
      // A concurrent add inserted some of these rows first: the retry finds and flags them.
      if (retry && isDuplicateKey(error)) return this.hold(app, deviceId, subscriber, topics, source, false);
      throw error;
    }
  }

  async removeSource(app: string, deviceId: string, topics: string[] | "all", source: TopicSource): Promise<void> {
    const flag = flagOf(source);
    const which = topics === "all" || topics.length === 0 ? {} : { topic: { $in: dedupe(topics) } };
    await this.subs.updateMany({ app, deviceId, ...which, [flag]: true }, { $set: { [flag]: false } });
    await this.sweep(app, deviceId);
  }

  async set(app: string, deviceId: string, subscriber: Subscriber, topics: string[], source: TopicSource): Promise<void> {
    const flag = flagOf(source);
    // Add first: a crash after it leaves extra topics that the repeated call removes, never a gap.
    await this.add(app, deviceId, subscriber, topics, source);
    const others = topics.length ? { topic: { $nin: dedupe(topics) } } : {};
    await this.subs.updateMany({ app, deviceId, ...others, [flag]: true }, { $set: { [flag]: false } });
    await this.sweep(app, deviceId);
  }

  // Deletes the device's rows that no source holds.
  private async sweep(app: string, deviceId: string): Promise<void> {
    await this.subs.deleteMany({ app, deviceId, ...DEAD });
  }

  async topicsOf(app: string, deviceIds: string[]): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    if (deviceIds.length === 0) return out;
    const rows = this.subs
      .find({ app, deviceId: oneOf(deviceIds), ...LIVE }, { projection: { _id: 0, deviceId: 1, topic: 1 } })
      .sort({ deviceId: 1, topic: 1 });
    for await (const row of rows) {
      const list = out.get(row.deviceId);
      if (list) list.push(row.topic);
      else out.set(row.deviceId, [row.topic]);
    }
    return out;
  }

  async countForDevice(app: string, deviceId: string): Promise<number> {
    return this.subs.countDocuments({ app, deviceId, ...LIVE });
  }

  async list(app: string, query: SubscriptionQuery, page: PageQuery): Promise<SubscriptionRecord[]> {
    if (page.limit <= 0) return [];
    const and = subscriptionFilter(query);
    if (page.after !== undefined) and.push(after2("deviceId", "topic", page.after));
    const docs = await this.subs.find({ app, $and: and }).sort({ deviceId: 1, topic: 1 }).limit(page.limit).toArray();
    return docs.map((d) => ({ app: d.app, deviceId: d.deviceId, topic: d.topic, fromDevice: d.fromDevice, fromUser: d.fromUser, user: d.user }));
  }

  async count(app: string, query: SubscriptionQuery): Promise<number> {
    return this.subs.countDocuments({ app, $and: subscriptionFilter(query) });
  }

  async setSubscriber(app: string, deviceId: string, subscriber: Subscriber): Promise<void> {
    await this.subs.updateMany({ app, deviceId }, { $set: subscriberOf(subscriber) });
  }

  async removeDevices(app: string, deviceIds: string[]): Promise<void> {
    if (deviceIds.length === 0) return;
    await this.subs.deleteMany({ app, deviceId: oneOf(deviceIds) });
  }

  // One cursor over the rows of every topic, sorted by device id (index {app, topic, deviceId}: a
  // merge of the per-topic ranges on MongoDB), so a device held by several topics comes out in
  // adjacent rows and is emitted once. Only the current batch is held.
  scanDeviceIds(app: string, topics: string[], options: { after?: string; batchSize: number }): AsyncIterable<string[]> {
    return this.scanRows(app, topics, options, { deviceId: 1 }, (row) => row.deviceId);
  }

  scanRecipients(app: string, topics: string[], options: { after?: string; batchSize: number }): AsyncIterable<TopicRecipient[]> {
    return this.scanRows(app, topics, options, { deviceId: 1, user: 1, provider: 1, platform: 1, token: 1 }, (row): TopicRecipient => ({
      deviceId: row.deviceId,
      user: row.user,
      ...(row.provider !== undefined ? { provider: row.provider } : {}),
      ...(row.platform !== undefined ? { platform: row.platform } : {}),
      ...(row.token !== undefined ? { token: row.token } : {}),
    }));
  }

  private async *scanRows<T>(
    app: string,
    topics: string[],
    options: { after?: string; batchSize: number },
    fields: Partial<Record<keyof SubscriptionDoc, 1>>,
    map: (row: SubscriptionDoc) => T,
  ): AsyncIterable<T[]> {
    const batchSize = checkBatchSize(options.batchSize);
    if (topics.length === 0) return;
    const filter: Filter<SubscriptionDoc> = {
      app,
      topic: oneOf(topics),
      ...(options.after !== undefined ? { deviceId: { $gt: options.after } } : {}),
      ...LIVE,
    };
    const cursor = this.subs.find(filter, { projection: { _id: 0, ...fields } }).sort({ deviceId: 1 }).batchSize(batchSize);
    try {
      let batch: T[] = [];
      let last: string | undefined;
      for await (const row of cursor) {
        if (row.deviceId === last) continue;
        last = row.deviceId;
        batch.push(map(row));
        if (batch.length === batchSize) {
          yield batch;
          batch = [];
        }
      }
      if (batch.length) yield batch;
    } finally {
      await cursor.close();
    }
  }

  // Three $match/$group passes (FerretDB v1 has no $addToSet accumulator, no $facet): devices per
  // topic, distinct non-empty users per topic (group by (topic, user), then count per topic), and
  // user-topic holders per topic.
  async stats(app: string, topics: string[]): Promise<TopicCount[]> {
    const names = dedupe(topics);
    if (names.length === 0) return [];
    type Row = { _id: string; n: number };
    const counted = async (rows: Promise<Row[]>) => new Map((await rows).map((r) => [r._id, r.n]));
    const [devices, users, holders] = await Promise.all([
      counted(this.subs.aggregate<Row>([{ $match: { app, topic: { $in: names }, ...LIVE } }, { $group: { _id: "$topic", n: { $sum: 1 } } }]).toArray()),
      counted(
        this.subs
          .aggregate<Row>([
            { $match: { app, topic: { $in: names }, user: { $ne: "" }, ...LIVE } },
            { $group: { _id: { topic: "$topic", user: "$user" } } },
            { $group: { _id: "$_id.topic", n: { $sum: 1 } } },
          ])
          .toArray(),
      ),
      counted(this.userTopics.aggregate<Row>([{ $match: { app, topic: { $in: names } } }, { $group: { _id: "$topic", n: { $sum: 1 } } }]).toArray()),
    ]);
    return names.map((topic) => ({
      topic,
      deviceCount: devices.get(topic) ?? 0,
      userCount: users.get(topic) ?? 0,
      userTopicCount: holders.get(topic) ?? 0,
    }));
  }

  // Topics held by a device or as a user topic, by name. Each collection gives its next `limit`
  // distinct names after the cursor; the merge keeps the first `limit`.
  async listTopics(app: string, prefix: string, page: PageQuery): Promise<TopicCount[]> {
    if (page.limit <= 0) return [];
    const topic = { ...(prefix ? prefixMatch(prefix) : {}), ...(page.after !== undefined ? { $gt: page.after } : {}) };
    const match = { app, ...(Object.keys(topic).length ? { topic } : {}) };
    const distinct = (extra: Document): Document[] => [
      { $match: { ...match, ...extra } },
      { $group: { _id: "$topic" } },
      { $sort: { _id: 1 } },
      { $limit: page.limit },
    ];
    const [fromDevices, fromUsers] = await Promise.all([
      this.subs.aggregate<{ _id: string }>(distinct(LIVE)).toArray(),
      this.userTopics.aggregate<{ _id: string }>(distinct({})).toArray(),
    ]);
    const names = dedupe([...fromDevices, ...fromUsers].map((r) => r._id))
      .sort(compareStrings)
      .slice(0, page.limit);
    return this.stats(app, names);
  }

  async listTopicUsers(app: string, topic: string, page: PageQuery): Promise<string[]> {
    if (page.limit <= 0) return [];
    const user = page.after !== undefined ? { $ne: "", $gt: page.after } : { $ne: "" };
    const rows = await this.subs
      .aggregate<{ _id: string }>([
        { $match: { app, topic, user, ...LIVE } },
        { $group: { _id: "$user" } },
        { $sort: { _id: 1 } },
        { $limit: page.limit },
      ])
      .toArray();
    return rows.map((r) => r._id);
  }

  async addUserTopics(app: string, user: string, topics: string[]): Promise<void> {
    await this.holdUserTopics(app, user, topics, true);
  }

  private async holdUserTopics(app: string, user: string, topics: string[], retry: boolean): Promise<void> {
    if (topics.length === 0) return;
    const wanted = dedupe(topics);
    const existing = new Set(
      (await this.userTopics.find({ app, user, topic: { $in: wanted } }).project<{ topic: string }>({ topic: 1, _id: 0 }).toArray()).map((r) => r.topic),
    );
    const now = new Date();
    const docs = wanted.filter((t) => !existing.has(t)).map((topic) => ({ app, user, topic, createdAt: now }));
    if (docs.length === 0) return;
    try {
      await this.userTopics.insertMany(docs, { ordered: false });
    } catch (error) {
      if (retry && isDuplicateKey(error)) return this.holdUserTopics(app, user, topics, false);
      throw error;
    }
  }

  async removeUserTopics(app: string, user: string, topics: string[]): Promise<void> {
    if (topics.length === 0) return;
    await this.userTopics.deleteMany({ app, user, topic: { $in: dedupe(topics) } });
  }

  async userTopicsOf(app: string, user: string): Promise<string[]> {
    const docs = await this.userTopics.find({ app, user }, { projection: { _id: 0, topic: 1 } }).sort({ topic: 1 }).toArray();
    return docs.map((d) => d.topic);
  }

  async listUserTopics(app: string, query: { users?: string[]; topics?: string[]; prefix?: string }, page: PageQuery): Promise<UserTopicRecord[]> {
    if (page.limit <= 0) return [];
    const and = userTopicFilter(query);
    if (page.after !== undefined) and.push(after2("user", "topic", page.after));
    const docs = await this.userTopics
      .find({ app, ...(and.length ? { $and: and } : {}) })
      .sort({ user: 1, topic: 1 })
      .limit(page.limit)
      .toArray();
    return docs.map((d) => ({ app: d.app, user: d.user, topic: d.topic }));
  }

  async countUserTopics(app: string, query: { users?: string[]; topics?: string[]; prefix?: string }): Promise<number> {
    const and = userTopicFilter(query);
    return this.userTopics.countDocuments({ app, ...(and.length ? { $and: and } : {}) });
  }

  async removeUser(app: string, user: string): Promise<number> {
    return (await this.userTopics.deleteMany({ app, user })).deletedCount;
  }

  async removeApp(app: string): Promise<void> {
    await this.subs.deleteMany({ app });
    await this.userTopics.deleteMany({ app });
  }

  async sizes(): Promise<AppTopicCount[]> {
    type Row = { _id: string; n: number };
    // Two passes: FerretDB 1.x sums a field of an earlier $group's output as 0.
    const [subscriptions, topics] = await Promise.all([
      this.subs.aggregate<Row>([{ $match: LIVE }, { $group: { _id: "$app", n: { $sum: 1 } } }]).toArray(),
      this.subs.aggregate<Row>([{ $match: LIVE }, { $group: { _id: { app: "$app", topic: "$topic" } } }, { $group: { _id: "$_id.app", n: { $sum: 1 } } }]).toArray(),
    ]);
    const topicsOfApp = new Map(topics.map((r) => [r._id, r.n]));
    return subscriptions.map((r) => ({ app: r._id, topics: topicsOfApp.get(r._id) ?? 0, subscriptions: r.n }));
  }
}

// The conditions of a subscription listing (list and count read the same rows).
function subscriptionFilter(query: SubscriptionQuery): Document[] {
  const and: Document[] = [LIVE];
  if (given(query.deviceIds)) and.push({ deviceId: { $in: dedupe(query.deviceIds) } });
  if (given(query.topics)) and.push({ topic: { $in: dedupe(query.topics) } });
  if (query.prefix) and.push({ topic: prefixMatch(query.prefix) });
  return and;
}

function userTopicFilter(query: { users?: string[]; topics?: string[]; prefix?: string }): Document[] {
  const and: Document[] = [];
  if (given(query.users)) and.push({ user: { $in: dedupe(query.users) } });
  if (given(query.topics)) and.push({ topic: { $in: dedupe(query.topics) } });
  if (query.prefix) and.push({ topic: prefixMatch(query.prefix) });
  return and;
}
