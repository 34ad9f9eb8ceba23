// The `herald` commands: one entry per command with its options, help text, examples and the
// calls it makes. herald.ts parses the command line against these and prints the result.
import * as grpc from "@grpc/grpc-js";
import { errorReason } from "@herald/platform";
import { APP_ID_PATTERN, apps as appsApi, common, registry, topic } from "@herald/proto";
import {
  checkHealth,
  collectPages,
  devicesTable,
  moreNote,
  parseIntArg,
  parseKeyValues,
  parsePlatformArg,
  parseProviderArg,
  parseTagFilter,
  shortEnum,
  table,
  topicStatsTable,
  UsageError,
  type AuthNeed,
  type Clients,
  type Credentials,
  type Io,
  type Output,
} from "./cli.support.js";
import { PUBLISH_COMMANDS } from "./cli.publish.js";

export interface OptionSpec {
  type: "string" | "boolean";
  multiple?: boolean;
  short?: string;
  // Shown in help, e.g. "N" or "apns|fcm|hms|webpush".
  value?: string;
  help: string;
}

export class Values {
  constructor(private readonly raw: Record<string, string | boolean | Array<string | boolean> | undefined>) {}
  str(name: string): string | undefined {
    const v = this.raw[name];
    return typeof v === "string" ? v : Array.isArray(v) ? (v.at(-1) as string | undefined) : undefined;
  }
  strs(name: string): string[] {
    const v = this.raw[name];
    return Array.isArray(v) ? v.map(String) : typeof v === "string" ? [v] : [];
  }
  bool(name: string): boolean {
    return this.raw[name] === true;
  }
  has(name: string): boolean {
    return this.raw[name] !== undefined;
  }
}

export interface RunContext {
  clients: Clients;
  creds: Credentials;
  io: Io;
  json: boolean;
}

export interface CommandSpec {
  // "devices register", "status".
  name: string;
  summary: string;
  // Positional arguments as shown in usage, e.g. "<device-id> <topic>...".
  args?: string;
  minArgs?: number;
  maxArgs?: number;
  description?: string;
  options: Record<string, OptionSpec>;
  examples: string[];
  auth: AuthNeed;
  run(ctx: RunContext, values: Values, args: string[]): Promise<Output | void>;
}

const pageOptions: Record<string, OptionSpec> = {
  limit: { type: "string", value: "N", help: "page size, 1-1000 (server default 100)" },
  cursor: { type: "string", value: "C", help: "continue after this cursor (printed when there are more)" },
  all: { type: "boolean", help: "follow the cursors and print every page" },
};

const pageArgs = (v: Values) => ({ limit: parseIntArg(v.str("limit"), "--limit", 1, 1000), cursor: v.str("cursor"), all: v.bool("all") });

const roleOf = (value: string | undefined): appsApi.ApiKeyRole => {
  if (value === "server") return appsApi.ApiKeyRole.API_KEY_ROLE_SERVER;
  if (value === "client") return appsApi.ApiKeyRole.API_KEY_ROLE_CLIENT;
  throw new UsageError(`--role must be server or client${value ? ` (got "${value}")` : ""}`);
};

const topicOps: Record<string, topic.TopicOp> = { add: topic.TopicOp.TOPIC_OP_ADD, remove: topic.TopicOp.TOPIC_OP_REMOVE, set: topic.TopicOp.TOPIC_OP_SET };

function appLimits(v: Values): appsApi.AppLimits {
  const overflow = v.str("overflow");
  if (overflow !== undefined && overflow !== "evict" && overflow !== "reject") throw new UsageError(`--overflow must be evict or reject (got "${overflow}")`);
  return {
    maxDevicesPerUser: parseIntArg(v.str("max-devices-per-user"), "--max-devices-per-user", 1) ?? 0,
    deviceOverflowPolicy:
      overflow === "reject"
        ? appsApi.DeviceOverflowPolicy.DEVICE_OVERFLOW_POLICY_REJECT
        : overflow === "evict"
          ? appsApi.DeviceOverflowPolicy.DEVICE_OVERFLOW_POLICY_EVICT_LEAST_RECENTLY_SEEN
          : appsApi.DeviceOverflowPolicy.DEVICE_OVERFLOW_POLICY_UNSPECIFIED,
    maxInactiveDays: parseIntArg(v.str("max-inactive-days"), "--max-inactive-days", 0) ?? 0,
    maxTopicsPerDevice: parseIntArg(v.str("max-topics-per-device"), "--max-topics-per-device", 1) ?? 0,
    maxPublishRate: parseIntArg(v.str("max-publish-rate"), "--max-publish-rate", 0) ?? 0,
    urgentMaxTargets: parseIntArg(v.str("urgent-max-targets"), "--urgent-max-targets", 0) ?? 0,
  };
}

