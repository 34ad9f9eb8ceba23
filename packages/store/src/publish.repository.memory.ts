import { alreadyExists } from "@herald/platform";
import { compareStrings, given } from "./store.query.js";
import type { CountDeltas, JobResultRef, PublishCountsRecord, PublishQuery, PublishRecord, PublishRepository, PublishStateName } from "./publish.types.js";

// The in-memory publish repository of the embedded mode. Records are copied on the way in and
// out (the request bytes as a plain Uint8Array of exactly its own bytes), and every method runs
// synchronously inside its promise, so each call is atomic.

const copyDate = (d: Date | null): Date | null => (d === null ? null : new Date(d.getTime()));

// Spread, not assignment: a label or reason named "__proto__" stays a plain own entry.
export function copyPublish(p: PublishRecord): PublishRecord {
  return {
    ...p,
    request: new Uint8Array(p.request),
    labels: { ...p.labels },
    counts: { ...p.counts, failedByReason: { ...p.counts.failedByReason } },
    sendAt: copyDate(p.sendAt),
    expireAt: copyDate(p.expireAt),
    createdAt: new Date(p.createdAt.getTime()),
    updatedAt: new Date(p.updatedAt.getTime()),
    startedAt: copyDate(p.startedAt),
    finishedAt: copyDate(p.finishedAt),
  };
}

type NumericCount = Exclude<keyof PublishCountsRecord, "failedByReason">;

export const NUMERIC_COUNTS: readonly NumericCount[] = [
  "targeted",
  "sent",
  "failed",
  "invalidTokens",
  "expired",
  "cancelled",
  "deadLettered",
  "duplicates",
  "retries",
  "deliveredReceipts",
  "openedReceipts",
];

// The non-zero deltas of a CountDeltas, checked: a counter only moves by whole numbers.
export function countChanges(deltas: CountDeltas): { counts: Array<[NumericCount, number]>; reasons: Array<[string, number]> } {
  const check = (field: string, n: number) => {
    if (!Number.isSafeInteger(n)) throw new RangeError(`count delta ${field} must be an integer, got ${n}`);
    return n !== 0;
  };
  const counts: Array<[NumericCount, number]> = [];
  for (const name of NUMERIC_COUNTS) {
    const n = deltas[name];
    if (n !== undefined && check(name, n)) counts.push([name, n]);
  }
  const reasons = Object.entries(deltas.failedByReason ?? {}).filter(([reason, n]) => check(`failedByReason[${reason}]`, n));
  return { counts, reasons };
}

export function publishMatcher(query: PublishQuery): (p: PublishRecord) => boolean {
  const states = given(query.states) ? new Set<string>(query.states) : undefined;
  const labels = Object.entries(query.labels ?? {});
  return (p) =>
    (!states || states.has(p.state)) &&
    (!query.uid || p.uid === query.uid) &&
    labels.every(([k, v]) => Object.hasOwn(p.labels, k) && p.labels[k] === v);
}

interface PublishSpace {
  byId: Map<string, PublishRecord>;
  // uid → id, only for non-empty uids.
  byUid: Map<string, string>;
}

// What a job result's claim says of a result read at `mine`: "own" (this very report, maybe read
// again: the offsets decide), "again" (the same run reported it twice, e.g. a producer retry:
// nothing to add) or "duplicate" (another run sent the attempt again).
export function claimed(first: { run?: string; at?: string }, mine: { run?: string; at?: string }): "own" | "again" | "duplicate" {
  if (first.run !== mine.run) return "duplicate";
  return first.at === mine.at ? "own" : "again";
}

class MemoryPublishes implements PublishRepository {
  private readonly spaces = new Map<string, PublishSpace>();
  // Publish ids are unique across apps (as the MongoDB _id): id → app.
  private readonly owners = new Map<string, string>();
  // `${app}\n${publishId}\n${resultKey}`
  private readonly results = new Set<string>();
  // countJobResult: `${app}\n${publishId}\n${key}` → the claim of the job attempt's first report,
  // and `${app}\n${publishId}\n${partition}` → the highest offset added.
  private readonly claims = new Map<string, { run: string; at: string }>();
  private readonly offsets = new Map<string, bigint>();

  private space(app: string): PublishSpace {
    let space = this.spaces.get(app);
    if (!space) {
      space = { byId: new Map(), byUid: new Map() };
      this.spaces.set(app, space);
    }
    return space;
  }

  private find(app: string, id: string): PublishRecord | undefined {
    return this.spaces.get(app)?.byId.get(id);
  }

  async create(publish: PublishRecord): Promise<{ publish: PublishRecord; created: boolean }> {
    const space = this.space(publish.app);
    if (publish.uid) {
      const existing = space.byUid.get(publish.uid);
      if (existing !== undefined) return { publish: copyPublish(space.byId.get(existing)!), created: false };
    }
    if (this.owners.has(publish.id)) throw alreadyExists("publish", publish.id);
    const stored = copyPublish(publish);
    space.byId.set(stored.id, stored);
    if (stored.uid) space.byUid.set(stored.uid, stored.id);
    this.owners.set(stored.id, stored.app);
    return { publish: copyPublish(stored), created: true };
  }

  async get(app: string, id: string): Promise<PublishRecord | null> {
    const p = this.find(app, id);
    return p ? copyPublish(p) : null;
  }

  async list(app: string, query: PublishQuery, page: { before?: string; limit: number }): Promise<PublishRecord[]> {
    if (page.limit <= 0) return [];
    const space = this.spaces.get(app);
    if (!space) return [];
    const matches = publishMatcher(query);
    const { before } = page;
    return [...space.byId.values()]
      .filter((p) => (before === undefined || compareStrings(p.id, before) < 0) && matches(p))
      .sort((a, b) => compareStrings(b.id, a.id))
      .slice(0, page.limit)
      .map(copyPublish);
  }

