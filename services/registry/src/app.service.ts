import {
  bindService,
  failedPrecondition,
  generateApiKey,
  hashApiKey,
  invalidArgument,
  notFound,
  sameSecret,
  type NetworkPolicy,
  type ServiceBinding,
} from "@herald/platform";
import { APP_ID_PATTERN, APP_ID_RULE, apps, type common } from "@herald/proto";
import {
  checkWebhooks,
  DEFAULT_LIMITS,
  pageLimit,
  parseProvider,
  providerEnum,
  type ApiKeyRecord,
  type AppLimitsRecord,
  type AppRecord,
  type Store,
} from "@herald/store";
import { createHmac, randomUUID } from "node:crypto";
import type { UserTokens } from "./usertoken.jwt.js";

export interface AppServiceDeps {
  store: Store;
  userTokens: UserTokens;
  network: NetworkPolicy;
  now: () => Date;
}

// A signed request is accepted this long either side of its timestamp (Pusher: 600 s).
export const SIGNATURE_WINDOW_MS = 300_000;

// App and API key administration (admin key only).
export class AppService {
  constructor(private readonly deps: AppServiceDeps) {}

  binding(): ServiceBinding {
    return bindService("herald.registry.v1.AppService", apps.AppServiceService, {
      createApp: { access: "admin", handle: (req) => this.create(req) },
      getApp: { access: "admin", handle: async (req) => ({ app: toAppProto(await this.app(req.id)) }) },
      listApps: { access: "admin", handle: (req) => this.list(req) },
      updateApp: { access: "admin", handle: (req) => this.update(req) },
      deleteApp: { access: "admin", handle: (req) => this.delete(req) },
      createApiKey: { access: "admin", handle: (req) => this.createKey(req) },
      listApiKeys: { access: "admin", handle: (req) => this.listKeys(req) },
      revokeApiKey: { access: "admin", handle: (req) => this.revokeKey(req) },
      rotateUserTokenSecret: { access: "admin", handle: (req) => this.rotate(req) },
      getUserTokenSecret: { access: "admin", handle: async (req) => {
        const app = await this.app(req.appId, "app_id");
        return { userTokenSecret: this.deps.userTokens.secretFor(app.id, app.secretVersion), version: app.secretVersion };
      } },
      verifyAppSecret: { access: "admin", handle: (req) => this.verifySecret(req) },
      verifyRequestSignature: { access: "admin", handle: (req) => this.verifySignature(req) },
      verifyUserToken: { access: "admin", handle: async (req) => {
        const app = await this.app(req.appId, "app_id");
        return this.deps.userTokens.verifyClaims(app.id, app.secretVersion, req.userToken);
      } },
    });
  }

  async create(req: apps.CreateAppRequest): Promise<apps.CreateAppResponse> {
    if (!APP_ID_PATTERN.test(req.id)) throw invalidArgument("id", APP_ID_RULE, "INVALID_APP_ID");
    const now = this.deps.now();
    const record: AppRecord = {
      id: req.id,
      name: req.name || req.id,
      limits: toLimits(req.limits),
      providers: providers(req.providers),
      secretVersion: 1,
      owner: req.owner,
      vapidPublicKey: req.vapidPublicKey,
      webhooks: this.webhooks(req.webhooks),
      ...(req.senders === apps.SenderMode.SENDER_MODE_POOLED ? { senders: "pooled" as const } : {}),
      createdAt: now,
      updatedAt: now,
    };
    await this.deps.store.apps.create(record);
    return { app: toAppProto(record), userTokenSecret: this.deps.userTokens.secretFor(record.id, record.secretVersion) };
  }

  async list(req: apps.ListAppsRequest): Promise<apps.ListAppsResponse> {
    const limit = pageLimit(req.page?.limit);
    const found = await this.deps.store.apps.list({ ...(req.page?.cursor ? { after: req.page.cursor } : {}), limit: limit + 1 });
    const page = found.slice(0, limit);
    return { apps: page.map(toAppProto), nextCursor: found.length > limit ? (page.at(-1)?.id ?? "") : "", hasMore: found.length > limit };
  }

  async update(req: apps.UpdateAppRequest): Promise<apps.UpdateAppResponse> {
    if (req.owner) this.checkOwner(await this.app(req.id), req.owner);
    const updated = await this.deps.store.apps.update(req.id, {
      ...(req.name ? { name: req.name } : {}),
      ...(req.limits ? { limits: toLimits(req.limits) } : {}),
      providers: providers(req.providers),
      ...(req.vapidPublicKey ? { vapidPublicKey: req.vapidPublicKey } : {}),
      webhooks: this.webhooks(req.webhooks),
      ...(req.senders === apps.SenderMode.SENDER_MODE_UNSPECIFIED ? {} : { senders: req.senders === apps.SenderMode.SENDER_MODE_POOLED ? ("pooled" as const) : ("dedicated" as const) }),
      now: this.deps.now(),
    });
    if (!updated) throw notFound("app", req.id);
    return { app: toAppProto(updated) };
  }

