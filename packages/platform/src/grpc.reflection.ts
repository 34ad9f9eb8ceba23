import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { create, createFileRegistry, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  type DescriptorProto,
  type EnumDescriptorProto,
  type FieldDescriptorProto,
  type FileDescriptorProto,
} from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { loadSync, type Options } from "@grpc/proto-loader";
import { protoPath as healthProtoPath } from "grpc-health-check";

// gRPC server reflection (grpc.reflection.v1 and v1alpha) answered from the FileDescriptorSet
// that `buf build` writes (packages/proto/descriptors.binpb).
//
// Why not @grpc/reflection: it rebuilds every file through protobufjs from a proto-loader
// package definition, which drops the files' imports and writes relative type names
// ("common.v1.Provider"), so grpcurl cannot resolve a single Herald type (grpc-node#3034); it
// also lists only the services of that package definition, never grpc.health.v1.Health or
// reflection itself. buf's set already holds every file with its imports (google/protobuf/*
// included), so serving those files as they are is both smaller and exact. Only the health and
// reflection files are not in it: they come from the .proto files grpc-health-check and
// @grpc/reflection ship, compiled by proto-loader (protobufjs) and repaired below.

export const REFLECTION_SERVICES = ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"] as const;

// The names grpc-go and protoc use for these files, so a client that also has them compiled in
// sees one file, not two defining the same symbols.
const BUNDLED_FILES: Record<string, string> = {
  "grpc.health.v1": "grpc/health/v1/health.proto",
  "grpc.reflection.v1": "grpc/reflection/v1/reflection.proto",
  "grpc.reflection.v1alpha": "grpc/reflection/v1alpha/reflection.proto",
};

const LOADER_OPTIONS: Options = { keepCase: true, longs: Number, enums: Number, defaults: false, oneofs: true };

// Codes of error_response: a lookup that fails answers that one request, the stream goes on.
const NOT_FOUND = grpc.status.NOT_FOUND;
const INVALID_ARGUMENT = grpc.status.INVALID_ARGUMENT;

interface ReflectionRequest {
  host?: string;
  message_request?: "file_by_filename" | "file_containing_symbol" | "file_containing_extension" | "all_extension_numbers_of_type" | "list_services";
  file_by_filename?: string;
  file_containing_symbol?: string;
  file_containing_extension?: { containing_type?: string; extension_number?: number };
  all_extension_numbers_of_type?: string;
  list_services?: string;
}

interface ReflectionResponse {
  valid_host: string;
  original_request: ReflectionRequest;
  file_descriptor_response?: { file_descriptor_proto: Uint8Array[] };
  all_extension_numbers_response?: { base_type_name: string; extension_number: number[] };
  list_services_response?: { service: Array<{ name: string }> };
  error_response?: { error_code: number; error_message: string };
}

class LookupError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

export class ServerReflection {
  private readonly files = new Map<string, FileDescriptorProto>();
  private readonly encoded = new Map<string, Uint8Array>();
  // Fully qualified name (no leading dot) of every message, field, oneof, enum, enum value,
  // service, method and extension -> the file declaring it.
  private readonly symbols = new Map<string, string>();
  private readonly messages = new Set<string>();
  private readonly declaredServices = new Set<string>();
  // extendee (no leading dot) -> field number -> file declaring the extension
  private readonly extensions = new Map<string, Map<number, string>>();
  private readonly services: string[];
  private readonly definitions: grpc.ServiceDefinition[];

  // descriptorSet: a serialized google.protobuf.FileDescriptorSet, imports included.
  // services: what the server serves besides reflection (which is always listed).
  constructor(descriptorSet: Uint8Array, services: readonly string[]) {
    const reflection = loadSync(["grpc/reflection/v1/reflection.proto", "grpc/reflection/v1alpha/reflection.proto"], {
      ...LOADER_OPTIONS,
      includeDirs: [reflectionProtoDir()],
    });
    const health = loadSync(healthProtoPath, LOADER_OPTIONS);
    this.definitions = REFLECTION_SERVICES.map((name) => reflection[name] as grpc.ServiceDefinition);

    const set = fromBinary(FileDescriptorSetSchema, descriptorSet);
    for (const file of set.file) this.files.set(file.name, file);
    const ownPackages = new Set(set.file.map((f) => f.package));
    for (const file of compiledFiles([reflection, health])) {
      // a descriptor set that already carries these files (built from the same .proto) wins
      if (!ownPackages.has(file.package)) this.files.set(file.name, file);
    }
    // Fails on a missing import or an unresolvable type name: the two mistakes that make a
    // client reject every answer, caught when the server starts rather than by the first user.
    createFileRegistry(create(FileDescriptorSetSchema, { file: importsFirst(this.files) }));

    for (const file of this.files.values()) {
      this.encoded.set(file.name, toBinary(FileDescriptorProtoSchema, file));
      this.index(file);
    }
    this.services = [...new Set([...services, ...REFLECTION_SERVICES])];
    for (const name of this.services) {
      if (!this.declaredServices.has(name)) throw new Error(`reflection: no descriptor for service ${name} in the descriptor set`);
    }
  }

