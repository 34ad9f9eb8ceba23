import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { request as httpRequest } from "node:http";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { startEmbedded, type EmbeddedApp, type EmbeddedServer } from "@herald/cli";
import { createLogger } from "@herald/platform";
import { apnsToken, fcmToken } from "./fixtures.js";

const samples = fileURLToPath(new URL("../../deploy/samples", import.meta.url));

// The HTTP gateway in front of the embedded server: the JSON mapping of every RPC, its errors
// and limits, NDJSON streams and the OpenAPI document.
describe("HTTP gateway", () => {
  let server: EmbeddedServer;
  let demo: EmbeddedApp;
  let news: EmbeddedApp;

  before(async () => {
    server = await startEmbedded({ port: 0, httpPort: 0, appsDir: samples, devFile: false, logger: createLogger({ service: "t", level: "silent" }) });
    demo = server.apps.find((a) => a.id === "demo")!;
    news = server.apps.find((a) => a.id === "news")!;
  });
  after(() => server?.stop());

  // key null: no authorization header.
  const call = async (path: string, body: unknown, key: string | null = demo.serverKey, headers: Record<string, string> = {}) => {
    const res = await fetch(`${server.httpUrl}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, text, json: text ? (JSON.parse(text) as Record<string, any>) : undefined };
  };
  const rpc = (service: string, method: string) => `/v1/herald.${service}/${method}`;
  const register = rpc("registry.v1.RegistryService", "RegisterDevice");

  it("maps an RPC to POST /v1/<service>/<method> with proto3 JSON both ways", async () => {
    const token = fcmToken();
    const created = await call(register, { provider: "PROVIDER_FCM", platform: "PLATFORM_ANDROID", token, topics: ["news"], tags: { team: "red" } });
    assert.equal(created.status, 200, created.text);
    assert.equal(created.headers.get("content-type"), "application/json; charset=utf-8");
    const device = created.json!.device;
    assert.equal(device.provider, "PROVIDER_FCM");
    assert.deepEqual(device.topics, ["news"]);
    assert.match(device.createdAt, /^\d{4}-\d\d-\d\dT/);
    assert.equal(created.json!.created, true);
    // Proto field names are accepted too; zero values are always present in answers.
    const again = await call(register, { provider: "PROVIDER_FCM", platform: "PLATFORM_ANDROID", token, topics: ["news"], tags: { team: "red" } });
    assert.equal(again.json!.created, false);
    assert.equal(again.json!.device.id, device.id);
    const listed = await call(rpc("registry.v1.RegistryService", "ListDevices"), { filter: { ids: [device.id] }, include_topics: true });
    assert.equal(listed.status, 200, listed.text);
    assert.deepEqual(listed.json!.devices.map((d: { id: string }) => d.id), [device.id]);
    assert.equal(listed.json!.hasMore, false);
  });

  it("refuses bad input with a 400 naming the field, and writes nothing", async () => {
    const unknown = await call(register, { provider: "PROVIDER_FCM", platform: "PLATFORM_ANDROID", tokn: "x" });
    assert.equal(unknown.status, 400);
    assert.deepEqual(unknown.json, { error: "INVALID_ARGUMENT", description: 'tokn: cannot decode message herald.registry.v1.RegisterDeviceRequest from JSON: key "tokn" is unknown', field: "tokn" });
    const badEnum = await call(register, { provider: "PROVIDER_SMS", platform: "PLATFORM_ANDROID", token: "x" });
    assert.equal(badEnum.status, 400);
    assert.equal(badEnum.json!.field, "provider");
    assert.match(badEnum.json!.description, /^provider: .*PROVIDER_SMS/);
    const wrongType = await call(register, { provider: "PROVIDER_FCM", platform: "PLATFORM_ANDROID", token: 42 });
    assert.equal(wrongType.status, 400);
    assert.equal(wrongType.json!.field, "token");
    // The service's own validation comes back with its reason and field.
    const apns = await call(register, { provider: "PROVIDER_APNS", platform: "PLATFORM_IOS", token: "not-hex" });
    assert.equal(apns.status, 400);
    assert.equal(apns.json!.error, "INVALID_TOKEN");
    assert.equal(apns.json!.field, "token");
    // A refused publish leaves no publish behind.
    const publish = await call(rpc("dispatch.v1.DispatchService", "Publish"), { recipients: { topics: { values: [] } }, notification: { alert: { title: "x" } } });
    assert.equal(publish.status, 400, publish.text);
    const publishes = await call(rpc("dispatch.v1.DispatchService", "ListPublishes"), {});
    assert.deepEqual(publishes.json!.publishes, []);
  });

  it("refuses what is not JSON, too large, unknown or of the wrong method, in JSON", async () => {
    const notJson = await call(register, "{not json");
    assert.equal(notJson.status, 400);
    assert.equal(notJson.json!.error, "INVALID_JSON");
    const array = await call(register, "[1,2]");
    assert.equal(array.status, 400);
    assert.match(array.json!.description, /must be a JSON object/);
    const text = await call(register, "token=x", demo.serverKey, { "content-type": "application/x-www-form-urlencoded" });
    assert.equal(text.status, 415);
    assert.equal(text.json!.error, "UNSUPPORTED_MEDIA_TYPE");

    const huge = await call(register, { provider: "PROVIDER_FCM", platform: "PLATFORM_ANDROID", token: "x".repeat(1024 * 1024) });
    assert.equal(huge.status, 413);
    assert.equal(huge.json!.error, "PAYLOAD_TOO_LARGE");
    // Without a content-length (chunked), the limit holds while reading.
    const chunked = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(`${server.httpUrl}${register}`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${demo.serverKey}`, "transfer-encoding": "chunked" } }, (res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode!, body }));
      });
      req.on("error", reject);
      for (let i = 0; i < 20; i++) req.write("x".repeat(64 * 1024));
      req.end();
    });
    assert.equal(chunked.status, 413);
    assert.equal(JSON.parse(chunked.body).error, "PAYLOAD_TOO_LARGE");

    const missing = await call("/v1/herald.registry.v1.RegistryService/Nope", {});
    assert.equal(missing.status, 404);
    assert.equal(missing.json!.error, "NOT_FOUND");
    const get = await fetch(`${server.httpUrl}${register}`);
    assert.equal(get.status, 405);
    assert.equal(get.headers.get("allow"), "POST");
    assert.equal(((await get.json()) as { error: string }).error, "METHOD_NOT_ALLOWED");
  });

  it("authenticates with the services' rules: no key 401, a CLIENT key 403 on server calls, another app's device 404", async () => {
    const none = await call(register, { provider: "PROVIDER_FCM", platform: "PLATFORM_ANDROID", token: fcmToken() }, null);
    assert.equal(none.status, 401);
    assert.equal(none.json!.error, "MISSING_API_KEY");
    const wrong = await call(register, {}, "hk_s_demo_nope");
    assert.equal(wrong.status, 401);
    assert.equal(wrong.json!.error, "UNKNOWN_API_KEY");
    const client = await call(rpc("dispatch.v1.DispatchService", "ListPublishes"), {}, demo.clientKey);
    assert.equal(client.status, 403);
    assert.equal(client.json!.error, "SERVER_KEY_REQUIRED");
    const mine = await call(register, { provider: "PROVIDER_APNS", platform: "PLATFORM_IOS", token: apnsToken() });
    const theirs = await call(rpc("registry.v1.RegistryService", "GetDevice"), { id: mine.json!.device.id }, news.serverKey);
    assert.equal(theirs.status, 404);
    assert.equal(theirs.json!.error, "DEVICE_NOT_FOUND");
    const named = await call(rpc("registry.v1.RegistryService", "GetDevice"), { id: mine.json!.device.id }, news.serverKey, { "x-herald-app": "demo" });
    assert.equal(named.status, 403);
    assert.equal(named.json!.error, "WRONG_APP");
    // The admin key names the app.
    const admin = await call(rpc("registry.v1.RegistryService", "GetDevice"), { id: mine.json!.device.id }, server.adminKey, { "x-herald-app": "demo" });
    assert.equal(admin.status, 200);
  });

  it("refuses header values gRPC metadata cannot carry with a 4xx naming the header, not a 500", async () => {
    const path = rpc("registry.v1.RegistryService", "ListDevices");
    for (const app of ["d\u00e9mo", "de mo", "Demo"]) {
      const named = await call(path, {}, server.adminKey, { "x-herald-app": app });
      assert.deepEqual([named.status, named.json!.error, named.json!.field], [400, "INVALID_APP_ID", "x-herald-app"], app);
    }
    const key = await call(path, {}, "hk_s_d\u00e9mo");
    assert.deepEqual([key.status, key.json!.error, key.json!.field], [401, "UNKNOWN_API_KEY", "authorization"]);
  });

  it("refuses payloads nested past 30 levels with 400 naming the field, and reads back those at the limit", async () => {
    const publish = rpc("dispatch.v1.DispatchService", "Publish");
    const nested = (levels: number) => `${'{"a":'.repeat(levels - 1)}{}${"}".repeat(levels - 1)}`;
    const body = (payload: string) => `{"recipients":{"topics":{"values":["deep"]}},"notification":{"apns":{"payload":${payload}}}}`;
    const ok = await call(publish, body(nested(30)));
    assert.equal(ok.status, 200, ok.text);
    // The deepest reader of a payload: the publish read back.
    const read = await call(rpc("dispatch.v1.DispatchService", "GetPublish"), { id: ok.json!.id });
    assert.equal(read.status, 200, read.text);
    for (const levels of [31, 32, 40]) {
      const deep = await call(publish, body(nested(levels)));
      assert.deepEqual([deep.status, deep.json!.error, deep.json!.field], [400, "PAYLOAD_TOO_DEEP", "notification.apns.payload"], `${levels} levels`);
    }
    const batch = await call(rpc("dispatch.v1.DispatchService", "PublishBatch"), `{"requests":[${body("{}")},${body(nested(31))}]}`);
    assert.deepEqual([batch.status, batch.json!.field], [400, "requests[1].notification.apns.payload"]);
    // Past the stack: the router's limit, before anything recursive.
    const huge = await call(publish, body(nested(100_000)));
    assert.deepEqual([huge.status, huge.json!.error], [400, "NESTING_TOO_DEEP"]);
    assert.match(huge.json!.field, /^notification\.apns\.payload\.a\.a/);
  });

  it("streams WatchPublish as NDJSON until the publish is done", async () => {
    await call(register, { provider: "PROVIDER_FCM", platform: "PLATFORM_ANDROID", token: fcmToken(), topics: ["http-stream"] });
    const published = await call(rpc("dispatch.v1.DispatchService", "Publish"), { recipients: { topics: { values: ["http-stream"] } }, notification: { alert: { title: "Hi", body: "there" } } });
    assert.equal(published.status, 200, published.text);
    const watch = await call(rpc("dispatch.v1.DispatchService", "WatchPublish"), { id: published.json!.id });
    assert.equal(watch.status, 200);
    assert.equal(watch.headers.get("content-type"), "application/x-ndjson; charset=utf-8");
    const lines = watch.text.trim().split("\n").map((l) => JSON.parse(l) as { publish: { state: string; counts: { sent: string } } });
    assert.ok(lines.length >= 1);
    const last = lines.at(-1)!.publish;
    assert.equal(last.state, "PUBLISH_STATE_DONE");
    // int64 counts are strings in proto3 JSON.
    assert.equal(last.counts.sent, "1");
    // A refused stream is a plain error response.
    const missing = await call(rpc("dispatch.v1.DispatchService", "WatchPublish"), { id: "nope" });
    assert.equal(missing.status, 404);
    assert.equal(missing.json!.error, "PUBLISH_NOT_FOUND");
  });

  it("accepts Pusher-style signed requests once, within five minutes, and refuses forged, stale and replayed ones", async () => {
    const path = rpc("registry.v1.RegistryService", "RegisterDevice");
    const signed = (body: string, o: { secret?: string; app?: string; timestamp?: number; target?: string } = {}) => {
      const timestamp = String(o.timestamp ?? Math.floor(Date.now() / 1000));
      const digest = createHash("sha256").update(body).digest("hex");
      const toSign = ["v1", timestamp, "POST", o.target ?? path, digest].join("\n");
      const signature = createHmac("sha256", o.secret ?? demo.userTokenSecret).update(toSign).digest("hex");
      return { "x-herald-app": o.app ?? "demo", "x-herald-timestamp": timestamp, "x-herald-signature": `v1=${signature}` };
    };
    const body = JSON.stringify({ provider: "PROVIDER_FCM", platform: "PLATFORM_ANDROID", token: fcmToken() });
    const headers = signed(body);
    const ok = await call(path, body, null, headers);
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json!.created, true, "the signed request acted for the app, with SERVER rights");
    const replay = await call(path, body, null, headers);
    assert.deepEqual([replay.status, replay.json!.error], [401, "REPLAYED_SIGNATURE"]);
    const tampered = await call(path, body.replace("PLATFORM_ANDROID", "PLATFORM_WEB"), null, signed(body));
    assert.deepEqual([tampered.status, tampered.json!.error], [401, "BAD_SIGNATURE"]);
    const otherPath = await call(rpc("registry.v1.RegistryService", "ListDevices"), body, null, signed(body));
    assert.equal(otherPath.json!.error, "BAD_SIGNATURE", "the signature covers the path");
    const stale = await call(path, body, null, signed(body, { timestamp: Math.floor(Date.now() / 1000) - 400 }));
    assert.deepEqual([stale.status, stale.json!.error], [401, "STALE_TIMESTAMP"]);
    const wrongApp = await call(path, body, null, signed(body, { secret: news.userTokenSecret }));
    assert.equal(wrongApp.json!.error, "BAD_SIGNATURE", "another app's secret");
    const malformed = await call(path, body, null, { ...signed(body), "x-herald-signature": "sha1=abc" });
    assert.deepEqual([malformed.status, malformed.json!.error, malformed.json!.field], [401, "MALFORMED_SIGNATURE", "x-herald-signature"]);
    const unnamed = await call(path, body, null, { ...signed(body), "x-herald-app": "" });
    assert.equal(unnamed.status, 401);
  });

  it("serves an OpenAPI 3.1 document of every route, every reference resolving", async () => {
    const res = await fetch(`${server.httpUrl}/openapi.json`);
    assert.equal(res.status, 200);
    const doc = (await res.json()) as { openapi: string; paths: Record<string, Record<string, { requestBody?: unknown; responses: Record<string, unknown>; description?: string }>>; components: { schemas: Record<string, unknown> } };
    assert.equal(doc.openapi, "3.1.0");
    for (const path of [register, rpc("dispatch.v1.DispatchService", "Publish"), rpc("topic.v1.TopicService", "UpdateUserTopics"), rpc("registry.v1.AppService", "CreateApp")]) {
      assert.ok(doc.paths[path]?.post, `${path} is documented`);
    }
    assert.match(doc.paths[register]!.post!.description ?? "", /Full-state write keyed by \(provider, token\)/, "descriptions come from the .proto comments");
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/(schemas|responses)\/([^"]+)"/g)];
    assert.ok(refs.length > 50);
    for (const [, kind, name] of refs) assert.ok((doc.components as Record<string, Record<string, unknown>>)[kind!]![name!], `${kind}/${name} resolves`);
    // The compatibility APIs are documented too, with their path parameters and schemes.
    const users = doc.paths["/user_api/v1/instances/{instance}/users/{user}"]?.delete as unknown as { parameters: Array<{ name: string }>; tags: string[] } | undefined;
    assert.deepEqual(users?.parameters.map((p) => p.name), ["instance", "user"]);
    assert.deepEqual(users?.tags, ["PusherBeams"]);
    assert.deepEqual((doc.paths["/device_api/v1/instances/{instance}/devices/web"]?.post as unknown as { security: unknown[] }).security, [], "the Beams device API is public");
    assert.deepEqual((doc.paths["/send_notification"]?.post as unknown as { security: unknown[] }).security, [{ basic: [] }]);
    assert.ok(doc.paths["/push/{appKey}/register-device"]?.post, "Kinvey");
    const request = doc.components.schemas["herald.registry.v1.RegisterDeviceRequest"] as { properties: Record<string, { $ref?: string }> };
    assert.equal(request.properties.provider?.$ref, "#/components/schemas/herald.common.v1.Provider");
    assert.deepEqual((doc.components.schemas["herald.common.v1.Provider"] as { enum: string[] }).enum.slice(0, 2), ["PROVIDER_UNSPECIFIED", "PROVIDER_APNS"]);
  });
});
