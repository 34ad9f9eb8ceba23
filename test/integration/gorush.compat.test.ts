import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { startEmbedded, startFakeProviders, type EmbeddedApp, type EmbeddedServer, type FakeProviders } from "@herald/cli";
import { createLogger } from "@herald/platform";
import { gorush } from "@herald/proto";
import { requireEnv } from "@herald/testing";
import { apnsToken, fcmToken } from "./fixtures.js";

const run = promisify(execFile);

const samples = fileURLToPath(new URL("../../deploy/samples", import.meta.url));

// gorush compatibility: the requests of gorush's README (POST /api/push with its notification
// array, GET /api/stat/app) sent as raw HTTP, plus the app's credentials (gorush has none), through
// to the fake APNs, FCM and HMS services; and gorush's gRPC API (Gorush.Send, Health.Check) on its
// own port, called with the real grpcurl (through server reflection, as against gorush) and with a
// generated client of gorush's proto.
describe("gorush compatibility", () => {
  let server: EmbeddedServer;
  let fakes: FakeProviders;
  let demo: EmbeddedApp;
  let hms: EmbeddedApp;
  let grpcurl: string;
  let client: gorush.GorushClient;

  before(async () => {
    grpcurl = requireEnv("HERALD_GRPCURL");
    fakes = await startFakeProviders(createLogger({ service: "t", level: "silent" }), { record: true });
    server = await startEmbedded({ port: 0, httpPort: 0, gorushGrpcPort: 0, appsDir: samples, devFile: false, providerFor: fakes.providerFor, tokenRules: fakes.tokenRules, logger: createLogger({ service: "t", level: "silent" }) });
    demo = server.apps.find((a) => a.id === "demo")!;
    hms = server.apps.find((a) => a.id === "hms")!;
    client = new gorush.GorushClient(server.gorushAddress!, grpc.credentials.createInsecure());
  });
  after(async () => {
    client?.close();
    await server?.stop();
    await fakes?.close();
  });

  const call = async (method: string, path: string, body?: unknown, authorization: string | null = `Bearer ${demo.serverKey}`) => {
    const res = await fetch(`${server.httpUrl}${path}`, {
      method,
      headers: { ...(body !== undefined ? { "content-type": "application/json" } : {}), ...(authorization ? { authorization } : {}) },
      ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
    });
    return { status: res.status, json: (await res.json()) as Record<string, any> };
  };
  const eventually = async <T>(what: string, get: () => T | undefined | Promise<T | undefined>): Promise<T> => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const v = await get();
      if (v !== undefined) return v;
      assert.ok(Date.now() < deadline, `${what} did not happen`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  it("sends the README's iOS and Android notifications to raw tokens", async () => {
    const [ios1, ios2, android1, android2] = [apnsToken(), apnsToken(), fcmToken(), fcmToken()];
    const res = await call("POST", "/api/push", {
      notifications: [
        { tokens: [ios1, ios2], platform: 1, message: "Hello World iOS!", data: { key1: "welcome", key2: 2 }, badge: 3, sound: "default", topic: "dev.herald.demo" },
        { tokens: [android1, android2], platform: 2, message: "Hello World Android!", title: "You got message", data: { key1: "welcome" }, priority: "high" },
      ],
    });
    assert.deepEqual(res, { status: 200, json: { success: "ok", counts: 4, logs: [] } });
    const apple = await eventually("the APNs delivery", () => fakes.apns.delivered(ios2)[0]);
    assert.deepEqual(JSON.parse(apple.rawBody.toString()), { key1: "welcome", key2: 2, aps: { alert: { body: "Hello World iOS!" }, badge: 3, sound: "default" } });
    assert.equal(apple.headers["apns-topic"], "dev.herald.demo");
    assert.ok(await eventually("the first iOS token", () => fakes.apns.delivered(ios1)[0]));
    const google = await eventually("the FCM delivery", () => fakes.fcm.delivered(android1)[0]);
    const message = JSON.parse(google.rawBody.toString()).message;
    assert.deepEqual(message.notification, { title: "You got message", body: "Hello World Android!" });
    assert.deepEqual(message.data, { key1: "welcome" });
    assert.equal(message.android.priority, "HIGH");
    assert.ok(await eventually("the second Android token", () => fakes.fcm.delivered(android2)[0]));
  });

  it("sends content_available iOS notifications as background pushes, and Android topic messages", async () => {
    const ios = apnsToken();
    const res = await call("POST", "/api/push", { notifications: [{ tokens: [ios], platform: 1, content_available: true, data: { sync: "1" } }, { to: "/topics/foo-bar", platform: 2, message: "This is a Firebase Cloud Messaging Topic Message" }] });
    assert.deepEqual(res.json, { success: "ok", counts: 2, logs: [] }, "a topic message counts once, as in gorush");
    const apple = await eventually("the background push", () => fakes.apns.delivered(ios)[0]);
    assert.deepEqual(JSON.parse(apple.rawBody.toString()), { sync: "1", aps: { "content-available": 1 } });
    assert.equal(apple.headers["apns-push-type"], "background");
    assert.equal(apple.headers["apns-priority"], "5");
    const topic = await eventually("the topic message", () => fakes.fcm.delivered("foo-bar")[0] ?? fakes.fcm.records.find((r) => JSON.parse(r.rawBody.toString()).message?.topic === "foo-bar"));
    assert.equal(JSON.parse(topic.rawBody.toString()).message.notification.body, "This is a Firebase Cloud Messaging Topic Message");
  });

  it("sends the README's Huawei notification", async () => {
    const token = `hms-${Date.now()}-${"a".repeat(40)}`;
    const res = await call("POST", "/api/push", { notifications: [{ tokens: [token], platform: 3, title: "Gorush with HMS", message: "Hello World Huawei!" }] }, `Bearer ${hms.serverKey}`);
    assert.deepEqual(res.json, { success: "ok", counts: 1, logs: [] });
    await eventually("the HMS delivery", () => (fakes.hms.delivered(token).length ? true : undefined));
    const record = fakes.hms.records.find((r) => r.accepted.includes(token))!;
    assert.deepEqual((record.message as { android: { notification: Record<string, unknown> } }).android.notification, { title: "Gorush with HMS", body: "Hello World Huawei!", click_action: { type: 3 } });
  });

  it("answers gorush's refusals, and logs the notifications Herald refuses", async () => {
    assert.deepEqual(await call("POST", "/api/push", {}), { status: 400, json: { code: 400, message: "Missing notifications field.", error: "Missing notifications field." } });
    assert.equal((await call("POST", "/api/push", "{nope")).json.message, "Missing notifications field.");
    // gorush reads the body as JSON whatever the content type (curl -d sends a form type).
    const token = fcmToken();
    const form = await fetch(`${server.httpUrl}/api/push`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded", authorization: `Bearer ${demo.serverKey}` }, body: JSON.stringify({ notifications: [{ tokens: [token], platform: 2, message: "curl -d" }] }) });
    assert.deepEqual([form.status, await form.json()], [200, { success: "ok", counts: 1, logs: [] }]);
    assert.ok(await eventually("the curl -d notification", () => fakes.fcm.delivered(token)[0]));
    assert.equal((await call("POST", "/api/push", { notifications: [] })).json.message, "Notifications field is empty.");
    const many = await call("POST", "/api/push", { notifications: Array.from({ length: 101 }, () => ({ tokens: [fcmToken()], platform: 2, message: "x" })) });
    assert.deepEqual([many.status, many.json.message], [400, "Number of notifications(101) over limit(100)"]);
    assert.equal((await call("POST", "/api/push", { notifications: [{ tokens: ["x"], platform: 2 }] }, null)).status, 401, "Herald always asks for the app's credentials");
    assert.equal((await call("POST", "/api/push", { notifications: [{ tokens: ["x"], platform: 2 }] }, "Bearer hk_s_demo_wrong")).status, 401);
    // Basic with the app's secret works too.
    const basic = `Basic ${Buffer.from(`demo:${demo.userTokenSecret}`).toString("base64")}`;
    const good = fcmToken();
    const mixed = await call("POST", "/api/push", { notifications: [{ tokens: [good], platform: 2, message: "ok" }, { tokens: ["t1"], platform: 9, message: "bad platform" }, { tokens: [], platform: 2, message: "no tokens" }, { tokens: ["not-hex"], platform: 1, message: "bad APNs token" }] }, basic);
    assert.equal(mixed.status, 200);
    assert.equal(mixed.json.success, "ok");
    assert.equal(mixed.json.counts, 3);
    assert.deepEqual(mixed.json.logs.map((l: { type: string; platform: string; token: string }) => [l.type, l.platform, l.token]), [["failed-push", "9", "t1"], ["failed-push", "android", ""], ["failed-push", "ios", "not-hex"]]);
    assert.match(mixed.json.logs[0].error, /platform must be 1/);
    assert.ok(await eventually("the good notification", () => fakes.fcm.delivered(good)[0]), "the others are still sent");
  });

  it("sums the app's gorush publishes in /api/stat/app", async () => {
    const stat = await eventually("the stats to count the sends", async () => {
      const { status, json } = await call("GET", "/api/stat/app");
      assert.equal(status, 200);
      return json.busy_workers === 0 && json.ios.push_success >= 3 ? json : undefined;
    });
    assert.match(stat.version, /^herald-/);
    assert.ok(stat.android.push_success >= 3, JSON.stringify(stat));
    assert.ok(stat.submitted_tasks >= 5);
    assert.equal(stat.submitted_tasks, stat.success_tasks + stat.failure_tasks);
    assert.ok(stat.total_count >= 6);
    assert.deepEqual(Object.keys(stat.huawei), ["push_success", "push_error"]);
    assert.equal((await call("GET", "/api/stat/app", undefined, null)).status, 401);
  });

  // grpcurl's output, or its exit status and stderr when it fails.
  const grpcurlRun = async (args: string[], key?: string): Promise<{ ok: boolean; out: string }> => {
    try {
      const { stdout } = await run(grpcurl, ["-plaintext", ...(key ? ["-H", `authorization: Bearer ${key}`] : []), ...args], { timeout: 30_000 });
      return { ok: true, out: stdout };
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string };
      return { ok: false, out: `${e.stderr ?? ""}${e.stdout ?? ""}` };
    }
  };
  const send = (request: Partial<gorush.NotificationRequest>, key: string | null = demo.serverKey) =>
    new Promise<gorush.NotificationReply>((resolve, reject) => {
      const metadata = new grpc.Metadata();
      if (key) metadata.set("authorization", `Bearer ${key}`);
      client.send(gorush.NotificationRequest.fromPartial(request), metadata, (err, reply) => (err ? reject(err) : resolve(reply)));
    });
  const refusal = async (request: Partial<gorush.NotificationRequest>, key?: string | null) => {
    const err = await send(request, key).then(
      () => assert.fail("the call was accepted"),
      (e: grpc.ServiceError) => e,
    );
    return { code: err.code, details: err.details };
  };

  it("serves proto.Gorush and proto.Health on the gorush port, listed and described by reflection", async () => {
    const listed = await grpcurlRun([server.gorushAddress!, "list"]);
    assert.ok(listed.ok, listed.out);
    for (const name of ["proto.Gorush", "proto.Health"]) assert.ok(listed.out.split("\n").includes(name), listed.out);
    assert.ok(!listed.out.includes("herald.dispatch.v1"), "Herald's own API stays on its own port");
    const described = await grpcurlRun([server.gorushAddress!, "describe", "proto.NotificationRequest"]);
    assert.match(described.out, /repeated string tokens = 1;[\s\S]*\.google\.protobuf\.Struct data = 14;/);
    const health = await grpcurlRun([server.gorushAddress!, "proto.Health/Check"]);
    assert.deepEqual(JSON.parse(health.out), { status: "SERVING" }, "Health.Check needs no credentials, as in gorush");
  });

  it("sends the README's gRPC example through grpcurl to FCM", async () => {
    const token = fcmToken();
    const res = await grpcurlRun(["-d", JSON.stringify({ platform: 2, tokens: [token], message: "Hello gRPC!", title: "Test Notification" }), server.gorushAddress!, "proto.Gorush/Send"], demo.serverKey);
    assert.ok(res.ok, res.out);
    assert.deepEqual(JSON.parse(res.out), { success: true, counts: 1 });
    const google = await eventually("the FCM delivery", () => fakes.fcm.delivered(token)[0]);
    const message = JSON.parse(google.rawBody.toString()).message;
    assert.deepEqual(message.notification, { title: "Test Notification", body: "Hello gRPC!" });
    assert.equal(message.android.priority, "NORMAL", "gorush sends its default priority (NORMAL) as normal");
  });

  it("maps every iOS field of NotificationRequest to the APNs request", async () => {
    const [a, b] = [apnsToken(), apnsToken()];
    const reply = await send({
      platform: 1,
      tokens: [a, b],
      topic: "dev.herald.demo",
      badge: 5,
      category: "news",
      sound: "ping.caf",
      threadID: "thread-1",
      mutableContent: true,
      alert: { title: "Alert title", body: "Alert body", subtitle: "sub", locKey: "LOC", locArgs: ["x", "y"], actionLocKey: "VIEW", launchImage: "", action: "", titleLocKey: "", titleLocArgs: [] },
      data: { ünïcödé: "ok", nested: { n: 1 } },
      priority: gorush.NotificationRequest_Priority.HIGH,
      ID: "notif-42",
    });
    assert.deepEqual(reply, { success: true, counts: 2 });
    const apple = await eventually("the APNs delivery", () => fakes.apns.delivered(b)[0]);
    assert.deepEqual(JSON.parse(apple.rawBody.toString()), {
      ünïcödé: "ok",
      nested: { n: 1 },
      aps: { alert: { title: "Alert title", body: "Alert body", subtitle: "sub", "loc-key": "LOC", "loc-args": ["x", "y"], "action-loc-key": "VIEW" }, badge: 5, sound: "ping.caf", category: "news", "thread-id": "thread-1", "mutable-content": 1 },
    });
    assert.equal(apple.headers["apns-topic"], "dev.herald.demo");
    assert.equal(apple.headers["apns-priority"], "10");
    assert.ok(await eventually("the first token", () => fakes.apns.delivered(a)[0]));
    // message and title, when set, are the alert's body and title (as in gorush's HTTP API).
    const c = apnsToken();
    await send({ platform: 1, tokens: [c], message: "from message", title: "from title", contentAvailable: true });
    const second = await eventually("the second APNs delivery", () => fakes.apns.delivered(c)[0]);
    assert.deepEqual(JSON.parse(second.rawBody.toString()).aps, { alert: { title: "from title", body: "from message" }, "content-available": 1 });
  });

  it("refuses with a gRPC status naming the field, never with a crash", async () => {
    assert.equal((await refusal({ platform: 2, tokens: [fcmToken()], message: "x" }, null)).code, grpc.status.UNAUTHENTICATED);
    assert.equal((await refusal({ platform: 2, tokens: [fcmToken()], message: "x" }, "hk_s_demo_wrong")).code, grpc.status.UNAUTHENTICATED);
    assert.equal((await refusal({ platform: 2, tokens: [fcmToken()], message: "x" }, demo.clientKey)).code, grpc.status.UNAUTHENTICATED, "a CLIENT key cannot send");
    const platform = await refusal({ platform: 9, tokens: ["t"], message: "x" });
    assert.equal(platform.code, grpc.status.INVALID_ARGUMENT);
    assert.match(platform.details, /^platform: platform must be 1/);
    assert.match((await refusal({ platform: 2, tokens: [], message: "x" })).details, /^tokens: /);
    assert.match((await refusal({ platform: 1, tokens: ["not-hex"], message: "x" })).details, /token/i);
    // Hostile input: control characters, accented and empty map keys, a 300 KiB value, data nested
    // 40 levels; each call ends with a status and the server keeps serving.
    let deep: Record<string, unknown> = { leaf: 1 };
    for (let i = 0; i < 40; i++) deep = { d: deep };
    const hostile: Array<Partial<gorush.NotificationRequest>> = [
      { platform: 2, tokens: ["\u0000\u0007\ud83d\ude00"], message: "\u0000" },
      { platform: 2, tokens: [fcmToken()], data: { "": "empty", "é\u0000\n": "x", ["k".repeat(10_000)]: "long" } },
      { platform: 2, tokens: [fcmToken()], message: "m".repeat(300 * 1024) },
      { platform: 2, tokens: [fcmToken()], data: deep },
      { platform: -1, tokens: Array.from({ length: 501 }, () => fcmToken()) },
      { platform: 3, topic: "\u202enews", tokens: [] },
    ];
    for (const request of hostile) {
      const outcome = await send(request).then(
        (r) => `ok ${r.counts}`,
        (e: grpc.ServiceError) => `${grpc.status[e.code]} ${e.details}`,
      );
      assert.match(outcome, /^(ok \d+|INVALID_ARGUMENT .+)$/, `${JSON.stringify(request).slice(0, 200)}: ${outcome}`);
    }
    const health = await grpcurlRun([server.gorushAddress!, "proto.Health/Check"]);
    assert.deepEqual(JSON.parse(health.out), { status: "SERVING" });
  });

  it("answers /api/stat/go with the runtime's numbers under gorush's names", async () => {
    const { status, json } = await call("GET", "/api/stat/go");
    assert.equal(status, 200);
    assert.match(json.go_version, /^nodev\d+\./);
    for (const field of ["cpu_num", "goroutine_num", "memory_sys", "heap_alloc", "heap_sys", "heap_inuse"]) assert.ok(Number.isInteger(json[field]) && json[field] > 0, `${field}: ${json[field]}`);
    assert.ok(json.memory_sys > json.heap_alloc, "RSS includes the heap");
    assert.equal((await call("GET", "/api/stat/go", undefined, null)).status, 401);
  });
});
