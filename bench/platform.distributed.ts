// The distributed mode: registry, topic service, dispatcher and one sender per provider, each in
// its own process as the Deployments run them, on the real Kafka and FerretDB of test/infra.
import { randomBytes, randomUUID } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@herald/platform";
import { apps, dispatch } from "@herald/proto";
import { ALL_PROVIDER_ENUMS, createMongoStore, type ProviderName } from "@herald/store";
import { failureOf, freePort, requireEnv, spawnService, type ServiceProcess } from "@herald/testing";
import { MongoClient } from "mongodb";
import type { FakesProcess } from "./fakes.client.js";
import { benchAppId, type Target } from "./platform.types.js";
import { pidFromFile, type WatchedProcess } from "./proc.stats.js";
import { ALLOW_FAKES_ENV, entryOf, writeCaFile, writeCredentials } from "./providers.table.js";
import { seedDevices } from "./seed.devices.js";

const root = fileURLToPath(new URL("../", import.meta.url));
const START_TIMEOUT_MS = 120_000;

export interface DistributedOptions {
  fakes: FakesProcess;
  providers: ProviderName[];
  // Sender processes per provider (replicas of one Deployment, sharing its consumer group).
  senderReplicas: number;
  // Extra node flags for Herald's processes, e.g. --cpu-prof (which NODE_OPTIONS refuses).
  nodeArgs?: string[];
  log: (line: string) => void;
}

export async function startDistributed(o: DistributedOptions): Promise<Target> {
  const app = benchAppId();
  const dbName = `herald_bench_${randomUUID().slice(0, 8)}`;
  const mongoUrl = `${requireEnv("HERALD_MONGO_URL").replace(/\/$/, "")}/${dbName}`;
  const adminKey = randomBytes(24).toString("base64url");
  const common: Record<string, string> = {
    HERALD_MONGO_URL: mongoUrl,
    HERALD_KAFKA_BROKERS: requireEnv("HERALD_KAFKA_BROKERS"),
    HERALD_ADMIN_KEY: adminKey,
    HERALD_LOG_LEVEL: "warn",
    // Topics and consumer groups of its own: a run never shares herald.publishes with another
    // platform on the same Kafka (a test suite, another run).
    HERALD_KAFKA_NAMESPACE: `${dbName}.`,
    ...ALLOW_FAKES_ENV,
  };
  const procs: Array<{ name: string; proc: ServiceProcess }> = [];
  const mongo = new MongoClient(mongoUrl, { serverSelectionTimeoutMS: 10_000 });
  const stopAll = async () => {
    // Senders first, so nothing is left half-sent when the rest goes.
    for (const group of [procs.filter((p) => p.name.startsWith("sender")), procs.filter((p) => !p.name.startsWith("sender"))]) {
      await Promise.all(group.map((p) => p.proc.stop("SIGTERM", 20_000)));
    }
    try {
      await mongo.db(dbName).dropDatabase();
    } finally {
      await mongo.close();
    }
  };

  try {
    const address = { registry: `127.0.0.1:${await freePort()}`, topic: `127.0.0.1:${await freePort()}`, dispatcher: `127.0.0.1:${await freePort()}` };
    const service = (name: string, entry: string, env: Record<string, string>, grpcAddress: string) => {
      const proc = spawnService(join(root, entry), { ...common, ...env, HERALD_GRPC_ADDRESS: grpcAddress }, grpcAddress, o.nodeArgs);
      procs.push({ name, proc });
      return proc;
    };
    o.log("distributed: starting registry, topic service and dispatcher");
    await Promise.all([
      service("registry", "services/registry/src/main.ts", { HERALD_SECRET: randomBytes(24).toString("base64url") }, address.registry),
      service("topic", "services/topic/src/main.ts", {}, address.topic),
      service("dispatcher", "services/dispatcher/src/main.ts", { HERALD_TOPIC_ADDRESS: address.topic }, address.dispatcher),
    ].map((p) => p.waitHealthy(START_TIMEOUT_MS)));

    const admin = createClient(apps.AppServiceService, apps, address.registry, { apiKey: adminKey });
    let serverKey: string;
    try {
      await admin.createApp({ id: app, providers: ALL_PROVIDER_ENUMS });
      serverKey = (await admin.createApiKey({ appId: app, role: apps.ApiKeyRole.API_KEY_ROLE_SERVER })).secret;
    } finally {
      admin.close();
    }

    o.log(`distributed: starting senders (${o.providers.map((p) => `${o.senderReplicas} × ${p}`).join(", ")})`);
    const caFile = writeCaFile(o.fakes.info);
    const senders: Array<Promise<void>> = [];
    for (const provider of o.providers) {
      const config = entryOf(provider).sender(o.fakes.info, caFile);
      const credentialsDir = writeCredentials(config.credentials);
      for (let replica = 1; replica <= o.senderReplicas; replica++) {
        const health = await freePort();
        const env = { ...common, ...config.env, HERALD_APP: app, HERALD_PROVIDER: provider, HERALD_HEALTH_PORT: String(health), HERALD_CREDENTIALS_DIR: credentialsDir };
        const proc = spawnService(join(root, "services/sender/src/main.ts"), env, "", o.nodeArgs);
        procs.push({ name: o.senderReplicas > 1 ? `sender-${provider}-${replica}` : `sender-${provider}`, proc });
        senders.push(waitForHealthPort(proc, health, `sender ${provider}`));
      }
    }
    await Promise.all(senders);

    const run = process.env.HERALD_RUN;
    const infra: WatchedProcess[] = [];
    for (const [name, file] of [["kafka", "kafka/kafka.pid"], ["ferretdb", "ferretdb/ferretdb.pid"], ["postgres", "postgres/postgres.pid"]] as const) {
      const pid = run ? pidFromFile(join(run, file)) : undefined;
      if (pid) infra.push({ name, pid, role: "infra", children: name === "postgres" });
    }
    await mongo.connect();
    const client = createClient(dispatch.DispatchServiceService, dispatch, address.dispatcher, { apiKey: serverKey });
    return {
      mode: "distributed",
      app,
      dispatch: client,
      processes: [
        ...procs.map(({ name, proc }): WatchedProcess => ({ name, pid: proc.child.pid!, role: "herald" })),
        { name: "fakes", pid: o.fakes.pid, role: "fakes" },
        ...infra,
      ],
      seed: async (plan) => seedDevices(await createMongoStore(mongo.db(dbName)), o.fakes, plan, o.log),
      async stop() {
        client.close();
        await stopAll();
      },
    };
  } catch (err) {
    await stopAll().catch(() => {});
    throw err;
  }
}

// A sender serves no gRPC; it answers on its health port once it consumes.
export async function waitForHealthPort(proc: ServiceProcess, port: number, what: string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (proc.child.exitCode !== null) throw new Error(`${what} exited with ${proc.child.exitCode}: ${failureOf(proc.output())}`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}/`)).ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${what} did not start within ${START_TIMEOUT_MS} ms: ${failureOf(proc.output())}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