  async transition(
    app: string,
    id: string,
    from: PublishStateName[],
    to: PublishStateName,
    fields?: { startedAt?: Date; finishedAt?: Date; error?: string; fanoutDone?: boolean; now: Date },
  ): Promise<PublishRecord | null> {
    const p = this.find(app, id);
    if (!p || !from.includes(p.state)) return null;
    p.state = to;
    p.updatedAt = new Date(fields?.now ?? new Date());
    if (fields?.startedAt !== undefined) p.startedAt = new Date(fields.startedAt);
    if (fields?.finishedAt !== undefined) p.finishedAt = new Date(fields.finishedAt);
    if (fields?.error !== undefined) p.error = fields.error;
    if (fields?.fanoutDone !== undefined) p.fanoutDone = fields.fanoutDone;
    return copyPublish(p);
  }

  async saveFanout(app: string, id: string, progress: { cursor: string; targetedDelta: number; done: boolean; now: Date }): Promise<void> {
    const { counts } = countChanges({ targeted: progress.targetedDelta });
    const p = this.find(app, id);
    if (!p) return;
    for (const [name, n] of counts) p.counts[name] += n;
    p.fanoutCursor = progress.cursor;
    p.fanoutDone = progress.done;
    p.updatedAt = new Date(progress.now);
  }

  async addCounts(app: string, id: string, deltas: CountDeltas, now: Date): Promise<PublishRecord | null> {
    const { counts, reasons } = countChanges(deltas);
    const p = this.find(app, id);
    if (!p) return null;
    for (const [name, n] of counts) p.counts[name] += n;
    const byReason = p.counts.failedByReason;
    for (const [reason, n] of reasons) {
      const value = (Object.hasOwn(byReason, reason) ? byReason[reason]! : 0) + n;
      Object.defineProperty(byReason, reason, { value, enumerable: true, writable: true, configurable: true });
    }
    p.updatedAt = new Date(now);
    return copyPublish(p);
  }

  async countResult(app: string, id: string, resultKey: string, deltas: CountDeltas, now: Date): Promise<{ counted: boolean; publish: PublishRecord | null }> {
    const p = this.find(app, id);
    if (!p) return { counted: false, publish: null };
    const key = `${app}\n${id}\ncounted:${resultKey}`;
    if (this.results.has(key)) return { counted: false, publish: copyPublish(p) };
    this.results.add(key);
    return { counted: true, publish: await this.addCounts(app, id, deltas, now) };
  }

  async countJobResult(app: string, id: string, result: JobResultRef, deltas: CountDeltas, now: Date): Promise<{ outcome: "counted" | "duplicate" | "seen"; publish: PublishRecord | null }> {
    const p = this.find(app, id);
    if (!p) return { outcome: "seen", publish: null };
    const key = `${app}\n${id}\n${result.key}`;
    const mine = { run: result.run, at: `${result.partition}:${result.offset}` };
    const first = this.claims.get(key) ?? mine;
    this.claims.set(key, first);
    const kind = claimed(first, mine);
    const position = `${app}\n${id}\n${result.partition}`;
    const offset = BigInt(result.offset);
    const last = this.offsets.get(position);
    if (kind === "again" || (last !== undefined && last >= offset)) return { outcome: "seen", publish: copyPublish(p) };
    this.offsets.set(position, offset);
    const duplicate = kind === "duplicate";
    return { outcome: duplicate ? "duplicate" : "counted", publish: await this.addCounts(app, id, duplicate ? { duplicates: result.sentByRun } : deltas, now) };
  }

  async markResult(app: string, publishId: string, resultKey: string): Promise<boolean> {
    const key = `${app}\n${publishId}\n${resultKey}`;
    if (this.results.has(key)) return false;
    this.results.add(key);
    return true;
  }

  async listDue(now: Date, limit: number): Promise<PublishRecord[]> {
    return this.across(
      (p) => p.state === "scheduled" && p.sendAt !== null && p.sendAt.getTime() <= now.getTime(),
      (p) => p.sendAt!.getTime(),
      limit,
    );
  }

  async listStale(states: PublishStateName[], before: Date, limit: number): Promise<PublishRecord[]> {
    return this.across((p) => states.includes(p.state) && p.updatedAt.getTime() < before.getTime(), (p) => p.updatedAt.getTime(), limit);
  }

  // Matching publishes of every app, ascending by `time`, then by id.
  private across(matches: (p: PublishRecord) => boolean, time: (p: PublishRecord) => number, limit: number): PublishRecord[] {
    if (limit <= 0) return [];
    const found: PublishRecord[] = [];
    for (const space of this.spaces.values()) for (const p of space.byId.values()) if (matches(p)) found.push(p);
    return found
      .sort((a, b) => time(a) - time(b) || compareStrings(a.id, b.id))
      .slice(0, limit)
      .map(copyPublish);
  }

  async removeApp(app: string): Promise<number> {
    const space = this.spaces.get(app);
    const prefix = `${app}\n`;
    for (const key of this.results) if (key.startsWith(prefix)) this.results.delete(key);
    for (const keys of [this.claims, this.offsets]) for (const key of keys.keys()) if (key.startsWith(prefix)) keys.delete(key);
    if (!space) return 0;
    for (const id of space.byId.keys()) this.owners.delete(id);
    this.spaces.delete(app);
    return space.byId.size;
  }
}

export function createMemoryPublishRepository(): PublishRepository {
  return new MemoryPublishes();
}
