import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import PushNotifications from "@pusher/push-notifications-server";
import { startEmbedded, startFakeProviders, type EmbeddedApp, type EmbeddedServer, type FakeProviders } from "@herald/cli";
import { createClient, createLogger } from "@herald/platform";
import { dispatch } from "@herald/proto";
import { apnsToken, fcmToken } from "./fixtures.js";

const samples = fileURLToPath(new URL("../../deploy/samples", import.meta.url));

// Pusher Beams compatibility: Pusher's own server SDK for Node (@pusher/push-notifications-server)
// pointed at the gateway, and the device API as the Beams client SDKs call it (paths and bodies
// from the Beams web SDK's source), through to the fake APNs, FCM and Web Push services.
describe("Pusher Beams compatibility", () => {
  let server: EmbeddedServer;
  let fakes: FakeProviders;
  let demo: EmbeddedApp;
  let beams: PushNotifications;
  let port: number;

  before(async () => {
    fakes = await startFakeProviders(createLogger({ service: "t", level: "silent" }), { record: true });
    server = await startEmbedded({ port: 0, httpPort: 0, appsDir: samples, devFile: false, providerFor: fakes.providerFor, tokenRules: fakes.tokenRules, logger: createLogger({ service: "t", level: "silent" }) });
    demo = server.apps.find((a) => a.id === "demo")!;
    port = Number(new URL(server.httpUrl!).port);
    // The SDK's own test hook: `endpoint` switches it to plain HTTP on that host, `port` sets the port.
    beams = new PushNotifications({ instanceId: "demo", secretKey: demo.userTokenSecret, endpoint: "127.0.0.1", port } as PushNotifications.Options);
  });
  after(async () => {
    await server?.stop();
    await fakes?.close();
  });

  const deviceApi = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(`${server.httpUrl}/device_api/v1/instances/demo${path}`, {
      method,
      headers: { ...(body !== undefined ? { "content-type": "application/json" } : {}), ...headers },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, json: text ? (JSON.parse(text) as Record<string, any>) : undefined, headers: res.headers };
  };
  const watch = async (id: string) => {
    const client = createClient(dispatch.DispatchServiceService, dispatch, server.address, { apiKey: demo.serverKey });
    try {
      let last: dispatch.Publish | undefined;
      for await (const u of client.watchPublish({ id })) last = u.publish;
      return last!;
    } finally {
      client.close();
    }
  };

  it("registers devices of every platform the way the Beams SDKs do, and keeps a known token's device", async () => {
    const token = apnsToken();
    const apns = await deviceApi("POST", "/devices/apns", { token, bundleIdentifier: "com.herald.demo", metadata: { sdkVersion: "4.0.0", iosVersion: "17.0" } });
    assert.equal(apns.status, 200);
    assert.deepEqual(apns.json!.initialInterestSet, []);
    assert.equal((await deviceApi("PUT", `/devices/apns/${apns.json!.id}/interests`, { interests: ["donuts", "coffee"] })).status, 200);
    const again = await deviceApi("POST", "/devices/apns", { token, bundleIdentifier: "com.herald.demo", metadata: { sdkVersion: "4.0.1" } });
    assert.equal(again.json!.id, apns.json!.id, "the same device");
    assert.deepEqual(again.json!.initialInterestSet.sort(), ["coffee", "donuts"]);
    const read = await deviceApi("GET", `/devices/apns/${apns.json!.id}`);
    assert.equal(read.json!.metadata.sdkVersion, "4.0.1");
    assert.equal(read.json!.metadata.iosVersion, "17.0");

    const fcm = await deviceApi("POST", "/devices/fcm", { token: fcmToken(), metadata: { sdkVersion: "1.9.0", androidVersion: "14" } });
    assert.equal(fcm.status, 200);
    const sub = fakes.subscribe();
    // The web SDK sends btoa(JSON.stringify(subscription)).
    const web = await deviceApi("POST", "/devices/web", { token: Buffer.from(sub.token).toString("base64"), metadata: { sdkVersion: "2.1.0" } }, { origin: "https://shop.example" });
    assert.equal(web.status, 200);
    assert.equal(web.headers.get("access-control-allow-origin"), "*");
    const preflight = await fetch(`${server.httpUrl}/device_api/v1/instances/demo/devices/web`, { method: "OPTIONS", headers: { origin: "https://shop.example", "access-control-request-method": "POST" } });
    assert.equal(preflight.status, 204);
    assert.match(preflight.headers.get("access-control-allow-headers") ?? "", /authorization/);
  });

  it("manages interests one by one and as a set, refusing private- and malformed ones", async () => {
    const { json } = await deviceApi("POST", "/devices/fcm", { token: fcmToken() });
    const id = json!.id as string;
    assert.equal((await deviceApi("POST", `/devices/fcm/${id}/interests/hello`)).status, 200);
    assert.equal((await deviceApi("POST", `/devices/fcm/${id}/interests/world`)).status, 200);
    assert.equal((await deviceApi("DELETE", `/devices/fcm/${id}/interests/hello`)).status, 200);
    assert.deepEqual((await deviceApi("GET", `/devices/fcm/${id}/interests`)).json!.interests, ["world"]);
    const bad = await deviceApi("POST", `/devices/fcm/${id}/interests/${encodeURIComponent("no spaces")}`);
    assert.equal(bad.status, 400);
    assert.equal(bad.json!.error, "Bad Request");
    assert.match(bad.json!.description, /forbidden character/);
    const secret = await deviceApi("PUT", `/devices/fcm/${id}/interests`, { interests: ["private-vip"] });
    assert.equal(secret.status, 403, "a device cannot join a private topic by itself");
    assert.deepEqual((await deviceApi("GET", `/devices/fcm/${id}/interests`)).json!.interests, ["world"], "nothing half-written");
    // Another platform's path, or an unknown device, is not found.
    assert.equal((await deviceApi("GET", `/devices/apns/${id}`)).status, 404);
    assert.deepEqual((await deviceApi("GET", "/devices/fcm/no-such-device")).json, { error: "Not Found", description: "Device not found" });
  });

  it("publishes to interests with the Beams SDK, mapping each platform's payload", async () => {
    const iphone = apnsToken();
    const android = fcmToken();
    const browser = fakes.subscribe();
    // Its own interest: the other cases' devices are in the same app.
    const interest = `donuts-${Date.now()}`;
    for (const [platform, token] of [["apns", iphone], ["fcm", android], ["web", Buffer.from(browser.token).toString("base64")]] as const) {
      const { json } = await deviceApi("POST", `/devices/${platform}`, { token, ...(platform === "apns" ? { bundleIdentifier: "com.herald.demo" } : {}) });
      assert.equal((await deviceApi("POST", `/devices/${platform}/${json!.id}/interests/${interest}`)).status, 200);
    }
    const { publishId } = await beams.publishToInterests([interest], {
      apns: { aps: { alert: { title: "Donuts", body: "Fresh out of the oven" } }, data: { shop: "42" }, collapse_id: "donuts" },
      fcm: { notification: { title: "Donuts", body: "Fresh out of the oven", icon: "donut" }, data: { shop: "42", count: 3 }, priority: "high", time_to_live: 600 },
      web: { notification: { title: "Donuts", body: "Fresh out of the oven", deep_link: "https://shop.example/donuts" }, data: { shop: "42" }, time_to_live: 600 },
    });
    assert.match(publishId, /^[0-9a-z]{10,}$/);
    const done = await watch(publishId);
    assert.equal(dispatch.publishStateToJSON(done.state), "PUBLISH_STATE_DONE");
    assert.equal(done.counts?.sent, 3);

    const [apple] = fakes.apns.delivered(iphone);
    assert.deepEqual(JSON.parse(apple!.rawBody.toString()), { aps: { alert: { title: "Donuts", body: "Fresh out of the oven" } }, data: { shop: "42" } });
    assert.equal(apple!.headers["apns-collapse-id"], "donuts");
    const [google] = fakes.fcm.delivered(android);
    assert.deepEqual(JSON.parse(google!.rawBody.toString()).message, {
      token: android,
      notification: { title: "Donuts", body: "Fresh out of the oven" },
      data: { shop: "42", count: "3" },
      android: { notification: { icon: "donut" }, ttl: "600s", priority: "HIGH" },
    });
    const [pushed] = fakes.webpush.delivered(browser.id);
    assert.deepEqual(JSON.parse(pushed!.plaintext!.toString()), { notification: { title: "Donuts", body: "Fresh out of the oven", deep_link: "https://shop.example/donuts" }, data: { shop: "42" } });
    assert.equal(pushed!.headers.ttl, 600);
  });

  it("binds a user with a token from the SDK's generateToken, publishes to users, and deletes the user", async () => {
    const { json } = await deviceApi("POST", "/devices/fcm", { token: fcmToken() });
    const id = json!.id as string;
    const { token } = beams.generateToken("ada") as { token: string };
    const unsigned = await deviceApi("PUT", `/devices/fcm/${id}/user`, {}, { authorization: "Bearer not.a.jwt" });
    assert.equal(unsigned.status, 401);
    const forged = new PushNotifications({ instanceId: "demo", secretKey: "someone-elses-secret" }).generateToken("ada") as { token: string };
    assert.equal((await deviceApi("PUT", `/devices/fcm/${id}/user`, {}, { authorization: `Bearer ${forged.token}` })).status, 401);
    assert.equal((await deviceApi("PUT", `/devices/fcm/${id}/user`, {}, { authorization: `Bearer ${token}` })).status, 200);
    assert.equal((await deviceApi("GET", `/devices/fcm/${id}`)).json!.userId, "ada");

    const { publishId } = await beams.publishToUsers(["ada"], { fcm: { notification: { title: "For Ada" } } });
    const done = await watch(publishId);
    assert.equal(done.counts?.targeted, 1);
    assert.equal(done.counts?.sent, 1);

    await beams.deleteUser("ada");
    assert.equal((await deviceApi("GET", `/devices/fcm/${id}`)).status, 404, "the user's devices are gone");
  });

  it("refuses what Beams refuses, with Beams' error bodies", async () => {
    await assert.rejects(new PushNotifications({ instanceId: "demo", secretKey: "wrong", endpoint: "127.0.0.1", port } as PushNotifications.Options).publishToInterests(["x"], { fcm: { notification: { title: "x" } } }), /^Error: 401 Unauthorized - Incorrect API Key$/);
    await assert.rejects(new PushNotifications({ instanceId: "news", secretKey: demo.userTokenSecret, endpoint: "127.0.0.1", port } as PushNotifications.Options).deleteUser("ada"), /401 Unauthorized - Incorrect API Key/, "one app's secret is not another's");
    const post = async (path: string, body: unknown, secret = demo.userTokenSecret) => {
      const res = await fetch(`${server.httpUrl}/publish_api/v1/instances/demo/publishes/${path}`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${secret}` }, body: JSON.stringify(body) });
      return { status: res.status, json: (await res.json()) as { error: string; description: string } };
    };
    // Schema errors are Beams' 422; a body that is not JSON its 400.
    const tooMany = await post("interests", { interests: Array.from({ length: 101 }, (_, i) => `i${i}`), fcm: { notification: { title: "x" } } });
    assert.deepEqual(tooMany, { status: 422, json: { error: "Unprocessable Entity", description: "Number of interests (101) exceeds maximum of 100", field: "interests" } });
    const noPayload = await post("interests", { interests: ["x"] });
    assert.equal(noPayload.status, 422);
    assert.match(noPayload.json.description, /at least one of apns, fcm or web/);
    const users = await post("users", { users: Array.from({ length: 1001 }, (_, i) => `u${i}`), fcm: { notification: { title: "x" } } });
    assert.equal(users.status, 422);
    const huge = await post("interests", { interests: ["x"], apns: { aps: { alert: "x".repeat(5000) } } });
    assert.equal(huge.status, 422, "APNs' 4096-byte limit");
    assert.equal(huge.json.error, "Unprocessable Entity");
    const notJson = await fetch(`${server.httpUrl}/publish_api/v1/instances/demo/publishes/interests`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${demo.userTokenSecret}` }, body: "{nope" });
    assert.equal(notJson.status, 400);
    assert.equal(((await notJson.json()) as { error: string }).error, "Bad Request");
    // A Herald SERVER key of the app is accepted as the secret too; another app's is refused.
    assert.equal((await post("interests", { interests: ["x"], fcm: { notification: { title: "x" } } }, demo.serverKey)).status, 200);
    const news = server.apps.find((a) => a.id === "news")!;
    assert.equal((await post("interests", { interests: ["x"], fcm: { notification: { title: "x" } } }, news.serverKey)).status, 403);
    const vapid = await deviceApi("GET", "/web-vapid-public-key");
    assert.equal(vapid.status, 404, "the sample app has no VAPID key in embedded mode");
  });

  const raw = async (method: string, path: string, body?: string, secret: string | null = demo.userTokenSecret) => {
    const res = await fetch(`${server.httpUrl}${path}`, { method, headers: { "content-type": "application/json", ...(secret ? { authorization: `Bearer ${secret}` } : {}) }, ...(body !== undefined ? { body } : {}) });
    const text = await res.text();
    return { status: res.status, json: text ? (JSON.parse(text) as Record<string, any>) : undefined };
  };
  const publishes = (target: string, instance = "demo") => `/publish_api/v1/instances/${instance}/publishes/${target}`;
  const fcmPublish = JSON.stringify({ interests: ["x"], fcm: { notification: { title: "x" } } });

  it("answers an unknown instance 404 like Beams, whatever its key or its characters", async () => {
    await assert.rejects(new PushNotifications({ instanceId: "no-such-instance", secretKey: demo.userTokenSecret, endpoint: "127.0.0.1", port } as PushNotifications.Options).publishToInterests(["x"], { fcm: { notification: { title: "x" } } }), /^Error: 404 Not Found - Instance not found$/);
    await assert.rejects(new PushNotifications({ instanceId: "no-such-instance", secretKey: "x", endpoint: "127.0.0.1", port } as PushNotifications.Options).deleteUser("ada"), /^Error: 404 Not Found - Instance not found$/);
    assert.deepEqual(await raw("POST", "/device_api/v1/instances/no-such-instance/devices/fcm", JSON.stringify({ token: fcmToken() }), null), { status: 404, json: { error: "Not Found", description: "Instance not found" } });
    // Non-ASCII and control characters cannot reach gRPC metadata (which throws on them: a 500).
    for (const instance of ["d%C3%A9mo", "de%0Amo", "%F0%9F%94%94"]) {
      assert.deepEqual(await raw("POST", publishes("interests", instance), fcmPublish), { status: 404, json: { error: "Not Found", description: "Instance not found" } }, instance);
      assert.equal((await raw("GET", `/device_api/v1/instances/${instance}/devices/fcm/some-device`)).status, 404, instance);
      assert.equal((await raw("DELETE", `/user_api/v1/instances/${instance}/users/ada`)).status, 404, instance);
    }
    // A malformed %-escape is the client's 400, in Beams' body, naming the segment.
    assert.deepEqual(await raw("DELETE", "/user_api/v1/instances/demo/users/%E0%A4%A"), { status: 400, json: { error: "Bad Request", description: "the path segment for user has a malformed %-escape", field: "user" } });
  });

  it("refuses a wrong but well-formed key 401 before looking at the body", async () => {
    const invalid = JSON.stringify({ interests: Array.from({ length: 101 }, (_, i) => `i${i}`) });
    for (const key of ["0".repeat(64), "hk_s_demo_0000000000000000", `hk_s_news_${"0".repeat(24)}`]) {
      assert.deepEqual((await raw("POST", publishes("interests"), invalid, key)).status, 401, key);
      assert.equal((await raw("POST", publishes("users"), "{not json", key)).status, 401, key);
    }
    assert.deepEqual(await raw("POST", publishes("interests"), invalid, "0".repeat(64)), { status: 401, json: { error: "Unauthorized", description: "Incorrect API Key" } });
    // Non-ASCII in the key cannot be a key either (and must not reach gRPC metadata).
    assert.equal((await raw("POST", publishes("interests"), fcmPublish, "hk_s_démo")).status, 401);
  });

  it("holds Beams' body limits: 10 KiB to interests, 200 KiB to users, 413 in Beams' body", async () => {
    const sized = (target: "interests" | "users", names: string[], bytes: number) => {
      const base = JSON.stringify({ [target]: names, fcm: { data: { pad: "" } } });
      return JSON.stringify({ [target]: names, fcm: { data: { pad: "p".repeat(bytes - base.length) } } });
    };
    const atLimit = sized("interests", ["x"], 10 * 1024);
    assert.equal(Buffer.byteLength(atLimit), 10 * 1024);
    assert.equal((await raw("POST", publishes("interests"), atLimit)).status, 422, "read, then refused by FCM's 4096-byte payload limit");
    const over = await raw("POST", publishes("interests"), sized("interests", ["x"], 10 * 1024 + 1));
    assert.equal(over.status, 413);
    assert.equal(over.json!.error, "Request Entity Too Large");
    assert.match(over.json!.description, /10240 bytes/);
    // Users: 1000 ids of 164 characters (167 KB) are a valid publish, far over 10 KiB.
    const ids = Array.from({ length: 1000 }, (_, i) => `${i}-`.padEnd(164, "u"));
    const full = await raw("POST", publishes("users"), JSON.stringify({ users: ids, fcm: { notification: { title: "x" } } }));
    assert.equal(full.status, 200, JSON.stringify(full.json));
    assert.equal((await raw("POST", publishes("users"), sized("users", ["ada"], 200 * 1024))).status, 422, "read, then refused by FCM's limit");
    const tooBig = await raw("POST", publishes("users"), sized("users", ["ada"], 200 * 1024 + 1));
    assert.equal(tooBig.status, 413);
    assert.equal(tooBig.json!.error, "Request Entity Too Large");
  });

  it("refuses payloads nested past 30 levels with 422 naming the field, however deep", async () => {
    const nested = (levels: number) => `${'{"a":'.repeat(levels - 1)}{}${"}".repeat(levels - 1)}`;
    // The apns object is level 1: `data` 29 more is 30 in all.
    const apns = (levels: number) => `{"interests":["x"],"apns":{"aps":{"alert":"x"},"data":${nested(levels - 1)}}}`;
    assert.equal((await raw("POST", publishes("interests"), apns(30))).status, 200);
    assert.deepEqual(await raw("POST", publishes("interests"), apns(31)), { status: 422, json: { error: "Unprocessable Entity", description: "apns.data nests objects and arrays more than 30 levels deep (the apns object being the first)", field: "apns.data" } });
    const fcm = await raw("POST", publishes("interests"), `{"interests":["x"],"fcm":{"data":${nested(40)}}}`);
    assert.equal(fcm.status, 422);
    assert.equal(fcm.json!.field, "fcm.data");
    // Past the gateway's body limit (64 levels) the router refuses it, before anything recursive
    // (arrays: 5000 levels of objects would not fit in Beams' 10 KiB).
    const deep = await raw("POST", publishes("interests"), `{"interests":["x"],"fcm":{"data":{"a":${"[".repeat(5000)}${"]".repeat(5000)}}}}`);
    assert.equal(deep.status, 422);
    assert.equal(deep.json!.error, "Unprocessable Entity");
    assert.match(deep.json!.field, /^fcm\.data\.a\[0\]\[0\]/);
  });
});
