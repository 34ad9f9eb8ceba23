// `herald serve`: the embedded all-in-one mode. Every implemented service in one process on one
// gRPC port, over the in-memory store and bus, with the apps of a PushApp directory created at
// start-up. Data is lost at exit (like Centrifugo's memory engine): for trying Herald and for
// development. Providers have no credentials here, so they run dry-run.
import { randomBytes } from "node:crypto";
import { relative, resolve } from "node:path";
import {
  ApiKeyAuthenticator,
  ConfigError,
  createLogger,
  env,
  GrpcServer,
  Lifecycle,
  loadConfig,
  MemoryBus,
  type Bus,
  type Logger,
} from "@herald/platform";
import { apps as appsApi, descriptorSetPath } from "@herald/proto";
import { createRegistryModule, type WebhookOptions } from "@herald/registry";
import { createDispatcherModule, storeRecipients } from "@herald/dispatcher";
import { DryRunProvider, SenderWorker, type ProviderName, type PushProvider } from "@herald/sender";
import { apiKeyLookup, createMemoryPublishRepository, createMemoryStore, DEFAULT_WEBPUSH_HOSTS, type Store, type TokenRules } from "@herald/store";
import { createTopicModule } from "@herald/topic";
import { createGateway, startHttpServer, type HttpServer } from "@herald/gateway";
import { z } from "zod";
import { devFilePath, removeDevFileIfOurs, REPO_ROOT, writeDevFile } from "./devfile.schema.js";
import { enabledProviders, loadPushApps, toCreateAppRequest, type PushApp } from "@herald/pushapp";
import type { FakeProviders } from "./serve.fakes.js";

export const DEFAULT_HOST = "127.0.0.1";
export const DEFAULT_PORT = 50051;
export const DEFAULT_HTTP_PORT = 8080;
export const DEFAULT_APPS_DIR = resolve(REPO_ROOT, "deploy/samples");

export interface EmbeddedOptions {
  // Listen address; port 0 picks a free port (tests).
  host?: string;
  port?: number;
  // Port of the HTTP gateway on the same host; 0 picks a free port; absent or false: none
  // (`herald serve` runs it on 8080).
  httpPort?: number | false;
  // Port of gorush's gRPC API (Gorush.Send) beside the HTTP gateway; 0 picks a free port;
  // absent or false: none.
  gorushGrpcPort?: number | false;
  // Directory of PushApp YAML files; default deploy/samples of the repository.
  appsDir?: string;
  // Random when absent (a new one each start).
  adminKey?: string;
  // The master secret user-token secrets derive from; random when absent.
  masterSecret?: string;
  logger?: Logger;
  // Where to write the keys for the CLI; nothing is written when absent or false.
  devFile?: string | false;
  // The provider each app's sender uses; dry-run when absent or when it returns undefined.
  providerFor?: (app: string, provider: ProviderName) => PushProvider | undefined;
  // Web Push endpoint allow-list; the public push services when absent.
  tokenRules?: TokenRules;
  // Webhook retry settings (tests make them fast).
  webhooks?: Partial<WebhookOptions>;
  // Publishes per second for apps whose max_publish_rate is 0 (HERALD_DEFAULT_PUBLISH_RATE);
  // absent or 0: such apps are unlimited.
  defaultPublishRate?: number;
  // The dispatcher's clock (publish times, publish-rate windows); the system clock when absent.
  // Tests step it instead of sleeping.
  now?: () => Date;
}

export interface EmbeddedApp {
  id: string;
  name: string;
  providers: string[];
  // The providers whose sender only pretends to deliver (no provider given for them).
  dryRun: string[];
  serverKey: string;
  clientKey: string;
  userTokenSecret: string;
}

export interface EmbeddedServer {
  address: string;
  port: number;
  // Base URL of the HTTP gateway, when one runs.
  httpUrl?: string;
  // host:port of gorush's gRPC API, when it runs.
  gorushAddress?: string;
  adminKey: string;
  apps: EmbeddedApp[];
  appsDir: string;
  // PushApp files that could not be loaded, one line each (file and field).
  problems: string[];
  devFile: string | false;
  // The in-memory store, for seeding large device sets without gRPC (benchmarks).
  store: Store;
  // The in-memory bus, for tests that watch a topic (dead letters).
  bus: Bus;
  stop(): Promise<void>;
}

