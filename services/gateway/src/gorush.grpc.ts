import { bindService, GrpcServer, HeraldError, Status, type Authenticator, type Logger } from "@herald/platform";
import { descriptorSetPath, gorush } from "@herald/proto";
import { AppSecrets, type AdminClients } from "./admin.clients.js";
import { gorushScope, sendGorush, type GorushNotification } from "./gorush.mapping.js";
import { HttpError } from "./http.errors.js";

// gorush's gRPC API on a port of its own (gorush's is 9000): Gorush.Send, mapped like one
// notification of POST /api/push (gorush.mapping.ts), and gorush's own Health.Check; server
// reflection lists both, so grpcurl works as against gorush. Calls carry the app's credentials
// as `authorization: Bearer <SERVER key>` metadata (gorush has none).
//
// Where gorush answers success and logs a refused notification, Herald answers the refusal as a
// gRPC status (INVALID_ARGUMENT with the field named, UNAUTHENTICATED, RESOURCE_EXHAUSTED with a
// retry delay): a gRPC client has no log to read.

const GRPC_CODE: Record<number, Status> = {
  400: Status.INVALID_ARGUMENT,
  401: Status.UNAUTHENTICATED,
  403: Status.PERMISSION_DENIED,
  404: Status.NOT_FOUND,
  409: Status.ALREADY_EXISTS,
  413: Status.INVALID_ARGUMENT,
  429: Status.RESOURCE_EXHAUSTED,
  503: Status.UNAVAILABLE,
  504: Status.DEADLINE_EXCEEDED,
};

// An HttpError of the mapping (gorush's words, or a Herald service's refusal) as a gRPC status.
function toHerald(err: unknown): unknown {
  if (!(err instanceof HttpError)) return err;
  // A fault of Herald's own: INTERNAL, with the cause logged by the gRPC server.
  if (err.status >= 500 && err.status !== 503 && err.status !== 504) return err.cause ?? err;
  const code = GRPC_CODE[err.status] ?? Status.INVALID_ARGUMENT;
  // gorush's own refusals have no reason of their own (their message is their error).
  const reason = err.error === err.message || !/^[A-Z][A-Z0-9_]*$/.test(err.error) ? Status[code] : err.error;
  const retry = Number(err.headers["retry-after"] ?? 0);
  const message = err.field && err.message.startsWith(`${err.field}:`) ? err.message.slice(err.field.length + 1).trim() : err.message;
  return new HeraldError(code, reason, message, err.field, retry ? { retry_after_ms: String(retry * 1000) } : {});
}

// NotificationRequest as gorush's JSON notification: empty strings and zero numbers are proto3's
// "not set", as gorush's own server reads them.
export function notificationOfRequest(r: gorush.NotificationRequest): GorushNotification {
  const set = (v: string) => (v === "" ? undefined : v);
  const alert = r.alert
    ? Object.fromEntries(
        Object.entries({
          title: set(r.alert.title),
          body: set(r.alert.body),
          subtitle: set(r.alert.subtitle),
          action: set(r.alert.action),
          "action-loc-key": set(r.alert.actionLocKey),
          "launch-image": set(r.alert.launchImage),
          "loc-key": set(r.alert.locKey),
          "title-loc-key": set(r.alert.titleLocKey),
          "loc-args": r.alert.locArgs.length ? r.alert.locArgs : undefined,
          "title-loc-args": r.alert.titleLocArgs.length ? r.alert.titleLocArgs : undefined,
        }).filter(([, v]) => v !== undefined),
      )
    : undefined;
  const n: GorushNotification = {
    tokens: r.tokens,
    platform: r.platform,
    message: set(r.message),
    title: set(r.title),
    topic: set(r.topic),
    badge: r.badge > 0 ? r.badge : undefined,
    category: set(r.category),
    alert: alert && Object.keys(alert).length ? alert : undefined,
    sound: set(r.sound),
    content_available: r.contentAvailable || undefined,
    "thread-id": set(r.threadID),
    mutable_content: r.mutableContent || undefined,
    data: r.data,
    image: set(r.image),
    // gorush sends NORMAL (the proto default) as "normal": APNs priority 5, FCM NORMAL.
    priority: r.priority === gorush.NotificationRequest_Priority.HIGH ? "high" : "normal",
    notif_id: set(r.ID),
    push_type: set(r.pushType),
  };
  return Object.fromEntries(Object.entries(n).filter(([, v]) => v !== undefined));
}

export interface GorushGrpc {
  port: number;
  stop(): Promise<void>;
}

export async function startGorushGrpc(o: { clients: AdminClients; secrets: AppSecrets; address: string; logger: Logger }): Promise<GorushGrpc> {
  const scope = async (authorization: string | undefined) => {
    try {
      return await gorushScope(o.secrets, authorization);
    } catch (err) {
      throw toHerald(err);
    }
  };
  const authenticator: Authenticator = {
    authenticate: async (authorization) => ({ kind: "app", app: (await scope(authorization)).app, role: "server", keyId: "gorush" }),
  };
  const send = bindService("proto.Gorush", gorush.GorushService, {
    send: {
      access: "server",
      handle: async (request, ctx) => {
        const n = notificationOfRequest(request);
        try {
          await sendGorush(o.clients, await scope(ctx.metadata.get("authorization")[0]?.toString()), n);
        } catch (err) {
          throw toHerald(err);
        }
        return { success: true, counts: request.tokens.length };
      },
    },
  });
  const health = bindService("proto.Health", gorush.HealthService, {
    check: {
      access: "public",
      handle: async (request) => {
        if (request.service === "" || request.service === "proto.Gorush") return { status: gorush.HealthCheckResponse_ServingStatus.SERVING };
        throw new HeraldError(Status.NOT_FOUND, "UNKNOWN_SERVICE", "unknown service");
      },
    },
  });
  const server = new GrpcServer({ logger: o.logger, authenticator, services: [send, health], descriptorSetPath });
  const port = await server.listen(o.address);
  return { port, stop: () => server.stop(5_000) };
}