  private webhooks(webhooks: apps.Webhook[]): Array<{ url: string; events: string[]; format?: "pusher" }> {
    const checked = checkWebhooks(webhooks, "webhooks");
    checked.forEach((w, i) => {
      try {
        this.deps.network.checkHost(new URL(w.url).hostname);
      } catch (err) {
        throw invalidArgument(`webhooks[${i}].url`, `${(err as Error).message} (HERALD_WEBHOOK_DENIED_NETWORKS)`, "INVALID_WEBHOOK");
      }
    });
    return checked;
  }

  // Keys go first so a half-finished delete can no longer be used; data is purged before the
  // app record, so a retry still finds the app to finish with.
  async delete(req: apps.DeleteAppRequest): Promise<apps.DeleteAppResponse> {
    const app = await this.app(req.id);
    if (req.owner) this.checkOwner(app, req.owner);
    const { store } = this.deps;
    await store.apiKeys.removeApp(req.id);
    let devicesRemoved = 0;
    if (req.purgeData) {
      // Rows first, as for a device (DeviceService.removeDevices).
      await store.subscriptions.removeApp(req.id);
      devicesRemoved = await store.devices.removeApp(req.id);
    }
    await store.apps.delete(req.id);
    return { devicesRemoved };
  }

  async createKey(req: apps.CreateApiKeyRequest): Promise<apps.CreateApiKeyResponse> {
    await this.app(req.appId, "app_id");
    const role = req.role === apps.ApiKeyRole.API_KEY_ROLE_SERVER ? "server" : req.role === apps.ApiKeyRole.API_KEY_ROLE_CLIENT ? "client" : undefined;
    if (!role) throw invalidArgument("role", "must be API_KEY_ROLE_SERVER or API_KEY_ROLE_CLIENT", "INVALID_ROLE");
    const { secret, prefix } = generateApiKey(req.appId, role);
    const record: ApiKeyRecord = {
      id: randomUUID(),
      app: req.appId,
      role,
      name: req.name || role,
      prefix,
      hash: hashApiKey(secret),
      createdAt: this.deps.now(),
      revokedAt: null,
    };
    await this.deps.store.apiKeys.create(record);
    return { key: toKeyProto(record), secret };
  }

  async listKeys(req: apps.ListApiKeysRequest): Promise<apps.ListApiKeysResponse> {
    await this.app(req.appId, "app_id");
    return { keys: (await this.deps.store.apiKeys.list(req.appId)).map(toKeyProto) };
  }

  async revokeKey(req: apps.RevokeApiKeyRequest): Promise<apps.RevokeApiKeyResponse> {
    await this.app(req.appId, "app_id");
    if (!req.keyId) throw invalidArgument("key_id", "is required");
    const key = await this.deps.store.apiKeys.revoke(req.appId, req.keyId, this.deps.now());
    if (!key) throw notFound("api key", req.keyId);
    return { key: toKeyProto(key) };
  }

  async rotate(req: apps.RotateUserTokenSecretRequest): Promise<apps.RotateUserTokenSecretResponse> {
    if (!req.appId) throw invalidArgument("app_id", "is required");
    const version = await this.deps.store.apps.bumpSecretVersion(req.appId, this.deps.now());
    if (version === null) throw notFound("app", req.appId);
    return { userTokenSecret: this.deps.userTokens.secretFor(req.appId, version), version };
  }

  async verifySecret(req: apps.VerifyAppSecretRequest): Promise<apps.VerifyAppSecretResponse> {
    const app = req.appId ? await this.deps.store.apps.get(req.appId) : null;
    if (!app || !req.secret) return { valid: false };
    return { valid: sameSecret(this.deps.userTokens.secretFor(app.id, app.secretVersion), req.secret) };
  }