// Starts the embedded server in this process. Throws (after releasing what it opened) when the
// port is taken or an app cannot be created.
export async function startEmbedded(options: EmbeddedOptions = {}): Promise<EmbeddedServer> {
  const logger = options.logger ?? createLogger({ service: "herald", level: "info" });
  const host = options.host ?? DEFAULT_HOST;
  const port = options.port ?? DEFAULT_PORT;
  const appsDir = resolve(options.appsDir ?? DEFAULT_APPS_DIR);
  const adminKey = options.adminKey ?? `hk_admin_${randomBytes(24).toString("base64url")}`;
  const masterSecret = options.masterSecret ?? randomBytes(32).toString("base64url");
  const devFile = options.devFile ?? false;

  const loaded = await loadPushApps(appsDir);
  for (const problem of loaded.errors) logger.warn({ problem }, "PushApp skipped");

  // Stops in reverse order, once; also releases what a failed start opened.
  const lifecycle = new Lifecycle(logger);

  try {
    const store: Store = createMemoryStore();
    lifecycle.add("store", () => store.close());
    const bus = new MemoryBus({ logger: logger.child({ component: "bus" }) });
    lifecycle.add("bus", () => bus.close());

    const tokenRules = options.tokenRules ?? { webPushHosts: DEFAULT_WEBPUSH_HOSTS, webPushAllowInsecure: false };
    const registry = createRegistryModule({ store, bus, logger, masterSecret, tokenRules, ...(options.webhooks ? { webhooks: options.webhooks } : {}) });
    const topics = createTopicModule({ store });
    const dispatcher = createDispatcherModule({
      publishes: createMemoryPublishRepository(),
      directory: store,
      bus,
      recipients: storeRecipients(store),
      tokenRules,
      logger,
      defaultPublishRate: options.defaultPublishRate ?? 0,
      ...(options.now ? { now: options.now } : {}),
    });
    lifecycle.add("dispatcher", await dispatcher.start());
    const feedback = await registry.tokenFeedback.start();
    lifecycle.add("token feedback", () => feedback.stop());
    await registry.webhooks.start();
    lifecycle.add("webhooks", () => registry.webhooks.stop());

    const apps: EmbeddedApp[] = [];
    for (const pushApp of loaded.apps) apps.push(await createApp(registry.apps, pushApp));
    // The CLI acts on the first app of the dev file unless told otherwise: the one with the most
    // providers (the sample "demo" has all four), so any device of the README's examples fits it.
    apps.sort((a, b) => b.providers.length - a.providers.length);

    // Without a provider from the caller (the fakes, a benchmark), a sender runs dry-run.
    for (const app of apps) {
      for (const name of app.providers as ProviderName[]) {
        const given = options.providerFor?.(app.id, name);
        if (!given) app.dryRun.push(name);
        const provider = given ?? new DryRunProvider(name);
        const sender = new SenderWorker({ app: app.id, provider, bus, logger: logger.child({ component: "sender", app: app.id, provider: name }), now: () => new Date() });
        await sender.start();
        lifecycle.add(`sender ${app.id}/${name}`, () => sender.stop());
      }
      const mode = app.providers.length === 0 ? "no providers configured" : app.dryRun.length ? `dry-run for ${app.dryRun.join(", ")} (no credentials in embedded mode)` : "delivering";
      logger.info({ app: app.id, providers: app.providers, dryRun: app.dryRun }, `app ready; ${mode}`);
    }

    registry.sweeper.start();
    lifecycle.add("sweeper", () => registry.sweeper.stop());

    const server = new GrpcServer({
      logger,
      authenticator: new ApiKeyAuthenticator({ adminKey, lookup: apiKeyLookup(store) }),
      services: [...registry.bindings, ...topics.bindings, ...dispatcher.bindings],
      descriptorSetPath,
    });
    let bound: number;
    try {
      bound = await server.listen(`${host}:${port}`);
    } catch (err) {
      throw new Error(`cannot listen on ${host}:${port}: ${(err as Error).message.split("\n")[0]} (another server running? pass --port)`);
    }
    lifecycle.add("grpc", () => server.stop(5_000));
    const hostPart = host.includes(":") ? `[${host}]` : host;
    const address = `${hostPart}:${bound}`;

    // The HTTP gateway, in front of the same gRPC port.
    let httpUrl: string | undefined;
    let gorushAddress: string | undefined;
    const httpPort = options.httpPort ?? false;
    if (httpPort !== false) {
      const gateway = createGateway({ addresses: { registry: address, topic: address, dispatcher: address }, adminKey, maxBodyBytes: 1024 * 1024, logger: logger.child({ component: "gateway" }), version: "0.1.0" });
      lifecycle.add("gateway upstreams", async () => gateway.close());
      let http: HttpServer;
      try {
        http = await startHttpServer(`${hostPart}:${httpPort}`, gateway.handler);
      } catch (err) {
        throw new Error(`cannot listen on ${hostPart}:${httpPort} for HTTP: ${(err as Error).message.split("\n")[0]} (another server running? pass --http-port)`);
      }
      lifecycle.add("http", () => http.close());
      httpUrl = `http://${hostPart}:${http.port}`;
      const gorushPort = options.gorushGrpcPort ?? false;
      if (gorushPort !== false) {
        let gorush: Awaited<ReturnType<typeof gateway.listenGorush>>;
        try {
          gorush = await gateway.listenGorush(`${hostPart}:${gorushPort}`);
        } catch (err) {
          throw new Error(`cannot listen on ${hostPart}:${gorushPort} for gorush's gRPC API: ${(err as Error).message.split("\n")[0]} (another server running? pass --gorush-grpc-port)`);
        }
        lifecycle.add("gorush grpc", () => gorush.stop());
        gorushAddress = `${hostPart}:${gorush.port}`;
      }
    }

    if (devFile) {
      await writeDevFile(devFile, { server: address, adminKey, pid: process.pid, startedAt: new Date().toISOString(), apps });
      lifecycle.add("dev file", () => removeDevFileIfOurs(devFile, adminKey));
    }
    logger.info({ address, apps: apps.map((a) => a.id) }, "herald embedded serving");

    return {
      address,
      port: bound,
      ...(httpUrl ? { httpUrl } : {}),
      ...(gorushAddress ? { gorushAddress } : {}),
      adminKey,
      apps,
      appsDir,
      problems: loaded.errors,
      devFile,
      store,
      bus,
      stop: () => lifecycle.shutdown("stop"),
    };
  } catch (err) {
    await lifecycle.shutdown("start failed");
    throw err;
  }
}

