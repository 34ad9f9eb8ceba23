import { createHash } from "node:crypto";
import type { AsyncClient } from "@herald/platform";
import type { apps, common, dispatch, registry, topic } from "@herald/proto";
import { fromGrpcError, HttpError } from "./http.errors.js";

// The clients the compatibility APIs (Beams, Kinvey, Pushlet) call the services with: the admin
// key, each call scoped to the app named by the route (and as a CLIENT where the API is public).
export interface AdminClients {
  apps: AsyncClient<typeof apps.AppServiceService>;
  registry: AsyncClient<typeof registry.RegistryServiceService>;
  topic: AsyncClient<typeof topic.TopicServiceService>;
  dispatch: AsyncClient<typeof dispatch.DispatchServiceService>;
}

// A service call whose refusal becomes the HTTP error the client sees (one already mapped
// passes as it is).
export async function rpc<T>(call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (err) {
    throw err instanceof HttpError ? err : fromGrpcError(err);
  }
}

// The app a compatibility call acts for, and the API key it came with (else the admin key's).
export interface CallScope {
  app: string;
  apiKey?: string;
}

const SECRET_CACHE_MS = 10_000;

// "Server credentials" of the compatibility APIs: the app's secret (its user token secret, what
// Beams calls the secret key and Kinvey the master secret), checked by the registry and cached
// briefly, or a Herald API key of the app, which the services check themselves.
export class AppSecrets {
  private readonly cache = new Map<string, { valid: boolean; until: number }>();

  constructor(private readonly apps: AdminClients["apps"]) {}

  // Throws 401 `refusal` unless `secret` is the app's; returns how to call for the app (with the
  // API key when it is one).
  async check(app: string, secret: string, refusal: () => HttpError): Promise<CallScope> {
    if (secret.startsWith("hk_")) return { app, apiKey: secret };
    const key = createHash("sha256").update(`${app}\n${secret}`).digest("hex");
    const hit = this.cache.get(key);
    let valid = hit && hit.until > Date.now() ? hit.valid : undefined;
    if (valid === undefined) {
      valid = (await rpc(this.apps.verifyAppSecret({ appId: app, secret }))).valid;
      if (this.cache.size > 10_000) this.cache.clear();
      this.cache.set(key, { valid, until: Date.now() + SECRET_CACHE_MS });
    }
    if (!valid) throw refusal();
    return { app };
  }
}

// `Authorization: Basic base64(user:password)`, or undefined when the header is another scheme.
export function basicCredentials(authorization: string | string[] | undefined): { user: string; password: string } | undefined {
  const match = /^Basic\s+(\S+)$/i.exec(String(authorization ?? ""));
  if (!match) return undefined;
  const decoded = Buffer.from(match[1]!, "base64").toString("utf8");
  const i = decoded.indexOf(":");
  return i < 0 ? undefined : { user: decoded.slice(0, i), password: decoded.slice(i + 1) };
}

// `Authorization: <scheme> <token>` for one of the schemes.
export function schemeToken(authorization: string | string[] | undefined, ...schemes: string[]): string | undefined {
  const match = /^(\S+)\s+(\S+)$/.exec(String(authorization ?? "").trim());
  return match && schemes.some((s) => s.toLowerCase() === match[1]!.toLowerCase()) ? match[2] : undefined;
}

// A device's own topics (not those it holds through its user): Beams' interests, what a
// re-registration must keep.
export async function deviceOwnTopics(c: AdminClients, as: CallScope, deviceId: string): Promise<string[]> {
  const topics: string[] = [];
  let cursor = "";
  for (;;) {
    const page = await rpc(c.topic.listDeviceTopics({ deviceIds: [deviceId], page: { cursor, limit: 1000 } }, as));
    for (const item of page.items) if (item.fromDevice) topics.push(item.topic);
    if (!page.hasMore) return topics;
    cursor = page.nextCursor;
  }
}

// Registers a known device again with its state (own topics, user, tags, meta, locale, time
// zone) and only `changes` applied: what the compatibility APIs do for a token Herald already
// holds, where a plain RegisterDevice would replace the state. Returns its own topics.
export async function reRegister(c: AdminClients, as: CallScope, d: common.Device, changes: { token?: string; user?: string; meta?: Record<string, string> } = {}): Promise<string[]> {
  const topics = await deviceOwnTopics(c, as, d.id);
  await rpc(
    c.registry.registerDevice(
      { id: d.id, provider: d.provider, platform: d.platform, token: changes.token ?? d.token, user: changes.user ?? d.user, topics, tags: d.tags, meta: changes.meta ?? d.meta, locale: d.locale, timezone: d.timezone },
      as,
    ),
  );
  return topics;
}

// The device Herald already holds for a push token, with what reRegister keeps.
export async function deviceByToken(c: AdminClients, as: CallScope, token: common.ProviderToken): Promise<common.Device | undefined> {
  return (await rpc(c.registry.listDevices({ filter: { providerTokens: [token] }, includeTags: true, includeMeta: true }, as))).devices[0];
}
