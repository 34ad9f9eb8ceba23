import type { Db, IndexDescription, MongoClient } from "mongodb";
import { MongoApiKeys } from "./apikey.repository.mongo.js";
import { MongoApps } from "./app.repository.mongo.js";
import { MongoDevices, type MongoJoin } from "./device.repository.mongo.js";
import { MongoNonces, MongoTokenFeedback } from "./expiring.repository.mongo.js";
import { MongoRates } from "./rate.repository.mongo.js";
import { MongoSubscriptions } from "./subscription.repository.mongo.js";
import type { Store } from "./store.types.js";

// The MongoDB store (DESIGN §3). Written for the subset FerretDB v1 implements: no transactions,
// TTL indexes, $lookup, $facet or change streams; aggregations use only $match, $group ($sum),
// $sort and $limit. Every query carries `app` except apps (keyed by id) and apiKeys.findByHash.

export const COLLECTIONS = {
  devices: "devices",
  deviceTopics: "device_topics",
  userTopics: "user_topics",
  apps: "apps",
  apiKeys: "api_keys",
  nonces: "request_nonces",
  tokenFeedback: "token_feedback",
  rates: "publish_rate_slots",
} as const;

// Index names are fixed so that creating them again is a no-op.
const INDEXES: Record<keyof typeof COLLECTIONS, IndexDescription[]> = {
  devices: [
    { name: "app_provider_token", key: { app: 1, provider: 1, token: 1 }, unique: true },
    // Keyset pages and scans of one app in id order (list, scan, count).
    { name: "app_id", key: { app: 1, _id: 1 } },
    { name: "app_user_platform", key: { app: 1, user: 1, platform: 1 } },
    { name: "app_lastSeenAt", key: { app: 1, lastSeenAt: 1 } },
    { name: "app_tagPairs", key: { app: 1, tagPairs: 1 } },
  ],
  deviceTopics: [
    { name: "app_deviceId_topic", key: { app: 1, deviceId: 1, topic: 1 }, unique: true },
    { name: "app_topic_deviceId", key: { app: 1, topic: 1, deviceId: 1 } },
    { name: "app_topic_user", key: { app: 1, topic: 1, user: 1 } },
  ],
  userTopics: [
    { name: "app_user_topic", key: { app: 1, user: 1, topic: 1 }, unique: true },
    { name: "app_topic", key: { app: 1, topic: 1 } },
  ],
  apps: [],
  apiKeys: [
    { name: "hash", key: { hash: 1 }, unique: true },
    { name: "app", key: { app: 1 } },
  ],
  nonces: [{ name: "expiresAt", key: { expiresAt: 1 } }],
  tokenFeedback: [
    { name: "app_at_key", key: { app: 1, at: 1, key: 1 } },
    { name: "at", key: { at: 1 } },
  ],
  // take() reads the highest slot of a window; sweep() deletes by expiresAt.
  rates: [
    { name: "app_window_slot", key: { app: 1, window: 1, slot: 1 } },
    { name: "expiresAt", key: { expiresAt: 1 } },
  ],
};

// One index per createIndexes command: FerretDB 1.24 panics (and drops the connection) when a
// single createIndexes names two or more indexes that all exist already, i.e. on every restart.
export async function ensureStoreIndexes(db: Db): Promise<void> {
  for (const [name, indexes] of Object.entries(INDEXES) as Array<[keyof typeof COLLECTIONS, IndexDescription[]]>) {
    for (const index of indexes) await db.collection(COLLECTIONS[name]).createIndexes([index]);
  }
}

// FerretDB answers buildInfo with its own version next to the MongoDB one it emulates.
async function isFerretDb(db: Db): Promise<boolean> {
  const info = await db.admin().command({ buildInfo: 1 });
  return typeof info.ferretdbVersion === "string";
}

// `join` picks how topic streams read devices (MongoJoin); by default "merge" on FerretDB and
// "lookup" on MongoDB.
export async function createMongoStore(db: Db, options: { client?: MongoClient; join?: MongoJoin } = {}): Promise<Store> {
  await ensureStoreIndexes(db);
  const join = options.join ?? ((await isFerretDb(db)) ? "merge" : "lookup");
  return {
    devices: new MongoDevices(db.collection(COLLECTIONS.devices), db.collection(COLLECTIONS.deviceTopics), join),
    subscriptions: new MongoSubscriptions(db.collection(COLLECTIONS.deviceTopics), db.collection(COLLECTIONS.userTopics)),
    apps: new MongoApps(db.collection(COLLECTIONS.apps)),
    apiKeys: new MongoApiKeys(db.collection(COLLECTIONS.apiKeys)),
    nonces: new MongoNonces(db.collection(COLLECTIONS.nonces)),
    tokenFeedback: new MongoTokenFeedback(db.collection(COLLECTIONS.tokenFeedback)),
    rates: new MongoRates(db.collection(COLLECTIONS.rates)),
    async close() {
      await options.client?.close();
    },
  };
}
