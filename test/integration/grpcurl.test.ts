import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { startEmbedded, type EmbeddedApp, type EmbeddedServer } from "@herald/cli";
import { createLogger } from "@herald/platform";
import { requireEnv } from "@herald/testing";
import { apnsToken } from "./fixtures.js";

const run = promisify(execFile);
const samples = fileURLToPath(new URL("../../deploy/samples", import.meta.url));
const readme = readFileSync(fileURLToPath(new URL("../../README.md", import.meta.url)), "utf8");

const HERALD_SERVICES = ["herald.dispatch.v1.DispatchService", "herald.registry.v1.AppService", "herald.registry.v1.RegistryService", "herald.topic.v1.TopicService"];

// The real grpcurl (Go, protoreflect) against the embedded server: server reflection must give
// it complete descriptors, or it resolves nothing (issue 14: "cannot resolve type
// *.common.v1.Provider"). What a user types, including the README's commands as written.
describe("grpcurl against the embedded server", () => {
  let grpcurl: string;
  let server: EmbeddedServer;
  let demo: EmbeddedApp;

  before(async () => {
    // in the hook, so a missing binary fails every test below rather than none
    grpcurl = requireEnv("HERALD_GRPCURL");
    server = await startEmbedded({ host: "127.0.0.1", port: 0, appsDir: samples, devFile: false, logger: createLogger({ service: "t", level: "silent" }) });
    demo = server.apps.find((a) => a.id === "demo")!;
  });
  after(() => server?.stop());

  // grpcurl's exit status and output; -plaintext and the address as every call needs them.
  const grpc = async (args: string[], { key, data }: { key?: string; data?: unknown } = {}) => {
    const argv = ["-plaintext", ...(key ? ["-H", `authorization: Bearer ${key}`] : []), ...(data === undefined ? [] : ["-d", JSON.stringify(data)])];
    const target = [server.address, ...args];
    try {
      const { stdout } = await run(grpcurl, [...argv, ...target], { timeout: 30_000 });
      return stdout;
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; code?: number };
      assert.fail(`grpcurl ${[...argv, ...target].join(" ")} exited ${e.code}:\n${e.stderr}${e.stdout}`);
    }
  };
  const json = async (method: string, key: string, data: unknown) => JSON.parse(await grpc([method], { key, data })) as Record<string, any>;

  it("lists the four Herald services, health and reflection", async () => {
    const listed = (await grpc(["list"])).trim().split("\n");
    for (const name of [...HERALD_SERVICES, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]) assert.ok(listed.includes(name), `${name} not in:\n${listed.join("\n")}`);
  });

  it("describes every listed service and the messages using common.v1 types", async () => {
    const listed = (await grpc(["list"])).trim().split("\n");
    for (const name of listed) {
      const described = await grpc(["describe", name]);
      assert.match(described, new RegExp(`^${name.replace(/\./g, "\\.")} is a service:`), described);
    }
    const device = await grpc(["describe", "herald.common.v1.Device"]);
    assert.match(device, /herald\.common\.v1\.Device is a message:/);
    assert.match(device, /\.herald\.common\.v1\.Provider provider = /);
    assert.match(device, /\.google\.protobuf\.Timestamp /);
    const request = await grpc(["describe", "herald.registry.v1.RegisterDeviceRequest"]);
    assert.match(request, /\.herald\.common\.v1\.Provider provider = /);
    // a method and an enum, as `describe` accepts any symbol
    assert.match(await grpc(["describe", "herald.dispatch.v1.DispatchService.Publish"]), /rpc Publish \( \.herald\.dispatch\.v1\.PublishRequest \)/);
    assert.match(await grpc(["describe", "herald.common.v1.Provider"]), /is an enum:[\s\S]*PROVIDER_APNS = /);
  });

  it("calls every Herald service with the key it needs", async () => {
    const token = apnsToken();
    const registered = await json("herald.registry.v1.RegistryService/RegisterDevice", demo.serverKey, { provider: "PROVIDER_APNS", platform: "PLATFORM_IOS", token, topics: ["news"] });
    assert.equal(registered.created, true);
    assert.equal(registered.device.provider, "PROVIDER_APNS");
    const id = registered.device.id as string;

    const topics = await json("herald.topic.v1.TopicService/ListDeviceTopics", demo.serverKey, { device_ids: [id] });
    assert.deepEqual(topics.items.map((t: { topic: string }) => t.topic), ["news"], JSON.stringify(topics));

    const published = await json("herald.dispatch.v1.DispatchService/Publish", demo.serverKey, {
      recipients: { device_ids: { values: [id] } },
      notification: { alert: { title: "hello from grpcurl" } },
    });
    assert.ok(published.id, JSON.stringify(published));

    const apps = await json("herald.registry.v1.AppService/ListApps", server.adminKey, {});
    assert.ok(apps.apps.some((a: { id: string }) => a.id === "demo"), JSON.stringify(apps));
  });

  it("checks health without a key", async () => {
    assert.deepEqual(JSON.parse(await grpc(["grpc.health.v1.Health/Check"])), { status: "SERVING" });
    assert.deepEqual(JSON.parse(await grpc(["grpc.health.v1.Health/Check"], { data: { service: "herald.registry.v1.RegistryService" } })), { status: "SERVING" });
  });

  it("runs the README's grpcurl commands as written", async () => {
    const block = /With grpcurl[^\n]*\n+```sh\n([\s\S]*?)\n```/.exec(readme)?.[1];
    assert.ok(block, "README: no ```sh block after 'With grpcurl'");
    assert.match(block, /127\.0\.0\.1:50051/);
    assert.match(block, /a3f0c2\.\.\.64 hex\.\.\./);
    // only the placeholders a reader fills in change: the address, the key, the device token
    const script = block.replaceAll("127.0.0.1:50051", server.address).replaceAll("a3f0c2...64 hex...", apnsToken());
    const env = { ...process.env, PATH: `${dirname(grpcurl)}:${process.env.PATH}`, SERVER_KEY: demo.serverKey };
    let out: string;
    try {
      out = (await run("bash", ["-euo", "pipefail", "-c", script], { env, timeout: 60_000 })).stdout;
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string };
      assert.fail(`the README's grpcurl block failed:\n${script}\n--- stderr\n${e.stderr}\n--- stdout\n${e.stdout}`);
    }
    for (const name of HERALD_SERVICES) assert.match(out, new RegExp(`^${name.replace(/\./g, "\\.")}$`, "m"));
    assert.match(out, /herald\.registry\.v1\.RegistryService is a service:/);
    assert.match(out, /"status": "SERVING"/);
    assert.match(out, /"created": true/);
  });
});
