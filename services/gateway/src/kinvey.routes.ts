import { Platform, Provider, type common } from "@herald/proto";
import { AppSecrets, basicCredentials, deviceByToken, reRegister, rpc, schemeToken, type AdminClients, type CallScope } from "./admin.clients.js";
import { HttpError } from "./http.errors.js";
import type { HttpRequest, Route } from "./http.router.js";
import { compatRoutes, formOrJson, type CompatCall, type CompatSystem, type JsonObject } from "./compat.api.js";

interface KinveyScope {
  as: CallScope;
  // The user the request acts for: the token's, or userId with master credentials.
  user: string;
}

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

// Kinvey's error body is {error, description, debug} with Kinvey's own names (its REST API's
// error list). Refusals raised here carry them already; one from the router or a service
// carries a Herald reason, named here as Kinvey names that case, else by its status, with
// Herald's field names turned into the request's. `field` is kept as Herald's native routes
// have it; Kinvey's SDKs read only error, description and debug.
const KINVEY_NAMES = new Set(["InvalidCredentials", "InsufficientCredentials", "MissingRequestParameter", "BadRequest", "JSONParseError", "IncompleteRequestBody", "AppNotFound", "EntityNotFound", "KinveyInternalErrorRetry"]);
const FROM_HERALD: Record<string, string> = {
  INVALID_JSON: "JSONParseError",
  UNKNOWN_API_KEY: "InvalidCredentials",
  APP_NOT_FOUND: "AppNotFound",
};
const BY_STATUS: Record<number, string> = { 400: "BadRequest", 401: "InvalidCredentials", 403: "InsufficientCredentials", 404: "EntityNotFound" };
// The push token is Kinvey's deviceId wherever the service names it (token, or
// filter.provider_tokens[0].token of the lookup by token).
const fieldOf = (field: string) => (/(^|[.\]])token$/.test(field) ? "deviceId" : field === "user" ? "userId" : field);
export const kinveyError = (e: HttpError) => {
  const field = e.field && fieldOf(e.field);
  const error = KINVEY_NAMES.has(e.error) ? e.error : (FROM_HERALD[e.error] ?? BY_STATUS[e.status] ?? (e.status >= 500 ? "KinveyInternalErrorRetry" : "BadRequest"));
  return { error, description: e.message, debug: field ? `field: ${field}` : "", ...(field ? { field } : {}) };
};

export function kinveyRoutes(c: AdminClients, secrets: AppSecrets): Route[] {
  // The user the request acts for, and how to call for the app.
  const credentials = async (req: HttpRequest, body: JsonObject): Promise<KinveyScope> => {
    const app = req.params.appKey!;
    if (!(await secrets.exists(app))) throw fail(404, "AppNotFound", "This app backend not found");
    const basic = basicCredentials(req.headers.authorization);
    if (basic) {
      if (basic.user !== app) throw fail(401, "InvalidCredentials", "the master credentials belong to another app");
      const as = await secrets.check(app, basic.password, () => fail(401, "InvalidCredentials", "Invalid credentials. Please retry your request with correct credentials")).catch((err: unknown) => {
        // A CLIENT key, or another app's: Kinvey's 401 for credentials that cannot do this.
        throw err instanceof HttpError && err.status === 403 ? fail(401, "InsufficientCredentials", `The credentials used to authenticate this request are not authorized to run this operation: ${err.message}`) : err;
      });
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

  const system: CompatSystem<KinveyScope, "kinvey"> = {
    tag: "Kinvey",
    errorBody: kinveyError,
    decode: formOrJson,
    security: "basic",
    // The body is read first: master credentials name the user in it.
    auth: { kinvey: (req, body) => credentials(req, body()) },
  };

  const device = (body: JsonObject): { token: common.ProviderToken; platform: Platform } => {
    const target = PLATFORMS[String(body.platform)];
    if (!target) throw fail(400, "BadRequest", 'platform must be "ios" or "android"', "platform");
    if (typeof body.deviceId !== "string" || !body.deviceId) throw fail(400, "MissingRequestParameter", "deviceId (the push token) is required", "deviceId");
    return { token: { provider: target.provider, token: body.deviceId }, platform: target.platform };
  };

  // The request's device, and the device Herald holds for that token. The credentials were
  // checked before the device is looked at: a wrong key learns nothing of the body's faults.
  const lookup = async ({ as, body }: CompatCall<KinveyScope>) => {
    const d = device(body());
    return { d, known: await deviceByToken(c, as.as, d.token) };
  };

  return compatRoutes(system, [
    {
      method: "POST",
      pattern: "/push/:appKey/register-device",
      summary: "Kinvey: register a push token {platform, deviceId, userId with master credentials}; 204",
      auth: "kinvey",
      handle: async (call) => {
        const { d, known } = await lookup(call);
        const { as, user } = call.as;
        // A known token keeps its topics; it moves to this user.
        const framework: Record<string, string> = typeof call.body().framework === "string" ? { framework: call.body().framework as string } : {};
        if (known) await reRegister(c, as, known, { user, meta: { ...known.meta, ...framework } });
        else await rpc(c.registry.registerDevice({ ...d.token, platform: d.platform, user, meta: framework }, as));
        return { status: 204 };
      },
    },
    {
      method: "POST",
      pattern: "/push/:appKey/unregister-device",
      summary: "Kinvey: unregister a push token of the user; 204",
      auth: "kinvey",
      handle: async (call) => {
        const { known } = await lookup(call);
        // Another user's device is as good as absent.
        if (!known || known.user !== call.as.user) throw fail(404, "EntityNotFound", "This entity not found in the collection: the user has no device with that deviceId", "deviceId");
        await rpc(c.registry.removeDevices({ filter: { ids: [known.id] } }, call.as.as));
        return { status: 204 };
      },
    },
  ]);
}
