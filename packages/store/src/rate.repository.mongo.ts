import type { Collection } from "mongodb";
import { isDuplicateKey } from "./mongo.errors.js";
import type { RateRepository } from "./store.types.js";

// Publish-rate windows on MongoDB / FerretDB v1, shared by every dispatcher replica.
//
// A window of limit N is N slot documents, `_id` = `${app}\n${window}\n${slot}` for slot 0..N-1,
// and taking a slot is an insert: the unique _id lets exactly one caller have each slot. Why not
// one counter per window bumped with findOneAndUpdate({upsert, $inc})? That is exact and one
// round trip on MongoDB, but FerretDB 1.24 applies an update as "read, change in Go, write back
// by _id", so two dispatcher processes bumping one counter lose increments and admit more than
// the limit. Inserts against a unique index are atomic on both servers, so this design behaves
// the same on each: never more than N takes per window, whatever the number of replicas.
//
// Cost: one insert per admitted publish (no writes at all for apps without a limit). Each
// process remembers, per app, the next slot worth trying in the current window; slots are handed
// out locally before the insert, so concurrent callers of one process never race each other.
// When the insert finds the slot taken (another replica got there first), one read of the
// highest taken slot moves the hint past it, so a replica that was idle while another filled the
// window catches up in one step instead of probing slot by slot. Once the hint reaches N the
// window is known full and takes answer false without a round trip. A slot handed out locally
// whose insert fails for another reason stays unused (the window admits one fewer): errors only
// ever under-admit.
//
// Expiry: each slot carries the window's expiresAt; sweep() deletes what is past it (FerretDB
// has no TTL indexes), so the collection holds about the slots of the windows not yet swept.

export interface RateSlotDoc {
  _id: string;
  app: string;
  window: string;
  slot: number;
  expiresAt: Date;
}

export class MongoRates implements RateRepository {
  // app → the window this process last took from, and the next slot worth trying there.
  private readonly hints = new Map<string, { window: string; next: number }>();

  constructor(private readonly col: Collection<RateSlotDoc>) {}

  async take(app: string, window: string, limit: number, expiresAt: Date): Promise<boolean> {
    if (limit <= 0) return false;
    let hint = this.hints.get(app);
    if (!hint || hint.window !== window) {
      hint = { window, next: 0 };
      this.hints.set(app, hint);
    }
    for (;;) {
      if (hint.next >= limit) return false;
      const slot = hint.next++;
      try {
        await this.col.insertOne({ _id: `${app}\n${window}\n${slot}`, app, window, slot, expiresAt });
        return true;
      } catch (err) {
        if (!isDuplicateKey(err)) throw err;
      }
      const top = await this.col.find({ app, window }, { projection: { slot: 1 } }).sort({ slot: -1 }).limit(1).next();
      if (top) hint.next = Math.max(hint.next, top.slot + 1);
    }
  }

  async sweep(now: Date): Promise<number> {
    return (await this.col.deleteMany({ expiresAt: { $lt: now } })).deletedCount;
  }
}
