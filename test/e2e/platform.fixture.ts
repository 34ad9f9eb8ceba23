import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@herald/platform";
import { apps, dispatch, registry, topic } from "@herald/proto";
import { ALL_PROVIDER_ENUMS, createMongoStore, type DeviceImport } from "@herald/store";
import { failureOf, freePort, requireEnv, spawnService, testTls, type ServiceProcess } from "@herald/testing";
import { MongoClient } from "mongodb";
import webPush from "web-push";

const root = fileURLToPath(new URL("../../", import.meta.url));

export type Clients = {
  registry: ReturnType<typeof createClient<typeof registry.RegistryServiceService>>;
  topic: ReturnType<typeof createClient<typeof topic.TopicServiceService>>;
  dispatch: ReturnType<typeof createClient<typeof dispatch.DispatchServiceService>>;
};

export interface Platform {
  addresses: { registry: string; topic: string; dispatcher: string };
  adminKey: string;
  // What every service process got: MongoDB URL, Kafka brokers and namespace, admin key.
  env: Record<string, string>;
  // Base URLs of the services' ops servers (GET /metrics).
  metrics: { registry: string; topic: string; dispatcher: string };
  // Creates an app with a server key and returns clients scoped to it.
  createApp(id: string, extra?: Partial<apps.CreateAppRequest>): Promise<Clients>;
  // Starts one sender process; resolves when it consumes.
  // `opsUrl`: its health and metrics server.
  startSender(app: string, provider: "apns" | "fcm" | "hms" | "webpush", env: Record<string, string>, credentials?: Record<string, string>): Promise<ServiceProcess & { opsUrl: string }>;
  // Starts the HTTP gateway process in front of the services; resolves with its base URL once it answers.
  startGateway(env?: Record<string, string>): Promise<ServiceProcess & { url: string }>;
  // Ends a core service's process with `signal` and starts a new one on the same addresses at
  // once (a crashed pod restarted); resolves when the new one is healthy.
  restart(service: "registry" | "topic" | "dispatcher", signal?: NodeJS.Signals): Promise<void>;
  stop(): Promise<void>;
}

