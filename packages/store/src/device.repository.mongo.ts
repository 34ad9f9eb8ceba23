import { randomUUID } from "node:crypto";
import type { Collection, Filter } from "mongodb";
import { duplicateKeyIndexes, isDuplicateKey } from "./mongo.errors.js";
import { oneOf } from "./mongo.match.js";
import { checkBatchSize, compareStrings, deviceMatcher, encodeTagKey, escapeRegex, given, tagPair, tagPairsOf, tagsOfPairs } from "./store.query.js";
import type { SubscriptionDoc } from "./subscription.repository.mongo.js";
import type {
  AppDeviceCount,
  DeviceImport,
  DevicePatch,
  DeviceQuery,
  DeviceRecord,
  DeviceRepository,
  DeviceWrite,
  DeviceWriteResult,
  PageQuery,
  PlatformName,
  ProviderName,
} from "./store.types.js";

// Tags and meta are user-chosen keys, and the domain rules allow "." in them, which FerretDB
// refuses in field names ("invalid key: key must not contain '.' sign"); so neither is stored as
// a sub-document. Tags live only in `tagPairs` ("key=value", see store.query.ts), which also
// serves tag queries; meta is an array of {k, v}.
export interface DeviceDoc {
  _id: string;
  app: string;
  provider: ProviderName;
  platform: PlatformName;
  token: string;
  user: string;
  tagPairs: string[];
  meta: Array<{ k: string; v: string }>;
  locale: string;
  timezone: string;
  createdAt: Date;
  updatedAt: Date;
  lastSeenAt: Date;
}

// Documents per insertMany of a bulk import: FerretDB pays per operation far more than per document.
const IMPORT_BATCH = 1000;

const metaDoc = (meta: Record<string, string>) => Object.entries(meta).map(([k, v]) => ({ k, v }));

function metaOf(doc: DeviceDoc["meta"] | undefined): Record<string, string> {
  const meta: Record<string, string> = {};
  for (const { k, v } of doc ?? []) Object.defineProperty(meta, k, { value: v, enumerable: true, writable: true, configurable: true });
  return meta;
}

export const toDeviceRecord = (d: DeviceDoc): DeviceRecord => ({
  id: d._id,
  app: d.app,
  provider: d.provider,
  platform: d.platform,
  token: d.token,
  user: d.user,
  tags: tagsOfPairs(d.tagPairs ?? []),
  meta: metaOf(d.meta),
  locale: d.locale,
  timezone: d.timezone,
  createdAt: d.createdAt,
  updatedAt: d.updatedAt,
  lastSeenAt: d.lastSeenAt,
});

// AND across fields, OR inside one; empty lists are no condition. `after` adds the keyset bound.
// The first condition on each field stands at the top level of the filter, the others in `$and`:
// FerretDB hands only top-level conditions to its storage (see oneOf).
export function deviceFilter(app: string, query: DeviceQuery, after?: string): Filter<DeviceDoc> {
  const top: Record<string, unknown> = { app };
  const and: Array<Filter<DeviceDoc>> = [];
  const put = (field: keyof DeviceDoc, condition: unknown) => {
    if (field in top) and.push({ [field]: condition } as Filter<DeviceDoc>);
    else top[field] = condition;
  };
  const id: { $in?: string[]; $nin?: string[]; $gt?: string } = {};
  if (given(query.excludeIds)) id.$nin = [...new Set(query.excludeIds)];
  if (after !== undefined) id.$gt = after;
  if (given(query.ids)) put("_id", Object.keys(id).length ? { ...id, $in: [...new Set(query.ids)] } : oneOf(query.ids));
  else if (Object.keys(id).length) put("_id", id);
  if (given(query.users)) put("user", oneOf(query.users));
  if (query.hasUser) put("user", { $ne: "" });
  if (given(query.providers)) put("provider", oneOf(query.providers));
  if (given(query.platforms)) put("platform", oneOf(query.platforms));
  if (given(query.tokens)) {
    const byProvider = new Map<ProviderName, string[]>();
    for (const t of query.tokens) byProvider.set(t.provider, [...(byProvider.get(t.provider) ?? []), t.token]);
    const alternatives = [...byProvider].map(([provider, tokens]) => ({ provider, token: oneOf(tokens) }));
    if (alternatives.length === 1) {
      put("provider", alternatives[0]!.provider);
      put("token", alternatives[0]!.token);
    } else and.push({ $or: alternatives } as Filter<DeviceDoc>);
  }
  for (const condition of query.tags ?? []) {
    put(
      "tagPairs",
      condition.values.length
        ? oneOf(condition.values.map((v) => tagPair(condition.key, v)))
        : // The tag merely exists: an anchored prefix match on the escaped key and its "=".
          { $regex: `^${escapeRegex(encodeTagKey(condition.key))}=` },
    );
  }
  return { ...top, ...(and.length ? { $and: and } : {}) } as Filter<DeviceDoc>;
}

