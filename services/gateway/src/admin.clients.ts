import { createHash } from "node:crypto";
import { status as GrpcStatus } from "@grpc/grpc-js";
import type { AsyncClient } from "@herald/platform";
import type { apps, common, dispatch, registry, topic } from "@herald/proto";
import { isAppId as isAppIdSyntax } from "@herald/proto";
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
// passes as it is). What is not a gRPC status (a throw while building the call) is a fault of
// the gateway and goes on as it is, for the router to log.
export async function rpc<T>(call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (err) {
    if (err instanceof HttpError || typeof (err as { code?: unknown }).code !== "number") throw err;
    throw fromGrpcError(err);
  }
}

// The registry's app id syntax. Compatibility APIs put the app named by a path or a credential
// into gRPC metadata, which throws on non-ASCII: anything else cannot be an app, so it is
// refused (as unknown) before a call is made.
export const isAppId = (value: string) => isAppIdSyntax(value);

// What gRPC metadata accepts as a text value.
export const isMetadataValue = (value: string) => /^[ -~]*$/.test(value);

// The app a compatibility call acts for, and the API key it came with (else the admin key's).
export interface CallScope {
  app: string;
  apiKey?: string;
}

const SECRET_CACHE_MS = 10_000;

// "Server credentials" of the compatibility APIs: the app's secret (its user token secret, what
// Beams calls the secret key and Kinvey the master secret), checked by the registry, or a Herald
// API key of the app, checked by a service; both verdicts cached briefly. Checked before the
// request's body is looked at, as the APIs they copy do: a wrong key learns nothing of the body's
// faults.
export class AppSecrets {
  private readonly cache = new Map<string, { valid: boolean; until: number }>();

  constructor(private readonly c: Pick<AdminClients, "apps" | "dispatch">) {}

  // Whether the app exists (Beams answers an unknown instance 404, whatever the key).
  async exists(app: string): Promise<boolean> {
    if (!isAppId(app)) return false;
    return this.cached(`app\n${app}`, async () => {
      try {
        await this.c.apps.getApp({ id: app });
        return true;
      } catch (err) {
        if ((err as { code?: number }).code === GrpcStatus.NOT_FOUND) return false;
        throw err instanceof HttpError || typeof (err as { code?: unknown }).code !== "number" ? err : fromGrpcError(err);
      }
    });
  }

  // Throws 401 `refusal` unless `secret` is the app's, or throws the service's refusal of an API
  // key (401 unknown, 403 a CLIENT key or another app's); returns how to call for the app (with
  // the API key when it is one).
  async check(app: string, secret: string, refusal: () => HttpError): Promise<CallScope> {
    if (!isAppId(app) || !isMetadataValue(secret)) throw refusal();
    if (secret.startsWith("hk_")) {
      await this.cached(`key\n${app}\n${secret}`, async () => {
        // The cheapest SERVER call: the key is checked before the handler, which then refuses
        // the empty id; any refusal but that one is the key's.
        try {
          await this.c.dispatch.getPublish({ id: "" }, { app, apiKey: secret });
        } catch (err) {
          const code = (err as { code?: number }).code;
          if (code !== GrpcStatus.NOT_FOUND && code !== GrpcStatus.INVALID_ARGUMENT) throw err instanceof HttpError || typeof code !== "number" ? err : fromGrpcError(err);
        }
        return true;
      });
      return { app, apiKey: secret };
    }
    const valid = await this.cached(`secret\n${app}\n${secret}`, async () => (await rpc(this.c.apps.verifyAppSecret({ appId: app, secret }))).valid);
    if (!valid) throw refusal();
    return { app };
  }

  // A verdict for SECRET_CACHE_MS; refusals thrown are not cached (the next call asks again).
  private async cached(what: string, verdict: () => Promise<boolean>): Promise<boolean> {
    const key = createHash("sha256").update(what).digest("hex");
    const hit = this.cache.get(key);
    if (hit && hit.until > Date.now()) return hit.valid;
    const valid = await verdict();
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(key, { valid, until: Date.now() + SECRET_CACHE_MS });
    return valid;
  }
}

// The app a SERVER key belongs to (keys read hk_s_<app>_<random>), undefined for anything else.
export const serverKeyApp = (key: string | undefined): string | undefined => /^hk_s_([a-z][a-z0-9-]*)_/.exec(key ?? "")?.[1];

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
