import * as grpc from "@grpc/grpc-js";
import { fromBinary, fromJson, toBinary, toJson, type DescMessage, type JsonValue } from "@bufbuild/protobuf";
import { context, propagation } from "@opentelemetry/api";
import { badRequest, fromGrpcError } from "./http.errors.js";
import type { HttpRequest, Route } from "./http.router.js";
import { fieldPath, MAX_PAYLOAD_DEPTH, tooDeepAt } from "./json.limits.js";
import type { RequestAuth } from "./request.auth.js";
import type { RpcCatalog, RpcMethod } from "./rpc.catalog.js";

// Every gRPC method as `POST /v1/<package>.<Service>/<Method>` with its request as proto3 JSON
// (camelCase or the proto field names, enums by name) and its response likewise; server
// streams (WatchPublish) answer NDJSON, one message per line. Authentication is the services'
// own: the caller's `authorization` and `x-herald-app` headers go through as gRPC metadata, so
// every tenancy rule applies unchanged; a signed request acts for its app (request.auth.ts).

// The upstream that serves a service ("herald.registry.v1.RegistryService").
export type Upstreams = (service: string) => grpc.Client;

export interface RpcCallOptions {
  metadata: grpc.Metadata;
  deadlineMs: number;
  signal?: AbortSignal;
}

const UNARY_DEADLINE_MS = 30_000;
const STREAM_DEADLINE_MS = 3_600_000;
const identity = (b: Buffer) => b;

export function rpcRoutes(catalog: RpcCatalog, upstreams: Upstreams, auth: RequestAuth): Route[] {
  return catalog.methods.map((m) => ({
    method: "POST" as const,
    pattern: `/v1${m.path}`,
    handle: async (req: HttpRequest) => {
      // Who is calling before what they sent: a refused signature says so whatever the body.
      const metadata = await auth.metadata(req);
      const request = decodeJson(catalog, m.method.input, req.json());
      const options = { metadata, deadlineMs: deadlineOf(req, m), signal: req.signal };
      const client = upstreams(m.service.typeName);
      if (m.serverStreaming) return { stream: streamJson(catalog, m, client, request, options) };
      return { body: await callJson(catalog, m, client, request, options) };
    },
  }));
}

// One unary call with a decoded request; the response as proto3 JSON.
export async function callJson(catalog: RpcCatalog, m: RpcMethod, client: grpc.Client, request: Uint8Array, options: RpcCallOptions): Promise<JsonValue> {
  const bytes = await new Promise<Buffer>((resolve, reject) => {
    const call = client.makeUnaryRequest(m.path, identity, identity, Buffer.from(request), withTrace(options.metadata), { deadline: Date.now() + options.deadlineMs }, (err, res) =>
      err ? reject(fromGrpcError(err)) : resolve(res!),
    );
    options.signal?.addEventListener("abort", () => call.cancel(), { once: true });
  });
  return encodeJson(catalog, m.method.output, bytes);
}

async function* streamJson(catalog: RpcCatalog, m: RpcMethod, client: grpc.Client, request: Uint8Array, options: RpcCallOptions): AsyncIterable<JsonValue> {
  const stream = client.makeServerStreamRequest(m.path, identity, identity, Buffer.from(request), withTrace(options.metadata), { deadline: Date.now() + options.deadlineMs });
  options.signal?.addEventListener("abort", () => stream.cancel(), { once: true });
  try {
    for await (const bytes of stream as AsyncIterable<Buffer>) yield encodeJson(catalog, m.method.output, bytes);
  } catch (err) {
    throw fromGrpcError(err);
  }
}