// How `join` reads the devices of a stream of ids:
// - "lookup": one `_id: {$in}` query per batch, which an index answers in milliseconds (MongoDB);
// - "merge": one cursor over the app's devices in id order, merged with the ids as they come. On
//   FerretDB v1 every query but `{_id}` alone reads and decodes the whole collection (its SQLite
//   backend neither pushes such filters down nor uses indexes for them), so a lookup per batch
//   made a topic broadcast O(devices × batches); one ordered pass keeps it O(devices).
export type MongoJoin = "lookup" | "merge";

// Largest getMore of the merge cursor: its documents are consumed right away.
const MERGE_BATCH = 1000;
// Up to this many ids in all, the merge reads each device by _id instead.
const POINT_READS = 32;

export class MongoDevices implements DeviceRepository {
  constructor(
    private readonly col: Collection<DeviceDoc>,
    // device_topics: bulk imports write its rows, a token takeover deletes the replaced device's;
    // the subscription repository owns it otherwise.
    private readonly topics: Collection<SubscriptionDoc>,
    private readonly joinBy: MongoJoin,
  ) {}

  async write(input: DeviceWrite): Promise<DeviceWriteResult> {
    if (input.id !== undefined) {
      const refreshed = await this.refresh(input, input.id);
      if (refreshed) return refreshed;
    }
    return this.upsert(input);
  }

  // Every field a write owns (all but _id, app and createdAt).
  private stateOf(input: DeviceWrite) {
    return {
      provider: input.provider,
      token: input.token,
      platform: input.platform,
      user: input.user,
      tagPairs: tagPairsOf(input.tags),
      meta: metaDoc(input.meta),
      locale: input.locale,
      timezone: input.timezone,
      updatedAt: input.now,
      lastSeenAt: input.now,
    };
  }

  // Keyed by (app, provider, token). The document as it was *before* the write tells, in the same
  // atomic step, whether the upsert inserted (null) and which user the device had; this needs
  // neither `lastErrorObject.updatedExisting` nor a racy pre-read. Two concurrent upserts of a new
  // token can both try the insert on MongoDB; the loser gets E11000 and its retry is an update.
  private async upsert(input: DeviceWrite, retry = true): Promise<DeviceWriteResult> {
    const { provider, token, ...rest } = this.stateOf(input);
    const newId = randomUUID();
    try {
      const before = await this.col.findOneAndUpdate(
        { app: input.app, provider, token },
        { $set: rest, $setOnInsert: { _id: newId, createdAt: input.now } },
        { upsert: true, returnDocument: "before" },
      );
      const device = toDeviceRecord({
        _id: before?._id ?? newId,
        app: input.app,
        provider,
        token,
        ...rest,
        createdAt: before?.createdAt ?? input.now,
      });
      return { device, created: before === null, previousUser: before?.user ?? "" };
    } catch (error) {
      if (retry && isDuplicateKey(error)) return this.upsert(input, false);
      throw error;
    }
  }

