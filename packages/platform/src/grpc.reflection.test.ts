import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { create, createFileRegistry, fromBinary, isFieldSet, toBinary } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FieldDescriptorProtoSchema,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  type DescriptorProto,
  type FileDescriptorProto,
} from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { descriptorSetPath, topic } from "@herald/proto";
import { ApiKeyAuthenticator } from "./auth.keys.js";
import { ServerReflection } from "./grpc.reflection.js";
import { GrpcServer } from "./grpc.server.js";
import { bindService } from "./grpc.types.js";
import { createLogger } from "./log.logger.js";

type Request = Record<string, unknown>;
interface Response {
  valid_host: string;
  original_request: Request;
  message_response: string;
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  all_extension_numbers_response?: { base_type_name: string; extension_number: number[] };
  list_services_response?: { service: Array<{ name: string }> };
  error_response?: { error_code: number; error_message: string };
}

// A client built from the reflection .proto, not from the module under test, so both ends do
// not share a mistake.
const protoDir = join(dirname(createRequire(import.meta.url).resolve("@grpc/reflection")), "../proto");
const loaded = grpc.loadPackageDefinition(
  loadSync(["grpc/reflection/v1/reflection.proto", "grpc/reflection/v1alpha/reflection.proto"], { includeDirs: [protoDir], keepCase: true, oneofs: true, longs: Number, arrays: true }),
) as unknown as { grpc: { reflection: Record<"v1" | "v1alpha", { ServerReflection: grpc.ServiceClientConstructor }> } };

class ReflectionClient {
  private readonly client: grpc.Client;
  constructor(address: string, version: "v1" | "v1alpha" = "v1") {
    this.client = new loaded.grpc.reflection[version].ServerReflection(address, grpc.credentials.createInsecure());
  }
  // Sends every request on ONE stream, as grpcurl does, and collects the answers in order.
  ask(...requests: Request[]): Promise<Response[]> {
    return new Promise((resolve, reject) => {
      const stream = (this.client as unknown as { ServerReflectionInfo: () => grpc.ClientDuplexStream<Request, Response> }).ServerReflectionInfo();
      const answers: Response[] = [];
      stream.on("data", (r: Response) => answers.push(r));
      stream.on("error", reject);
      stream.on("end", () => resolve(answers));
      for (const r of requests) stream.write(r);
      stream.end();
    });
  }
  async one(request: Request): Promise<Response> {
    const [answer] = await this.ask(request);
    assert.ok(answer);
    return answer;
  }
  close() {
    this.client.close();
  }
}

const decode = (r: Response) => (r.file_descriptor_response?.file_descriptor_proto ?? []).map((b) => fromBinary(FileDescriptorProtoSchema, b));

// Every type reference in the files, to check none is relative (what grpcurl could not resolve).
function typeRefs(files: FileDescriptorProto[]): string[] {
  const refs: string[] = [];
  const visit = (messages: DescriptorProto[]) => {
    for (const m of messages) {
      for (const f of [...m.field, ...m.extension]) refs.push(...[f.typeName, f.extendee].filter(Boolean));
      visit(m.nestedType);
    }
  };
  for (const file of files) {
    visit(file.messageType);
    for (const s of file.service) for (const m of s.method) refs.push(m.inputType, m.outputType);
  }
  return refs;
}