  addToServer(server: grpc.Server): void {
    for (const definition of this.definitions) {
      server.addService(definition, {
        ServerReflectionInfo: (call: grpc.ServerDuplexStream<ReflectionRequest, ReflectionResponse>) => {
          call.on("data", (request: ReflectionRequest) => call.write(this.answer(request)));
          call.on("end", () => call.end());
          // a client going away mid-stream is not a server problem; without a listener the
          // stream's error would be thrown
          call.on("error", () => undefined);
        },
      });
    }
  }

  private answer(request: ReflectionRequest): ReflectionResponse {
    const base = { valid_host: request.host ?? "", original_request: request };
    try {
      switch (request.message_request) {
        case "list_services":
          return { ...base, list_services_response: { service: this.services.map((name) => ({ name })) } };
        case "file_by_filename": {
          const name = request.file_by_filename ?? "";
          if (!this.files.has(name)) throw new LookupError(NOT_FOUND, `file not found: ${name}`);
          return { ...base, file_descriptor_response: this.withImports(name) };
        }
        case "file_containing_symbol": {
          const symbol = (request.file_containing_symbol ?? "").replace(/^\./, "");
          const file = this.symbols.get(symbol);
          if (!file) throw new LookupError(NOT_FOUND, `symbol not found: ${symbol}`);
          return { ...base, file_descriptor_response: this.withImports(file) };
        }
        case "file_containing_extension": {
          const type = (request.file_containing_extension?.containing_type ?? "").replace(/^\./, "");
          const number = request.file_containing_extension?.extension_number ?? 0;
          const file = this.extensions.get(type)?.get(number);
          if (!file) throw new LookupError(NOT_FOUND, `no extension ${number} of ${type}`);
          return { ...base, file_descriptor_response: this.withImports(file) };
        }
        case "all_extension_numbers_of_type": {
          const type = (request.all_extension_numbers_of_type ?? "").replace(/^\./, "");
          if (!this.messages.has(type)) throw new LookupError(NOT_FOUND, `message type not found: ${type}`);
          const numbers = [...(this.extensions.get(type)?.keys() ?? [])].sort((a, b) => a - b);
          return { ...base, all_extension_numbers_response: { base_type_name: type, extension_number: numbers } };
        }
        default:
          throw new LookupError(INVALID_ARGUMENT, "the request names no known message_request");
      }
    } catch (err) {
      // thrown from a stream's data handler, anything else would end the process
      const code = err instanceof LookupError ? err.code : grpc.status.INTERNAL;
      return { ...base, error_response: { error_code: code, error_message: (err as Error).message } };
    }
  }

  // The file first, then every file it imports, directly or not: a client can only build a
  // descriptor once it has all of them, and it may not have asked for any before.
  private withImports(name: string): { file_descriptor_proto: Uint8Array[] } {
    const order: string[] = [];
    const seen = new Set<string>();
    const queue = [name];
    while (queue.length > 0) {
      const next = queue.shift()!;
      if (seen.has(next)) continue;
      seen.add(next);
      order.push(next);
      queue.push(...(this.files.get(next)?.dependency ?? []));
    }
    return { file_descriptor_proto: order.map((n) => this.encoded.get(n)!) };
  }

  private index(file: FileDescriptorProto): void {
    const add = (fqn: string) => {
      if (!this.symbols.has(fqn)) this.symbols.set(fqn, file.name);
    };
    const join = (scope: string, name: string) => (scope ? `${scope}.${name}` : name);
    const addExtensions = (scope: string, fields: FieldDescriptorProto[]) => {
      for (const ext of fields) {
        add(join(scope, ext.name));
        const extendee = ext.extendee.replace(/^\./, "");
        if (!this.extensions.has(extendee)) this.extensions.set(extendee, new Map());
        this.extensions.get(extendee)!.set(ext.number, file.name);
      }
    };
    const addEnums = (scope: string, enums: EnumDescriptorProto[]) => {
      for (const e of enums) {
        add(join(scope, e.name));
        // enum values are siblings of their enum (C++ scoping), as protoc names them
        for (const v of e.value) add(join(scope, v.name));
      }
    };
    const addMessages = (scope: string, messages: DescriptorProto[]) => {
      for (const m of messages) {
        const fqn = join(scope, m.name);
        add(fqn);
        this.messages.add(fqn);
        for (const f of m.field) add(`${fqn}.${f.name}`);
        for (const o of m.oneofDecl) add(`${fqn}.${o.name}`);
        addEnums(fqn, m.enumType);
        addExtensions(fqn, m.extension);
        addMessages(fqn, m.nestedType);
      }
    };
    addMessages(file.package, file.messageType);
    addEnums(file.package, file.enumType);
    addExtensions(file.package, file.extension);
    for (const s of file.service) {
      const fqn = join(file.package, s.name);
      add(fqn);
      this.declaredServices.add(fqn);
      for (const m of s.method) add(`${fqn}.${m.name}`);
    }
  }
}