  // Token refresh: the named device takes the token. Whoever else holds it is removed first (the
  // unique index forbids two holders); a crash in between leaves the named device with its old
  // token, and repeating the write completes it. Returns null when the device does not exist.
  private async refresh(input: DeviceWrite, id: string, retry = true): Promise<DeviceWriteResult | null> {
    const named = await this.col.findOne({ _id: id, app: input.app }, { projection: { provider: 1, token: 1 } });
    if (!named) return null;
    let replacedDeviceId: string | undefined;
    if (named.provider !== input.provider || named.token !== input.token) {
      const holder = { app: input.app, provider: input.provider, token: input.token };
      const other = await this.col.findOne({ ...holder, _id: { $ne: id } }, { projection: { _id: 1 } });
      if (other) {
        // Its topic rows first: a broadcast reads them alone, and rows outliving their device
        // would deliver to the token twice. A crash in between leaves a device without topics.
        await this.topics.deleteMany({ app: input.app, deviceId: other._id });
        // No projection: FerretDB's findAndModify rejects `fields` ("not implemented yet").
        replacedDeviceId = (await this.col.findOneAndDelete({ ...holder, _id: other._id }))?._id;
      }
    }
    const state = this.stateOf(input);
    try {
      const before = await this.col.findOneAndUpdate({ _id: id, app: input.app }, { $set: state }, { returnDocument: "before" });
      if (!before) return null;
      const device = toDeviceRecord({ _id: id, app: input.app, ...state, createdAt: before.createdAt });
      return { device, created: false, previousUser: before.user, ...(replacedDeviceId ? { replacedDeviceId } : {}) };
    } catch (error) {
      // Someone registered the token again between the removal and the update: once more.
      if (!retry || !isDuplicateKey(error)) throw error;
      const again = await this.refresh(input, id, false);
      return again && replacedDeviceId && !again.replacedDeviceId ? { ...again, replacedDeviceId } : again;
    }
  }

  async get(app: string, id: string): Promise<DeviceRecord | null> {
    // By _id alone, the app checked here: see MongoPublishes.get.
    const doc = await this.col.findOne({ _id: id });
    return doc && doc.app === app ? toDeviceRecord(doc) : null;
  }

  async getMany(app: string, ids: string[]): Promise<DeviceRecord[]> {
    if (ids.length === 0) return [];
    const docs = await this.col.find({ app, _id: oneOf(ids) }).sort({ _id: 1 }).toArray();
    return docs.map(toDeviceRecord);
  }

  async list(app: string, query: DeviceQuery, page: PageQuery): Promise<DeviceRecord[]> {
    if (page.limit <= 0) return [];
    const docs = await this.col.find(deviceFilter(app, query, page.after)).sort({ _id: 1 }).limit(page.limit).toArray();
    return docs.map(toDeviceRecord);
  }

