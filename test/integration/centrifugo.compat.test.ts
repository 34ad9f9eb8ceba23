import assert from "node:assert/strict";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { startEmbedded, startFakeProviders, type EmbeddedApp, type EmbeddedServer, type FakeProviders } from "@herald/cli";
import { createClient, createLogger } from "@herald/platform";
import { dispatch } from "@herald/proto";
import { eventually, randomHmsToken, requireEnv } from "@herald/testing";
import { apnsToken, fcmToken, nowSeconds } from "./fixtures.js";

const samples = fileURLToPath(new URL("../../deploy/samples", import.meta.url));

// The official Centrifugo Python client, cent 5.2.0 (installed by test/infra/cent.sh), drives the
// gateway's Centrifugo PRO push API: one Python process reads a JSON command per line, builds
// the cent dto request from it (so the wire is exactly what cent sends), calls cent.Client and
// answers the parsed result, or the exception cent raised with its code.
const DRIVER = String.raw`
import importlib.metadata, json, sys
from cent import Client, dto
from cent.exceptions import CentApiResponseError, CentError

REQUESTS = {
    "device_register": dto.DeviceRegisterRequest,
    "device_update": dto.DeviceUpdateRequest,
    "device_remove": dto.DeviceRemoveRequest,
    "device_list": dto.DeviceListRequest,
    "device_topic_list": dto.DeviceTopicListRequest,
    "device_topic_update": dto.DeviceTopicUpdateRequest,
    "user_topic_list": dto.UserTopicListRequest,
    "user_topic_update": dto.UserTopicUpdateRequest,
    "send_push_notification": dto.SendPushNotificationRequest,
    "update_push_status": dto.UpdatePushStatusRequest,
    "cancel_push": dto.CancelPushRequest,
}

def request(method, params):
    if method == "batch":
        return dto.BatchRequest(requests=[request(c["method"], c["params"]) for c in params["requests"]])
    return REQUESTS[method](**params)

print(json.dumps({"ready": importlib.metadata.version("cent")}), flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    try:
        req = request(cmd["method"], cmd["params"])
        with Client(cmd["url"], cmd["key"]) as client:
            result = getattr(client, cmd["method"])(req)
        # BatchResult declares its replies as the base CentResult: dump each as what it is.
        dumped = {"replies": [r.model_dump() for r in result.replies]} if isinstance(result, dto.BatchResult) else result.model_dump()
        out = {"ok": True, "type": type(result).__name__, "result": dumped, "wire": req.api_payload}
    except CentApiResponseError as e:
        out = {"ok": False, "exception": "CentApiResponseError", "code": e.code, "message": e.message}
    except CentError as e:
        out = {"ok": False, "exception": type(e).__name__, "message": str(e)}
    except Exception as e:
        out = {"ok": False, "exception": type(e).__name__, "message": repr(e)}
    print(json.dumps(out), flush=True)
`;

type Reply = { ok: true; type: string; result: Record<string, any>; wire: Record<string, any> } | { ok: false; exception: string; code?: number; message: string };

class CentDriver {
  private readonly waiting: Array<(line: string) => void> = [];
  private constructor(private readonly child: ChildProcessWithoutNullStreams, private readonly dir: string) {
    createInterface({ input: child.stdout }).on("line", (line) => this.waiting.shift()?.(line));
  }