describe("GrpcServer reflection", () => {
  let server: GrpcServer;
  let client: ReflectionClient;

  before(async () => {
    const handlers = Object.fromEntries(Object.keys(topic.TopicServiceService).map((k) => [k, { access: "public", handle: async () => ({}) }]));
    server = new GrpcServer({
      logger: createLogger({ service: "t", level: "silent" }),
      authenticator: new ApiKeyAuthenticator({ adminKey: "admin-key-admin-key-admin-key", lookup: async () => null }),
      // reflection never calls the service: any handler will do
      services: [bindService("herald.topic.v1.TopicService", topic.TopicServiceService, handlers as never)],
      descriptorSetPath,
    });
    client = new ReflectionClient(`127.0.0.1:${await server.listen("127.0.0.1:0")}`);
  });
  after(async () => {
    client.close();
    await server.stop(500);
  });

  it("lists what the server serves: its services, health and reflection", async () => {
    const answer = await client.one({ host: "h", list_services: "*" });
    assert.equal(answer.valid_host, "h");
    assert.deepEqual(answer.list_services_response?.service.map((s) => s.name).sort(), [
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
      "herald.topic.v1.TopicService",
    ]);
  });

  it("gives every listed service's file with all its imports, fully qualified and resolvable", async () => {
    const names = (await client.one({ list_services: "" })).list_services_response!.service.map((s) => s.name);
    const answers = await client.ask(...names.map((name) => ({ file_containing_symbol: name })));
    assert.equal(answers.length, names.length);
    for (const [i, answer] of answers.entries()) {
      const files = decode(answer);
      assert.ok(files.length > 0, `${names[i]}: ${JSON.stringify(answer.error_response)}`);
      // what a client does with the answer: build the descriptor from these files alone
      const registry = createFileRegistry(files[0]!, (name) => files.find((f) => f.name === name));
      assert.ok(registry.getService(names[i]!), names[i]);
      assert.deepEqual(typeRefs(files).filter((t) => !t.startsWith(".")), []);
    }
    const topicFiles = decode(answers[names.indexOf("herald.topic.v1.TopicService")]!).map((f) => f.name);
    assert.deepEqual(topicFiles, ["herald/topic/v1/topic.proto", "herald/common/v1/common.proto", "google/protobuf/timestamp.proto"]);
  });

  it("names the health file and its map entry as protoc does", async () => {
    const [health] = decode(await client.one({ file_by_filename: "grpc/health/v1/health.proto" }));
    assert.equal(health?.name, "grpc/health/v1/health.proto");
    assert.equal(health?.syntax, "proto3");
    const list = health?.messageType.find((m) => m.name === "HealthListResponse");
    assert.equal(list?.nestedType[0]?.name, "StatusesEntry");
    assert.equal(list?.field[0]?.typeName, ".grpc.health.v1.HealthListResponse.StatusesEntry");
    // proto2 presence: an empty extendee or type name that is SET is an error for Go's protodesc
    const fields = health!.messageType.flatMap((m) => [...m.field, ...m.nestedType.flatMap((n) => n.field)]);
    assert.deepEqual(fields.filter((f) => isFieldSet(f, FieldDescriptorProtoSchema.field.extendee)).map((f) => f.name), []);
    assert.deepEqual(fields.filter((f) => !f.typeName && isFieldSet(f, FieldDescriptorProtoSchema.field.typeName)).map((f) => f.name), []);
  });

  it("finds methods, fields, enums and enum values, with or without a leading dot", async () => {
    for (const symbol of [
      "herald.topic.v1.TopicService.StreamRecipients",
      ".herald.common.v1.Device",
      "herald.common.v1.Device.token",
      "herald.common.v1.Provider",
      "herald.common.v1.PROVIDER_APNS",
    ]) {
      const files = decode(await client.one({ file_containing_symbol: symbol }));
      assert.ok(files[0]?.name.startsWith("herald/"), symbol);
    }
  });

  it("answers NOT_FOUND for what it does not know, and the stream goes on", async () => {
    const answers = await client.ask(
      { file_containing_symbol: "herald.nope.v1.Nope" },
      { file_by_filename: "nope.proto" },
      { file_containing_extension: { containing_type: "herald.common.v1.Device", extension_number: 99 } },
      { all_extension_numbers_of_type: "herald.nope.v1.Nope" },
      { list_services: "" },
    );
    assert.deepEqual(
      answers.slice(0, 4).map((a) => a.error_response?.error_code),
      [grpc.status.NOT_FOUND, grpc.status.NOT_FOUND, grpc.status.NOT_FOUND, grpc.status.NOT_FOUND],
    );
    assert.ok(answers[4]?.list_services_response);
    assert.deepEqual((await client.one({ all_extension_numbers_of_type: "herald.common.v1.Device" })).all_extension_numbers_response, {
      base_type_name: "herald.common.v1.Device",
      extension_number: [],
    });
  });
});

describe("ServerReflection with extensions, over v1alpha", () => {
  let server: grpc.Server;
  let client: ReflectionClient;

  before(async () => {
    // Herald's protos declare no extensions: add a proto2 file that extends a message of its
    // own with a Herald type, so the extension lookups have something to find.
    const set = fromBinary(FileDescriptorSetSchema, readFileSync(descriptorSetPath));
    const optional = FieldDescriptorProto_Label.OPTIONAL;
    set.file.push(
      create(FileDescriptorProtoSchema, {
        name: "test/ext.proto",
        package: "test.ext",
        syntax: "proto2",
        dependency: ["herald/common/v1/common.proto"],
        messageType: [
          {
            name: "Base",
            field: [{ name: "id", number: 1, label: optional, type: FieldDescriptorProto_Type.STRING, jsonName: "id" }],
            extensionRange: [{ start: 100, end: 200 }],
          },
        ],
        extension: [
          { name: "device", number: 150, label: optional, type: FieldDescriptorProto_Type.MESSAGE, typeName: ".herald.common.v1.Device", extendee: ".test.ext.Base", jsonName: "device" },
          { name: "note", number: 101, label: optional, type: FieldDescriptorProto_Type.STRING, extendee: ".test.ext.Base", jsonName: "note" },
        ],
      }),
    );
    server = new grpc.Server();
    new ServerReflection(toBinary(FileDescriptorSetSchema, set), []).addToServer(server);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    client = new ReflectionClient(`127.0.0.1:${port}`, "v1alpha");
  });
  after(() => {
    client.close();
    server.forceShutdown();
  });

  it("lists only reflection when the server names nothing else", async () => {
    const names = (await client.one({ list_services: "*" })).list_services_response?.service.map((s) => s.name);
    assert.deepEqual(names, ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]);
  });

  it("finds the file declaring an extension, with its imports", async () => {
    const files = decode(await client.one({ file_containing_extension: { containing_type: "test.ext.Base", extension_number: 150 } }));
    assert.deepEqual(
      files.map((f) => f.name),
      ["test/ext.proto", "herald/common/v1/common.proto", "google/protobuf/timestamp.proto"],
    );
    assert.equal(decode(await client.one({ file_containing_symbol: "test.ext.device" }))[0]?.name, "test/ext.proto");
  });

  it("lists the extension numbers of a type", async () => {
    assert.deepEqual((await client.one({ all_extension_numbers_of_type: ".test.ext.Base" })).all_extension_numbers_response, {
      base_type_name: "test.ext.Base",
      extension_number: [101, 150],
    });
  });
});

describe("ServerReflection checks its input", () => {
  it("refuses a descriptor set that lacks an import", () => {
    const set = fromBinary(FileDescriptorSetSchema, readFileSync(descriptorSetPath));
    set.file = set.file.filter((f) => f.name !== "google/protobuf/timestamp.proto");
    assert.throws(() => new ServerReflection(toBinary(FileDescriptorSetSchema, set), []), /timestamp/);
  });

  it("refuses to list a service it has no descriptor for", () => {
    assert.throws(() => new ServerReflection(readFileSync(descriptorSetPath), ["herald.nope.v1.NopeService"]), /herald\.nope\.v1\.NopeService/);
  });
});