  // A server-side cursor read `batchSize` documents per round trip; only the current batch is held.
  async *scan(app: string, query: DeviceQuery, options: { after?: string; batchSize: number }): AsyncIterable<DeviceRecord[]> {
    const batchSize = checkBatchSize(options.batchSize);
    const cursor = this.col.find(deviceFilter(app, query, options.after)).sort({ _id: 1 }).batchSize(batchSize);
    try {
      let batch: DeviceRecord[] = [];
      for await (const doc of cursor) {
        batch.push(toDeviceRecord(doc));
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

  async *join(app: string, ids: AsyncIterable<string[]>, query: DeviceQuery, options: { after?: string }): AsyncIterable<DeviceRecord[]> {
    if (this.joinBy === "lookup") {
      for await (const batch of ids) {
        const found = batch.length ? await this.list(app, { ...query, ids: batch }, { ...options, limit: batch.length }) : [];
        if (found.length) yield found;
      }
      return;
    }
    const batches = ids[Symbol.asyncIterator]();
    try {
      const first = await batches.next();
      if (first.done) return;
      const second = await batches.next();
      if (second.done && first.value.length <= POINT_READS) {
        const found = await this.pointReads(app, first.value, query, options.after);
        if (found.length) yield found;
        return;
      }
      const cursor = this.col.find(deviceFilter(app, query, options.after)).sort({ _id: 1 }).batchSize(MERGE_BATCH);
      try {
        let head = await cursor.next();
        for (let next: IteratorResult<string[]> = first; !next.done; next = next === first ? second : await batches.next()) {
          const found: DeviceRecord[] = [];
          for (const id of next.value) {
            while (head !== null && compareStrings(head._id, id) < 0) head = await cursor.next();
            if (head !== null && head._id === id) found.push(toDeviceRecord(head));
          }
          if (found.length) yield found;
        }
      } finally {
        await cursor.close();
      }
    } finally {
      await batches.return?.();
    }
  }

  // A handful of devices (a publish to device ids): one read by _id alone each, the one filter
  // FerretDB pushes down, instead of a pass over every device of the app.
  private async pointReads(app: string, ids: string[], query: DeviceQuery, after: string | undefined): Promise<DeviceRecord[]> {
    const match = deviceMatcher(query);
    const docs = await Promise.all(ids.map((id) => this.col.findOne({ _id: id })));
    return docs
      .filter((d): d is DeviceDoc => d !== null && d.app === app && (after === undefined || compareStrings(d._id, after) > 0))
      .map(toDeviceRecord)
      .filter(match);
  }

  async count(app: string, query: DeviceQuery): Promise<number> {
    return this.col.countDocuments(deviceFilter(app, query));
  }

  async update(app: string, ids: string[], patch: DevicePatch): Promise<number> {
    if (ids.length === 0) return 0;
    const set: Partial<DeviceDoc> = { updatedAt: patch.now };
    if (patch.user !== undefined) set.user = patch.user;
    if (patch.meta !== undefined) set.meta = metaDoc(patch.meta);
    if (patch.tags !== undefined) set.tagPairs = tagPairsOf(patch.tags);
    if (patch.locale !== undefined) set.locale = patch.locale;
    if (patch.timezone !== undefined) set.timezone = patch.timezone;
    if (patch.lastSeenAt !== undefined) set.lastSeenAt = patch.lastSeenAt;
    const result = await this.col.updateMany({ app, _id: oneOf(ids) }, { $set: set });
    return result.matchedCount;
  }

  async remove(app: string, ids: string[]): Promise<number> {
    if (ids.length === 0) return 0;
    const result = await this.col.deleteMany({ app, _id: oneOf(ids) });
    return result.deletedCount;
  }

  async listForUser(app: string, user: string, platform: PlatformName): Promise<DeviceRecord[]> {
    const docs = await this.col.find({ app, user, platform }).sort({ lastSeenAt: 1, _id: 1 }).toArray();
    return docs.map(toDeviceRecord);
  }

  async listInactive(app: string, seenBefore: Date, limit: number): Promise<DeviceRecord[]> {
    if (limit <= 0) return [];
    const docs = await this.col.find({ app, lastSeenAt: { $lt: seenBefore } }).sort({ _id: 1 }).limit(limit).toArray();
    return docs.map(toDeviceRecord);
  }

  async removeApp(app: string): Promise<number> {
    return (await this.col.deleteMany({ app })).deletedCount;
  }

  async sizes(): Promise<AppDeviceCount[]> {
    const rows = await this.col.aggregate<{ _id: { app: string; provider: ProviderName }; n: number }>([{ $group: { _id: { app: "$app", provider: "$provider" }, n: { $sum: 1 } } }]).toArray();
    return rows.map((r) => ({ app: r._id.app, provider: r._id.provider, devices: r.n }));
  }

  async importMany(app: string, devices: DeviceImport[], now: Date): Promise<Array<string | null>> {
    const ids: Array<string | null> = [];
    for (let i = 0; i < devices.length; i += IMPORT_BATCH) ids.push(...(await this.importBatch(app, devices.slice(i, i + IMPORT_BATCH), now)));
    return ids;
  }

  // Two unordered insertMany: the devices, then the topic rows of those that were new. The unique
  // (app, provider, token) index refuses tokens already held, and every other document still goes in.
  private async importBatch(app: string, batch: DeviceImport[], now: Date): Promise<Array<string | null>> {
    const docs: DeviceDoc[] = batch.map((input) => ({
      _id: randomUUID(),
      app,
      provider: input.provider,
      platform: input.platform,
      token: input.token,
      user: input.user,
      tagPairs: tagPairsOf(input.tags),
      meta: metaDoc(input.meta),
      locale: input.locale,
      timezone: input.timezone,
      createdAt: now,
      updatedAt: now,
      lastSeenAt: now,
    }));
    const ids: Array<string | null> = docs.map((d) => d._id);
    if (docs.length === 0) return ids;
    try {
      await this.col.insertMany(docs, { ordered: false });
    } catch (error) {
      const refused = duplicateKeyIndexes(error);
      if (!refused) throw error;
      for (const i of refused) ids[i] = null;
    }
    const rows = batch.flatMap((input, i) => {
      const deviceId = ids[i];
      if (!deviceId) return [];
      const { user, provider, platform, token } = input;
      return [...new Set(input.topics)].map((topic) => ({ app, deviceId, topic, user, provider, platform, token, fromDevice: true, fromUser: false }));
    });
    if (rows.length) await this.topics.insertMany(rows, { ordered: false });
    return ids;
  }
}
