// Publishes: what the dispatcher accepted, where its fan-out stands and what came of it.
// Every write is conditional or an increment, so concurrent workers (fan-out, result
// aggregation, scheduler, cancel) converge without transactions.

export type PublishStateName = "queued" | "scheduled" | "fanning_out" | "sending" | "done" | "cancelled" | "expired" | "failed";

export const FINAL_STATES: readonly PublishStateName[] = ["done", "cancelled", "expired", "failed"];

export interface PublishCountsRecord {
  targeted: number;
  sent: number;
  failed: number;
  invalidTokens: number;
  expired: number;
  cancelled: number;
  deadLettered: number;
  duplicates: number;
  retries: number;
  deliveredReceipts: number;
  openedReceipts: number;
  // "apns:BadDeviceToken" → count.
  failedByReason: Record<string, number>;
}

export interface PublishRecord {
  // Time-ordered (newest sorts last), so listing by id lists by creation.
  id: string;
  app: string;
  // Idempotency key; "" when the caller gave none.
  uid: string;
  state: PublishStateName;
  // The PublishRequest as accepted, protobuf-encoded.
  request: Uint8Array;
  labels: Record<string, string>;
  counts: PublishCountsRecord;
  // Resume point of the fan-out: the last device id handed on, and whether it finished.
  fanoutCursor: string;
  fanoutDone: boolean;
  sendAt: Date | null;
  expireAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  error: string;
}

export type CountDeltas = Partial<Omit<PublishCountsRecord, "failedByReason">> & { failedByReason?: Record<string, number> };

// Where a job result was read: its job attempt's key, the sender run that sent it, and its place
// on the results topic (offset: decimal, below 2^53). sentByRun: of the result's sends, those its
// run made itself (not carried over from a run before it): what a duplicate report adds.
export interface JobResultRef {
  key: string;
  run: string;
  sentByRun: number;
  partition: number;
  offset: string;
}

export interface PublishQuery {
  states?: PublishStateName[];
  uid?: string;
  // Every label must match.
  labels?: Record<string, string>;
}

export interface PublishRepository {
  // Stores a new publish. With a non-empty uid, a publish of the same app and uid that already
  // exists is returned instead (created = false) — also under concurrent creates.
  create(publish: PublishRecord): Promise<{ publish: PublishRecord; created: boolean }>;
  get(app: string, id: string): Promise<PublishRecord | null>;
  // Newest first: sorted by id descending; the page cursor is the last id returned.
  list(app: string, query: PublishQuery, page: { before?: string; limit: number }): Promise<PublishRecord[]>;
  // Moves to `to` only when the current state is one of `from`; returns the updated publish, or
  // null when the publish does not exist or was in another state (someone else moved it).
  // fanoutDone: the fan-out's end, written in the same step as the state.
  transition(
    app: string,
    id: string,
    from: PublishStateName[],
    to: PublishStateName,
    fields?: { startedAt?: Date; finishedAt?: Date; error?: string; fanoutDone?: boolean; now: Date },
  ): Promise<PublishRecord | null>;
  // Records fan-out progress after the jobs up to `cursor` are on the bus.
  saveFanout(app: string, id: string, progress: { cursor: string; targetedDelta: number; done: boolean; now: Date }): Promise<void>;
  // Adds to the counters atomically ($inc); returns the publish after the increment.
  addCounts(app: string, id: string, deltas: CountDeltas, now: Date): Promise<PublishRecord | null>;
  // Marks a key as seen for the publish (receipts, fan-out steps); false when it already was.
  markResult(app: string, publishId: string, resultKey: string): Promise<boolean>;
  // Adds the deltas of one job attempt's result and marks its key in one atomic write on the
  // publish, so a crash can never leave a result marked but not counted (or counted twice).
  // counted = false when the key was counted before; publish is null when there is no publish.
  countResult(app: string, publishId: string, resultKey: string, deltas: CountDeltas, now: Date): Promise<{ counted: boolean; publish: PublishRecord | null }>;
  // A sender's job result as read from the results topic at (partition, offset), with one write
  // to the publish whatever the publish's size (countResult's keys grow with every result):
  // - read again (a redelivery): "seen", nothing added. The publish keeps the highest offset it
  //   added per partition, in the same atomic write as the counts; a partition's offsets only grow.
  // - the same job attempt reported by a second sender run (it sent again): "duplicate", its own
  //   sends (sentByRun) added to `duplicates` only. The attempt's first run claims its key first.
  // - otherwise "counted". publish is null when there is no publish.
  countJobResult(app: string, publishId: string, result: JobResultRef, deltas: CountDeltas, now: Date): Promise<{ outcome: "counted" | "duplicate" | "seen"; publish: PublishRecord | null }>;
  // Scheduled publishes whose sendAt has come, across apps, oldest first.
  listDue(now: Date, limit: number): Promise<PublishRecord[]>;
  // Publishes in one of `states` not updated since `before`, across apps (for relays and sweeps).
  listStale(states: PublishStateName[], before: Date, limit: number): Promise<PublishRecord[]>;
  removeApp(app: string): Promise<number>;
}