  static async start(python: string): Promise<{ driver: CentDriver; version: string }> {
    const dir = mkdtempSync(join(tmpdir(), "cent-driver-"));
    writeFileSync(join(dir, "driver.py"), DRIVER);
    const child = spawn(python, [join(dir, "driver.py")], { stdio: ["pipe", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const driver = new CentDriver(child, dir);
    const exited = new Promise<never>((_, reject) => child.once("exit", (code) => reject(new Error(`the cent driver exited (${code}): ${stderr}`))));
    const ready = JSON.parse(await Promise.race([driver.next(), exited])) as { ready: string };
    return { driver, version: ready.ready };
  }

  private next(): Promise<string> {
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  async call(url: string, key: string, method: string, params: Record<string, unknown>): Promise<Reply> {
    const line = this.next();
    this.child.stdin.write(`${JSON.stringify({ url, key, method, params })}\n`);
    return JSON.parse(await line) as Reply;
  }

  close(): void {
    this.child.stdin.end();
    this.child.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

describe("Centrifugo PRO push compatibility (cent 5.2.0)", () => {
  let server: EmbeddedServer;
  let fakes: FakeProviders;
  let demo: EmbeddedApp;
  let cent: CentDriver;
  let api: string;
  let publishes: ReturnType<typeof createClient<typeof dispatch.DispatchServiceService>>;

  before(async () => {
    // A missing client fails the suite (never a skip): test/infra/up.sh installs it.
    const python = requireEnv("HERALD_CENT_PYTHON");
    assert.ok(existsSync(python), `HERALD_CENT_PYTHON=${python} does not exist: run bash test/infra/cent.sh install (test/infra/up.sh does)`);
    const started = await CentDriver.start(python);
    cent = started.driver;
    assert.equal(started.version, "5.2.0");
    fakes = await startFakeProviders(createLogger({ service: "t", level: "silent" }), { record: true });
    server = await startEmbedded({ port: 0, httpPort: 0, appsDir: samples, devFile: false, providerFor: fakes.providerFor, tokenRules: fakes.tokenRules, logger: createLogger({ service: "t", level: "silent" }) });
    demo = server.apps.find((a) => a.id === "demo")!;
    api = `${server.httpUrl}/api`;
    publishes = createClient(dispatch.DispatchServiceService, dispatch, server.address, { apiKey: demo.serverKey });
  });
  after(async () => {
    cent?.close();
    publishes?.close();
    await server?.stop();
    await fakes?.close();
  });

  const call = (method: string, params: Record<string, unknown>, key = demo.serverKey) => cent.call(api, key, method, params);
  // A call that must succeed: its parsed result.
  const ok = async (method: string, params: Record<string, unknown>): Promise<Record<string, any>> => {
    const r = await call(method, params);
    assert.ok(r.ok, `${method} failed: ${JSON.stringify(r)}`);
    return r.result;
  };
  const refused = async (method: string, params: Record<string, unknown>, code: number, key?: string): Promise<string> => {
    const r = await call(method, params, key);
    assert.equal(r.ok, false, `${method} succeeded: ${JSON.stringify(r)}`);
    assert.equal(r.ok === false && r.exception, "CentApiResponseError", JSON.stringify(r));
    assert.equal(r.ok === false && r.code, code, JSON.stringify(r));
    return r.ok === false ? r.message : "";
  };
  const raw = async (path: string, body: unknown, headers: Record<string, string> = { "x-api-key": demo.serverKey }) => {
    const res = await fetch(`${server.httpUrl}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: typeof body === "string" ? body : JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, json: (text ? JSON.parse(text) : undefined) as Record<string, any> };
  };
  let n = 0;
  const unique = (what: string) => `${what}-${Date.now().toString(36)}-${++n}`;
  const register = async (extra: Record<string, unknown> = {}) => {
    const token = extra.provider === "apns" ? apnsToken() : extra.provider === "hms" ? randomHmsToken() : fcmToken();
    const r = await ok("device_register", { provider: "fcm", platform: "android", token, ...extra });
    assert.equal(typeof r.id, "string");
    return { id: r.id as string, token };
  };
  const publishOf = async (uid: string) => (await publishes.listPublishes({ uid })).publishes[0];
  const final = (uid: string) =>
    eventually(async () => {
      const p = await publishOf(uid);
      return p && [dispatch.PublishState.PUBLISH_STATE_DONE, dispatch.PublishState.PUBLISH_STATE_FAILED, dispatch.PublishState.PUBLISH_STATE_CANCELLED].includes(p.state) ? p : undefined;
    }, `the publish ${uid} to finish`, { timeoutMs: 30_000, pollMs: 50 });
  const fcmMessages = (target: string) => fakes.fcm.delivered(target).map((r) => JSON.parse(r.rawBody.toString()).message as Record<string, any>);

  it("registers, lists with every include and filter, updates and removes devices", async () => {
    const user = unique("ada");
    const topic = unique("news");
    const a = await register({ user, topics: [topic], meta: { plan: "pro" }, locale: "en-GB", timezone: "Europe/London" });
    const again = await ok("device_register", { provider: "fcm", platform: "android", token: a.token, user, topics: [topic], meta: { plan: "pro" } });
    assert.equal(again.id, a.id, "registering the same token again updates that device");
    const ios = await register({ provider: "apns", platform: "ios", user });

    const listed = await ok("device_list", { filter: { ids: [a.id] }, include_meta: true, include_topics: true, include_total_count: true });
    assert.equal(listed.total_count, 1);
    const [d] = listed.items;
    assert.deepEqual({ ...d, created_at: typeof d.created_at, updated_at: typeof d.updated_at }, {
      id: a.id, platform: "android", provider: "fcm", token: a.token, user, meta: { plan: "pro" }, topics: [topic],
      created_at: "number", updated_at: "number", timezone: "", locale: "",
    });
    assert.ok(d.created_at > nowSeconds() - 60 && d.created_at <= nowSeconds() + 1, "created_at is unix seconds");
    const plain = await ok("device_list", { filter: { ids: [a.id] } });
    assert.equal(plain.items[0].meta, null, "meta only with include_meta");
    assert.equal(plain.items[0].topics, null);
    assert.equal(plain.total_count, null, "total_count only with include_total_count");

    // Every filter field, alone and together.
    const ids = async (filter: Record<string, unknown>) => (await ok("device_list", { filter, include_total_count: true })).items.map((x: { id: string }) => x.id).sort();
    assert.deepEqual(await ids({ users: [user] }), [a.id, ios.id].sort());
    assert.deepEqual(await ids({ users: [user], providers: ["apns"] }), [ios.id]);
    assert.deepEqual(await ids({ users: [user], platforms: ["android"] }), [a.id]);
    assert.deepEqual(await ids({ topics: [topic] }), [a.id]);
    assert.deepEqual(await ids({ topics: [topic], providers: ["apns"] }), []);
    const topicTotal = await ok("device_list", { filter: { topics: [topic] }, include_total_count: true });
    assert.equal(topicTotal.total_count, 1);

    // device_update: user, meta, locale, timezone, topics with each op.
    const t2 = unique("sport");
    await ok("device_update", { ids: [a.id], meta_update: { meta: { plan: "free" } }, locale_update: { locale: "fr-FR" }, timezone_update: { timezone: "Europe/Paris" }, topics_update: { op: "add", topics: [t2] } });
    let [u] = (await ok("device_list", { filter: { ids: [a.id] }, include_meta: true, include_topics: true })).items;
    assert.deepEqual({ meta: u.meta, topics: [...u.topics].sort(), locale: u.locale, timezone: u.timezone }, { meta: { plan: "free" }, topics: [topic, t2].sort(), locale: "fr-FR", timezone: "Europe/Paris" });
    await ok("device_update", { ids: [a.id], topics_update: { op: "remove", topics: [topic] } });
    [u] = (await ok("device_list", { filter: { ids: [a.id] }, include_topics: true })).items;
    assert.deepEqual(u.topics, [t2]);
    await ok("device_update", { ids: [a.id], topics_update: { op: "set", topics: [topic] } });
    [u] = (await ok("device_list", { filter: { ids: [a.id] }, include_topics: true })).items;
    assert.deepEqual(u.topics, [topic]);
    const other = unique("bob");
    await ok("device_update", { users: [user], user_update: { user: other } });
    assert.deepEqual(await ids({ users: [other] }), [a.id, ios.id].sort());
    assert.match(await refused("device_update", { topics_update: { op: "add", topics: ["x"] } }, 107), /ids, users or provider_tokens/);
    assert.match(await refused("device_update", { ids: [a.id], topics_update: { op: "toggle", topics: ["x"] } }, 107), /add, remove or set/);

    // A token refresh: the id moves the device to a new token.
    const fresh = fcmToken();
    const moved = await ok("device_register", { id: a.id, provider: "fcm", platform: "android", token: fresh, user: other });
    assert.equal(moved.id, a.id);
    assert.equal((await ok("device_list", { filter: { ids: [a.id] } })).items[0].token, fresh);

    await ok("device_remove", { ids: [a.id] });
    assert.deepEqual(await ids({ users: [other] }), [ios.id]);
    await ok("device_remove", { users: [other] });
    assert.deepEqual(await ids({ users: [other] }), []);
    assert.equal((await call("device_remove", {})).ok, false, "device_remove names its devices");
  });

  it("pages device_list with cursor and limit, and counts the whole set", async () => {
    const user = unique("pager");
    const made = [];
    for (let i = 0; i < 5; i++) made.push((await register({ user })).id);
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let pages = 0; pages < 10; pages++) {
      const page = await ok("device_list", { filter: { users: [user] }, limit: 2, include_total_count: true, ...(cursor ? { cursor } : {}) });
      assert.equal(page.total_count, 5);
      assert.ok(page.items.length <= 2);
      seen.push(...page.items.map((x: { id: string }) => x.id));
      if (!page.next_cursor) break;
      cursor = page.next_cursor;
    }
    assert.deepEqual(seen, [...made].sort());
  });

  it("updates and lists device topics with every filter, include_device and counts", async () => {
    const user = unique("topics");
    const a = await register({ user });
    const b = await register({ provider: "apns", platform: "ios", user });
    const prefix = unique("t");
    const [t1, t2, t3] = [`${prefix}.a`, `${prefix}.b`, `${prefix}.c`];
    await ok("device_topic_update", { device_id: a.id, op: "add", topics: [t1, t2] });
    await ok("device_topic_update", { device_id: b.id, op: "set", topics: [t2, t3] });
    await ok("device_topic_update", { device_id: b.id, op: "remove", topics: [t3] });
    const list = async (filter: Record<string, unknown>, extra: Record<string, unknown> = {}) => ok("device_topic_list", { filter, include_total_count: true, ...extra });
    const pairs = (r: Record<string, any>) => r.items.map((x: { device: { id: string }; topic: string }) => `${x.device.id === a.id ? "a" : "b"}:${x.topic}`).sort();
    assert.deepEqual(pairs(await list({ topic_prefix: prefix })), [`a:${t1}`, `a:${t2}`, `b:${t2}`]);
    assert.deepEqual(pairs(await list({ device_ids: [a.id] })), [`a:${t1}`, `a:${t2}`]);
    assert.deepEqual(pairs(await list({ topics: [t2] })), [`a:${t2}`, `b:${t2}`]);
    assert.deepEqual(pairs(await list({ device_users: [user], topic_prefix: prefix })), [`a:${t1}`, `a:${t2}`, `b:${t2}`]);
    assert.deepEqual(pairs(await list({ device_providers: ["apns"], topic_prefix: prefix })), [`b:${t2}`]);
    assert.deepEqual(pairs(await list({ device_platforms: ["android"], topic_prefix: prefix })), [`a:${t1}`, `a:${t2}`]);
    assert.deepEqual(pairs(await list({ device_users: [unique("nobody")] })), []);
    const full = await list({ device_ids: [b.id] }, { include_device: true });
    assert.equal(full.total_count, 1);
    assert.deepEqual(full.items[0], { id: `${b.id}:${t2}`, topic: t2, device_id: b.id, device: { ...full.items[0].device, id: b.id, provider: "apns", platform: "ios", user } });
    const bare = await list({ device_ids: [b.id] });
    assert.equal(bare.items[0].device.id, b.id);
    assert.equal(bare.items[0].device.token, "", "the device's details only with include_device");
    // Paging.
    const first = await ok("device_topic_list", { filter: { topic_prefix: prefix }, limit: 2, include_total_count: true });
    assert.equal(first.total_count, 3);
    assert.equal(first.items.length, 2);
    const rest = await ok("device_topic_list", { filter: { topic_prefix: prefix }, limit: 2, cursor: first.next_cursor });
    assert.equal(rest.items.length, 1);
    assert.ok(!rest.next_cursor);
    assert.match(await refused("device_topic_update", { device_id: a.id, op: "flip", topics: [t1] }, 107), /op/);
    assert.equal(await refused("device_topic_update", { device_id: "no-such-device", op: "add", topics: [t1] }, 107).then((m) => /NOT_FOUND|not found/i.test(m)), true);
  });

  it("keeps user topics and applies them to the user's devices", async () => {
    const user = unique("carol");
    const d = await register({ user });
    const prefix = unique("u");
    await ok("user_topic_update", { user, op: "add", topics: [`${prefix}.x`, `${prefix}.y`] });
    await ok("user_topic_update", { user, op: "remove", topics: [`${prefix}.x`] });
    const listed = await ok("user_topic_list", { filter: { users: [user] }, include_total_count: true });
    assert.deepEqual(listed.items, [{ id: `${user}:${prefix}.y`, user, topic: `${prefix}.y` }]);
    assert.equal(listed.total_count, 1);
    assert.deepEqual((await ok("user_topic_list", { filter: { topic_prefix: prefix } })).items.map((x: { topic: string }) => x.topic), [`${prefix}.y`]);
    assert.deepEqual((await ok("user_topic_list", { filter: { topics: [`${prefix}.x`] } })).items, []);
    const onDevice = await ok("device_topic_list", { filter: { device_ids: [d.id] } });
    assert.deepEqual(onDevice.items.map((x: { topic: string }) => x.topic), [`${prefix}.y`]);
    await ok("user_topic_update", { user, op: "set", topics: [`${prefix}.z`] });
    assert.deepEqual((await ok("device_topic_list", { filter: { device_ids: [d.id] } })).items.map((x: { topic: string }) => x.topic), [`${prefix}.z`]);
    await refused("user_topic_update", { user, op: "replace", topics: [] }, 107);
  });

  it("sends to device ids, users and topics through cent's filter, with provider payloads passed through", async () => {
    const topic = unique("promo");
    const user = unique("dan");
    const android = await register({ topics: [topic], user });
    const iphone = await register({ provider: "apns", platform: "ios", topics: [topic] });
    const notification = {
      fcm: { message: { notification: { title: "Hello", body: "How are you?" }, data: { k: "v" } } },
      apns: { headers: { "apns-push-type": "alert" }, payload: { aps: { alert: { title: "Hello", body: "How are you?" } }, k: "v" } },
    };
    const uid = unique("uid");
    const sent = await call("send_push_notification", { recipient: { filter: { topics: [topic] } }, notification, uid });
    assert.ok(sent.ok, JSON.stringify(sent));
    assert.equal(sent.type, "SendPushNotificationResult");
    assert.deepEqual(sent.result, { uid });
    assert.equal((await final(uid)).counts?.sent, 2);
    assert.deepEqual(fcmMessages(android.token)[0]?.notification, { title: "Hello", body: "How are you?" });
    assert.deepEqual(fcmMessages(android.token)[0]?.data, { k: "v" });
    const apple = fakes.apns.delivered(iphone.token)[0];
    assert.deepEqual(JSON.parse(apple!.rawBody.toString()), { aps: { alert: { title: "Hello", body: "How are you?" } }, k: "v" });

    const byId = await ok("send_push_notification", { recipient: { filter: { ids: [android.id] } }, notification: { fcm: notification.fcm } });
    assert.match(byId.uid, /^[0-9a-f-]{36}$/, "without a uid the gateway makes one");
    assert.equal((await final(byId.uid)).counts?.sent, 1);
    assert.equal(fcmMessages(android.token).length, 2);
    const byUser = await ok("send_push_notification", { recipient: { filter: { users: [user], platforms: ["android"] } }, notification: { fcm: notification.fcm } });
    assert.equal((await final(byUser.uid)).counts?.sent, 1);
    assert.equal(fcmMessages(android.token).length, 3);
    // The seed's device_ids / topics recipient fields, as raw HTTP (cent 5.2 sends a filter).
    const seed = await raw("/api/send_push_notification", { recipient: { device_ids: [iphone.id] }, notification: { apns: notification.apns } });
    assert.equal(seed.status, 200);
    assert.equal((await final(seed.json.result.uid)).counts?.sent, 1);
    assert.equal(fakes.apns.delivered(iphone.token).length, 2);
    assert.match(await refused("send_push_notification", { recipient: { filter: { ids: [android.id], topics: [topic] } }, notification }, 108), /one of ids, users or topics/);
  });

  it("sends to raw FCM, HMS and APNs tokens, FCM and HMS topics and conditions", async () => {
    const fcm = fcmToken();
    const hms = randomHmsToken();
    const apns = apnsToken();
    const fcmN = { fcm: { message: { notification: { title: "raw", body: "fcm" } } } };
    const hmsN = { hms: { message: { notification: { title: "raw", body: "hms" }, android: { notification: { click_action: { type: 3 } } } } } };
    const apnsN = { apns: { payload: { aps: { alert: "raw apns" } } } };
    const send = async (recipient: Record<string, unknown>, notification: Record<string, unknown>) => {
      const r = await ok("send_push_notification", { recipient, notification });
      const p = await final(r.uid);
      assert.equal(p.state, dispatch.PublishState.PUBLISH_STATE_DONE, JSON.stringify(recipient));
      return p;
    };
    await send({ fcm_tokens: [fcm] }, fcmN);
    assert.deepEqual(fcmMessages(fcm)[0]?.notification, { title: "raw", body: "fcm" });
    const fcmTopic = unique("fcm-topic");
    await send({ fcm_topic: fcmTopic }, fcmN);
    assert.ok(fakes.fcm.records.some((r) => JSON.parse(r.rawBody.toString()).message?.topic === fcmTopic), "the FCM topic message");
    const condition = `'${unique("c")}' in topics`;
    await send({ fcm_condition: condition }, fcmN);
    assert.ok(fakes.fcm.records.some((r) => JSON.parse(r.rawBody.toString()).message?.condition === condition), "the FCM condition message");
    await send({ hms_tokens: [hms] }, hmsN);
    assert.deepEqual(fakes.hms.delivered(hms), [hms]);
    const hmsTopic = unique("hms-topic");
    await send({ hms_topic: hmsTopic }, hmsN);
    assert.ok(fakes.hms.records.some((r) => r.topic === hmsTopic), "the HMS topic message");
    const hmsCondition = `'${unique("h")}' in topics`;
    await send({ hms_condition: hmsCondition }, hmsN);
    assert.ok(fakes.hms.records.some((r) => r.condition === hmsCondition), "the HMS condition message");
    await send({ apns_tokens: [apns] }, apnsN);
    assert.deepEqual(JSON.parse(fakes.apns.delivered(apns)[0]!.rawBody.toString()), { aps: { alert: "raw apns" } });
    await refused("send_push_notification", { recipient: { fcm_tokens: [fcm], apns_tokens: [apns] }, notification: fcmN }, 107);
    await refused("send_push_notification", { recipient: {}, notification: fcmN }, 107);
  });

  it("cancels a push scheduled with send_at by its uid, and honours expire_at", async () => {
    const d = await register();
    const uid = unique("later");
    const r = await ok("send_push_notification", { recipient: { filter: { ids: [d.id] } }, notification: { fcm: { message: { notification: { title: "later" } } }, expire_at: nowSeconds() + 7200 }, uid, send_at: nowSeconds() + 3600 });
    assert.equal(r.uid, uid);
    const scheduled = await publishOf(uid);
    assert.equal(scheduled?.state, dispatch.PublishState.PUBLISH_STATE_SCHEDULED);
    assert.ok(Math.abs(scheduled!.request!.expireAt!.getTime() / 1000 - (nowSeconds() + 7200)) < 5, "notification.expire_at is unix seconds");
    assert.ok(Math.abs(scheduled!.request!.sendAt!.getTime() / 1000 - (nowSeconds() + 3600)) < 5, "send_at is unix seconds");
    assert.deepEqual(await ok("cancel_push", { uid }), {});
    const cancelled = await final(uid);
    assert.equal(cancelled.state, dispatch.PublishState.PUBLISH_STATE_CANCELLED);
    assert.deepEqual(fcmMessages(d.token), [], "a cancelled push is never sent");
    assert.match(await refused("cancel_push", { uid: unique("never-sent") }, 107), /not found|NOT_FOUND/i);
    // A repeated uid is the same push (Herald's idempotency key), sent once.
    const again = await ok("send_push_notification", { recipient: { filter: { ids: [d.id] } }, notification: { fcm: { message: { notification: { title: "later" } } } }, uid });
    assert.equal(again.uid, uid);
    assert.equal((await publishes.listPublishes({ uid })).publishes.length, 1);
    await refused("send_push_notification", { recipient: { filter: { ids: [d.id] } }, notification: { fcm: { message: {} }, expire_at: nowSeconds() - 60 } }, 107);
  });

  it("records update_push_status as receipts of the push", async () => {
    const d = await register();
    const uid = unique("seen");
    await ok("send_push_notification", { recipient: { filter: { ids: [d.id] } }, notification: { fcm: { message: { notification: { title: "hi" } } } }, uid });
    await final(uid);
    assert.deepEqual(await ok("update_push_status", { analytics_uid: uid, status: "delivered", device_id: d.id, msg_id: "m1" }), {});
    assert.deepEqual(await ok("update_push_status", { analytics_uid: uid, status: "interacted", device_id: d.id }), {});
    const counts = (await publishOf(uid))?.counts;
    assert.equal(counts?.deliveredReceipts, 1);
    assert.equal(counts?.openedReceipts, 1);
    // analytics_uid given at send time is the uid update_push_status names.
    const analytics = unique("analytics");
    const sent = await ok("send_push_notification", { recipient: { filter: { ids: [d.id] } }, notification: { fcm: { message: { notification: { title: "hi" } } } }, analytics_uid: analytics });
    await final(sent.uid);
    await ok("update_push_status", { analytics_uid: analytics, status: "delivered", device_id: d.id });
    assert.equal((await publishOf(sent.uid))?.counts?.deliveredReceipts, 1);
    await refused("update_push_status", { analytics_uid: uid, status: "lost", device_id: d.id }, 107);
  });

  it("answers Centrifugo's errors: 401 for a wrong key, codes in cent's exception otherwise", async () => {
    const wrong = await call("device_list", {}, `hk_s_demo_${"x".repeat(32)}`);
    assert.deepEqual({ ok: wrong.ok, exception: wrong.ok ? "" : wrong.exception }, { ok: false, exception: "CentUnauthorizedError" });
    const none = await call("device_list", {}, "not-a-key");
    assert.equal(none.ok === false && none.exception, "CentUnauthorizedError");
    assert.equal((await raw("/api/device_list", {}, {})).status, 401);
    const unknown = await raw("/api/no_such_method", {});
    assert.deepEqual(unknown, { status: 200, json: { error: { code: 104, message: "method not found" } } });
    // cent's pydantic models check types before sending; a hostile body over raw HTTP is 107.
    const wrongType = await raw("/api/device_register", { provider: 5, token: [], platform: {} });
    assert.equal(wrongType.status, 200);
    assert.equal(wrongType.json.error.code, 107);
    assert.equal((await raw("/api/device_list", "{not json")).json.error.code, 107);
    await refused("send_push_notification", { recipient: { fcm_tokens: [fcmToken()] }, notification: {}, localizations: { fr: { translations: { a: "b" } } } }, 108);
  });

  it("serves the single /api form, Authorization: apikey and batch", async () => {
    const token = fcmToken();
    const single = await raw("/api", { method: "device_register", params: { provider: "fcm", platform: "android", token } }, { authorization: `apikey ${demo.serverKey}` });
    assert.equal(single.status, 200);
    assert.equal(typeof single.json.result.id, "string");
    const list = await raw("/api", { method: "device_list", params: { filter: { ids: [single.json.result.id] } } });
    assert.equal(list.json.result.items[0].token, token);
    assert.equal((await raw("/api", { method: "nope", params: {} })).json.error.code, 104);
    const batch = await call("batch", { requests: [{ method: "device_list", params: { filter: { ids: [single.json.result.id] } } }, { method: "device_remove", params: { ids: [single.json.result.id] } }] });
    assert.ok(batch.ok, JSON.stringify(batch));
    assert.equal(batch.result.replies.length, 2);
    assert.equal(batch.result.replies[0].items[0].id, single.json.result.id);
    assert.equal((await ok("device_list", { filter: { ids: [single.json.result.id] } })).items.length, 0);
  });

  it("never answers 500 to hostile input", async () => {
    const d = await register();
    const nested: Record<string, unknown> = {};
    let cur = nested;
    for (let i = 0; i < 50; i++) cur = (cur.x = {}) as Record<string, unknown>;
    const bodies: Array<[string, unknown]> = [
      ["device_register", { provider: "fcm", platform: "android", token: fcmToken(), meta: { "\u0000\u202e\ud83d": "v", ["k".repeat(10_000)]: "v" } }],
      ["device_register", { provider: "fcm", platform: "android", token: "\u0000", tags: { "": "" } }],
      ["device_register", { provider: "fcm", platform: "android", token: fcmToken(), topics: ["bad topic \n"] }],
      ["device_register", { provider: "fcm", platform: "android", token: "x".repeat(100_000) }],
      ["device_update", { ids: [d.id], meta_update: { meta: { "\u0007": "\ud800" } } }],
      ["device_update", { ids: "not-a-list", user_update: [] }],
      ["device_update", { ids: [d.id], locale_update: { locale: "\u0000" }, timezone_update: { timezone: "Mars/Olympus" } }],
      ["device_list", { filter: { providers: ["pigeon"] }, limit: -1 }],
      ["device_list", { filter: { ids: [{}] }, limit: 1e300, cursor: "\u0000\n" }],
      ["device_list", { filter: [], include_meta: "yes" }],
      ["device_topic_list", { filter: { device_platforms: ["toaster"] } }],
      ["device_topic_list", { filter: { topic_prefix: "\u0000.*(" }, limit: 5 }],
      ["user_topic_list", { filter: { users: ["\u0000"] } }],
      ["send_push_notification", { recipient: { filter: { ids: [d.id] } }, notification: { fcm: { message: nested } } }],
      ["send_push_notification", { recipient: { filter: { ids: [d.id] } }, notification: { fcm: { message: { data: { "\u0000": 5 } } } } }],
      ["send_push_notification", { recipient: { fcm_tokens: [""] }, notification: { fcm: { message: "text" } } }],
      ["send_push_notification", { recipient: { filter: {} }, notification: { apns: { payload: { aps: { alert: "x".repeat(5000) } } } } }],
      ["send_push_notification", { recipient: { apns_tokens: ["zz"] }, notification: { apns: { headers: { "\u0000": 1 }, payload: [] } }, send_at: "soon", expire_at: 1e20 }],
      ["cancel_push", { uid: "\u0000".repeat(5000) }],
      ["update_push_status", { analytics_uid: "x".repeat(5000), status: "delivered", device_id: "\u0000" }],
      ["device_topic_update", { device_id: d.id, op: "add", topics: Array.from({ length: 5000 }, (_, i) => `t${i}`) }],
    ];
    // Each is refused as bad input (107, or 106 for too many topics), or, where the input is merely
    // odd (a literal prefix with control characters, FCM data passed through to FCM as Centrifugo
    // passes it), answered: never HTTP 500 or code 100.
    for (const [method, body] of bodies) {
      const res = await raw(`/api/${method}`, body);
      const what = `${method} ${JSON.stringify(body).slice(0, 200)}: ${JSON.stringify(res.json).slice(0, 300)}`;
      assert.equal(res.status, 200, what);
      assert.ok(res.json.error || res.json.result, what);
      if (res.json.error) assert.ok([106, 107, 108].includes(res.json.error.code), what);
      if (method === "device_register") assert.ok(res.json.error, `accepted: ${what}`);
    }
    for (const body of ["[]", "null", "\"text\"", "1", "{\"method\": 5, \"params\": []}"]) {
      const res = await raw("/api", body);
      assert.equal(res.status, 200, body);
      assert.notEqual(res.json.error?.code, 100, body);
    }
  });
});
