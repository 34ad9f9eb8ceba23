import { ScalarType, type DescEnum, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { commentOf, type RpcCatalog } from "./rpc.catalog.js";

type Schema = Record<string, unknown>;

// A route that is not an RPC (the compatibility APIs), described by the route itself.
export interface ExtraOperation {
  method: string;
  // The router's pattern, "/v1/instances/:instance/users/:user".
  pattern: string;
  tag: string;
  summary: string;
  // How it authenticates: the API's own scheme (none, basic, the app's secret) is in the summary.
  security?: "none" | "basic";
}

// The OpenAPI 3.1 document of the gateway, built from the same descriptor set as its routes:
// every mapped RPC with its request and response schemas (proto3 JSON) and the comments of the
// .proto files as descriptions, plus the compatibility routes, which describe themselves.
export function openApiDocument(catalog: RpcCatalog, extra: ExtraOperation[], version: string): Schema {
  const schemas: Record<string, Schema> = {};
  const ref = (desc: DescMessage | DescEnum): Schema => {
    const name = desc.typeName;
    if (!schemas[name]) {
      schemas[name] = {};
      schemas[name] = desc.kind === "enum" ? enumSchema(desc) : messageSchema(desc, ref);
    }
    return { $ref: `#/components/schemas/${name}` };
  };

  const paths: Record<string, Schema> = {};
  for (const m of catalog.methods) {
    const description = commentOf(m.method);
    paths[`/v1${m.path}`] = {
      post: {
        operationId: `${m.service.name}_${m.method.name}`,
        tags: [m.service.name],
        summary: description.split("\n")[0] || m.method.name,
        ...(description ? { description } : {}),
        requestBody: { required: true, content: { "application/json": { schema: ref(m.method.input) } } },
        responses: {
          "200": m.serverStreaming
            ? { description: "One JSON message per line, as the server sends them", content: { "application/x-ndjson": { schema: ref(m.method.output) } } }
            : { description: "OK", content: { "application/json": { schema: ref(m.method.output) } } },
          default: { $ref: "#/components/responses/Error" },
        },
      },
    };
  }
  for (const op of extra) {
    const params = [...op.pattern.matchAll(/:(\w+)/g)].map((m) => m[1]!);
    const path = op.pattern.replace(/:(\w+)/g, "{$1}");
    const method = op.method.toLowerCase();
    const entry = (paths[path] ??= {}) as Record<string, unknown>;
    entry[method] = {
      operationId: `${op.tag}_${method}_${path.replace(/[^a-zA-Z0-9]+/g, "_")}`.replace(/_+$/, ""),
      tags: [op.tag],
      summary: op.summary,
      security: op.security === "basic" ? [{ basic: [] }] : op.security === "none" ? [] : [{ bearer: [] }],
      ...(params.length ? { parameters: params.map((name) => ({ name, in: "path", required: true, schema: { type: "string" } })) } : {}),
      ...(method === "get" || method === "delete" ? {} : { requestBody: { content: { "application/json": { schema: { type: "object" } }, "application/x-www-form-urlencoded": { schema: { type: "object" } } } } }),
      responses: {
        "2XX": { description: "Done; the body, if any, is the compatible API's own" },
        default: { description: "A refusal in the compatible API's own error shape", content: { "application/json": { schema: { type: "object" } } } },
      },
    };
  }

  return {
    openapi: "3.1.0",
    info: {
      title: "Herald HTTP API",
      version,
      description:
        "Every gRPC method of Herald as POST /v1/<package>.<Service>/<Method> with proto3 JSON bodies, plus the Pusher Beams, Kinvey and Pushlet compatible routes. Authenticate with `Authorization: Bearer <api key>`; the admin key names the app in `x-herald-app`.",
    },
    security: [{ bearer: [] }],
    paths,
    components: {
      securitySchemes: {
        bearer: { type: "http", scheme: "bearer", description: "A Herald API key (SERVER, CLIENT or admin); the compatibility APIs also take the app's secret" },
        basic: { type: "http", scheme: "basic", description: "The app id and the app's secret (or a SERVER key): Kinvey master credentials, Pushlet" },
      },
      responses: {
        Error: {
          description: "A refusal: the machine-readable reason, what to fix, and the field at fault when there is one",
          content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
        },
      },
      schemas: {
        Error: {
          type: "object",
          required: ["error", "description"],
          properties: { error: { type: "string", examples: ["INVALID_TOKEN"] }, description: { type: "string" }, field: { type: "string" } },
        },
        ...schemas,
      },
    },
  };
}

function enumSchema(desc: DescEnum): Schema {
  const description = commentOf(desc);
  return { type: "string", enum: desc.values.map((v) => v.name), ...(description ? { description } : {}) };
}

function messageSchema(desc: DescMessage, ref: (d: DescMessage | DescEnum) => Schema): Schema {
  const wkt = WELL_KNOWN[desc.typeName];
  if (wkt) return wkt;
  const properties: Record<string, Schema> = {};
  for (const field of desc.fields) {
    const comment = commentOf(field);
    const oneof = field.oneof ? `One of ${field.oneof.name}: ${field.oneof.fields.map((f) => f.jsonName).join(", ")}.` : "";
    const description = [comment, oneof].filter(Boolean).join("\n");
    properties[field.jsonName] = { ...fieldSchema(field, ref), ...(description ? { description } : {}) };
  }
  const description = commentOf(desc);
  return { type: "object", additionalProperties: false, properties, ...(description ? { description } : {}) };
}

function fieldSchema(field: DescField, ref: (d: DescMessage | DescEnum) => Schema): Schema {
  switch (field.fieldKind) {
    case "scalar":
      return scalarSchema(field.scalar);
    case "enum":
      return ref(field.enum);
    case "message":
      return ref(field.message);
    case "list":
      return { type: "array", items: field.listKind === "scalar" ? scalarSchema(field.scalar) : field.listKind === "enum" ? ref(field.enum) : ref(field.message) };
    case "map":
      return { type: "object", additionalProperties: field.mapKind === "scalar" ? scalarSchema(field.scalar) : field.mapKind === "enum" ? ref(field.enum) : ref(field.message) };
  }
}

function scalarSchema(scalar: ScalarType): Schema {
  switch (scalar) {
    case ScalarType.STRING:
      return { type: "string" };
    case ScalarType.BOOL:
      return { type: "boolean" };
    case ScalarType.BYTES:
      return { type: "string", contentEncoding: "base64" };
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return { type: "number" };
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.SINT64:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      // proto3 JSON: 64-bit integers are strings (numbers are accepted on input).
      return { type: ["string", "integer"], format: "int64" };
    default:
      return { type: "integer", format: "int32" };
  }
}

const WELL_KNOWN: Record<string, Schema> = {
  "google.protobuf.Timestamp": { type: "string", format: "date-time" },
  "google.protobuf.Duration": { type: "string", examples: ["1.5s"] },
  "google.protobuf.Struct": { type: "object" },
  "google.protobuf.Value": {},
  "google.protobuf.ListValue": { type: "array" },
  "google.protobuf.Empty": { type: "object" },
  "google.protobuf.StringValue": { type: "string" },
  "google.protobuf.BoolValue": { type: "boolean" },
  "google.protobuf.Int32Value": { type: "integer" },
};
