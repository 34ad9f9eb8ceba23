import type { Collection } from "mongodb";
import { alreadyExists } from "@herald/platform";
import { isDuplicateKey } from "./mongo.errors.js";
import type { AppLimitsRecord, AppRecord, AppRepository, PageQuery, ProviderName, SenderModeName, WebhookRecord } from "./store.types.js";

// apps: _id = app id (the only collection not scoped by an `app` field: the document is the app).
export interface AppDoc {
  _id: string;
  name: string;
  limits: AppLimitsRecord;
  providers: ProviderName[];
  secretVersion: number;
  // Absent on apps stored before owners existed.
  owner?: string;
  vapidPublicKey?: string;
  webhooks?: WebhookRecord[];
  // Absent on apps stored before pooled senders existed: dedicated.
  senders?: SenderModeName;
  createdAt: Date;
  updatedAt: Date;
}

// A format only when it is not Herald's, so apps stored before formats existed read the same.
const webhookOf = (w: WebhookRecord): WebhookRecord => ({ url: w.url, events: [...w.events], ...(w.format === "pusher" ? { format: w.format } : {}) });

const toAppRecord = (d: AppDoc): AppRecord => ({
  id: d._id,
  name: d.name,
  limits: { ...d.limits },
  providers: [...d.providers],
  secretVersion: d.secretVersion,
  owner: d.owner ?? "",
  vapidPublicKey: d.vapidPublicKey ?? "",
  webhooks: (d.webhooks ?? []).map(webhookOf),
  ...(d.senders === "pooled" ? { senders: "pooled" as const } : {}),
  createdAt: d.createdAt,
  updatedAt: d.updatedAt,
});

export class MongoApps implements AppRepository {
  constructor(private readonly col: Collection<AppDoc>) {}

  async create(app: AppRecord): Promise<void> {
    const { id, ...rest } = app;
    try {
      await this.col.insertOne({ _id: id, ...rest, limits: { ...rest.limits }, providers: [...rest.providers] });
    } catch (error) {
      if (isDuplicateKey(error)) throw alreadyExists("app", id);
      throw error;
    }
  }

  async get(id: string): Promise<AppRecord | null> {
    const doc = await this.col.findOne({ _id: id });
    return doc ? toAppRecord(doc) : null;
  }

  async list(page: PageQuery): Promise<AppRecord[]> {
    if (page.limit <= 0) return [];
    const filter = page.after !== undefined ? { _id: { $gt: page.after } } : {};
    const docs = await this.col.find(filter).sort({ _id: 1 }).limit(page.limit).toArray();
    return docs.map(toAppRecord);
  }

  async update(id: string, patch: Partial<Pick<AppRecord, "name" | "limits" | "providers" | "vapidPublicKey" | "webhooks" | "senders">> & { now: Date }): Promise<AppRecord | null> {
    const set: Partial<AppDoc> = { updatedAt: patch.now };
    if (patch.name !== undefined) set.name = patch.name;
    if (patch.limits !== undefined) set.limits = { ...patch.limits };
    if (patch.providers !== undefined) set.providers = [...patch.providers];
    if (patch.vapidPublicKey !== undefined) set.vapidPublicKey = patch.vapidPublicKey;
    if (patch.webhooks !== undefined) set.webhooks = patch.webhooks.map(webhookOf);
    if (patch.senders !== undefined) set.senders = patch.senders;
    const doc = await this.col.findOneAndUpdate({ _id: id }, { $set: set }, { returnDocument: "after" });
    return doc ? toAppRecord(doc) : null;
  }

  async bumpSecretVersion(id: string, now: Date): Promise<number | null> {
    // No projection: FerretDB's findAndModify rejects `fields` ("not implemented yet").
    const doc = await this.col.findOneAndUpdate({ _id: id }, { $inc: { secretVersion: 1 }, $set: { updatedAt: now } }, { returnDocument: "after" });
    return doc ? doc.secretVersion : null;
  }

  async delete(id: string): Promise<boolean> {
    return (await this.col.deleteOne({ _id: id })).deletedCount > 0;
  }
}