const appsTable = (list: appsApi.App[]) =>
  table(
    ["ID", "NAME", "PROVIDERS", "MAX DEVICES/USER", "CREATED"],
    list.map((a) => [a.id, a.name, a.providers.map((p) => shortEnum(common.providerToJSON(p))).join(","), String(a.limits?.maxDevicesPerUser ?? ""), a.createdAt?.toISOString() ?? ""]),
  );

const deviceFilterOptions: Record<string, OptionSpec> = {
  user: { type: "string", multiple: true, value: "U", help: "devices of this user (repeatable: any of them)" },
  topic: { type: "string", multiple: true, value: "T", help: "devices subscribed to this topic (repeatable: any of them)" },
  provider: { type: "string", multiple: true, value: "P", help: "apns, fcm, hms or webpush (repeatable)" },
  platform: { type: "string", multiple: true, value: "P", help: "ios, android or web (repeatable)" },
  tag: { type: "string", multiple: true, value: "k=v", help: "tag key=value, or key to require the tag; values of one key are OR-ed, keys AND-ed" },
  id: { type: "string", multiple: true, value: "ID", help: "these device ids (repeatable)" },
};

function deviceFilter(v: Values): common.DeviceFilter {
  return common.DeviceFilter.fromPartial({
    ids: v.strs("id"),
    users: v.strs("user"),
    topics: v.strs("topic"),
    providers: v.strs("provider").map((p) => parseProviderArg(p)),
    platforms: v.strs("platform").map((p) => parsePlatformArg(p)),
    ...(v.has("tag") ? { tags: parseTagFilter(v.strs("tag")) } : {}),
  });
}

// The app and role an app key belongs to, from the key's readable prefix (hk_s_<app>_...).
// Authority comes from the server; this only labels what the server accepted.
const KEY_LABEL = new RegExp(`^hk_([sc])_(${APP_ID_PATTERN.source.slice(1, -1)})_`);
function keyLabel(key: string): { role: string; app: string } | undefined {
  const m = KEY_LABEL.exec(key);
  return m ? { role: m[1] === "s" ? "server" : "client", app: m[2]! } : undefined;
}

const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;

const HEALTH_SERVICES = ["", "herald.registry.v1.RegistryService", "herald.registry.v1.AppService", "herald.topic.v1.TopicService", "herald.dispatch.v1.DispatchService"];

