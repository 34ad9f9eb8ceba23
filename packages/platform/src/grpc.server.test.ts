import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { descriptorSetPath, topic } from "@herald/proto";
import { ApiKeyAuthenticator, hashApiKey } from "./auth.keys.js";
import { invalidArgument } from "./errors.js";
import { createClient } from "./grpc.client.js";
import { errorReason } from "./grpc.status.js";
import { GrpcServer } from "./grpc.server.js";
import { bindService } from "./grpc.types.js";
import { createLogger } from "./log.logger.js";

// The server adapter on a real socket: auth and roles, error details, deadlines, health, reflection.
describe("GrpcServer", () => {
  let server: GrpcServer;
  let address: string;
  const keys: Record<string, { app: string; role: "server" | "client"; keyId: string; revoked: boolean }> = {
    [hashApiKey("server-key")]: { app: "a1", role: "server", keyId: "k1", revoked: false },
    [hashApiKey("client-key")]: { app: "a1", role: "client", keyId: "k2", revoked: false },
  };
  const seen: Array<{ app: string; method: string }> = [];
  const unimplemented = async () => {
    throw new Error("boom: internal detail");
  };

  before(async () => {
    const impl = {
      updateDeviceTopics: { access: "client" as const, handle: async (req: topic.UpdateDeviceTopicsRequest, ctx: { app: string; method: string }) => {
        seen.push({ app: ctx.app, method: ctx.method });
        if (req.deviceId === "bad") throw invalidArgument("device_id", "is bad", "BAD_DEVICE");
        // Field names and messages quote the request: any string a client can send.
        if (req.deviceId.startsWith("hostile:")) throw invalidArgument(`meta.${req.deviceId.slice(8)}`, `"${req.deviceId.slice(8, 9)}" is bad`, "INVALID_KEY");
        if (req.deviceId === "slow") await new Promise((r) => setTimeout(r, 2_000));
        return { topics: req.topics };
      } },
      listDeviceTopics: { access: "server" as const, handle: unimplemented },
      updateUserTopics: { access: "admin" as const, handle: async () => ({ topics: [], devicesUpdated: 0 }) },
      listUserTopics: { access: "server" as const, handle: unimplemented },
      getTopicStats: { access: "server" as const, handle: unimplemented },
      listTopics: { access: "server" as const, handle: unimplemented },
      listTopicUsers: { access: "server" as const, handle: unimplemented },
      streamRecipients: { access: "server" as const, handle: async (_req: unknown, _ctx: unknown, send: (r: topic.StreamRecipientsResponse) => Promise<void>) => {
        for (let i = 0; i < 3; i++) await send({ recipients: [{ deviceId: `d${i}`, provider: 0, platform: 0, token: "", user: "", meta: {}, locale: "", timezone: "" }] });
      } },
    };
    server = new GrpcServer({
      logger: createLogger({ service: "t", level: "silent" }),
      authenticator: new ApiKeyAuthenticator({ adminKey: "admin-key-admin-key-admin-key", lookup: async (h) => keys[h] ?? null }),
      services: [bindService("herald.topic.v1.TopicService", topic.TopicServiceService, impl as never)],
      descriptorSetPath,
      maxUnaryMs: 500,
    });
    address = `127.0.0.1:${await server.listen("127.0.0.1:0")}`;
  });
  after(() => server.stop(500));

  const client = (apiKey?: string) => createClient(topic.TopicServiceService, topic, address, apiKey ? { apiKey } : {});
  const fail = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (err) {
      return { ...errorReason(err), message: (err as Error).message, err: err as grpc.ServiceError };
    }
    assert.fail("expected the call to fail");
  };

  it("scopes a call to the key's app and enforces roles", async () => {
    const res = await client("client-key").updateDeviceTopics({ deviceId: "d", topics: ["x"] });
    assert.deepEqual(res.topics, ["x"]);
    assert.deepEqual(seen.at(-1), { app: "a1", method: "herald.topic.v1.TopicService/UpdateDeviceTopics" });
    assert.equal((await fail(client("client-key").listDeviceTopics({})))?.reason, "SERVER_KEY_REQUIRED");
    assert.equal((await fail(client("server-key").updateUserTopics({})))?.reason, "ADMIN_KEY_REQUIRED");
    assert.equal((await fail(client().updateDeviceTopics({})))?.code, grpc.status.UNAUTHENTICATED);
    assert.equal((await fail(client("nope").updateDeviceTopics({})))?.reason, "UNKNOWN_API_KEY");
  });

  it("lets the admin act on an app, or on an app with a CLIENT key's rights only", async () => {
    const admin = client("admin-key-admin-key-admin-key");
    assert.equal((await fail(admin.updateDeviceTopics({ deviceId: "d" })))?.reason, "APP_REQUIRED");
    await admin.updateDeviceTopics({ deviceId: "d", topics: ["y"] }, { app: "a2" });
    assert.deepEqual(seen.at(-1), { app: "a2", method: "herald.topic.v1.TopicService/UpdateDeviceTopics" });
    await admin.updateDeviceTopics({ deviceId: "d" }, { app: "a2", role: "client" });
    assert.equal((await fail(admin.listDeviceTopics({}, { app: "a2", role: "client" })))?.reason, "SERVER_KEY_REQUIRED");
  });

  it("maps HeraldError to a status with reason, field and google.rpc.Status details", async () => {
    const e = await fail(client("server-key").updateDeviceTopics({ deviceId: "bad" }));
    assert.equal(e?.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(e?.reason, "BAD_DEVICE");
    assert.equal(e?.field, "device_id");
    assert.match(e?.message ?? "", /device_id: is bad/);
    const details = e?.err.metadata.get("grpc-status-details-bin")[0] as Buffer;
    assert.ok(details.includes(Buffer.from("type.googleapis.com/google.rpc.ErrorInfo")));
    assert.ok(details.includes(Buffer.from("BAD_DEVICE")));
  });

  it("answers a refusal whose field or message holds any character, and keeps serving", async () => {
    // Accents, NUL, a newline, "%", an emoji, a lone surrogate (the message quotes it) and U+FFFF.
    for (const key of ["prénom", "a\u0000b", "x\ny", "100%", "🎉", "\ud83c", "\uffff", "k ", " k", "a b"]) {
      const e = await fail(client("server-key").updateDeviceTopics({ deviceId: `hostile:${key}` }));
      assert.equal(e?.code, grpc.status.INVALID_ARGUMENT, key);
      assert.equal(e?.reason, "INVALID_KEY");
      // Protobuf strings carry no lone surrogates: the client sent U+FFFD for it.
      assert.equal(e?.field, `meta.${key === "\ud83c" ? "\ufffd" : key}`);
    }
    // A megabyte quoted into the field and message is clipped: the trailers stay small and the
    // connection keeps serving.
    const huge = await fail(client("server-key").updateDeviceTopics({ deviceId: `hostile:${"\u0000".repeat(1_000_000)}` }));
    assert.equal(huge?.reason, "INVALID_KEY");
    assert.ok((huge?.field?.length ?? 0) <= 300 && (huge?.message.length ?? 0) <= 1100, `${huge?.field?.length} ${huge?.message.length}`);
    assert.deepEqual((await client("client-key").updateDeviceTopics({ deviceId: "d", topics: ["still"] })).topics, ["still"]);
  });

  it("refuses a request it cannot decode with INVALID_ARGUMENT, not INTERNAL", async () => {
    const raw = new grpc.Client(address, grpc.credentials.createInsecure());
    const metadata = new grpc.Metadata();
    metadata.set("authorization", "Bearer client-key");
    // Field 1 as a length-delimited string that claims more bytes than follow.
    const garbage = Buffer.from([0x0a, 0x7f, 0x41]);
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      raw.makeUnaryRequest("/herald.topic.v1.TopicService/UpdateDeviceTopics", (b: Buffer) => b, (b: Buffer) => b, garbage, metadata, (e) => resolve(e!)),
    );
    raw.close();
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT, err.message);
    assert.deepEqual({ ...errorReason(err), code: undefined }, { code: undefined, reason: "MALFORMED_REQUEST", field: "request" });
  });

  it("hides internal errors behind INTERNAL", async () => {
    const e = await fail(client("server-key").listTopics({}));
    assert.equal(e?.code, grpc.status.INTERNAL);
    assert.doesNotMatch(e?.message ?? "", /internal detail/);
  });

  it("enforces the server's maximum unary duration", async () => {
    const e = await fail(client("server-key").updateDeviceTopics({ deviceId: "slow" }));
    assert.equal(e?.code, grpc.status.DEADLINE_EXCEEDED);
  });

  it("streams server responses", async () => {
    const got: string[] = [];
    for await (const r of client("server-key").streamRecipients({})) got.push(r.recipients[0]!.deviceId);
    assert.deepEqual(got, ["d0", "d1", "d2"]);
  });

  it("serves grpc.health.v1 and reflection without a key", async () => {
    const health = new grpc.Client(address, grpc.credentials.createInsecure());
    const check = (service: string) =>
      new Promise<Buffer>((resolve, reject) =>
        health.makeUnaryRequest("/grpc.health.v1.Health/Check", (b: Buffer) => b, (b: Buffer) => b,
          Buffer.concat([Buffer.from([10, service.length]), Buffer.from(service)]), (err, res) => (err ? reject(err) : resolve(res!))),
      );
    assert.deepEqual([...(await check("herald.topic.v1.TopicService"))], [8, 1], "SERVING");
    const reflection = health.makeBidiStreamRequest("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", (b: Buffer) => b, (b: Buffer) => b);
    const answer = new Promise<Buffer>((resolve) => reflection.once("data", resolve));
    reflection.write(Buffer.concat([Buffer.from([58, 0])]));
    const listed = (await answer).toString("latin1");
    reflection.end();
    health.close();
    assert.match(listed, /herald\.topic\.v1\.TopicService/);
  });
});
