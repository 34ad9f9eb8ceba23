import type { Metadata } from "@grpc/grpc-js";
import type { Principal } from "./auth.keys.js";
import type { Logger } from "./log.logger.js";

// The shape of one method in a ts-proto `outputServices=grpc-js` service definition.
export interface MethodDef {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  // biome-ignore lint: generated definitions are invariant in these types
  requestSerialize: (value: any) => Buffer;
  requestDeserialize: (value: Buffer) => any;
  responseSerialize: (value: any) => Buffer;
  responseDeserialize: (value: Buffer) => any;
}

export type ServiceDef = Record<string, MethodDef>;
export type ReqOf<M> = M extends { requestDeserialize: (b: Buffer) => infer R } ? R : never;
export type ResOf<M> = M extends { responseSerialize: (v: infer R) => Buffer } ? R : never;

// Who may call a method. "client" admits CLIENT and SERVER keys; "server" only SERVER keys;
// "admin" only the admin key. App-scoped methods also admit the admin key when the call names
// the app in the `x-herald-app` metadata.
export type Access = "public" | "admin" | "server" | "client";

export interface CallContext {
  method: string;
  principal: Principal | null;
  // The app every read and write of this call is scoped to ("" for admin/public calls).
  app: string;
  metadata: Metadata;
  // Aborted when the client cancels or the deadline passes.
  signal: AbortSignal;
  deadline: Date;
  logger: Logger;
}

export type UnaryHandler<Q, S> = (request: Q, ctx: CallContext) => Promise<S>;
export type StreamHandler<Q, S> = (request: Q, ctx: CallContext, send: (response: S) => Promise<void>) => Promise<void>;
export type HandlerOf<M> = M extends { responseStream: true }
  ? StreamHandler<ReqOf<M>, ResOf<M>>
  : UnaryHandler<ReqOf<M>, ResOf<M>>;

export type ServiceImpl<D extends ServiceDef> = { [K in keyof D]: { access: Access; handle: HandlerOf<D[K]> } };

export interface ServiceBinding {
  // Fully-qualified name, e.g. "herald.registry.v1.RegistryService" (health checks use it).
  name: string;
  definition: ServiceDef;
  impl: Record<string, { access: Access; handle: UnaryHandler<unknown, unknown> | StreamHandler<unknown, unknown> }>;
}

export function bindService<D extends ServiceDef>(name: string, definition: D, impl: ServiceImpl<D>): ServiceBinding {
  return { name, definition, impl: impl as ServiceBinding["impl"] };
}