type AppAdmin = ReturnType<typeof createRegistryModule>["apps"];

async function createApp(admin: AppAdmin, pushApp: PushApp): Promise<EmbeddedApp> {
  const id = pushApp.metadata.name;
  const providers = enabledProviders(pushApp);
  // One process has no pool: its senders are the app's own whatever spec.senders.mode says.
  const created = await admin.create(appsApi.CreateAppRequest.fromPartial({ ...toCreateAppRequest(pushApp), senders: appsApi.SenderMode.SENDER_MODE_DEDICATED }));
  const server = await admin.createKey({ appId: id, role: appsApi.ApiKeyRole.API_KEY_ROLE_SERVER, name: "embedded server key" });
  const client = await admin.createKey({ appId: id, role: appsApi.ApiKeyRole.API_KEY_ROLE_CLIENT, name: "embedded client key" });
  return {
    id,
    name: created.app?.name ?? id,
    providers,
    dryRun: [],
    serverKey: server.secret,
    clientKey: client.secret,
    userTokenSecret: created.userTokenSecret,
  };
}

// A sample token per provider, so the printed examples work as pasted.
const SAMPLE_DEVICE: Record<string, { provider: string; platform: string; token: string }> = {
  fcm: { provider: "fcm", platform: "android", token: "my-fcm-registration-token" },
  apns: { provider: "apns", platform: "ios", token: "a3f0c2d4e5b6a7980112233445566778899aabbccddeeff00112233445566778" },
  hms: { provider: "hms", platform: "android", token: "my-hms-push-token" },
  webpush: { provider: "fcm", platform: "web", token: "my-fcm-web-token" },
};

