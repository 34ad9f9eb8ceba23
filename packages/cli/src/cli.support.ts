// What every `herald` command shares: where the server is, which key to send, typed clients,
// argument converters, paging and output.
import * as grpc from "@grpc/grpc-js";
import { createClient, errorReason, type AsyncClient } from "@herald/platform";
import { apps as appsApi, common, dispatch, Platform, Provider, registry, topic } from "@herald/proto";
import { stringify as toYaml } from "yaml";
import { devFilePath, readDevFile, type DevFile } from "./devfile.schema.js";

export const DEFAULT_SERVER = "127.0.0.1:50051";

// A mistake in the command line: exit code 2 with the command's help.
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export interface Io {
  out(text: string): void;
  err(text: string): void;
}

export interface GlobalValues {
  server?: string;
  key?: string;
  app?: string;
  json?: boolean;
}

// Who a command needs to be: the admin key (apps, keys), an app's key (everything else), or
// whatever is at hand (status).
export type AuthNeed = "admin" | "app" | "any" | "none";

export interface Credentials {
  server: string;
  apiKey?: string;
  app?: string;
  // Where the key came from, for messages.
  source: string;
}

// Flags, then environment, then `.herald/dev.json` written by `herald serve`.
export async function resolveCredentials(need: AuthNeed, globals: GlobalValues, env: NodeJS.ProcessEnv): Promise<Credentials> {
  const explicitServer = globals.server ?? env.HERALD_SERVER;
  const explicitKey = globals.key ?? env.HERALD_API_KEY;
  const app = globals.app ?? env.HERALD_APP;
  const withApp = (c: Credentials): Credentials => (app ? { ...c, app } : c);
  if (need === "none" || explicitKey) {
    return withApp({ server: explicitServer ?? DEFAULT_SERVER, ...(need !== "none" && explicitKey ? { apiKey: explicitKey } : {}), source: "--key" });
  }
  const path = devFilePath(env);
  let dev: DevFile | null;
  try {
    dev = await readDevFile(path);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const server = explicitServer ?? dev?.server ?? DEFAULT_SERVER;
  if (!dev) {
    if (need === "any") return withApp({ server, source: "none" });
    throw new UsageError(`no API key: pass --key or set HERALD_API_KEY (or run \`npm start\`, which writes ${path})`);
  }
  if (need === "admin" || need === "any") return withApp({ server, apiKey: dev.adminKey, source: `${path} (admin key)` });
  if (app) {
    const found = dev.apps.find((a) => a.id === app);
    // An app the embedded server did not load (created later with `apps create`): the admin key
    // acts on it by naming it.
    return found ? { server, apiKey: found.serverKey, app, source: `${path} (server key of ${app})` } : { server, apiKey: dev.adminKey, app, source: `${path} (admin key)` };
  }
  const first = dev.apps[0];
  if (!first) throw new UsageError(`${path} lists no app: pass --app <id> (and create its keys with \`herald keys create\`)`);
  return { server, apiKey: first.serverKey, source: `${path} (server key of ${first.id})` };
}

export interface Clients {
  registry: AsyncClient<typeof registry.RegistryServiceService>;
  apps: AsyncClient<typeof appsApi.AppServiceService>;
  topic: AsyncClient<typeof topic.TopicServiceService>;
  dispatch: AsyncClient<typeof dispatch.DispatchServiceService>;
  close(): void;
}

// Clients are created on first use, so a command opens only the channel it needs.
export function lazyClients(creds: Credentials): Clients {
  const options = { ...(creds.apiKey ? { apiKey: creds.apiKey } : {}), ...(creds.app ? { app: creds.app } : {}) };
  const opened: Array<{ close(): void }> = [];
  const lazy = <T extends { close(): void }>(make: () => T): (() => T) => {
    let client: T | undefined;
    return () => {
      if (!client) {
        client = make();
        opened.push(client);
      }
      return client;
    };
  };
  const r = lazy(() => createClient(registry.RegistryServiceService, registry, creds.server, options));
  const a = lazy(() => createClient(appsApi.AppServiceService, appsApi, creds.server, options));
  const t = lazy(() => createClient(topic.TopicServiceService, topic, creds.server, options));
  const d = lazy(() => createClient(dispatch.DispatchServiceService, dispatch, creds.server, options));
  return {
    get registry() {
      return r();
    },
    get apps() {
      return a();
    },
    get topic() {
      return t();
    },
    get dispatch() {
      return d();
    },
    close: () => {
      for (const c of opened.splice(0)) c.close();
    },
  };
}

// One line for a failed call: `herald: INVALID_ARGUMENT (INVALID_TOKEN) token: ...`.
export function describeCallError(err: unknown, server: string): string | undefined {
  const e = err as Partial<grpc.ServiceError>;
  if (typeof e.code !== "number" || !e.metadata) return undefined;
  const { reason } = errorReason(err);
  const name = grpc.status[e.code] ?? String(e.code);
  let detail = e.details || e.message || "";
  if (e.code === grpc.status.UNAVAILABLE) {
    const cause = /Last error: (?:Error: )?(.*?)\.?(?: Resolution note|$)/.exec(detail)?.[1] || detail;
    detail = `cannot reach ${server} (${cause}); is the server running? (\`npm start\`)`;
  }
  if (e.code === grpc.status.DEADLINE_EXCEEDED && !reason) detail = `no answer from ${server} in time`;
  return `${name}${reason ? ` (${reason})` : ""} ${detail}`.trimEnd();
}

// --- argument converters -------------------------------------------------------------------

const PROVIDERS: Record<string, Provider> = { apns: Provider.PROVIDER_APNS, fcm: Provider.PROVIDER_FCM, hms: Provider.PROVIDER_HMS, webpush: Provider.PROVIDER_WEBPUSH };
const PLATFORMS: Record<string, Platform> = { ios: Platform.PLATFORM_IOS, android: Platform.PLATFORM_ANDROID, web: Platform.PLATFORM_WEB };

export function parseProviderArg(value: string, flag = "--provider"): Provider {
  const key = value.toLowerCase().replace(/^provider_/, "").replace(/[-_]/g, "");
  const found = PROVIDERS[key];
  if (found === undefined) throw new UsageError(`${flag} must be one of apns, fcm, hms, webpush (got "${value}")`);
  return found;
}

export function parsePlatformArg(value: string, flag = "--platform"): Platform {
  const found = PLATFORMS[value.toLowerCase().replace(/^platform_/, "")];
  if (found === undefined) throw new UsageError(`${flag} must be one of ios, android, web (got "${value}")`);
  return found;
}

export function parseIntArg(value: string | undefined, flag: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value.trim())) throw new UsageError(`${flag} must be a whole number (got "${value}")`);
  const n = Number(value);
  if (n < min || n > max) throw new UsageError(`${flag} must be between ${min} and ${max} (got ${n})`);
  return n;
}

