import { Platform, Provider, type common } from "@herald/proto";
import { AppSecrets, basicCredentials, deviceByToken, reRegister, rpc, schemeToken, type AdminClients, type CallScope } from "./admin.clients.js";
import { HttpError } from "./http.errors.js";
import type { HttpRequest, Route } from "./http.router.js";

// Kinvey's push device registration: POST /push/:appKey/register-device and
// /unregister-device, answered 204. The appKey is the app id. Two kinds of credentials, as in
// Kinvey:
// - master credentials, `Authorization: Basic base64(<app id>:<app secret or SERVER key>)`,
//   with the user named in the body (`userId`);
// - user credentials, `Authorization: Kinvey <user token>` (or Bearer): the user is the token's,
//   and a device can only be unregistered by its own user.

const PLATFORMS: Record<string, { provider: Provider; platform: Platform }> = {
  ios: { provider: Provider.PROVIDER_APNS, platform: Platform.PLATFORM_IOS },
  android: { provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID },
};

const fail = (status: number, error: string, description: string, field?: string) => new HttpError(status, error, description, field);

export function kinveyRoutes(c: AdminClients, secrets: AppSecrets): Route[] {
  // The user the request acts for, and how to call for the app.
  const credentials = async (req: HttpRequest, body: Record<string, unknown>): Promise<{ as: CallScope; user: string }> => {
    const app = req.params.appKey!;
    const basic = basicCredentials(req.headers.authorization);
    if (basic) {
      if (basic.user !== app) throw fail(401, "InvalidCredentials", "the master credentials belong to another app");
      const as = await secrets.check(app, basic.password, () => fail(401, "InvalidCredentials", "Invalid credentials. Please retry your request with correct credentials"));
      const user = typeof body.userId === "string" ? body.userId : "";
      if (!user) throw fail(400, "MissingRequestParameter", "with master credentials, name the user in userId", "userId");
      return { as, user };
    }
    const token = schemeToken(req.headers.authorization, "Kinvey", "Bearer");
    if (!token) throw fail(401, "InsufficientCredentials", "send user credentials (Authorization: Kinvey <user token>) or master credentials (Basic)");
    if (body.userId !== undefined) throw fail(400, "BadRequest", "userId is implied by user credentials; send it only with master credentials", "userId");
    const { user } = await rpc(c.apps.verifyUserToken({ appId: app, userToken: token }));
    return { as: { app }, user };
  };

  const device = (body: Record<string, unknown>): { token: common.ProviderToken; platform: Platform } => {
    const target = PLATFORMS[String(body.platform)];
    if (!target) throw fail(400, "BadRequest", 'platform must be "ios" or "android"', "platform");
    if (typeof body.deviceId !== "string" || !body.deviceId) throw fail(400, "MissingRequestParameter", "deviceId (the push token) is required", "deviceId");
    return { token: { provider: target.provider, token: body.deviceId }, platform: target.platform };
  };

  // The request's device and credentials, and the device Herald holds for that token.
  const lookup = async (req: HttpRequest) => {
    const body = req.fields();
    const d = device(body);
    const { as, user } = await credentials(req, body);
    return { body, d, as, user, known: await deviceByToken(c, as, d.token) };
  };

  return [
    {
      method: "POST",
      pattern: "/push/:appKey/register-device",
      doc: { tag: "Kinvey", summary: "Kinvey: register a push token {platform, deviceId, userId with master credentials}; 204", security: "basic" },
      handle: async (req) => {
        const { body, d, as, user, known } = await lookup(req);
        // A known token keeps its topics; it moves to this user.
        const framework: Record<string, string> = typeof body.framework === "string" ? { framework: body.framework } : {};
        if (known) await reRegister(c, as, known, { user, meta: { ...known.meta, ...framework } });
        else await rpc(c.registry.registerDevice({ ...d.token, platform: d.platform, user, meta: framework }, as));
        return { status: 204 };
      },
    },
    {
      method: "POST",
      pattern: "/push/:appKey/unregister-device",
      doc: { tag: "Kinvey", summary: "Kinvey: unregister a push token of the user; 204", security: "basic" },
      handle: async (req) => {
        const { as, user, known } = await lookup(req);
        // Another user's device is as good as absent.
        if (!known || known.user !== user) throw fail(404, "DeviceNotFound", "this user has no device with that token");
        await rpc(c.registry.removeDevices({ filter: { ids: [known.id] } }, as));
        return { status: 204 };
      },
    },
  ];
}