export const COMMANDS: CommandSpec[] = [
  // --- serve / status ----------------------------------------------------------------------
  {
    name: "serve",
    summary: "run every service in one process (memory store and bus), apps from PushApp YAML",
    description:
      "Embedded all-in-one mode for trying Herald and for development: the registry, topic and dispatch services on\n" +
      "one gRPC port and the HTTP gateway in front of them, with the fan-out and one sender per app and provider, over in-memory adapters (data is lost at\n" +
      "exit). Each PushApp in the apps directory becomes an app with a SERVER and a CLIENT key; providers run dry-run\n" +
      "(no credentials), or through the fake providers with --fakes. The keys are printed and written to\n" +
      ".herald/dev.json, where the other commands find them. Logs are JSON on stderr.\n\n" +
      "Environment: HERALD_PORT, HERALD_HTTP_PORT, HERALD_GORUSH_GRPC_PORT, HERALD_HOST, HERALD_APPS_DIR, HERALD_ADMIN_KEY (fixed admin key),\n" +
      "HERALD_SECRET (fixed master secret, so user token secrets survive restarts), HERALD_LOG_LEVEL.",
    maxArgs: 0,
    options: {
      port: { type: "string", short: "p", value: "N", help: "gRPC port (default 50051, env HERALD_PORT; 0 picks a free port)" },
      "http-port": { type: "string", value: "N", help: "HTTP gateway port (default 8080, env HERALD_HTTP_PORT; 0 picks a free port)" },
      "gorush-grpc-port": { type: "string", value: "N", help: "also serve gorush's gRPC API (Gorush.Send) on this port (env HERALD_GORUSH_GRPC_PORT; gorush uses 9000; off by default)" },
      host: { type: "string", value: "H", help: "listen host (default 127.0.0.1, env HERALD_HOST; 0.0.0.0 for every interface)" },
      apps: { type: "string", value: "DIR", help: "directory of PushApp YAML files (default deploy/samples, env HERALD_APPS_DIR)" },
      fakes: { type: "boolean", help: "deliver through in-process fake APNs and Web Push services and log what they receive (env HERALD_FAKES)" },
    },
    examples: ["npm start", "npm start -- --fakes", "herald serve --port 50061 --apps ./my-apps", "HERALD_LOG_LEVEL=debug herald serve"],
    auth: "none",
    async run(ctx, v) {
      const flags = { ...(v.str("port") !== undefined ? { port: v.str("port") } : {}), ...(v.str("http-port") !== undefined ? { httpPort: v.str("http-port") } : {}), ...(v.str("gorush-grpc-port") !== undefined ? { gorushGrpcPort: v.str("gorush-grpc-port") } : {}), ...(v.str("host") ? { host: v.str("host") } : {}), ...(v.str("apps") ? { apps: v.str("apps") } : {}), ...(v.bool("fakes") ? { fakes: true } : {}) };
      // Loaded only here: client commands need none of the server's modules.
      const { serveCommand } = await import("./serve.js");
      await serveCommand(flags, { out: (s) => ctx.io.out(s) });
    },
  },
  {
    name: "status",
    summary: "health of the server and, with a key, what the key gives access to",
    description: "Calls grpc.health.v1 for the server and each Herald service, then checks the key (if any).",
    maxArgs: 0,
    options: {},
    examples: ["herald status", "herald status --server herald.internal:50051 --key $HERALD_API_KEY"],
    auth: "any",
    async run(ctx) {
      const { creds, clients } = ctx;
      const health = await checkHealth(creds.server, HEALTH_SERVICES);
      const services: Record<string, string> = {};
      for (const [name, status] of health) if (name) services[name] = status === "NOT_FOUND" ? "not served" : status;
      const overall = health.get("") ?? "UNKNOWN";
      const result: Record<string, unknown> = { server: creds.server, status: overall, services };
      if (creds.apiKey) result.key = await describeKey(clients, creds);
      const lines = [`server   ${creds.server}  ${overall}`, ...Object.entries(services).map(([n, s]) => `  ${n.padEnd(36)} ${s}`)];
      if (result.key) {
        const k = result.key as Record<string, unknown>;
        lines.push(`key      ${k.kind === "admin" ? `admin key (${(k.apps as string[]).length} apps: ${(k.apps as string[]).join(", ") || "none"})` : `${String(k.role).toUpperCase()} key of app ${String(k.app)}`}`);
        if (k.detail) lines.push(`         ${String(k.detail)}`);
      } else lines.push("key      none (pass --key to check one)");
      return { json: result, text: lines.join("\n"), ...(overall !== "SERVING" ? { exitCode: 1 } : {}) };
    },
  },

  // --- apps (admin key) ----------------------------------------------------------------------
  {
    name: "apps create",
    summary: "create an app (prints its user token secret once)",
    args: "<id>",
    minArgs: 1,
    maxArgs: 1,
    options: {
      name: { type: "string", value: "N", help: "display name (default: the id)" },
      "max-devices-per-user": { type: "string", value: "N", help: "devices per user and platform (default 100)" },
      overflow: { type: "string", value: "evict|reject", help: "when a user has too many devices (default evict)" },
      "max-inactive-days": { type: "string", value: "N", help: "remove devices not seen for N days (default: never)" },
      "max-topics-per-device": { type: "string", value: "N", help: "topics per device (default 5000)" },
      "max-publish-rate": { type: "string", value: "N", help: "publishes per second (default unlimited)" },
      "urgent-max-targets": { type: "string", value: "N", help: "publishes to at most N devices, users or tokens take the urgent lane (default 100)" },
      provider: { type: "string", multiple: true, value: "P", help: "providers the app has credentials for (repeatable)" },
    },
    examples: ["herald apps create shop --name 'Shop' --max-devices-per-user 5 --overflow reject", "herald apps create news --provider fcm --provider webpush"],
    auth: "admin",
    async run({ clients }, v, [id]) {
      const res = await clients.apps.createApp({ id: id!, name: v.str("name") ?? "", limits: appLimits(v), providers: v.strs("provider").map((p) => parseProviderArg(p)) });
      return { json: appsApi.CreateAppResponse.toJSON(res), note: `created; the user token secret is shown once. Next: herald keys create ${id} --role server` };
    },
  },
  {
    name: "apps list",
    summary: "list apps",
    maxArgs: 0,
    options: { ...pageOptions },
    examples: ["herald apps list", "herald apps list --json --all"],
    auth: "admin",
    async run({ clients }, v) {
      const page = await collectPages(async ({ cursor, limit }) => {
        const r = await clients.apps.listApps({ page: { cursor, limit } });
        return { items: r.apps, nextCursor: r.nextCursor, hasMore: r.hasMore };
      }, pageArgs(v));
      const note = moreNote(page, "herald apps list");
      return { json: appsApi.ListAppsResponse.toJSON({ apps: page.items, nextCursor: page.nextCursor, hasMore: page.hasMore }), text: appsTable(page.items), ...(note ? { note } : {}) };
    },
  },
  {
    name: "apps get",
    summary: "show an app",
    args: "<id>",
    minArgs: 1,
    maxArgs: 1,
    options: {},
    examples: ["herald apps get demo"],
    auth: "admin",
    async run({ clients }, _v, [id]) {
      return { json: appsApi.GetAppResponse.toJSON(await clients.apps.getApp({ id: id! })) };
    },
  },
  {
    name: "apps delete",
    summary: "delete an app and its keys (--purge: also every device and subscription)",
    args: "<id>",
    minArgs: 1,
    maxArgs: 1,
    options: { purge: { type: "boolean", help: "also remove every device and subscription of the app" } },
    examples: ["herald apps delete shop --purge"],
    auth: "admin",
    async run({ clients }, v, [id]) {
      const res = await clients.apps.deleteApp({ id: id!, purgeData: v.bool("purge") });
      return { json: appsApi.DeleteAppResponse.toJSON(res), text: `deleted app ${id}${v.bool("purge") ? ` and its data (${plural(res.devicesRemoved, "device")})` : ""}` };
    },
  },
  {
    name: "apps rotate-secret",
    summary: "replace the app's user token secret (every older user token stops working)",
    args: "<id>",
    minArgs: 1,
    maxArgs: 1,
    options: {},
    examples: ["herald apps rotate-secret demo"],
    auth: "admin",
    async run({ clients }, _v, [id]) {
      return { json: appsApi.RotateUserTokenSecretResponse.toJSON(await clients.apps.rotateUserTokenSecret({ appId: id! })) };
    },
  },

  // --- keys (admin key) ----------------------------------------------------------------------
  {
    name: "keys create",
    summary: "create an API key (the secret is printed once)",
    args: "<app>",
    minArgs: 1,
    maxArgs: 1,
    description: "SERVER keys are for your backend (every call of the app); CLIENT keys ship inside apps (register, bind, unbind).",
    options: {
      role: { type: "string", value: "server|client", help: "the key's role (required)" },
      name: { type: "string", value: "N", help: "a label for lists (default: the role)" },
    },
    examples: ["herald keys create demo --role server --name backend", "herald keys create demo --role client --name ios-app"],
    auth: "admin",
    async run({ clients }, v, [app]) {
      const res = await clients.apps.createApiKey({ appId: app!, role: roleOf(v.str("role")), name: v.str("name") ?? "" });
      return { json: appsApi.CreateApiKeyResponse.toJSON(res), note: "the secret is shown once; only its SHA-256 is stored" };
    },
  },
  {
    name: "keys list",
    summary: "list an app's API keys (prefixes only)",
    args: "<app>",
    minArgs: 1,
    maxArgs: 1,
    options: {},
    examples: ["herald keys list demo"],
    auth: "admin",
    async run({ clients }, _v, [app]) {
      const res = await clients.apps.listApiKeys({ appId: app! });
      return {
        json: appsApi.ListApiKeysResponse.toJSON(res),
        text: table(
          ["ID", "ROLE", "NAME", "PREFIX", "CREATED", "REVOKED"],
          res.keys.map((k) => [k.id, shortEnum(appsApi.apiKeyRoleToJSON(k.role)), k.name, k.prefix, k.createdAt?.toISOString() ?? "", k.revokedAt?.toISOString() ?? ""]),
        ),
      };
    },
  },
  {
    name: "keys revoke",
    summary: "revoke an API key (takes effect within 10 s)",
    args: "<app> <key-id>",
    minArgs: 2,
    maxArgs: 2,
    options: {},
    examples: ["herald keys revoke demo 0b7c7d2e-5b8a-4c1e-9f0a-2d3b4c5d6e7f"],
    auth: "admin",
    async run({ clients }, _v, [app, keyId]) {
      return { json: appsApi.RevokeApiKeyResponse.toJSON(await clients.apps.revokeApiKey({ appId: app!, keyId: keyId! })) };
    },
  },

  // --- devices -------------------------------------------------------------------------------
  {
    name: "devices register",
    summary: "register a device (full-state write keyed by provider and token)",
    description:
      "Registering a token again updates the one existing device (same id): topics, tags and meta are replaced by\n" +
      "what you send. Tokens: APNs 64 hex characters; FCM/HMS the registration token; Web Push the\n" +
      'PushSubscription JSON {"endpoint", "keys": {"p256dh", "auth"}}.',
    maxArgs: 0,
    options: {
      provider: { type: "string", value: "apns|fcm|hms|webpush", help: "the push service (required)" },
      platform: { type: "string", value: "ios|android|web", help: "the client platform (required)" },
      token: { type: "string", value: "T", help: "the provider token (required)" },
      id: { type: "string", value: "ID", help: "an existing device whose token changed (token refresh)" },
      user: { type: "string", value: "U", help: "bind this user (SERVER keys only)" },
      topic: { type: "string", multiple: true, value: "T", help: "a device topic (repeatable; replaces the device's topics)" },
      tag: { type: "string", multiple: true, value: "k=v", help: "an indexed tag (repeatable)" },
      meta: { type: "string", multiple: true, value: "k=v", help: "free-form data for templates (repeatable)" },
      locale: { type: "string", value: "L", help: "BCP 47 language tag, e.g. en-GB" },
      timezone: { type: "string", value: "Z", help: "IANA time zone, e.g. Europe/Paris" },
    },
    examples: [
      "herald devices register --provider fcm --platform android --token my-fcm-token --topic news --tag team=red",
      "herald devices register --provider apns --platform ios --token a3f0...(64 hex) --user alice --locale fr-FR",
      `herald devices register --provider webpush --platform web --token '{"endpoint":"https://fcm.googleapis.com/fcm/send/x","keys":{"p256dh":"...","auth":"..."}}'`,
    ],
    auth: "app",
    async run({ clients }, v) {
      for (const flag of ["provider", "platform", "token"]) if (!v.has(flag)) throw new UsageError(`--${flag} is required`);
      const res = await clients.registry.registerDevice({
        id: v.str("id") ?? "",
        provider: parseProviderArg(v.str("provider")!),
        platform: parsePlatformArg(v.str("platform")!),
        token: v.str("token")!,
        user: v.str("user") ?? "",
        topics: v.strs("topic"),
        tags: parseKeyValues(v.strs("tag"), "--tag"),
        meta: parseKeyValues(v.strs("meta"), "--meta"),
        locale: v.str("locale") ?? "",
        timezone: v.str("timezone") ?? "",
      });
      return { json: registry.RegisterDeviceResponse.toJSON(res) };
    },
  },
  {
    name: "devices get",
    summary: "show a device",
    args: "<device-id>",
    minArgs: 1,
    maxArgs: 1,
    options: {},
    examples: ["herald devices get 6f1c..."],
    auth: "app",
    async run({ clients }, _v, [id]) {
      return { json: registry.GetDeviceResponse.toJSON(await clients.registry.getDevice({ id: id! })) };
    },
  },
  {
    name: "devices list",
    summary: "list devices matching filters (fields AND-ed, repeated values OR-ed)",
    maxArgs: 0,
    options: { ...deviceFilterOptions, ...pageOptions },
    examples: ["herald devices list", "herald devices list --topic news --platform ios", "herald devices list --user alice --user bob --json", "herald devices list --tag team=red --all"],
    auth: "app",
    async run({ clients }, v) {
      const filter = deviceFilter(v);
      const page = await collectPages(async ({ cursor, limit }) => {
        const r = await clients.registry.listDevices({ filter, page: { cursor, limit }, includeTopics: true, includeTags: true, includeMeta: true });
        return { items: r.devices, nextCursor: r.nextCursor, hasMore: r.hasMore };
      }, pageArgs(v));
      const note = moreNote(page, "herald devices list");
      return { json: registry.ListDevicesResponse.toJSON({ devices: page.items, nextCursor: page.nextCursor, hasMore: page.hasMore }), text: devicesTable(page.items), ...(note ? { note } : {}) };
    },
  },
  {
    name: "devices remove",
    summary: "remove devices",
    args: "<device-id>...",
    minArgs: 1,
    options: {},
    examples: ["herald devices remove 6f1c... 8a2d..."],
    auth: "app",
    async run({ clients }, _v, ids) {
      const res = await clients.registry.removeDevices({ filter: { ids } });
      return { json: registry.RemoveDevicesResponse.toJSON(res), text: `removed ${plural(res.removed, "device")}` };
    },
  },
  {
    name: "devices update",
    summary: "change the user, meta, tags or topics of devices (what is given is replaced)",
    args: "<device-id>...",
    minArgs: 1,
    options: {
      user: { type: "string", value: "U", help: "bind this user (the user's topics follow)" },
      "no-user": { type: "boolean", help: "clear the user (and the user's topics)" },
      meta: { type: "string", multiple: true, value: "k=v", help: "replace meta with these entries (repeatable)" },
      "no-meta": { type: "boolean", help: "clear meta" },
      tag: { type: "string", multiple: true, value: "k=v", help: "replace tags with these entries (repeatable)" },
      "no-tags": { type: "boolean", help: "clear tags" },
      topic: { type: "string", multiple: true, value: "T", help: "replace the device topics with these (repeatable; user topics stay)" },
      "no-topics": { type: "boolean", help: "clear the device topics" },
    },
    examples: ["herald devices update 6f1c... --user alice", "herald devices update 6f1c... 8a2d... --tag team=blue --topic news --topic sport", "herald devices update 6f1c... --no-user"],
    auth: "app",
    async run({ clients }, v, ids) {
      const exclusive = (a: string, b: string) => {
        if (v.has(a) && v.bool(b)) throw new UsageError(`--${a} and --${b} exclude each other`);
      };
      exclusive("user", "no-user");
      exclusive("meta", "no-meta");
      exclusive("tag", "no-tags");
      exclusive("topic", "no-topics");
      const req: registry.UpdateDevicesRequest = registry.UpdateDevicesRequest.fromPartial({ filter: { ids } });
      if (v.has("user") || v.bool("no-user")) req.userUpdate = { user: v.str("user") ?? "" };
      if (v.has("meta") || v.bool("no-meta")) req.metaUpdate = { meta: parseKeyValues(v.strs("meta"), "--meta") };
      if (v.has("tag") || v.bool("no-tags")) req.tagsUpdate = { tags: parseKeyValues(v.strs("tag"), "--tag") };
      if (v.has("topic") || v.bool("no-topics")) req.topicsUpdate = { topics: v.strs("topic") };
      if (!req.userUpdate && !req.metaUpdate && !req.tagsUpdate && !req.topicsUpdate) throw new UsageError("nothing to update: give --user, --meta, --tag or --topic (or a --no-… flag)");
      const res = await clients.registry.updateDevices(req);
      const evicted = res.evictedDeviceIds.length ? `; evicted to respect the per-user cap: ${res.evictedDeviceIds.join(", ")}` : "";
      return { json: registry.UpdateDevicesResponse.toJSON(res), text: `updated ${plural(res.matched, "device")}${evicted}` };
    },
  },

  // --- users ---------------------------------------------------------------------------------
  {
    name: "users token",
    summary: "mint a user token (HS256 JWT) for BindUser",
    args: "<user>",
    minArgs: 1,
    maxArgs: 1,
    description: "Prints only the token, so it can be captured: TOKEN=$(herald users token alice).",
    options: { ttl: { type: "string", value: "SECONDS", help: "lifetime (default 24 h, at most 30 days)" } },
    examples: ["herald users token alice", "herald users bind 6f1c... --user-token $(herald users token alice --ttl 600)"],
    auth: "app",
    async run({ clients }, v, [user]) {
      const res = await clients.registry.createUserToken({ user: user!, ttlSeconds: parseIntArg(v.str("ttl"), "--ttl", 1) ?? 0 });
      return { json: registry.CreateUserTokenResponse.toJSON(res), text: res.token, note: `expires ${res.expiresAt?.toISOString() ?? "?"}` };
    },
  },
  {
    name: "users bind",
    summary: "bind the user a user token vouches for to a device (the user's topics follow)",
    args: "<device-id>",
    minArgs: 1,
    maxArgs: 1,
    options: { "user-token": { type: "string", value: "JWT", help: "a user token (required): `herald users token <user>` or signed by your backend" } },
    examples: ["herald users bind 6f1c... --user-token eyJhbGciOi..."],
    auth: "app",
    async run({ clients }, v, [deviceId]) {
      const userToken = v.str("user-token");
      if (!userToken) throw new UsageError("--user-token is required");
      return { json: registry.BindUserResponse.toJSON(await clients.registry.bindUser({ deviceId: deviceId!, userToken })) };
    },
  },
  {
    name: "users unbind",
    summary: "logout: clear the user (and the user's topics) from a device",
    args: "<device-id>",
    minArgs: 1,
    maxArgs: 1,
    options: {},
    examples: ["herald users unbind 6f1c..."],
    auth: "app",
    async run({ clients }, _v, [deviceId]) {
      return { json: registry.UnbindUserResponse.toJSON(await clients.registry.unbindUser({ deviceId: deviceId! })) };
    },
  },
  {
    name: "users delete",
    summary: "GDPR erasure: remove every device of the user and the user's topics",
    args: "<user>",
    minArgs: 1,
    maxArgs: 1,
    options: {},
    examples: ["herald users delete alice"],
    auth: "app",
    async run({ clients }, _v, [user]) {
      const res = await clients.registry.deleteUser({ user: user! });
      return { json: registry.DeleteUserResponse.toJSON(res), text: `removed ${plural(res.devicesRemoved, "device")} and ${plural(res.userTopicsRemoved, "user topic")} of ${user}` };
    },
  },

  // --- topics --------------------------------------------------------------------------------
  ...(["add", "remove", "set"] as const).map(
    (op): CommandSpec => ({
      name: `topics ${op}`,
      summary: { add: "subscribe a device to topics", remove: "unsubscribe a device from topics", set: "make these exactly the device's own topics" }[op],
      args: op === "set" ? "<device-id> [topic...]" : "<device-id> <topic>...",
      minArgs: op === "set" ? 1 : 2,
      options: {},
      examples: [`herald topics ${op} 6f1c... news${op === "remove" ? "" : " sport"}`],
      auth: "app",
      async run({ clients }, _v, [deviceId, ...topics]) {
        return { json: topic.UpdateDeviceTopicsResponse.toJSON(await clients.topic.updateDeviceTopics({ deviceId: deviceId!, op: topicOps[op]!, topics })) };
      },
    }),
  ),
  {
    name: "topics list",
    summary: "topics of the app with their device counts",
    maxArgs: 0,
    options: { prefix: { type: "string", value: "P", help: "only topics starting with P" }, ...pageOptions },
    examples: ["herald topics list", "herald topics list --prefix news-"],
    auth: "app",
    async run({ clients }, v) {
      const prefix = v.str("prefix") ?? "";
      const page = await collectPages(async ({ cursor, limit }) => {
        const r = await clients.topic.listTopics({ prefix, page: { cursor, limit } });
        return { items: r.topics, nextCursor: r.nextCursor, hasMore: r.hasMore };
      }, pageArgs(v));
      const note = moreNote(page, "herald topics list");
      return { json: topic.ListTopicsResponse.toJSON({ topics: page.items, nextCursor: page.nextCursor, hasMore: page.hasMore }), text: topicStatsTable(page.items), ...(note ? { note } : {}) };
    },
  },
  {
    name: "topics stats",
    summary: "subscribed devices, their distinct users and user-topic holders per topic",
    args: "<topic>...",
    minArgs: 1,
    options: {},
    examples: ["herald topics stats news sport"],
    auth: "app",
    async run({ clients }, _v, topics) {
      const res = await clients.topic.getTopicStats({ topics });
      return { json: topic.GetTopicStatsResponse.toJSON(res), text: topicStatsTable(res.stats) };
    },
  },
  {
    name: "topics devices",
    summary: "device subscriptions, by device or topic",
    maxArgs: 0,
    options: {
      topic: { type: "string", multiple: true, value: "T", help: "subscriptions to this topic (repeatable)" },
      device: { type: "string", multiple: true, value: "D", help: "subscriptions of this device (repeatable)" },
      prefix: { type: "string", value: "P", help: "only topics starting with P" },
      ...pageOptions,
    },
    examples: ["herald topics devices --topic news", "herald topics devices --device 6f1c..."],
    auth: "app",
    async run({ clients }, v) {
      const page = await collectPages(async ({ cursor, limit }) => {
        const r = await clients.topic.listDeviceTopics({ deviceIds: v.strs("device"), topics: v.strs("topic"), topicPrefix: v.str("prefix") ?? "", page: { cursor, limit } });
        return { items: r.items, nextCursor: r.nextCursor, hasMore: r.hasMore };
      }, pageArgs(v));
      const note = moreNote(page, "herald topics devices");
      const source = (i: topic.DeviceTopic) => [i.fromDevice ? "device" : "", i.fromUser ? "user" : ""].filter(Boolean).join("+");
      return {
        json: topic.ListDeviceTopicsResponse.toJSON({ items: page.items, nextCursor: page.nextCursor, hasMore: page.hasMore }),
        text: table(["DEVICE", "TOPIC", "FROM"], page.items.map((i) => [i.deviceId, i.topic, source(i)])),
        ...(note ? { note } : {}),
      };
    },
  },
  {
    name: "topics users",
    summary: "users with at least one device subscribed to a topic",
    args: "<topic>",
    minArgs: 1,
    maxArgs: 1,
    options: { ...pageOptions },
    examples: ["herald topics users news"],
    auth: "app",
    async run({ clients }, v, [name]) {
      const page = await collectPages(async ({ cursor, limit }) => {
        const r = await clients.topic.listTopicUsers({ topic: name!, page: { cursor, limit } });
        return { items: r.users, nextCursor: r.nextCursor, hasMore: r.hasMore };
      }, pageArgs(v));
      const note = moreNote(page, `herald topics users ${name}`);
      return { json: topic.ListTopicUsersResponse.toJSON({ users: page.items, nextCursor: page.nextCursor, hasMore: page.hasMore }), text: page.items.join("\n") || "(none)", ...(note ? { note } : {}) };
    },
  },
  ...(["add", "remove", "set"] as const).map(
    (op): CommandSpec => ({
      name: `topics user-${op}`,
      summary: {
        add: "give a user topics (applied to every device of the user, now and later)",
        remove: "take topics from a user (and from the user's devices)",
        set: "make these exactly the user's topics",
      }[op],
      args: op === "set" ? "<user> [topic...]" : "<user> <topic>...",
      minArgs: op === "set" ? 1 : 2,
      options: {},
      examples: [`herald topics user-${op} alice alice-inbox${op === "remove" ? "" : " offers"}`],
      auth: "app",
      async run({ clients }, _v, [user, ...topics]) {
        return { json: topic.UpdateUserTopicsResponse.toJSON(await clients.topic.updateUserTopics({ user: user!, op: topicOps[op]!, topics })) };
      },
    }),
  ),
  {
    name: "topics user-list",
    summary: "user topics, by user or topic",
    maxArgs: 0,
    options: {
      user: { type: "string", multiple: true, value: "U", help: "topics of this user (repeatable)" },
      topic: { type: "string", multiple: true, value: "T", help: "holders of this topic (repeatable)" },
      prefix: { type: "string", value: "P", help: "only topics starting with P" },
      ...pageOptions,
    },
    examples: ["herald topics user-list --user alice", "herald topics user-list --topic offers"],
    auth: "app",
    async run({ clients }, v) {
      const page = await collectPages(async ({ cursor, limit }) => {
        const r = await clients.topic.listUserTopics({ users: v.strs("user"), topics: v.strs("topic"), topicPrefix: v.str("prefix") ?? "", page: { cursor, limit } });
        return { items: r.items, nextCursor: r.nextCursor, hasMore: r.hasMore };
      }, pageArgs(v));
      const note = moreNote(page, "herald topics user-list");
      return {
        json: topic.ListUserTopicsResponse.toJSON({ items: page.items, nextCursor: page.nextCursor, hasMore: page.hasMore }),
        text: table(["USER", "TOPIC"], page.items.map((i) => [i.user, i.topic])),
        ...(note ? { note } : {}),
      };
    },
  },
];

