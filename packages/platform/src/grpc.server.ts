import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { context, propagation, SpanKind, SpanStatusCode, trace, type TextMapGetter } from "@opentelemetry/api";
import { HealthImplementation, type ServingStatusMap } from "grpc-health-check";
import type { Authenticator, Principal } from "./auth.keys.js";
import { HeraldError, invalidArgument, permissionDenied, Status } from "./errors.js";
import { ServerReflection } from "./grpc.reflection.js";
import { toServiceError } from "./grpc.status.js";
import type { Access, CallContext, ServiceBinding, StreamHandler, UnaryHandler } from "./grpc.types.js";
import type { Logger } from "./log.logger.js";

export interface GrpcServerOptions {
  logger: Logger;
  authenticator: Authenticator;
  services: ServiceBinding[];
  // FileDescriptorSet served by reflection (packages/proto/descriptors.binpb).
  descriptorSetPath?: string;
  // Upper bound for a unary call, whatever deadline the client asked for.
  maxUnaryMs?: number;
  // Request size limit (bytes).
  maxReceiveBytes?: number;
  // Told of every finished call: method, status code, duration and whether it streamed (metrics).
  onCall?: (method: string, code: Status, seconds: number, type: GrpcCallType) => void;
}

// A streaming call lasts as long as its stream (a WatchPublish for minutes): its duration is no
// latency, so dashboards keep the two apart.
export type GrpcCallType = "unary" | "server_stream";

const metadataGetter: TextMapGetter<grpc.Metadata> = {
  keys: (m) => Object.keys(m.getMap()),
  get: (m, key) => m.get(key).map(String),
};

const tracer = trace.getTracer("herald.grpc");

// One gRPC server per process: auth, tenancy, deadlines, tracing and error mapping happen here,
// so service handlers are plain async functions of (request, context).
export class GrpcServer {
  private readonly server: grpc.Server;
  private readonly health: HealthImplementation;
  private readonly statusMap: ServingStatusMap;

  constructor(private readonly options: GrpcServerOptions) {
    this.server = new grpc.Server({
      "grpc.max_receive_message_length": options.maxReceiveBytes ?? 4 * 1024 * 1024,
      "grpc.keepalive_permit_without_calls": 1,
    });
    this.statusMap = { "": "SERVING" };
    for (const binding of options.services) {
      this.statusMap[binding.name] = "SERVING";
      this.server.addService(tolerantDefinition(binding.definition) as unknown as grpc.ServiceDefinition, this.adapt(binding));
    }
    this.health = new HealthImplementation(this.statusMap);
    this.health.addToServer(this.server);
    if (options.descriptorSetPath) {
      const served = [...options.services.map((b) => b.name), "grpc.health.v1.Health"];
      new ServerReflection(readFileSync(options.descriptorSetPath), served).addToServer(this.server);
    }
  }

