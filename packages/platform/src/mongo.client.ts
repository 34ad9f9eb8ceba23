import { MongoClient, type Db } from "mongodb";
import type { Logger } from "./log.logger.js";

export interface MongoConnection {
  client: MongoClient;
  db: Db;
  close(): Promise<void>;
}

// Connects and proves the server answers before a service reports ready. The database name comes
// from the URL path (default "herald").
export async function connectMongo(url: string, logger: Logger, options: { dbName?: string; timeoutMs?: number } = {}): Promise<MongoConnection> {
  const client = new MongoClient(url, { serverSelectionTimeoutMS: options.timeoutMs ?? 10_000, appName: "herald" });
  await client.connect();
  const db = client.db(options.dbName ?? (new URL(url).pathname.slice(1) || "herald"));
  await db.command({ ping: 1 });
  logger.info({ db: db.databaseName }, "connected to MongoDB");
  return { client, db, close: () => client.close() };
}
