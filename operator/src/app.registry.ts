import { status as grpcStatus } from "@grpc/grpc-js";
import { createClient } from "@herald/platform";
import { apps } from "@herald/proto";
import { toCreateAppRequest, type PushApp } from "@herald/pushapp";

// The registry as the operator uses it: apps and their API keys, through the AppService with the
// admin key.
export interface AppRegistry {
  // Creates the app or brings its name, limits and providers up to date. Returns the user
  // token secret when the app was created (it is only ever shown then).
  ensureApp(app: PushApp): Promise<{ created: boolean; userTokenSecret?: string }>;
  createKey(appId: string, role: "server" | "client", name: string): Promise<{ id: string; secret: string }>;
  revokeKey(appId: string, keyId: string): Promise<void>;
  rotateUserTokenSecret(appId: string): Promise<string>;
  // Removes the app and its API keys; purgeData also removes its devices, users and topics.
  deleteApp(appId: string, purgeData: boolean): Promise<void>;
  close(): void;
}

const code = (err: unknown) => (err as { code?: number }).code;

export function grpcAppRegistry(address: string, adminKey: string): AppRegistry {
  const client = createClient(apps.AppServiceService, apps, address, { apiKey: adminKey });
  return {
    async ensureApp(app) {
      const request = toCreateAppRequest(app);
      try {
        const created = await client.createApp(apps.CreateAppRequest.fromPartial(request));
        return { created: true, userTokenSecret: created.userTokenSecret };
      } catch (err) {
        if (code(err) !== grpcStatus.ALREADY_EXISTS) throw err;
      }
      await client.updateApp(apps.UpdateAppRequest.fromPartial(request));
      return { created: false };
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
    async rotateUserTokenSecret(appId) {
      return (await client.rotateUserTokenSecret({ appId })).userTokenSecret;
    },
    async deleteApp(appId, purgeData) {
      try {
        await client.deleteApp({ id: appId, purgeData });
      } catch (err) {
        if (code(err) !== grpcStatus.NOT_FOUND) throw err;
      }
    },
    close: () => client.close(),
  };
}
