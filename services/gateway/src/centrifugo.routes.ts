import type { Logger } from "@herald/platform";
import { AppSecrets, rpc, schemeToken, serverKeyApp, type AdminClients, type CallScope } from "./admin.clients.js";
import {
  cancelRequest,
  CENT,
  centrifugoErrorOf,
  CentrifugoError,
  deviceTopicListRequest,
  deviceTopicListResult,
  deviceTopicUpdateRequest,
  listRequest,
  listResult,
  objectOf,
  publishRequest,
  receiptRequest,
  registerRequest,
  removeRequest,
  updateRequest,
  userTopicListRequest,
  userTopicListResult,
  userTopicUpdateRequest,
  type Params,
} from "./centrifugo.mapping.js";
import { HttpError } from "./http.errors.js";
import type { HttpRequest, HttpResponse, Route } from "./http.router.js";
import { anyJson, compatRoutes, type CompatCall, type CompatSystem } from "./compat.api.js";

// Centrifugo PRO's push notification API: POST /api/<method> (what the cent clients send) and
// POST /api {method, params}, with the app's SERVER key as `X-API-Key: <key>` or
// `Authorization: apikey <key>`. As Centrifugo does, a wrong key is HTTP 401 and every other
// refusal is HTTP 200 {"error": {code, message}}; a result is {"result": {...}}. Each method is one
// or two of Herald's native calls (centrifugo.mapping.ts).

type Method = (as: CallScope, params: Params) => Promise<Params>;

const CENT_BODY_LIMIT = 1024 * 1024;
const BATCH_LIMIT = 100;

// What the router answers itself (401 for the key, 413 for a body over the limit, 405): the
// status stays, the body is Centrifugo's.
export const centrifugoError = (e: HttpError) => {
  const { code, message } = centrifugoErrorOf(e);
  return { error: { code, message } };
};

