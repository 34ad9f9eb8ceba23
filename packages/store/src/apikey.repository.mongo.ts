import type { Collection } from "mongodb";
import { alreadyExists } from "@herald/platform";
import { isDuplicateKey } from "./mongo.errors.js";
import type { ApiKeyRecord, ApiKeyRepository, ApiKeyRoleName } from "./store.types.js";

// api_keys: _id = key id; unique {hash} (findByHash is the one lookup not scoped by app: the
// hash is what identifies the caller's app), {app} for listing.
export interface ApiKeyDoc {
  _id: string;
  app: string;
  role: ApiKeyRoleName;
  name: string;
  prefix: string;
  hash: string;
  createdAt: Date;
  revokedAt: Date | null;
}

const toApiKeyRecord = (d: ApiKeyDoc): ApiKeyRecord => ({
  id: d._id,
  app: d.app,
  role: d.role,
  name: d.name,
  prefix: d.prefix,
  hash: d.hash,
  createdAt: d.createdAt,
  revokedAt: d.revokedAt ?? null,
});

export class MongoApiKeys implements ApiKeyRepository {
  constructor(private readonly col: Collection<ApiKeyDoc>) {}

  async create(key: ApiKeyRecord): Promise<void> {
    const { id, ...rest } = key;
    try {
      await this.col.insertOne({ _id: id, ...rest });
    } catch (error) {
      if (isDuplicateKey(error)) throw alreadyExists("api key", id);
      throw error;
    }
  }

  async findByHash(hash: string): Promise<ApiKeyRecord | null> {
    const doc = await this.col.findOne({ hash });
    return doc ? toApiKeyRecord(doc) : null;
  }

  // By (createdAt, id): the order the keys were issued in.
  async list(app: string): Promise<ApiKeyRecord[]> {
    const docs = await this.col.find({ app }).sort({ createdAt: 1, _id: 1 }).toArray();
    return docs.map(toApiKeyRecord);
  }

  // Revoking twice keeps the first revocation time.
  async revoke(app: string, id: string, now: Date): Promise<ApiKeyRecord | null> {
    const doc =
      (await this.col.findOneAndUpdate({ _id: id, app, revokedAt: null }, { $set: { revokedAt: now } }, { returnDocument: "after" })) ??
      (await this.col.findOne({ _id: id, app }));
    return doc ? toApiKeyRecord(doc) : null;
  }

  async removeApp(app: string): Promise<number> {
    return (await this.col.deleteMany({ app })).deletedCount;
  }
}