export function formatBanner(server: EmbeddedServer, cwd = process.cwd()): string {
  const lines: string[] = [];
  const shown = (p: string) => {
    const rel = relative(cwd, p);
    return rel && !rel.startsWith("..") ? rel : p;
  };
  lines.push(`Herald embedded: every service on ${server.address} (memory store and bus; data is lost at exit)`);
  if (server.httpUrl) lines.push(`  HTTP API    ${server.httpUrl} (OpenAPI: ${server.httpUrl}/openapi.json)`);
  if (server.gorushAddress) lines.push(`  gorush gRPC ${server.gorushAddress} (proto.Gorush/Send; authorization: Bearer <SERVER key>)`);
  lines.push("");
  lines.push(`  admin key   ${server.adminKey}`);
  if (server.devFile) lines.push(`  keys file   ${shown(server.devFile)} (read by \`npm run herald\`)`);
  lines.push(`  apps from   ${shown(server.appsDir)}`);
  for (const problem of server.problems) lines.push(`  skipped     ${problem}`);
  lines.push("");
  if (server.apps.length === 0) {
    lines.push("  No PushApp loaded. Create an app and its keys:");
    lines.push("    npm run herald -- apps create myapp");
    lines.push("    npm run herald -- keys create myapp --role server");
    lines.push("");
  }
  for (const app of server.apps) {
    const mode = app.dryRun.length === 0 ? "" : app.dryRun.length === app.providers.length ? " (dry-run: no credentials in embedded mode)" : ` (dry-run for ${app.dryRun.join(", ")})`;
    const providers = app.providers.length ? `${app.providers.join(", ")}${mode}` : "none configured";
    lines.push(`  app ${app.id}${app.name !== app.id ? ` "${app.name}"` : ""}: providers ${providers}`);
    lines.push(`    server key         ${app.serverKey}`);
    lines.push(`    client key         ${app.clientKey}`);
    lines.push(`    user token secret  ${app.userTokenSecret}`);
    lines.push("");
  }
  const first = server.apps[0];
  if (first) {
    const sample = SAMPLE_DEVICE[first.providers.find((p) => p !== "webpush") ?? "fcm"] ?? SAMPLE_DEVICE.fcm!;
    const appFlag = server.apps.length > 1 ? ` --app ${first.id}` : "";
    const body = JSON.stringify({ provider: `PROVIDER_${sample.provider.toUpperCase()}`, platform: `PLATFORM_${sample.platform.toUpperCase()}`, token: sample.token, topics: ["news"] });
    lines.push("Try it:");
    lines.push(`  npm run herald -- devices register${appFlag} --provider ${sample.provider} --platform ${sample.platform} --token ${sample.token} --topic news`);
    lines.push(`  npm run herald -- devices list${appFlag}`);
    lines.push(`  npm run herald -- topics stats${appFlag} news`);
    lines.push(`  grpcurl -plaintext ${server.address} list`);
    lines.push(`  grpcurl -plaintext -H 'authorization: Bearer ${first.serverKey}' \\`);
    lines.push(`    -d '${body}' \\`);
    lines.push(`    ${server.address} herald.registry.v1.RegistryService/RegisterDevice`);
    if (server.httpUrl) {
      lines.push(`  curl -H 'authorization: Bearer ${first.serverKey}' -H 'content-type: application/json' \\`);
      lines.push(`    -d '${body}' \\`);
      lines.push(`    ${server.httpUrl}/v1/herald.registry.v1.RegistryService/RegisterDevice`);
    }
    lines.push("");
  }
  lines.push("Stop with Ctrl-C.");
  return lines.join("\n");
}

export interface ServeFlags {
  host?: string;
  port?: string;
  httpPort?: string;
  gorushGrpcPort?: string;
  apps?: string;
  fakes?: boolean;
}

