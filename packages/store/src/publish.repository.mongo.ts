import { alreadyExists } from "@herald/platform";
import { Binary, type Collection, type Db, type Document, type Filter, type IndexDescription, type UpdateFilter } from "mongodb";
import { isDuplicateKey } from "./mongo.errors.js";
import { claimed, countChanges, NUMERIC_COUNTS } from "./publish.repository.memory.js";
import type { CountDeltas, JobResultRef, PublishCountsRecord, PublishQuery, PublishRecord, PublishRepository, PublishStateName } from "./publish.types.js";
import { given, tagPairsOf, tagsOfPairs } from "./store.query.js";

// Publishes on MongoDB / FerretDB v1 (DESIGN §3).
//
// - `publishes`: _id = publish id. FerretDB has no partialFilterExpression, so the idempotency
//   key is `uidKey`: "u:" + uid, or "i:" + id when the caller gave none (the prefixes keep a uid
//   from ever colliding with another publish's id); unique {app, uidKey}.
// - Labels are user-chosen keys that may hold "." (refused in FerretDB field names), so they are
//   stored like device tags: `labelPairs`, an array of "key=value" (store.query.ts), which turns a
//   label filter into one $all.
// - failedByReason keys are escaped ("%" → %25, "." → %2E, "$" → %24, NUL → %00; "" → "%") so a
//   reason is always one field name and $inc "counts.failedByReason.<key>" never nests.
// - `publish_results`: _id = `${app}\n${publishId}\n${resultKey}`; marking is an insert, and the
//   duplicate key of a second insert says "already seen".
// - `countedResults`: the keys of the few results the dispatcher adds itself (expired or
//   cancelled before the fan-out, unconfigured providers), on the publish itself, so counting and
//   marking are one single-document update. Reads leave the array out. Job results do not go
//   there (every update rewrites the array: 4,000 step results of a 100k broadcast cost FerretDB
//   65 CPU s and took each update from 6 to 31 ms); `resultOffsets` guards them instead.
//
// FerretDB 1.24 (SQLite) executes every update and findAndModify as "query, apply in Go, write
// the whole document back by _id": two concurrent $inc on one document lose one increment, and
// two concurrent conditional findOneAndUpdate calls can both match. Only inserts against a unique
// index (and deletes) are atomic there. So the read-modify-write calls on one publish run one
// after another within the process — across every repository of the process over the same
// database (`serial`, keyed by database name and publish id); on MongoDB that costs next to
// nothing (the server is atomic anyway). Writers in *different* processes on FerretDB are not
// protected: there, concurrent writes to one publish from two processes can lose one of them.

export const PUBLISH_COLLECTIONS = { publishes: "publishes", results: "publish_results" } as const;

const PUBLISH_INDEXES: Record<keyof typeof PUBLISH_COLLECTIONS, IndexDescription[]> = {
  publishes: [
    { name: "app_uidKey", key: { app: 1, uidKey: 1 }, unique: true },
    // list: one app, newest first, keyset on _id.
    { name: "app_id", key: { app: 1, _id: 1 } },
    { name: "app_state", key: { app: 1, state: 1 } },
    { name: "state_sendAt", key: { state: 1, sendAt: 1 } },
    { name: "state_updatedAt", key: { state: 1, updatedAt: 1 } },
  ],
  results: [{ name: "app", key: { app: 1 } }],
};

// Only missing indexes, one per createIndexes command (FerretDB 1.24 panics on a createIndexes
// naming several indexes that all exist).
export async function ensurePublishIndexes(db: Db): Promise<void> {
  for (const [name, indexes] of Object.entries(PUBLISH_INDEXES) as Array<[keyof typeof PUBLISH_COLLECTIONS, IndexDescription[]]>) {
    const col = db.collection(PUBLISH_COLLECTIONS[name]);
    let existing: Set<string>;
    try {
      existing = new Set((await col.listIndexes().toArray()).map((i) => String(i.name)));
    } catch (error) {
      if ((error as { code?: unknown }).code !== 26) throw error; // NamespaceNotFound: no collection yet
      existing = new Set();
    }
    for (const index of indexes) if (!existing.has(index.name!)) await col.createIndexes([index]);
  }
}