  listen(address: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port)));
    });
  }

  // Reports NOT_SERVING (load balancers stop routing), lets in-flight calls finish, then forces.
  async stop(graceMs = 10_000): Promise<void> {
    for (const name of Object.keys(this.statusMap)) this.health.setStatus(name, "NOT_SERVING");
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private adapt(binding: ServiceBinding): grpc.UntypedServiceImplementation {
    const impl: grpc.UntypedServiceImplementation = {};
    for (const [name, def] of Object.entries(binding.definition)) {
      const method = binding.impl[name];
      if (!method) throw new Error(`${binding.name}: no handler for ${name}`);
      impl[name] = def.responseStream
        ? this.adaptStream(def.path, method.access, method.handle as StreamHandler<unknown, unknown>)
        : this.adaptUnary(def.path, method.access, method.handle as UnaryHandler<unknown, unknown>);
    }
    return impl;
  }

  private adaptUnary(path: string, access: Access, handle: UnaryHandler<unknown, unknown>): grpc.handleUnaryCall<unknown, unknown> {
    return (call, callback) => {
      const maxMs = this.options.maxUnaryMs ?? 30_000;
      this.run(path, access, "unary", call, maxMs, async (ctx) => handle(decoded(call.request), ctx))
        .then(
          (response) => callback(null, response),
          (err) => callback(toServiceError(err)),
        )
        .catch((err) => this.answerFailed(path, err));
    };
  }

  private adaptStream(path: string, access: Access, handle: StreamHandler<unknown, unknown>): grpc.handleServerStreamingCall<unknown, unknown> {
    return (call) => {
      const send = (response: unknown) =>
        new Promise<void>((resolve, reject) => {
          if (call.cancelled) return reject(new HeraldError(Status.CANCELLED, "CANCELLED", "the client cancelled the call"));
          // Respect backpressure so a slow reader cannot make the server buffer a whole topic.
          if (call.write(response)) resolve();
          else call.once("drain", () => resolve());
        });
      this.run(path, access, "server_stream", call, undefined, (ctx) => handle(decoded(call.request), ctx, send))
        .then(
          () => call.end(),
          (err) => {
            if (!call.cancelled) call.emit("error", toServiceError(err));
          },
        )
        .catch((err) => this.answerFailed(path, err));
    };
  }

  // Sending the answer itself failed (a response grpc-js cannot serialize, a closed stream): the
  // call is lost, the process is not. Without this the rejection would be unhandled, and Node
  // ends the process on an unhandled rejection.
  private answerFailed(path: string, err: unknown): void {
    this.options.logger.error({ err, method: path.slice(1) }, "could not send the answer");
  }

  private async run<T>(
    path: string,
    access: Access,
    type: GrpcCallType,
    call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>,
    maxMs: number | undefined,
    body: (ctx: CallContext) => Promise<T>,
  ): Promise<T> {
    const method = path.slice(1);
    const started = performance.now();
    let outcome: Status = Status.OK;
    const parent = propagation.extract(context.active(), call.metadata, metadataGetter);
    // Handlers add what they learn (a publish's id) with trace.getActiveSpan()?.setAttribute.
    return tracer.startActiveSpan(method, { kind: SpanKind.SERVER, attributes: { "rpc.system": "grpc", "rpc.method": method } }, parent, async (span) => {
      const controller = new AbortController();
      const clientDeadline = call.getDeadline();
      const clientMs = clientDeadline instanceof Date ? clientDeadline.getTime() : Number(clientDeadline);
      const deadlineMs = Math.min(Number.isFinite(clientMs) ? clientMs : Infinity, maxMs ? Date.now() + maxMs : Infinity);
      const onCancel = () => controller.abort(new HeraldError(Status.CANCELLED, "CANCELLED", "the client cancelled the call"));
      call.on("cancelled", onCancel);
      let timer: NodeJS.Timeout | undefined;
      try {
        const { principal, app } = await this.authorize(access, call.metadata);
        if (app) span.setAttribute("herald.app", app);
        const ctx: CallContext = {
          method,
          principal,
          app,
          metadata: call.metadata,
          signal: controller.signal,
          deadline: new Date(deadlineMs),
          logger: this.options.logger.child({ method, app: app || undefined }),
        };
        const work = body(ctx);
        if (!Number.isFinite(deadlineMs)) return await work;
        const expired = new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            const err = new HeraldError(Status.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", "the call did not finish before its deadline");
            controller.abort(err);
            reject(err);
          }, Math.max(0, deadlineMs - Date.now()));
        });
        return await Promise.race([work, expired]);
      } catch (err) {
        const code = err instanceof HeraldError ? err.code : Status.INTERNAL;
        outcome = code;
        if (code === Status.INTERNAL || code === Status.UNKNOWN) {
          span.recordException(err as Error);
          span.setStatus({ code: SpanStatusCode.ERROR });
          this.options.logger.error({ err, method }, "call failed");
        } else {
          this.options.logger.debug({ method, code, reason: (err as HeraldError).reason }, "call refused");
        }
        throw err;
      } finally {
        clearTimeout(timer);
        call.removeListener("cancelled", onCancel);
        // 0 (OK) on success too, so Jaeger can filter on the code of every call.
        span.setAttribute("rpc.grpc.status_code", outcome);
        span.end();
        this.options.onCall?.(method, outcome, (performance.now() - started) / 1000, type);
      }
    });
  }

  private async authorize(access: Access, metadata: grpc.Metadata): Promise<{ principal: Principal | null; app: string }> {
    if (access === "public") return { principal: null, app: "" };
    const authorization = metadata.get("authorization")[0]?.toString();
    const principal = await this.options.authenticator.authenticate(authorization);
    const named = metadata.get("x-herald-app")[0]?.toString() ?? "";
    if (principal.kind === "admin") {
      if (access === "admin") return { principal, app: "" };
      if (!named) throw permissionDenied("APP_REQUIRED", "with the admin key, name the app in `x-herald-app` metadata");
      // `x-herald-role: client`: the admin acts with a CLIENT key's rights on the app (the HTTP
      // gateway's routes for app SDKs), so every client rule of the services applies.
      if (metadata.get("x-herald-role")[0]?.toString() === "client") {
        if (access === "server") throw permissionDenied("SERVER_KEY_REQUIRED", "this call needs a SERVER key; CLIENT keys may only register devices and bind users");
        return { principal: { kind: "app", app: named, role: "client", keyId: "admin-as-client" }, app: named };
      }
      return { principal, app: named };
    }
    if (access === "admin") throw permissionDenied("ADMIN_KEY_REQUIRED", "this call needs the admin key");
    if (access === "server" && principal.role !== "server") {
      throw permissionDenied("SERVER_KEY_REQUIRED", "this call needs a SERVER key; CLIENT keys may only register devices and bind users");
    }
    if (named && named !== principal.app) throw permissionDenied("WRONG_APP", `this key belongs to app "${principal.app}", not "${named}"`);
    return { principal, app: principal.app };
  }
}

// A request grpc-js cannot decode (ts-proto's decoders stop at 100 nested messages, e.g. a
// Struct payload nested past ~33 levels; or bytes that are no valid message) would be answered
// INTERNAL "Error deserializing request" before any handler runs. Decoding instead yields a
// marker that the handler turns into INVALID_ARGUMENT, after authentication like any refusal.
class Undecodable {
  constructor(readonly cause: string) {}
}

function tolerantDefinition(definition: ServiceBinding["definition"]): ServiceBinding["definition"] {
  const out: Record<string, unknown> = {};
  for (const [name, def] of Object.entries(definition)) {
    const decode = def.requestDeserialize as (b: Buffer) => unknown;
    out[name] = {
      ...def,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return decode(bytes);
        } catch (err) {
          return new Undecodable(err instanceof Error ? err.message : String(err));
        }
      },
    };
  }
  return out as ServiceBinding["definition"];
}

function decoded(request: unknown): unknown {
  if (request instanceof Undecodable) {
    const hint = /recursion/i.test(request.cause) ? " (payload values nest at most 30 levels deep)" : "";
    throw invalidArgument("request", `is not a valid message: ${request.cause}${hint}`, "MALFORMED_REQUEST");
  }
  return request;
}