// `--meta k=v --meta k2=v2` → { k: "v", k2: "v2" }; the value may contain '='.
export function parseKeyValues(values: string[] | undefined, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of values ?? []) {
    const at = item.indexOf("=");
    if (at <= 0) throw new UsageError(`${flag} takes key=value (got "${item}")`);
    out[item.slice(0, at)] = item.slice(at + 1);
  }
  return out;
}

// Tag filter flags: `--tag team=red --tag team=blue --tag vip` → team is red or blue, AND has vip.
export function parseTagFilter(values: string[] | undefined): common.TagFilter | undefined {
  if (!values?.length) return undefined;
  const byKey = new Map<string, string[]>();
  for (const item of values) {
    const at = item.indexOf("=");
    const key = at < 0 ? item : item.slice(0, at);
    if (!key) throw new UsageError(`--tag takes key=value or key (got "${item}")`);
    const list = byKey.get(key) ?? [];
    if (at >= 0) list.push(item.slice(at + 1));
    byKey.set(key, list);
  }
  return { all: [...byKey].map(([key, vals]) => ({ key, values: vals })) };
}

// --- paging --------------------------------------------------------------------------------

export interface Page<T> {
  items: T[];
  nextCursor: string;
  hasMore: boolean;
}

// One page (with --limit/--cursor), or every page (--all) following next_cursor.
export async function collectPages<T>(
  fetch: (page: { cursor: string; limit: number }) => Promise<Page<T>>,
  opts: { limit?: number | undefined; cursor?: string | undefined; all?: boolean | undefined },
): Promise<Page<T>> {
  let cursor = opts.cursor ?? "";
  const limit = opts.limit ?? 0;
  if (!opts.all) return fetch({ cursor, limit });
  const items: T[] = [];
  for (;;) {
    const page = await fetch({ cursor, limit: limit || 1000 });
    items.push(...page.items);
    if (!page.hasMore || !page.nextCursor) return { items, nextCursor: "", hasMore: false };
    cursor = page.nextCursor;
  }
}

// --- output --------------------------------------------------------------------------------

export interface Output {
  // The JSON form (already through the generated toJSON, so enums are names).
  json: unknown;
  // The readable form; YAML of `json` when absent.
  text?: string;
  // A note for people, on stderr, not in --json mode (e.g. how to get the next page).
  note?: string;
  // Non-zero when the command ran but the answer is a failure (status: NOT_SERVING).
  exitCode?: number;
}

