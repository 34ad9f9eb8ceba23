import * as grpc from "@grpc/grpc-js";
import { context, propagation } from "@opentelemetry/api";
import type { ReqOf, ResOf, ServiceDef } from "./grpc.types.js";

export interface ClientOptions {
  apiKey?: string;
  // Names the app when calling app-scoped methods with the admin key.
  app?: string;
  credentials?: grpc.ChannelCredentials;
}

export interface CallOptions {
  deadlineMs?: number;
  signal?: AbortSignal;
  // With the admin key: the app this call acts on (over the client's `app`), and "client" to act
  // with a CLIENT key's rights only (the gateway's device routes for app SDKs).
  app?: string;
  role?: "client";
  // Another API key for this call (the gateway forwarding its caller's key).
  apiKey?: string;
}

type Builtin = Date | Uint8Array | string | number | boolean | bigint | undefined | ((...args: never[]) => unknown);

// Requests may leave out any field; the generated fromPartial fills the proto defaults.
export type DeepPartial<T> = T extends Builtin
  ? T
  : T extends Array<infer U>
    ? Array<DeepPartial<U>>
    : T extends { $case: string; value: unknown }
      ? { $case: T["$case"]; value: DeepPartial<T["value"]> }
      : T extends object
        ? { [K in keyof T]?: DeepPartial<T[K]> }
        : T;

export type AsyncClient<D extends ServiceDef> = {
  [K in keyof D]: D[K] extends { responseStream: true }
    ? (request: DeepPartial<ReqOf<D[K]>>, options?: CallOptions) => AsyncIterable<ResOf<D[K]>>
    : (request: DeepPartial<ReqOf<D[K]>>, options?: CallOptions) => Promise<ResOf<D[K]>>;
} & { close(): void };

type MessageModule = Record<string, unknown>;

// A promise/async-iterator client for a ts-proto service definition. `messages` is the generated
// module (e.g. `registry`), whose `<Method>Request.fromPartial` completes partial requests (buf's
// STANDARD lint guarantees that naming). Adds the API key and the caller's trace context.
export function createClient<D extends ServiceDef>(definition: D, messages: MessageModule, address: string, options: ClientOptions = {}): AsyncClient<D> {
  const Ctor = grpc.makeGenericClientConstructor(definition as unknown as grpc.ServiceDefinition, "");
  const interceptor: grpc.Interceptor = (opts, next) =>
    new grpc.InterceptingCall(next(opts), {
      start(metadata, listener, nextStart) {
        if (options.apiKey && metadata.get("authorization").length === 0) metadata.set("authorization", `Bearer ${options.apiKey}`);
        if (options.app && metadata.get("x-herald-app").length === 0) metadata.set("x-herald-app", options.app);
        propagation.inject(context.active(), metadata, { set: (m, k, v) => m.set(k, v) });
        nextStart(metadata, listener);
      },
    });
  const client = new Ctor(address, options.credentials ?? grpc.credentials.createInsecure(), { interceptors: [interceptor] });
  const raw = client as unknown as Record<string, (...args: unknown[]) => unknown>;
  const result: Record<string, unknown> = { close: () => client.close() };
  for (const [name, def] of Object.entries(definition)) {
    const requestType = `${def.path.slice(def.path.lastIndexOf("/") + 1)}Request`;
    const fns = messages[requestType] as { fromPartial?: (value: unknown) => unknown } | undefined;
    if (!fns?.fromPartial) throw new Error(`createClient: ${requestType} not found in the messages module`);
    const complete = fns.fromPartial.bind(fns);
    const callOptions = (o?: CallOptions): grpc.CallOptions => ({
      deadline: Date.now() + (o?.deadlineMs ?? (def.responseStream ? 3_600_000 : 30_000)),
    });
    const callMetadata = (o?: CallOptions): grpc.Metadata => {
      const metadata = new grpc.Metadata();
      if (o?.apiKey) metadata.set("authorization", `Bearer ${o.apiKey}`);
      if (o?.app) metadata.set("x-herald-app", o.app);
      if (o?.role) metadata.set("x-herald-role", o.role);
      return metadata;
    };
    if (def.responseStream) {
      result[name] = (request: unknown, o?: CallOptions) => {
        const stream = raw[name]!.call(client, complete(request), callMetadata(o), callOptions(o)) as grpc.ClientReadableStream<unknown>;
        o?.signal?.addEventListener("abort", () => stream.cancel(), { once: true });
        return stream as AsyncIterable<unknown>;
      };
    } else {
      result[name] = (request: unknown, o?: CallOptions) =>
        new Promise((resolve, reject) => {
          const call = raw[name]!.call(client, complete(request), callMetadata(o), callOptions(o), (err: grpc.ServiceError | null, res: unknown) =>
            err ? reject(err) : resolve(res),
          ) as grpc.ClientUnaryCall;
          o?.signal?.addEventListener("abort", () => call.cancel(), { once: true });
        });
    }
  }
  return result as AsyncClient<D>;
}