// Strict proto3 JSON: an unknown field or a value of the wrong type is a 400 naming the field,
// never silently dropped.
export function decodeJson(catalog: RpcCatalog, desc: DescMessage, json: unknown): Uint8Array {
  if (json === null || typeof json !== "object" || Array.isArray(json)) throw badRequest("INVALID_ARGUMENT", `the body must be a JSON object (${desc.name})`);
  const deep = tooDeepStruct(desc, json as Record<string, unknown>, []);
  if (deep) throw badRequest("PAYLOAD_TOO_DEEP", `${deep}: nests objects and arrays more than ${MAX_PAYLOAD_DEPTH} levels deep`, deep);
  try {
    return toBinary(desc, fromJson(desc, json as JsonValue, { registry: catalog.registry }));
  } catch (err) {
    const message = (err as Error).message.replace(/^\[[^\]]*\]\s*/, "");
    const field = /cannot decode field [\w.]+?\.(\w+) from JSON/.exec(message)?.[1] ?? /key "([^"]+)" is unknown/.exec(message)?.[1] ?? failingKey(catalog, desc, json as Record<string, JsonValue>);
    throw badRequest("INVALID_ARGUMENT", field && !message.startsWith(`${field}:`) ? `${field}: ${message}` : message, field);
  }
}

const FREE_FORM = new Set(["google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"]);

// The first free-form (Struct) field of the request whose JSON nests more than MAX_PAYLOAD_DEPTH
// levels, as a field path: what the services would refuse, or fail to decode at all (their
// decoders give up past 100 nested messages, and a request past that never reaches their own
// check). Recursive along the message types only, in a body the router bounded to
// MAX_BODY_DEPTH; a value of the wrong type is left to fromJson to name.
function tooDeepStruct(desc: DescMessage, json: Record<string, unknown>, at: Array<string | number>): string | undefined {
  for (const [key, value] of Object.entries(json)) {
    const field = desc.fields.find((f) => f.jsonName === key || f.name === key);
    if (!field || value === null || typeof value !== "object") continue;
    const message = field.fieldKind === "message" ? field.message : field.fieldKind === "list" && field.listKind === "message" ? field.message : field.fieldKind === "map" && field.mapKind === "message" ? field.message : undefined;
    if (!message) continue;
    const items: Array<[Array<string | number>, unknown]> =
      field.fieldKind === "list" && Array.isArray(value) ? value.map((v, i) => [[...at, key, i], v]) : field.fieldKind === "map" ? Object.entries(value).map(([k, v]) => [[...at, key, k], v]) : [[[...at, key], value]];
    for (const [path, item] of items) {
      if (FREE_FORM.has(message.typeName)) {
        if (tooDeepAt(item, MAX_PAYLOAD_DEPTH)) return fieldPath(path);
      } else if (item !== null && typeof item === "object" && !Array.isArray(item)) {
        const found = tooDeepStruct(message, item as Record<string, unknown>, path);
        if (found) return found;
      }
    }
  }
  return undefined;
}

// The top-level key whose value alone does not decode (the library names the type, not always
// the field).
function failingKey(catalog: RpcCatalog, desc: DescMessage, json: Record<string, JsonValue>): string | undefined {
  return Object.keys(json).find((key) => {
    try {
      fromJson(desc, { [key]: json[key]! }, { registry: catalog.registry });
      return false;
    } catch {
      return true;
    }
  });
}

// Every field present, zeros included, so a client reads counts without defaulting them.
export function encodeJson(catalog: RpcCatalog, desc: DescMessage, bytes: Uint8Array): JsonValue {
  return toJson(desc, fromBinary(desc, bytes), { registry: catalog.registry, alwaysEmitImplicit: true });
}

function withTrace(metadata: grpc.Metadata): grpc.Metadata {
  propagation.inject(context.active(), metadata, { set: (m, k, v) => m.set(k, v) });
  return metadata;
}

// `x-herald-timeout-ms` shortens the call's deadline (like grpc-timeout).
function deadlineOf(req: HttpRequest, m: RpcMethod): number {
  const max = m.serverStreaming ? STREAM_DEADLINE_MS : UNARY_DEADLINE_MS;
  const asked = req.headers["x-herald-timeout-ms"];
  if (asked === undefined) return max;
  const ms = Number(asked);
  if (!Number.isInteger(ms) || ms <= 0) throw badRequest("INVALID_ARGUMENT", "x-herald-timeout-ms must be a positive integer of milliseconds", "x-herald-timeout-ms");
  return Math.min(ms, max);
}