export function render(output: Output, io: Io, json: boolean): void {
  if (json) {
    io.out(JSON.stringify(output.json, null, 2));
    return;
  }
  const text = output.text ?? toYaml(output.json, { lineWidth: 0 }).trimEnd();
  if (text) io.out(text);
  if (output.note) io.err(output.note);
}

export function moreNote(page: Page<unknown>, command: string): string | undefined {
  return page.hasMore ? `(more: ${command} --cursor ${page.nextCursor}, or --all)` : undefined;
}

// A fixed-width table; empty cells as "-".
export function table(headers: string[], rows: string[][]): string {
  if (rows.length === 0) return "(none)";
  const cells = [headers, ...rows.map((r) => r.map((c) => (c === "" ? "-" : c)))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join("  ")).join("\n");
}

export const shortEnum = (name: string): string => name.replace(/^(PROVIDER|PLATFORM|API_KEY_ROLE|DEVICE_OVERFLOW_POLICY|TOPIC_OP)_/, "").toLowerCase();

export const ellipsis = (s: string, max: number): string => (s.length > max ? `${s.slice(0, max - 1)}…` : s);

export const mapText = (m: Record<string, string> | undefined): string =>
  Object.entries(m ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(",");

export function devicesTable(devices: common.Device[]): string {
  return table(
    ["ID", "PROVIDER", "PLATFORM", "USER", "TOPICS", "TAGS", "TOKEN"],
    devices.map((d) => [
      d.id,
      shortEnum(common.providerToJSON(d.provider)),
      shortEnum(common.platformToJSON(d.platform)),
      d.user,
      d.topics.join(","),
      mapText(d.tags),
      ellipsis(d.token, 40),
    ]),
  );
}

export function topicStatsTable(stats: topic.TopicStats[]): string {
  return table(
    ["TOPIC", "DEVICES", "USERS", "USER-TOPIC HOLDERS"],
    stats.map((s) => [s.topic, String(s.deviceCount), String(s.userCount), String(s.userTopicCount)]),
  );
}

// --- health (grpc.health.v1, hand-encoded: HealthCheckRequest { string service = 1 },
// HealthCheckResponse { ServingStatus status = 1 }) -------------------------------------------

export type HealthStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN" | "NOT_FOUND";

const HEALTH_STATUS: HealthStatus[] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

function encodeHealthRequest(service: string): Buffer {
  const bytes = Buffer.from(service, "utf8");
  if (bytes.length === 0) return Buffer.alloc(0);
  const len: number[] = [];
  let n = bytes.length;
  while (n > 0x7f) {
    len.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  len.push(n);
  return Buffer.concat([Buffer.from([0x0a, ...len]), bytes]);
}

function decodeHealthResponse(buf: Buffer): HealthStatus {
  let i = 0;
  while (i < buf.length) {
    const tag = buf[i++]!;
    if (tag === 0x08) {
      let value = 0;
      let shift = 0;
      for (;;) {
        const b = buf[i++] ?? 0;
        value |= (b & 0x7f) << shift;
        if (!(b & 0x80) || i >= buf.length) break;
        shift += 7;
      }
      return HEALTH_STATUS[value] ?? "UNKNOWN";
    }
    break; // unknown fields: the default status
  }
  return "UNKNOWN";
}

const healthDefinition: grpc.ServiceDefinition = {
  check: {
    path: "/grpc.health.v1.Health/Check",
    requestStream: false,
    responseStream: false,
    requestSerialize: (s: string) => encodeHealthRequest(s),
    requestDeserialize: (b: Buffer) => b.toString(),
    responseSerialize: (s: HealthStatus) => Buffer.from([0x08, HEALTH_STATUS.indexOf(s)]),
    responseDeserialize: (b: Buffer) => decodeHealthResponse(b),
    originalName: "Check",
  },
};

// Health of each named service ("" is the whole server). A service the server does not know is
// NOT_FOUND; an unreachable server throws UNAVAILABLE.
export async function checkHealth(server: string, services: string[], deadlineMs = 5_000): Promise<Map<string, HealthStatus>> {
  const Ctor = grpc.makeGenericClientConstructor(healthDefinition, "Health");
  const client = new Ctor(server, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    check(req: string, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: HealthStatus) => void): void;
  };
  try {
    const result = new Map<string, HealthStatus>();
    for (const service of services) {
      const status = await new Promise<HealthStatus>((resolve, reject) => {
        client.check(service, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) => {
          if (err?.code === grpc.status.NOT_FOUND) resolve("NOT_FOUND");
          else if (err) reject(err);
          else resolve(res ?? "UNKNOWN");
        });
      });
      result.set(service, status);
    }
    return result;
  } finally {
    client.close();
  }
}