  // A signed request is valid once: the HMAC matches, its time is within the window, and its
  // signature was not claimed before (claims expire with the window).
  async verifySignature(req: apps.VerifyRequestSignatureRequest): Promise<apps.VerifyRequestSignatureResponse> {
    const app = req.appId ? await this.deps.store.apps.get(req.appId) : null;
    if (!app) return { valid: false, reason: "UNKNOWN_APP" };
    const expected = createHmac("sha256", this.deps.userTokens.secretFor(app.id, app.secretVersion)).update(req.stringToSign).digest("hex");
    if (!sameSecret(expected, req.signature.toLowerCase())) return { valid: false, reason: "BAD_SIGNATURE" };
    const now = this.deps.now().getTime();
    if (Math.abs(now - req.timestamp * 1000) > SIGNATURE_WINDOW_MS) return { valid: false, reason: "STALE_TIMESTAMP" };
    const claimed = await this.deps.store.nonces.claim(app.id, `sig:${req.signature.toLowerCase()}`, new Date(req.timestamp * 1000 + SIGNATURE_WINDOW_MS));
    return claimed ? { valid: true, reason: "" } : { valid: false, reason: "REPLAYED_SIGNATURE" };
  }

  // App ids are global, PushApp names only unique per namespace: a PushApp must never take over
  // (or delete) an app that another PushApp, or an admin through the API, created.
  private checkOwner(app: AppRecord, owner: string): void {
    if (app.owner === owner) return;
    throw failedPrecondition("APP_OWNED_ELSEWHERE", `app "${app.id}" is managed by ${app.owner ? `"${app.owner}"` : "the API (no owner)"}, not by "${owner}"`);
  }

  // `field`: what the request calls the app id (`id` on app calls, `app_id` on key calls).
  private async app(id: string, field = "id"): Promise<AppRecord> {
    if (!id) throw invalidArgument(field, "is required");
    const app = await this.deps.store.apps.get(id);
    if (!app) throw notFound("app", id);
    return app;
  }
}

export function toLimits(limits: apps.AppLimits | undefined): AppLimitsRecord {
  const policy = limits?.deviceOverflowPolicy === apps.DeviceOverflowPolicy.DEVICE_OVERFLOW_POLICY_REJECT ? "reject" : "evict";
  const positive = (value: number | undefined, field: string, fallback: number) => {
    if (value === undefined || value === 0) return fallback;
    if (value < 0) throw invalidArgument(`limits.${field}`, "must not be negative");
    return value;
  };
  return {
    maxDevicesPerUser: positive(limits?.maxDevicesPerUser, "max_devices_per_user", DEFAULT_LIMITS.maxDevicesPerUser),
    deviceOverflowPolicy: policy,
    maxInactiveDays: positive(limits?.maxInactiveDays, "max_inactive_days", 0),
    maxTopicsPerDevice: positive(limits?.maxTopicsPerDevice, "max_topics_per_device", DEFAULT_LIMITS.maxTopicsPerDevice),
    maxPublishRate: positive(limits?.maxPublishRate, "max_publish_rate", 0),
    urgentMaxTargets: positive(limits?.urgentMaxTargets, "urgent_max_targets", 0),
  };
}

const providers = (list: common.Provider[]) => [...new Set(list.map((p, i) => parseProvider(p, `providers[${i}]`)))];

export function toAppProto(app: AppRecord): apps.App {
  return {
    id: app.id,
    name: app.name,
    limits: {
      maxDevicesPerUser: app.limits.maxDevicesPerUser,
      deviceOverflowPolicy:
        app.limits.deviceOverflowPolicy === "reject"
          ? apps.DeviceOverflowPolicy.DEVICE_OVERFLOW_POLICY_REJECT
          : apps.DeviceOverflowPolicy.DEVICE_OVERFLOW_POLICY_EVICT_LEAST_RECENTLY_SEEN,
      maxInactiveDays: app.limits.maxInactiveDays,
      maxTopicsPerDevice: app.limits.maxTopicsPerDevice,
      maxPublishRate: app.limits.maxPublishRate,
      urgentMaxTargets: app.limits.urgentMaxTargets ?? 0,
    },
    providers: app.providers.map(providerEnum),
    owner: app.owner,
    vapidPublicKey: app.vapidPublicKey,
    webhooks: app.webhooks.map((w) => ({ url: w.url, events: [...w.events], format: w.format ?? "" })),
    senders: app.senders === "pooled" ? apps.SenderMode.SENDER_MODE_POOLED : apps.SenderMode.SENDER_MODE_DEDICATED,
    createdAt: app.createdAt,
    updatedAt: app.updatedAt,
    userTokenSecretVersion: app.secretVersion,
  };
}

function toKeyProto(key: ApiKeyRecord): apps.ApiKey {
  return {
    id: key.id,
    appId: key.app,
    role: key.role === "server" ? apps.ApiKeyRole.API_KEY_ROLE_SERVER : apps.ApiKeyRole.API_KEY_ROLE_CLIENT,
    name: key.name,
    prefix: key.prefix,
    createdAt: key.createdAt,
    ...(key.revokedAt ? { revokedAt: key.revokedAt } : {}),
  };
}