// Every service in its own process, the way the Deployments run, on the real FerretDB and Kafka
// of test/infra. `env` reaches every process (e.g. the Web Push allow-list of the fakes).
export async function startPlatform(env: Record<string, string> = {}): Promise<Platform> {
  const adminKey = randomBytes(24).toString("base64url");
  const common = {
    HERALD_MONGO_URL: `${requireEnv("HERALD_MONGO_URL").replace(/\/$/, "")}/herald_e2e_${randomUUID().slice(0, 8)}`,
    HERALD_KAFKA_BROKERS: requireEnv("HERALD_KAFKA_BROKERS"),
    HERALD_ADMIN_KEY: adminKey,
    HERALD_LOG_LEVEL: "warn",
    // Its own Kafka namespace: platforms of suites running at the same time stay apart.
    HERALD_KAFKA_NAMESPACE: `e2e-${randomUUID().slice(0, 8)}.`,
    ...env,
  };
  const procs: ServiceProcess[] = [];
  const opened: Array<{ close(): void }> = [];
  const addresses = { registry: `127.0.0.1:${await freePort()}`, topic: `127.0.0.1:${await freePort()}`, dispatcher: `127.0.0.1:${await freePort()}` };
  const ports = { registry: await freePort(), topic: await freePort(), dispatcher: await freePort() };
  const metrics = { registry: `http://127.0.0.1:${ports.registry}`, topic: `http://127.0.0.1:${ports.topic}`, dispatcher: `http://127.0.0.1:${ports.dispatcher}` };
  const ops = (service: keyof typeof ports) => ({ HERALD_METRICS_PORT: String(ports[service]) });
  const secret = randomBytes(24).toString("base64url");
  const spawnCore: Record<keyof typeof ports, () => ServiceProcess> = {
    registry: () => spawnService(`${root}services/registry/src/main.ts`, { ...common, ...ops("registry"), HERALD_GRPC_ADDRESS: addresses.registry, HERALD_SECRET: secret }, addresses.registry),
    topic: () => spawnService(`${root}services/topic/src/main.ts`, { ...common, ...ops("topic"), HERALD_GRPC_ADDRESS: addresses.topic }, addresses.topic),
    dispatcher: () => spawnService(`${root}services/dispatcher/src/main.ts`, { ...common, ...ops("dispatcher"), HERALD_GRPC_ADDRESS: addresses.dispatcher, HERALD_TOPIC_ADDRESS: addresses.topic }, addresses.dispatcher),
  };
  const core = { registry: spawnCore.registry(), topic: spawnCore.topic(), dispatcher: spawnCore.dispatcher() };
  procs.push(core.registry, core.topic, core.dispatcher);
  try {
    await Promise.all(procs.map((p) => p.waitHealthy(90_000)));
  } catch (err) {
    await Promise.all(procs.map((p) => p.stop("SIGKILL")));
    throw err;
  }

  return {
    addresses,
    adminKey,
    env: common,
    metrics,
    async createApp(id, extra = {}) {
      const admin = createClient(apps.AppServiceService, apps, addresses.registry, { apiKey: adminKey });
      try {
        await admin.createApp({ id, providers: ALL_PROVIDER_ENUMS, ...extra });
        const { secret } = await admin.createApiKey({ appId: id, role: apps.ApiKeyRole.API_KEY_ROLE_SERVER });
        const clients: Clients = {
          registry: createClient(registry.RegistryServiceService, registry, addresses.registry, { apiKey: secret }),
          topic: createClient(topic.TopicServiceService, topic, addresses.topic, { apiKey: secret }),
          dispatch: createClient(dispatch.DispatchServiceService, dispatch, addresses.dispatcher, { apiKey: secret }),
        };
        opened.push(clients.registry, clients.topic, clients.dispatch);
        return clients;
      } finally {
        admin.close();
      }
    },
    async startSender(app, provider, senderEnv, credentials = {}) {
      // The operator mounts the app's credentials Secret as one file per key.
      const dir = mkdtempSync(join(tmpdir(), `herald-creds-${app}-${provider}-`));
      for (const [file, content] of Object.entries(credentials)) writeFileSync(join(dir, file), content, { mode: 0o600 });
      const health = await freePort();
      const p = spawnService(
        `${root}services/sender/src/main.ts`,
        { ...common, HERALD_APP: app, HERALD_PROVIDER: provider, HERALD_HEALTH_PORT: String(health), HERALD_LOG_LEVEL: "info", HERALD_CREDENTIALS_DIR: dir, ...senderEnv },
        "",
      );
      procs.push(p);
      const deadline = Date.now() + 90_000;
      while (!p.output().includes("sender running")) {
        if (p.child.exitCode !== null || Date.now() > deadline) throw new Error(`sender ${app}/${provider} did not start: ${failureOf(p.output())}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      return Object.assign(p, { opsUrl: `http://127.0.0.1:${health}` });
    },
    async startGateway(gatewayEnv = {}) {
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      const p = spawnService(
        `${root}services/gateway/src/main.ts`,
        { ...common, HERALD_HTTP_ADDRESS: `127.0.0.1:${port}`, HERALD_REGISTRY_ADDRESS: addresses.registry, HERALD_TOPIC_ADDRESS: addresses.topic, HERALD_DISPATCHER_ADDRESS: addresses.dispatcher, ...gatewayEnv },
        "",
      );
      procs.push(p);
      const deadline = Date.now() + 90_000;
      while ((await fetch(`${url}/healthz`).catch(() => undefined))?.status !== 200) {
        if (p.child.exitCode !== null || Date.now() > deadline) throw new Error(`gateway did not start: ${failureOf(p.output())}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      return Object.assign(p, { url });
    },
    async restart(service, signal = "SIGKILL") {
      await core[service].stop(signal);
      const p = spawnCore[service]();
      core[service] = p;
      procs.push(p);
      await p.waitHealthy(90_000);
    },
    async stop() {
      for (const c of opened) c.close();
      await Promise.all(procs.map((p) => p.stop("SIGKILL")));
    },
  };
}

// Registers devices a few at a time, as many app servers would at once.
export async function registerMany(clients: Clients, requests: Array<Parameters<Clients["registry"]["registerDevice"]>[0]>, concurrency = 8): Promise<string[]> {
  const ids: string[] = new Array(requests.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < requests.length; i = next++) ids[i] = (await clients.registry.registerDevice(requests[i]!)).device!.id;
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return ids;
}

// Writes devices straight into the platform's store in bulk (DeviceRepository.importMany: the
// documents a registration writes, with their device topics), for broadcasts of many thousand
// devices: one RegisterDevice call each takes minutes on FerretDB. Returns the device ids.
export async function importDevices(platform: Pick<Platform, "env">, app: string, devices: DeviceImport[]): Promise<string[]> {
  const client = await MongoClient.connect(platform.env.HERALD_MONGO_URL!);
  try {
    const store = await createMongoStore(client.db(), { client });
    const ids = await store.devices.importMany(app, devices, new Date());
    const refused = ids.filter((id) => id === null).length;
    if (refused) throw new Error(`importDevices: ${refused} of ${devices.length} tokens were held already`);
    return ids as string[];
  } finally {
    await client.close();
  }
}

// Follows a publish with WatchPublish until it reaches a final state.
export async function watchToEnd(clients: Pick<Clients, "dispatch">, id: string, deadlineMs = 120_000): Promise<dispatch.Publish> {
  let last: dispatch.Publish | undefined;
  for await (const u of clients.dispatch.watchPublish({ id }, { deadlineMs })) last = u.publish;
  if (!last) throw new Error(`WatchPublish(${id}) ended without an update`);
  return last;
}

// The test CA as a file, for senders in other processes (HERALD_PROVIDER_CA_FILE).
export function testCaFile(): string {
  const file = join(mkdtempSync(join(tmpdir(), "herald-e2e-ca-")), "ca.pem");
  writeFileSync(file, testTls().ca);
  return file;
}

// Fakes listen on 127.0.0.1: registry, dispatcher and senders must allow it as a push service.
export const ALLOW_FAKES = { HERALD_WEBPUSH_ALLOWED_HOSTS: "127.0.0.1" };

// Environment and credential files of a Web Push sender with a fresh VAPID key pair.
export function webPushSender(caFile: string, env: Record<string, string> = {}): { env: Record<string, string>; credentials: Record<string, string> } {
  const vapid = webPush.generateVAPIDKeys();
  return {
    env: { ...ALLOW_FAKES, HERALD_PROVIDER_CA_FILE: caFile, HERALD_VAPID_SUBJECT: "mailto:ops@herald.test", HERALD_VAPID_PUBLIC_KEY: vapid.publicKey, ...env },
    credentials: { "vapid-private-key": vapid.privateKey },
  };
}