type StoredCounts = Omit<PublishCountsRecord, "failedByReason"> & { failedByReason: Record<string, number> };

export interface PublishDoc {
  _id: string;
  app: string;
  uid: string;
  uidKey: string;
  state: PublishStateName;
  request: Binary;
  labelPairs: string[];
  counts: StoredCounts;
  fanoutCursor: string;
  fanoutDone: boolean;
  sendAt: Date | null;
  expireAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  error: string;
  countedResults?: string[];
  // countJobResult: the highest results-topic offset added, per partition ("0", "1", ...).
  resultOffsets?: Record<string, number>;
}

// Reads never need the counted result keys.
const WITHOUT_KEYS = { projection: { countedResults: 0 } } as const;

interface ResultDoc {
  _id: string;
  app: string;
  publishId: string;
  resultKey: string;
  // countJobResult's claims: the sender run that reported the job attempt first, and where
  // ("partition:offset") that report was read.
  run?: string;
  at?: string;
}


const ESCAPES: Record<string, string> = { "%": "%25", ".": "%2E", $: "%24", "\0": "%00" };
const UNESCAPES: Record<string, string> = Object.fromEntries(Object.entries(ESCAPES).map(([k, v]) => [v, k]));

export const encodeReasonKey = (reason: string): string => (reason === "" ? "%" : reason.replace(/[%.$\0]/g, (c) => ESCAPES[c]!));
export const decodeReasonKey = (key: string): string => (key === "%" ? "" : key.replace(/%(25|2E|24|00)/g, (c) => UNESCAPES[c]!));

const uidKeyOf = (p: Pick<PublishRecord, "id" | "uid">) => (p.uid ? `u:${p.uid}` : `i:${p.id}`);

function toDoc(p: PublishRecord): PublishDoc {
  const failedByReason: Record<string, number> = {};
  for (const [reason, n] of Object.entries(p.counts.failedByReason)) {
    Object.defineProperty(failedByReason, encodeReasonKey(reason), { value: n, enumerable: true, writable: true, configurable: true });
  }
  return {
    _id: p.id,
    app: p.app,
    uid: p.uid,
    uidKey: uidKeyOf(p),
    state: p.state,
    request: new Binary(new Uint8Array(p.request)),
    labelPairs: tagPairsOf(p.labels),
    counts: { ...p.counts, failedByReason },
    fanoutCursor: p.fanoutCursor,
    fanoutDone: p.fanoutDone,
    sendAt: p.sendAt,
    expireAt: p.expireAt,
    createdAt: p.createdAt,
    updatedAt: p.updatedAt,
    startedAt: p.startedAt,
    finishedAt: p.finishedAt,
    error: p.error,
  };
}

function requestBytes(value: unknown): Uint8Array {
  if (value instanceof Binary) return new Uint8Array(value.value());
  if (value instanceof Uint8Array) return new Uint8Array(value);
  return new Uint8Array();
}

export function toPublishRecord(d: PublishDoc): PublishRecord {
  const stored = (d.counts ?? {}) as Partial<StoredCounts>;
  const failedByReason: Record<string, number> = {};
  for (const [key, n] of Object.entries(stored.failedByReason ?? {})) {
    Object.defineProperty(failedByReason, decodeReasonKey(key), { value: n, enumerable: true, writable: true, configurable: true });
  }
  const counts = { failedByReason } as PublishCountsRecord;
  for (const name of NUMERIC_COUNTS) counts[name] = stored[name] ?? 0;
  return {
    id: d._id,
    app: d.app,
    uid: d.uid,
    state: d.state,
    request: requestBytes(d.request),
    labels: tagsOfPairs(d.labelPairs ?? []),
    counts,
    fanoutCursor: d.fanoutCursor ?? "",
    fanoutDone: d.fanoutDone ?? false,
    sendAt: d.sendAt ?? null,
    expireAt: d.expireAt ?? null,
    createdAt: d.createdAt,
    updatedAt: d.updatedAt,
    startedAt: d.startedAt ?? null,
    finishedAt: d.finishedAt ?? null,
    error: d.error ?? "",
  };
}

// Runs the tasks of one key one after another, in call order; different keys run in parallel.
export class KeyedSerializer {
  private readonly tails = new Map<string, Promise<void>>();

  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const result = previous.then(task);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }
}

