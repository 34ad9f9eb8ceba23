import { randomBytes, randomUUID } from "node:crypto";
import { apps as appsApi, descriptorSetPath, registry, topic } from "@herald/proto";
import {
  ApiKeyAuthenticator,
  createClient,
  createLogger,
  GrpcServer,
  MemoryBus,
  type AsyncClient,
  type Bus,
  type BusMessage,
} from "@herald/platform";
import { createRegistryModule, type RegistryModule } from "@herald/registry";
import { ALL_PROVIDER_ENUMS, apiKeyLookup, createMemoryStore, createMongoStore, type Store } from "@herald/store";
import { createTopicModule } from "@herald/topic";
import { MongoClient } from "mongodb";
import { requireEnv } from "./infra.env.js";

export type StoreKind = "memory" | "mongo";

export interface TestApp {
  id: string;
  serverKey: string;
  clientKey: string;
  userTokenSecret: string;
}

export interface Clients {
  registry: AsyncClient<typeof registry.RegistryServiceService>;
  apps: AsyncClient<typeof appsApi.AppServiceService>;
  topic: AsyncClient<typeof topic.TopicServiceService>;
  close(): void;
}

export interface TestStack {
  address: string;
  adminKey: string;
  store: Store;
  bus: Bus;
  registry: RegistryModule;
  // Every message published on the bus, for assertions on device events.
  published: Array<{ topic: string; key: string; value: Uint8Array }>;
  clients(apiKey: string, app?: string): Clients;
  createApp(limits?: Partial<appsApi.AppLimits>): Promise<TestApp>;
  stop(): Promise<void>;
}

export interface StackOptions {
  store: StoreKind;
  now?: () => Date;
  webPushHosts?: string[];
}

// The registry and topic services behind one real gRPC server on a free port, over the memory
// store or a fresh database on the FerretDB that `npm test` started.
export async function startTestStack(options: StackOptions): Promise<TestStack> {
  const logger = createLogger({ service: "test", level: process.env.HERALD_TEST_LOG_LEVEL ?? "silent" });
  const adminKey = randomBytes(24).toString("base64url");
  const { store, dispose } = await openStore(options.store);
  const published: TestStack["published"] = [];
  const bus = recordingBus(new MemoryBus(), published);
  const registryModule = createRegistryModule({
    store,
    bus,
    logger,
    masterSecret: randomBytes(24).toString("base64url"),
    tokenRules: { webPushHosts: options.webPushHosts ?? ["fcm.googleapis.com", "*.push.services.mozilla.com"], webPushAllowInsecure: false },
    ...(options.now ? { now: options.now } : {}),
  });
  const topicModule = createTopicModule({ store, ...(options.now ? { now: options.now } : {}) });
  // No auth cache: tests revoke keys and expect the next call to fail.
  const authenticator = new ApiKeyAuthenticator({ adminKey, lookup: apiKeyLookup(store), cacheTtlMs: 0 });
  const server = new GrpcServer({ logger, authenticator, services: [...registryModule.bindings, ...topicModule.bindings], descriptorSetPath });
  const port = await server.listen("127.0.0.1:0");
  const address = `127.0.0.1:${port}`;
  const opened: Clients[] = [];

  const clients = (apiKey: string, app?: string): Clients => {
    const opts = { apiKey, ...(app ? { app } : {}) };
    const c: Clients = {
      registry: createClient(registry.RegistryServiceService, registry, address, opts),
      apps: createClient(appsApi.AppServiceService, appsApi, address, opts),
      topic: createClient(topic.TopicServiceService, topic, address, opts),
      close() {
        c.registry.close();
        c.apps.close();
        c.topic.close();
      },
    };
    opened.push(c);
    return c;
  };
  const admin = clients(adminKey);

  return {
    address,
    adminKey,
    store,
    bus,
    registry: registryModule,
    published,
    clients,
    async createApp(limits) {
      const id = `app-${randomUUID().slice(0, 8)}`;
      const created = await admin.apps.createApp({ id, name: id, providers: ALL_PROVIDER_ENUMS, ...(limits ? { limits } : {}) });
      const server = await admin.apps.createApiKey({ appId: id, role: appsApi.ApiKeyRole.API_KEY_ROLE_SERVER, name: "server" });
      const client = await admin.apps.createApiKey({ appId: id, role: appsApi.ApiKeyRole.API_KEY_ROLE_CLIENT, name: "client" });
      return { id, serverKey: server.secret, clientKey: client.secret, userTokenSecret: created.userTokenSecret };
    },
    async stop() {
      for (const c of opened) c.close();
      await server.stop(1000);
      await bus.close();
      await dispose();
    },
  };
}

async function openStore(kind: StoreKind): Promise<{ store: Store; dispose: () => Promise<void> }> {
  if (kind === "memory") {
    const store = createMemoryStore();
    return { store, dispose: () => store.close() };
  }
  const client = new MongoClient(requireEnv("HERALD_MONGO_URL"), { serverSelectionTimeoutMS: 10_000 });
  await client.connect();
  const db = client.db(`herald_test_${randomUUID().replaceAll("-", "").slice(0, 12)}`);
  const store = await createMongoStore(db);
  return {
    store,
    async dispose() {
      await db.dropDatabase();
      await client.close();
    },
  };
}

function recordingBus(inner: Bus, log: TestStack["published"]): Bus {
  return {
    publish: async (topicName, messages) => {
      await inner.publish(topicName, messages);
      for (const m of messages) log.push({ topic: topicName, key: m.key, value: m.value });
    },
    subscribe: (o) => inner.subscribe(o),
    ensureTopics: (t) => inner.ensureTopics(t),
    deleteTopics: (t) => inner.deleteTopics(t),
    lag: (g, t) => inner.lag(g, t),
    close: () => inner.close(),
  };
}

export type { BusMessage };