export function centrifugoRoutes(c: AdminClients, secrets: AppSecrets, logger?: Logger): Route[] {
  const unauthorized = () => new HttpError(401, "UNAUTHORIZED", "unauthorized");
  const system: CompatSystem<CallScope, "apikey"> = {
    tag: "Centrifugo",
    errorBody: centrifugoError,
    // JSON whatever the content type, as Centrifugo reads it; a body that is not JSON is a
    // CentrifugoError, answered 200 {error} by serve.
    decode: anyJson((why) => new CentrifugoError(CENT.badRequest, `bad request (${why})`)),
    maxBodyBytes: CENT_BODY_LIMIT,
    security: "none",
    auth: {
      apikey: async (req) => {
        const header = req.headers["x-api-key"];
        // Centrifugo's two forms, and Herald's own Bearer (what every other Herald route takes).
        const key = (typeof header === "string" ? header : undefined) ?? schemeToken(req.headers.authorization, "apikey", "Bearer");
        const app = serverKeyApp(key);
        if (!key || !app || !(await secrets.exists(app))) throw unauthorized();
        return secrets.check(app, key, unauthorized);
      },
    },
  };

  const methods: Record<string, Method> = {
    device_register: async (as, p) => ({ id: (await rpc(c.registry.registerDevice(registerRequest(p), as))).device?.id ?? "" }),
    device_update: async (as, p) => (await rpc(c.registry.updateDevices(updateRequest(p), as)), {}),
    device_remove: async (as, p) => (await rpc(c.registry.removeDevices(removeRequest(p), as)), {}),
    device_list: async (as, p) => {
      const req = listRequest(p);
      return listResult(req, await rpc(c.registry.listDevices(req, as)));
    },
    device_topic_list: async (as, p) => deviceTopicListResult(await rpc(c.topic.listDeviceTopics(deviceTopicListRequest(p), as))),
    device_topic_update: async (as, p) => (await rpc(c.topic.updateDeviceTopics(deviceTopicUpdateRequest(p), as)), {}),
    user_topic_list: async (as, p) => userTopicListResult(await rpc(c.topic.listUserTopics(userTopicListRequest(p), as))),
    user_topic_update: async (as, p) => (await rpc(c.topic.updateUserTopics(userTopicUpdateRequest(p), as)), {}),
    send_push_notification: async (as, p) => {
      const req = publishRequest(p);
      await rpc(c.dispatch.publish(req, as));
      return { uid: req.uid };
    },
    cancel_push: async (as, p) => (await rpc(c.dispatch.cancelPublish(cancelRequest(p), as)), {}),
    update_push_status: async (as, p) => {
      const { uid, request } = receiptRequest(p);
      // An analytics_uid given at send time is a label of that publish; else it is the uid.
      const [labelled] = (await rpc(c.dispatch.listPublishes({ states: [], uid: "", labels: { source: "centrifugo", analytics_uid: uid }, page: { cursor: "", limit: 1 } }, as))).publishes;
      await rpc(c.dispatch.reportReceipt(labelled ? { ...request, publishId: labelled.id, publishUid: "" } : request, as));
      return {};
    },
  };

  // One method's reply: {result} or {error}; faults of Herald (5xx) are logged and answered 100/108.
  const reply = async (as: CallScope, method: string, params: unknown): Promise<Params> => {
    try {
      const handle = Object.hasOwn(methods, method) ? methods[method] : undefined;
      if (!handle) throw new CentrifugoError(CENT.methodNotFound, "method not found");
      return { result: await handle(as, objectOf(params, "params")) };
    } catch (err) {
      const e = err instanceof CentrifugoError ? err : err instanceof HttpError ? centrifugoErrorOf(err) : undefined;
      if (!e || (err instanceof HttpError && err.status >= 500)) logger?.error({ err: err instanceof HttpError ? (err.cause ?? err) : err, method }, "centrifugo call failed");
      const { code, message } = e ?? new CentrifugoError(CENT.internal, "internal server error");
      return { error: { code, message } };
    }
  };

  const serve = (method: (req: HttpRequest) => string | undefined) => async ({ req, as, body: decoded }: CompatCall<CallScope>): Promise<HttpResponse> => {
    let params: Params;
    let name: string | undefined;
    try {
      params = decoded();
      name = method(req);
      if (name === undefined) {
        name = typeof params.method === "string" ? params.method : "";
        params = objectOf(params.params, "params");
      }
    } catch (err) {
      if (!(err instanceof CentrifugoError)) throw err;
      return { status: 200, body: { error: { code: err.code, message: err.message } } };
    }
    if (name === "batch") return { status: 200, body: await batch(as, params) };
    return { status: 200, body: await reply(as, name, params) };
  };

  // cent's batch: {commands: [{<method>: params}], parallel}; answers {replies: [{<method>: result} | {error}]}.
  const batch = async (as: CallScope, p: Params): Promise<Params> => {
    const commands = p.commands;
    if (!Array.isArray(commands) || commands.length > BATCH_LIMIT) return { error: { code: CENT.badRequest, message: `bad request (commands must be an array of at most ${BATCH_LIMIT} commands)` } };
    const replies: Params[] = [];
    for (const command of commands) {
      const entries = command !== null && typeof command === "object" && !Array.isArray(command) ? Object.entries(command as Params) : [];
      const [method, params] = entries.length === 1 ? entries[0]! : ["", undefined];
      if (method === "batch") {
        replies.push({ error: { code: CENT.badRequest, message: "bad request (batch inside batch)" } });
        continue;
      }
      const r = await reply(as, method, params);
      replies.push(r.error ? r : { [method]: r.result });
    }
    return { replies };
  };

  return compatRoutes(system, [
    {
      method: "POST",
      pattern: "/api",
      auth: "apikey",
      handle: serve(() => undefined),
      summary: "Centrifugo PRO push API, one command {method, params} (X-API-Key or Authorization: apikey <SERVER key>); answers {result} or {error: {code, message}}",
    },
    {
      method: "POST",
      pattern: "/api/:method",
      auth: "apikey",
      handle: serve((req) => req.params.method),
      summary: "Centrifugo PRO push API: device_register, device_update, device_remove, device_list, device_topic_list, device_topic_update, user_topic_list, user_topic_update, send_push_notification, cancel_push, update_push_status, batch (X-API-Key or Authorization: apikey <SERVER key>)",
    },
  ]);
}