// One per process: every repository over a database shares it.
const serial = new KeyedSerializer();

class MongoPublishes implements PublishRepository {
  private readonly dbName: string;

  constructor(
    private readonly col: Collection<PublishDoc>,
    private readonly results: Collection<ResultDoc>,
  ) {
    this.dbName = col.dbName;
  }

  create(publish: PublishRecord): Promise<{ publish: PublishRecord; created: boolean }> {
    return this.insert(publish, true);
  }

  private async insert(publish: PublishRecord, retry: boolean): Promise<{ publish: PublishRecord; created: boolean }> {
    try {
      await this.col.insertOne(toDoc(publish));
      return { publish: toPublishRecord(toDoc(publish)), created: true };
    } catch (error) {
      if (!isDuplicateKey(error)) throw error;
    }
    // Either the uid is taken (the usual case, also the loser of a concurrent create) or the id.
    if (publish.uid) {
      const existing = await this.col.findOne({ app: publish.app, uidKey: uidKeyOf(publish) }, WITHOUT_KEYS);
      if (existing) return { publish: toPublishRecord(existing), created: false };
      // The holder of the uid vanished in between (removeApp): try once more.
      if (retry && !(await this.col.countDocuments({ _id: publish.id }, { limit: 1 }))) return this.insert(publish, false);
    }
    throw alreadyExists("publish", publish.id);
  }

  async get(app: string, id: string): Promise<PublishRecord | null> {
    // By _id alone, the app checked here: FerretDB v1 pushes only an exact {_id} filter down to
    // its SQLite backend; with `app` beside it every read decodes the whole collection.
    const doc = await this.col.findOne({ _id: id }, WITHOUT_KEYS);
    return doc && doc.app === app ? toPublishRecord(doc) : null;
  }

  async list(app: string, query: PublishQuery, page: { before?: string; limit: number }): Promise<PublishRecord[]> {
    if (page.limit <= 0) return [];
    const filter: Filter<PublishDoc> = { app };
    if (page.before !== undefined) filter._id = { $lt: page.before };
    if (given(query.states)) filter.state = { $in: [...new Set(query.states)] };
    if (query.uid) filter.uid = query.uid;
    const labels = tagPairsOf(query.labels ?? {});
    if (labels.length) filter.labelPairs = { $all: labels };
    const docs = await this.col.find(filter, WITHOUT_KEYS).sort({ _id: -1 }).limit(page.limit).toArray();
    return docs.map(toPublishRecord);
  }

  // One findOneAndUpdate; the document after it, or null when nothing matched.
  private async update(app: string, id: string, condition: Filter<PublishDoc>, update: UpdateFilter<PublishDoc>): Promise<PublishRecord | null> {
    return serial.run(`${this.dbName}\n${id}`, async () => {
      // No projection: FerretDB's findAndModify rejects `fields`.
      const doc = await this.col.findOneAndUpdate({ _id: id, app, ...condition }, update, { returnDocument: "after" });
      return doc ? toPublishRecord(doc) : null;
    });
  }

  async transition(
    app: string,
    id: string,
    from: PublishStateName[],
    to: PublishStateName,
    fields?: { startedAt?: Date; finishedAt?: Date; error?: string; fanoutDone?: boolean; now: Date },
  ): Promise<PublishRecord | null> {
    if (from.length === 0) return null;
    const set: Partial<PublishDoc> = { state: to, updatedAt: fields?.now ?? new Date() };
    if (fields?.startedAt !== undefined) set.startedAt = fields.startedAt;
    if (fields?.finishedAt !== undefined) set.finishedAt = fields.finishedAt;
    if (fields?.error !== undefined) set.error = fields.error;
    if (fields?.fanoutDone !== undefined) set.fanoutDone = fields.fanoutDone;
    return this.update(app, id, { state: { $in: [...new Set(from)] } }, { $set: set });
  }

  async saveFanout(app: string, id: string, progress: { cursor: string; targetedDelta: number; done: boolean; now: Date }): Promise<void> {
    const { counts } = countChanges({ targeted: progress.targetedDelta });
    const update: Document = { $set: { fanoutCursor: progress.cursor, fanoutDone: progress.done, updatedAt: progress.now } };
    if (counts.length) update.$inc = { "counts.targeted": progress.targetedDelta };
    await this.update(app, id, {}, update);
  }

