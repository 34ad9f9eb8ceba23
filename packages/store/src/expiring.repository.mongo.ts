import type { Collection, Document } from "mongodb";
import { isDuplicateKey } from "./mongo.errors.js";
import { splitCursor } from "./store.query.js";
import type { NonceRepository, PageQuery, ProviderName, TokenFeedbackRecord, TokenFeedbackRepository } from "./store.types.js";

// Records that expire: request nonces and token feedback. FerretDB has no TTL indexes, so the
// registry's sweeper deletes what is past its time.

export interface NonceDoc {
  _id: string;
  app: string;
  expiresAt: Date;
}

export class MongoNonces implements NonceRepository {
  constructor(private readonly col: Collection<NonceDoc>) {}

  async claim(app: string, key: string, expiresAt: Date): Promise<boolean> {
    try {
      await this.col.insertOne({ _id: `${app}\n${key}`, app, expiresAt });
      return true;
    } catch (err) {
      if (isDuplicateKey(err)) return false;
      throw err;
    }
  }

  async sweep(now: Date): Promise<number> {
    return (await this.col.deleteMany({ expiresAt: { $lt: now } })).deletedCount;
  }
}

export interface TokenFeedbackDoc {
  _id: string;
  app: string;
  provider: ProviderName;
  token: string;
  // `${provider}:${token}`: the second part of the sort key.
  key: string;
  reason: string;
  at: Date;
}

export class MongoTokenFeedback implements TokenFeedbackRepository {
  constructor(private readonly col: Collection<TokenFeedbackDoc>) {}

  async add(records: TokenFeedbackRecord[]): Promise<void> {
    if (records.length === 0) return;
    await this.col.bulkWrite(
      records.map((r) => {
        const doc = { _id: `${r.app}\n${r.provider}\n${r.token}`, app: r.app, provider: r.provider, token: r.token, key: `${r.provider}:${r.token}`, reason: r.reason, at: r.at };
        return { replaceOne: { filter: { _id: doc._id }, replacement: doc, upsert: true } };
      }),
      { ordered: false },
    );
  }

  async list(app: string, query: { provider?: ProviderName; since?: Date }, page: PageQuery): Promise<TokenFeedbackRecord[]> {
    if (page.limit <= 0) return [];
    const filter: Document = { app };
    if (query.provider) filter.provider = query.provider;
    const bounds: Document[] = [];
    if (query.since) bounds.push({ at: { $gte: query.since } });
    if (page.after !== undefined) {
      const [iso, key] = splitCursor(page.after);
      const at = new Date(iso);
      bounds.push({ $or: [{ at: { $gt: at } }, { at, key: { $gt: key } }] });
    }
    if (bounds.length) filter.$and = bounds;
    const docs = await this.col.find(filter).sort({ at: 1, key: 1 }).limit(page.limit).toArray();
    return docs.map((d) => ({ app: d.app, provider: d.provider, token: d.token, reason: d.reason, at: d.at }));
  }

  async sweep(before: Date): Promise<number> {
    return (await this.col.deleteMany({ at: { $lt: before } })).deletedCount;
  }
}