// Every file after the files it imports, the order createFileRegistry needs; a missing import is
// left for it to report.
function importsFirst(files: Map<string, FileDescriptorProto>): FileDescriptorProto[] {
  const order: FileDescriptorProto[] = [];
  const seen = new Set<string>();
  const visit = (name: string) => {
    const file = files.get(name);
    if (!file || seen.has(name)) return;
    seen.add(name);
    file.dependency.forEach(visit);
    order.push(file);
  };
  for (const name of files.keys()) visit(name);
  return order;
}

function reflectionProtoDir(): string {
  // build/src/index.js -> build/proto, where the package ships its .proto files
  return join(dirname(createRequire(import.meta.url).resolve("@grpc/reflection")), "../proto");
}

// The health and reflection files as proto-loader compiled them, made into what protoc would
// have written: protobufjs names each file after its package ("grpc_health_v1.proto"), names a
// map entry after its field ("Statuses", where protoc and Go's protodesc require
// "StatusesEntry") and writes type names relative to the message using them.
function compiledFiles(definitions: Array<Record<string, unknown>>): FileDescriptorProto[] {
  const bytes = new Set<Uint8Array>();
  for (const definition of definitions) {
    for (const entry of Object.values(definition)) {
      for (const b of (entry as { fileDescriptorProtos?: Uint8Array[] }).fileDescriptorProtos ?? []) bytes.add(b);
    }
  }
  const files = new Map<string, FileDescriptorProto>();
  for (const b of bytes) {
    const file = fromBinary(FileDescriptorProtoSchema, b);
    const name = BUNDLED_FILES[file.package];
    if (!name || files.has(name)) continue;
    file.name = name;
    repair(file);
    files.set(name, file);
  }
  for (const [pkg, name] of Object.entries(BUNDLED_FILES)) {
    if (!files.has(name)) throw new Error(`reflection: proto-loader produced no descriptor for ${pkg}`);
  }
  return [...files.values()];
}

function repair(file: FileDescriptorProto): void {
  const pkg = file.package ? `.${file.package}` : "";
  const types = new Set<string>();
  const collect = (scope: string, messages: DescriptorProto[], enums: EnumDescriptorProto[]) => {
    for (const e of enums) types.add(`${scope}.${e.name}`);
    for (const m of messages) {
      for (const entry of m.nestedType.filter((n) => n.options?.mapEntry)) {
        const field = m.field.find((f) => f.typeName === entry.name);
        if (field) field.typeName = entry.name = mapEntryName(field.name);
      }
      types.add(`${scope}.${m.name}`);
      collect(`${scope}.${m.name}`, m.nestedType, m.enumType);
    }
  };
  collect(pkg, file.messageType, file.enumType);
  // protobuf scoping: the innermost enclosing scope that declares the name wins
  const qualify = (scope: string, name: string) => {
    if (name.startsWith(".")) return name;
    for (let s = scope; ; s = s.slice(0, Math.max(0, s.lastIndexOf(".")))) {
      if (types.has(`${s}.${name}`)) return `${s}.${name}`;
      if (!s) throw new Error(`reflection: cannot resolve type ${name} in ${file.name}`);
    }
  };
  const visit = (scope: string, messages: DescriptorProto[]) => {
    for (const m of messages) {
      const fqn = `${scope}.${m.name}`;
      qualifyFields(fqn, [...m.field, ...m.extension]);
      visit(fqn, m.nestedType);
    }
  };
  // Assigning an empty string would mark the (proto2) field as set, and a client rejects a
  // message field that has an extendee, even an empty one.
  const qualifyFields = (scope: string, fields: FieldDescriptorProto[]) => {
    for (const f of fields) {
      if (f.typeName) f.typeName = qualify(scope, f.typeName);
      if (f.extendee) f.extendee = qualify(scope, f.extendee);
    }
  };
  visit(pkg, file.messageType);
  qualifyFields(pkg, file.extension);
  for (const s of file.service) {
    for (const m of s.method) {
      m.inputType = qualify(pkg, m.inputType);
      m.outputType = qualify(pkg, m.outputType);
    }
  }
}

// protoc's rule: "tags" -> "TagsEntry", "per_app" -> "PerAppEntry".
function mapEntryName(field: string): string {
  return `${field.replace(/(?:^|_)(.)/g, (_, c: string) => c.toUpperCase())}Entry`;
}
