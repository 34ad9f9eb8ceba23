import { readFileSync } from "node:fs";
import { createFileRegistry, fromBinary, type DescEnum, type DescField, type DescMessage, type DescMethod, type DescService, type FileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

// The gRPC methods the gateway maps to HTTP, read from the descriptor set the servers serve by
// reflection: one source for the routes, the JSON codec (strict proto3 JSON) and the OpenAPI
// document, so a new RPC is on HTTP without a line of gateway code.

export interface RpcMethod {
  // "/herald.registry.v1.RegistryService/RegisterDevice": the gRPC path, also the HTTP path
  // under /v1.
  path: string;
  service: DescService;
  method: DescMethod;
  serverStreaming: boolean;
}

export interface RpcCatalog {
  registry: FileRegistry;
  methods: RpcMethod[];
  byPath: Map<string, RpcMethod>;
}

export function loadCatalog(descriptorSetPath: string, serviceNames: readonly string[]): RpcCatalog {
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(descriptorSetPath)));
  const methods: RpcMethod[] = [];
  for (const name of serviceNames) {
    const service = registry.getService(name);
    if (!service) throw new Error(`descriptor set ${descriptorSetPath} has no service ${name}`);
    for (const method of service.methods) {
      if (method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming") continue;
      methods.push({ path: `/${service.typeName}/${method.name}`, service, method, serverStreaming: method.methodKind === "server_streaming" });
    }
  }
  return { registry, methods, byPath: new Map(methods.map((m) => [m.path, m])) };
}

type Described = DescService | DescMethod | DescMessage | DescField | DescEnum;

// The comment written above a service, method, message or field in the .proto file (from the
// descriptor set's source info), for the OpenAPI document.
export function commentOf(desc: Described): string {
  const path = sourcePath(desc);
  const file = fileOf(desc);
  const location = file.proto.sourceCodeInfo?.location.find((l) => l.path.length === path.length && l.path.every((p, i) => p === path[i]));
  return (location?.leadingComments ?? "")
    .split("\n")
    .map((line) => line.replace(/^ /, ""))
    .join("\n")
    .trim();
}

// FileDescriptorProto field numbers: message_type 4, enum_type 5, service 6; DescriptorProto:
// field 2, nested_type 3, enum_type 4; ServiceDescriptorProto: method 2.
function sourcePath(desc: Described): number[] {
  switch (desc.kind) {
    case "service":
      return [6, desc.file.services.indexOf(desc)];
    case "rpc":
      return [...sourcePath(desc.parent), 2, desc.parent.methods.indexOf(desc)];
    case "message":
      return desc.parent ? [...sourcePath(desc.parent), 3, desc.parent.nestedMessages.indexOf(desc)] : [4, desc.file.messages.indexOf(desc)];
    case "field":
      return [...sourcePath(desc.parent), 2, desc.parent.fields.indexOf(desc)];
    case "enum":
      return desc.parent ? [...sourcePath(desc.parent), 4, desc.parent.nestedEnums.indexOf(desc)] : [5, desc.file.enums.indexOf(desc)];
  }
}

function fileOf(desc: Described) {
  return desc.kind === "rpc" || desc.kind === "field" ? desc.parent.file : desc.file;
}