const serveEnv = z.object({
  HERALD_HOST: z.string().min(1).default(DEFAULT_HOST),
  HERALD_PORT: env.port(DEFAULT_PORT),
  HERALD_HTTP_PORT: env.port(DEFAULT_HTTP_PORT),
  // gorush's gRPC API (gorush's own default is 9000); not served when unset.
  HERALD_GORUSH_GRPC_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  HERALD_APPS_DIR: z.string().min(1).optional(),
  HERALD_ADMIN_KEY: z.string().min(24, "use at least 24 random characters").optional(),
  HERALD_SECRET: z.string().min(16, "use at least 16 random characters").optional(),
  HERALD_LOG_LEVEL: env.logLevel(),
  HERALD_FAKES: env.bool(false),
  // As on the distributed dispatcher: the rate of apps whose max_publish_rate is 0; 0: unlimited.
  HERALD_DEFAULT_PUBLISH_RATE: z.coerce.number().int().min(0).default(0),
});

// A port given as a flag, over the one from the environment.
function portFlag(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 0 || parsed > 65535) throw new ConfigError([`${flag} (${JSON.stringify(value)}): must be an integer between 0 and 65535`]);
  return parsed;
}

// The `serve` command: flags over environment over defaults; banner on stdout, pino JSON logs on
// stderr; SIGINT/SIGTERM stop it cleanly. Resolves once serving (the process stays up).
export async function serveCommand(flags: ServeFlags, io: { out: (s: string) => void } = { out: (s) => process.stdout.write(`${s}\n`) }): Promise<EmbeddedServer> {
  const config = loadConfig(serveEnv);
  const port = portFlag("--port", flags.port, config.HERALD_PORT);
  const httpPort = portFlag("--http-port", flags.httpPort, config.HERALD_HTTP_PORT);
  const gorushGrpcPort = flags.gorushGrpcPort !== undefined ? portFlag("--gorush-grpc-port", flags.gorushGrpcPort, 0) : config.HERALD_GORUSH_GRPC_PORT;
  const logger = createLogger({ service: "herald", level: config.HERALD_LOG_LEVEL, destination: process.stderr });
  const lifecycle = new Lifecycle(logger);
  // Loaded only when asked for: the fakes make a test CA with openssl at start.
  const fakes = flags.fakes || config.HERALD_FAKES ? await (await import("./serve.fakes.js")).startFakeProviders(logger) : undefined;
  if (fakes) lifecycle.add("fake providers", () => fakes.close());
  let server: EmbeddedServer;
  try {
    server = await startEmbedded({
      host: flags.host ?? config.HERALD_HOST,
      port,
      httpPort,
      ...(gorushGrpcPort !== undefined ? { gorushGrpcPort } : {}),
      appsDir: flags.apps ? resolve(flags.apps) : config.HERALD_APPS_DIR ? resolve(config.HERALD_APPS_DIR) : DEFAULT_APPS_DIR,
      ...(config.HERALD_ADMIN_KEY ? { adminKey: config.HERALD_ADMIN_KEY } : {}),
      ...(config.HERALD_SECRET ? { masterSecret: config.HERALD_SECRET } : {}),
      ...(fakes ? { providerFor: fakes.providerFor, tokenRules: fakes.tokenRules } : {}),
      logger,
      devFile: devFilePath(),
      defaultPublishRate: config.HERALD_DEFAULT_PUBLISH_RATE,
    });
  } catch (err) {
    await lifecycle.shutdown("start failed");
    throw err;
  }
  lifecycle.add("embedded", () => server.stop());
  lifecycle.installSignalHandlers();
  io.out(formatBanner(server));
  if (fakes) io.out(formatFakes(fakes));
  return server;
}

// How to reach the fakes: where they listen and a device of each kind that they will accept.
function formatFakes(fakes: FakeProviders): string {
  const sub = fakes.subscribe();
  return [
    "Fake providers (deliveries really happen, over TLS, through the production provider code):",
    ...fakes.describe().map((l) => `  ${l}`),
    "  a Web Push device of the fake service:",
    `    npm run herald -- devices register --provider webpush --platform web --topic news --token '${sub.token}'`,
    "",
  ].join("\n");
}