  async addCounts(app: string, id: string, deltas: CountDeltas, now: Date): Promise<PublishRecord | null> {
    return this.update(app, id, {}, countsUpdate(deltas, now));
  }

  async countResult(app: string, id: string, resultKey: string, deltas: CountDeltas, now: Date): Promise<{ counted: boolean; publish: PublishRecord | null }> {
    const update = countsUpdate(deltas, now);
    update.$push = { countedResults: resultKey };
    const counted = await this.update(app, id, { countedResults: { $ne: resultKey } }, update);
    return counted ? { counted: true, publish: counted } : { counted: false, publish: await this.get(app, id) };
  }

  async countJobResult(app: string, id: string, result: JobResultRef, deltas: CountDeltas, now: Date): Promise<{ outcome: "counted" | "duplicate" | "seen"; publish: PublishRecord | null }> {
    const claim: ResultDoc = { _id: `${app}\n${id}\ncount:${result.key}`, app, publishId: id, resultKey: `count:${result.key}`, run: result.run, at: `${result.partition}:${result.offset}` };
    let first = claim;
    try {
      await this.results.insertOne(claim);
    } catch (error) {
      if (!isDuplicateKey(error)) throw error;
      first = (await this.results.findOne({ _id: claim._id })) ?? claim;
    }
    const kind = claimed(first, claim);
    if (kind === "again") return { outcome: "seen", publish: await this.get(app, id) };
    const update = countsUpdate(kind === "duplicate" ? { duplicates: result.sentByRun } : deltas, now);
    const offset = Number(result.offset);
    const field = `resultOffsets.${result.partition}`;
    update.$set = { ...update.$set, [field]: offset };
    const added = await this.update(app, id, { $or: [{ [field]: { $exists: false } }, { [field]: { $lt: offset } }] }, update);
    if (added) return { outcome: kind === "duplicate" ? "duplicate" : "counted", publish: added };
    return { outcome: "seen", publish: await this.get(app, id) };
  }

  async markResult(app: string, publishId: string, resultKey: string): Promise<boolean> {
    try {
      await this.results.insertOne({ _id: `${app}\n${publishId}\n${resultKey}`, app, publishId, resultKey });
      return true;
    } catch (error) {
      if (isDuplicateKey(error)) return false;
      throw error;
    }
  }

  async listDue(now: Date, limit: number): Promise<PublishRecord[]> {
    if (limit <= 0) return [];
    const docs = await this.col.find({ state: "scheduled", sendAt: { $lte: now } }, WITHOUT_KEYS).sort({ sendAt: 1, _id: 1 }).limit(limit).toArray();
    return docs.map(toPublishRecord);
  }

  async listStale(states: PublishStateName[], before: Date, limit: number): Promise<PublishRecord[]> {
    if (limit <= 0 || states.length === 0) return [];
    const docs = await this.col
      .find({ state: { $in: [...new Set(states)] }, updatedAt: { $lt: before } }, WITHOUT_KEYS)
      .sort({ updatedAt: 1, _id: 1 })
      .limit(limit)
      .toArray();
    return docs.map(toPublishRecord);
  }

  async removeApp(app: string): Promise<number> {
    const removed = (await this.col.deleteMany({ app })).deletedCount;
    await this.results.deleteMany({ app });
    return removed;
  }
}

function countsUpdate(deltas: CountDeltas, now: Date): Document {
  const { counts, reasons } = countChanges(deltas);
  const inc: Record<string, number> = {};
  for (const [name, n] of counts) inc[`counts.${name}`] = n;
  for (const [reason, n] of reasons) {
    const field = `counts.failedByReason.${encodeReasonKey(reason)}`;
    inc[field] = (inc[field] ?? 0) + n;
  }
  const update: Document = { $set: { updatedAt: now } };
  if (Object.keys(inc).length) update.$inc = inc;
  return update;
}

export async function createMongoPublishRepository(db: Db): Promise<PublishRepository> {
  await ensurePublishIndexes(db);
  return new MongoPublishes(db.collection<PublishDoc>(PUBLISH_COLLECTIONS.publishes), db.collection<ResultDoc>(PUBLISH_COLLECTIONS.results));
}
