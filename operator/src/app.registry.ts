import { status as grpcStatus } from "@grpc/grpc-js";
import { createClient } from "@herald/platform";
import { apps } from "@herald/proto";
import { pushAppOwner, toCreateAppRequest, type PushApp } from "@herald/pushapp";

// The registry as the operator uses it: apps and their API keys, through the AppService with the
// admin key.
export type EnsuredApp = { created: boolean; userTokenSecret?: string } | { conflict: string } | { refused: string };

export interface AppRegistry {
  // Creates the app (owned by this PushApp) or brings its name, limits and providers up to date.
  // Returns the user token secret when the app was created (it is only ever shown then), or the
  // registry's refusal when an app of that id belongs to someone else (conflict) or when the spec
  // breaks one of its rules that the CRD schema cannot express (refused; e.g. a denied webhook address).
  ensureApp(app: PushApp, vapidPublicKey?: string): Promise<EnsuredApp>;
  // Whether the app exists and is this PushApp's (so its data and topics are this PushApp's to delete).
  ownedBy(appId: string, owner: string): Promise<"owned" | "missing" | "other">;
  createKey(appId: string, role: "server" | "client", name: string): Promise<{ id: string; secret: string }>;
  revokeKey(appId: string, keyId: string): Promise<void>;
  // Every key of the app, revoked ones included.
  listKeys(appId: string): Promise<Array<{ id: string; name: string; revoked: boolean }>>;
  rotateUserTokenSecret(appId: string): Promise<string>;
  // The current user token secret, unchanged (for an API key Secret written anew).
  userTokenSecret(appId: string): Promise<string>;
  // Removes the app and its API keys (only if the owner matches); purgeData also removes its
  // devices, users and topics.
  deleteApp(appId: string, owner: string, purgeData: boolean): Promise<void>;
  close(): void;
}

const code = (err: unknown) => (err as { code?: number }).code;
const details = (err: unknown) => (err as { details?: string }).details ?? String(err);

export function grpcAppRegistry(address: string, adminKey: string): AppRegistry {
  const client = createClient(apps.AppServiceService, apps, address, { apiKey: adminKey });
  return {
    async ensureApp(app, vapidPublicKey) {
      const request = toCreateAppRequest(app, { owner: pushAppOwner(app.metadata.namespace ?? "", app.metadata.name), ...(vapidPublicKey ? { vapidPublicKey } : {}) });
      try {
        const created = await client.createApp(apps.CreateAppRequest.fromPartial(request));
        return { created: true, userTokenSecret: created.userTokenSecret };
      } catch (err) {
        if (code(err) === grpcStatus.INVALID_ARGUMENT) return { refused: details(err) };
        if (code(err) !== grpcStatus.ALREADY_EXISTS) throw err;
      }
      try {
        await client.updateApp(apps.UpdateAppRequest.fromPartial(request));
      } catch (err) {
        if (code(err) === grpcStatus.FAILED_PRECONDITION) return { conflict: details(err) };
        if (code(err) === grpcStatus.INVALID_ARGUMENT) return { refused: details(err) };
        throw err;
      }
      return { created: false };
    },
    async ownedBy(appId, owner) {
      try {
        const { app } = await client.getApp({ id: appId });
        return app?.owner === owner ? "owned" : "other";
      } catch (err) {
        if (code(err) === grpcStatus.NOT_FOUND) return "missing";
        throw err;
      }
    },
    async createKey(appId, role, name) {
      const res = await client.createApiKey({ appId, role: role === "server" ? apps.ApiKeyRole.API_KEY_ROLE_SERVER : apps.ApiKeyRole.API_KEY_ROLE_CLIENT, name });
      return { id: res.key?.id ?? "", secret: res.secret };
    },
    async revokeKey(appId, keyId) {
      try {
        await client.revokeApiKey({ appId, keyId });
      } catch (err) {
        // Already gone (revoked by hand, or the app was recreated): nothing left to revoke.
        if (code(err) !== grpcStatus.NOT_FOUND) throw err;
      }
    },
    async listKeys(appId) {
      const { keys } = await client.listApiKeys({ appId });
      return keys.map((k) => ({ id: k.id, name: k.name, revoked: k.revokedAt !== undefined }));
    },
    async userTokenSecret(appId) {
      return (await client.getUserTokenSecret({ appId })).userTokenSecret;
    },
    async rotateUserTokenSecret(appId) {
      return (await client.rotateUserTokenSecret({ appId })).userTokenSecret;
    },
    async deleteApp(appId, owner, purgeData) {
      try {
        await client.deleteApp({ id: appId, owner, purgeData });
      } catch (err) {
        if (code(err) !== grpcStatus.NOT_FOUND) throw err;
      }
    },
    close: () => client.close(),
  };
}