// What the key the CLI holds may do, asked of the server: admin keys list apps; app keys are
// tried on a SERVER-only call (a CLIENT key is refused with SERVER_KEY_REQUIRED).
async function describeKey(clients: Clients, creds: Credentials): Promise<Record<string, unknown>> {
  try {
    const res = await clients.apps.listApps({ page: { limit: 1000 } });
    const out: Record<string, unknown> = { kind: "admin", apps: res.apps.map((a) => a.id), source: creds.source };
    if (creds.app) {
      const app = (await clients.apps.getApp({ id: creds.app })).app;
      out.detail = app ? `app ${app.id}: ${app.name}, providers ${app.providers.map((p) => shortEnum(common.providerToJSON(p))).join(",") || "none"}` : undefined;
    }
    return out;
  } catch (err) {
    if (errorReason(err).reason !== "ADMIN_KEY_REQUIRED") throw err;
  }
  const label = keyLabel(creds.apiKey ?? "");
  try {
    await clients.registry.listDevices({ page: { limit: 1 } });
    return { kind: "app", role: "server", app: label?.app ?? "?", source: creds.source, detail: "every call of the app" };
  } catch (err) {
    const e = err as Partial<grpc.ServiceError>;
    if (e.code === grpc.status.PERMISSION_DENIED && errorReason(err).reason === "SERVER_KEY_REQUIRED") {
      return { kind: "app", role: "client", app: label?.app ?? "?", source: creds.source, detail: "register devices, bind/unbind users, join topics" };
    }
    throw err;
  }
}

COMMANDS.push(...PUBLISH_COMMANDS);

export const findCommand = (name: string): CommandSpec | undefined => COMMANDS.find((c) => c.name === name);

export const GROUPS: Record<string, string> = {
  apps: "manage apps (admin key)",
  keys: "manage API keys (admin key)",
  devices: "register, list, update and remove devices",
  users: "user tokens, bind/unbind, erasure",
  topics: "device and user subscriptions, topic stats",
  publishes: "follow, list and cancel publishes",
};
