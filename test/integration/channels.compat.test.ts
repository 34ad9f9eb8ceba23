import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import Pusher from "pusher";
import { startEmbedded, startFakeProviders, type EmbeddedApp, type EmbeddedServer, type FakeProviders } from "@herald/cli";
import { createClient, createLogger } from "@herald/platform";
import { common, dispatch, registry } from "@herald/proto";
import { apnsToken, fcmToken } from "./fixtures.js";

const samples = fileURLToPath(new URL("../../deploy/samples", import.meta.url));

// Pusher Channels compatibility: Pusher's own server library for Node (`pusher` 5.3.4) pointed at
// the gateway (host and port changed, nothing else), devices joining channels through the
// device side, deliveries asserted at the fake FCM and APNs services.
describe("Pusher Channels compatibility", () => {
  let server: EmbeddedServer;
  let fakes: FakeProviders;
  let demo: EmbeddedApp;
  let pusher: Pusher;
  let port: number;
  let devices: ReturnType<typeof createClient<typeof registry.RegistryServiceService>>;
  let publishes: ReturnType<typeof createClient<typeof dispatch.DispatchServiceService>>;
  let socket = 1000;

  before(async () => {
    fakes = await startFakeProviders(createLogger({ service: "t", level: "silent" }), { record: true });
    server = await startEmbedded({ port: 0, httpPort: 0, appsDir: samples, devFile: false, providerFor: fakes.providerFor, tokenRules: fakes.tokenRules, logger: createLogger({ service: "t", level: "silent" }) });
    demo = server.apps.find((a) => a.id === "demo")!;
    port = Number(new URL(server.httpUrl!).port);
    pusher = new Pusher({ appId: "demo", key: "demo", secret: demo.userTokenSecret, host: "127.0.0.1", port: String(port), useTLS: false });
    devices = createClient(registry.RegistryServiceService, registry, server.address, { apiKey: demo.serverKey });
    publishes = createClient(dispatch.DispatchServiceService, dispatch, server.address, { apiKey: demo.serverKey });
  });
  after(async () => {
    devices?.close();
    publishes?.close();
    await server?.stop();
    await fakes?.close();
  });

  // A device as an app registers it: its socket_id is its pusher_socket_id tag.
  const device = async (opts: { user?: string; apns?: boolean } = {}) => {
    const token = opts.apns ? apnsToken() : fcmToken();
    const socketId = `${++socket}.${Date.now() % 100000}`;
    const { device: d } = await devices.registerDevice({
      provider: opts.apns ? common.Provider.PROVIDER_APNS : common.Provider.PROVIDER_FCM,
      platform: opts.apns ? common.Platform.PLATFORM_IOS : common.Platform.PLATFORM_ANDROID,
      token,
      tags: { pusher_socket_id: socketId },
      ...(opts.user ? { user: opts.user } : {}),
    });
    return { id: d!.id, token, socketId };
  };
  const post = async (path: string, body: unknown) => {
    const res = await fetch(`${server.httpUrl}/apps/demo${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    return { status: res.status, json: (await res.json()) as Record<string, any> };
  };
  const subscribe = (socketId: string, channel: string, extra: object = {}) => post("/subscribe", { socket_id: socketId, channel, ...extra });
  // The publish an event made (its label), once final.
  const settled = async (event: string) => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const [p] = (await publishes.listPublishes({ labels: { source: "pusher-channels", event } })).publishes;
      if (p && ["PUBLISH_STATE_DONE", "PUBLISH_STATE_FAILED"].includes(dispatch.publishStateToJSON(p.state))) return p;
      assert.ok(Date.now() < deadline, `the publish of ${event} did not finish`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const fcmMessage = (token: string) => fakes.fcm.delivered(token).map((r) => JSON.parse(r.rawBody.toString()).message as Record<string, any>);
  // The client's RequestError: status and the body as text.
  const refusal = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (err) {
      const e = err as { status?: number; body?: string };
      return { status: e.status, body: e.body ? (JSON.parse(e.body) as { error: string }) : undefined };
    }
    assert.fail("the call succeeded");
  };

  it("triggers an in-app event as a data message, excluding the socket_id's device", async () => {
    const [a, b] = [await device(), await device()];
    const channel = `chat-${Date.now()}`;
    for (const d of [a, b]) assert.deepEqual(await subscribe(d.socketId, channel), { status: 200, json: {} });
    const event = `message-${Date.now()}`;
    const res = await pusher.trigger(channel, event, { text: "hello" }, { socket_id: a.socketId });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {});
    const p = await settled(event);
    assert.equal(p.counts?.targeted, 1, "the sender's own device is excluded");
    assert.equal(p.counts?.sent, 1);
    assert.deepEqual(fcmMessage(a.token), []);
    const [m] = fcmMessage(b.token);
    assert.deepEqual(m!.data, { event, channel, data: JSON.stringify({ text: "hello" }) });
    assert.equal(m!.notification, undefined, "no visible notification for an in-app event");
  });

  it("shows data with a title or body as a notification, on several channels at once, with info", async () => {
    const ios = await device({ apns: true });
    const android = await device();
    const stamp = Date.now();
    await subscribe(ios.socketId, `news-${stamp}`);
    await subscribe(android.socketId, `news-${stamp}`);
    await subscribe(android.socketId, `sport-${stamp}`);
    const event = `headline-${stamp}`;
    const res = await pusher.trigger([`news-${stamp}`, `sport-${stamp}`], event, { title: "Goal!", body: "2-1" }, { info: "subscription_count" });
    assert.deepEqual(await res.json(), { channels: { [`news-${stamp}`]: { subscription_count: 2 }, [`sport-${stamp}`]: { subscription_count: 1 } } });
    const p = await settled(event);
    assert.equal(p.counts?.targeted, 2, "a device on both channels gets the event once");
    const [m] = fcmMessage(android.token);
    assert.deepEqual(m!.notification, { title: "Goal!", body: "2-1" });
    assert.equal(m!.data.channels, JSON.stringify([`news-${stamp}`, `sport-${stamp}`]));
    const [apple] = fakes.apns.delivered(ios.token);
    assert.deepEqual(JSON.parse(apple!.rawBody.toString()).aps, { alert: { title: "Goal!", body: "2-1" } });
  });

  it("sends an in-app event to iOS as a background push", async () => {
    const ios = await device({ apns: true });
    const channel = `silent-${Date.now()}`;
    await subscribe(ios.socketId, channel);
    await pusher.trigger(channel, "tick", "plain text");
    await settled("tick");
    const [apple] = fakes.apns.delivered(ios.token);
    assert.deepEqual(JSON.parse(apple!.rawBody.toString()), { aps: { "content-available": 1 }, event: "tick", channel, data: "plain text" });
    assert.equal(apple!.headers["apns-push-type"], "background");
    assert.equal(apple!.headers["apns-priority"], "5");
  });

  it("triggers a batch with per-event info, and sends to users", async () => {
    const ada = await device({ user: `ada-${Date.now()}` });
    const ch = `batch-${Date.now()}`;
    await subscribe(ada.socketId, ch);
    const res = await pusher.triggerBatch([
      { channel: ch, name: `b1-${ch}`, data: { n: 1 }, info: "subscription_count" },
      { channel: ch, name: `b2-${ch}`, data: "two" },
    ] as Pusher.BatchEvent[]);
    assert.deepEqual(await res.json(), { batch: [{ subscription_count: 1 }, {}] });
    assert.equal((await settled(`b1-${ch}`)).counts?.sent, 1);
    assert.equal((await settled(`b2-${ch}`)).counts?.sent, 1);

    const { device: d } = await devices.getDevice({ id: ada.id });
    const toUser = await pusher.sendToUser(d!.user, `dm-${ch}`, { title: "For you" });
    assert.equal(toUser.status, 200);
    const p = await settled(`dm-${ch}`);
    assert.equal(p.counts?.sent, 1);
    assert.equal(fcmMessage(ada.token).at(-1)!.data.channel, `#server-to-user-${d!.user}`);
  });

  it("answers channel state, channel lists and presence users", async () => {
    const stamp = Date.now();
    const user = `grace-${stamp}`;
    const g = await device({ user });
    const presence = `presence-room-${stamp}`;
    const channelData = { user_id: user, user_info: { name: "Grace" } };
    const auth = pusher.authorizeChannel(g.socketId, presence, channelData);
    assert.deepEqual(await subscribe(g.socketId, presence, auth), { status: 200, json: {} });
    await subscribe(g.socketId, `public-${stamp}`);

    const one = await (await pusher.get({ path: `/channels/${presence}`, params: { info: "user_count,subscription_count" } })).json();
    assert.deepEqual(one, { occupied: true, user_count: 1, subscription_count: 1 });
    const empty = await (await pusher.get({ path: `/channels/nobody-${stamp}` })).json();
    assert.deepEqual(empty, { occupied: false });
    const list = await (await pusher.get({ path: "/channels", params: { filter_by_prefix: `presence-room-${stamp}`, info: "user_count" } })).json();
    assert.deepEqual(list, { channels: { [presence]: { user_count: 1 } } });
    const all = (await (await pusher.get({ path: "/channels" })).json()) as { channels: Record<string, unknown> };
    assert.deepEqual(all.channels[`public-${stamp}`], {});
    const users = await (await pusher.get({ path: `/channels/${presence}/users` })).json();
    assert.deepEqual(users, { users: [{ id: user }] });

    assert.equal((await refusal(pusher.get({ path: `/channels/public-${stamp}/users` }))).status, 400, "users of presence channels only");
    assert.equal((await refusal(pusher.get({ path: "/channels", params: { info: "user_count" } }))).status, 400, "user_count needs a presence- prefix");
  });

  it("joins private and presence channels only with the app's auth", async () => {
    const stamp = Date.now();
    const d = await device({ user: `lin-${stamp}` });
    const channel = `private-orders-${stamp}`;
    assert.equal((await subscribe(d.socketId, channel)).status, 403, "no auth");
    const forged = new Pusher({ appId: "demo", key: "demo", secret: "someone-elses-secret", host: "127.0.0.1", port: String(port) }).authorizeChannel(d.socketId, channel);
    assert.equal((await subscribe(d.socketId, channel, forged)).status, 403, "another secret's auth");
    const other = await device();
    assert.equal((await subscribe(other.socketId, channel, pusher.authorizeChannel(d.socketId, channel))).status, 403, "an auth for another socket");
    assert.deepEqual(await subscribe(d.socketId, channel, pusher.authorizeChannel(d.socketId, channel)), { status: 200, json: {} });
    assert.equal((await subscribe(d.socketId, channel, pusher.authorizeChannel(d.socketId, channel))).status, 200, "subscribing again with the same auth");
    const presence = `presence-${stamp}`;
    const wrongUser = pusher.authorizeChannel(d.socketId, presence, { user_id: "someone-else" });
    assert.equal((await subscribe(d.socketId, presence, wrongUser)).status, 403, "a member must be the device's user");

    await pusher.trigger(channel, `order-${stamp}`, { id: 7 });
    assert.equal((await settled(`order-${stamp}`)).counts?.sent, 1);
    assert.deepEqual(await post("/unsubscribe", { socket_id: d.socketId, channel }), { status: 200, json: {} });
    const left = await (await pusher.get({ path: `/channels/${channel}`, params: { info: "subscription_count" } })).json();
    assert.deepEqual(left, { occupied: false, subscription_count: 0 });
  });

  it("maps a 200-character channel name onto a topic of its own", async () => {
    const d = await device();
    const stamp = String(Date.now());
    const long = `long-${stamp}-`.padEnd(200, "x");
    const sibling = `long-${stamp}-`.padEnd(199, "x") + "y";
    assert.equal((await subscribe(d.socketId, long)).status, 200);
    const res = await pusher.trigger([long, sibling], `long-${stamp}`, "x", { info: "subscription_count" });
    assert.deepEqual(await res.json(), { channels: { [long]: { subscription_count: 1 }, [sibling]: { subscription_count: 0 } } });
    assert.equal((await settled(`long-${stamp}`)).counts?.sent, 1);
    assert.deepEqual(await (await pusher.get({ path: `/channels/${sibling}` })).json(), { occupied: false });
  });

  it("refuses what Channels refuses: signatures, timestamps, body_md5, limits", async () => {
    const wrong = new Pusher({ appId: "demo", key: "demo", secret: "wrong", host: "127.0.0.1", port: String(port) });
    const bad = await refusal(wrong.trigger("x", "e", "d"));
    assert.equal(bad.status, 401);
    assert.match(bad.body!.error, /^Invalid signature/);
    const key = await refusal(new Pusher({ appId: "demo", key: "other", secret: demo.userTokenSecret, host: "127.0.0.1", port: String(port) }).trigger("x", "e", "d"));
    assert.deepEqual(key, { status: 401, body: { error: "Unknown auth_key" } });
    assert.equal((await refusal(new Pusher({ appId: "no-such-app", key: "no-such-app", secret: "s", host: "127.0.0.1", port: String(port) }).trigger("x", "e", "d"))).status, 404);
    const news = server.apps.find((a) => a.id === "news")!;
    assert.equal((await refusal(new Pusher({ appId: "demo", key: "demo", secret: news.userTokenSecret, host: "127.0.0.1", port: String(port) }).trigger("x", "e", "d"))).status, 401, "one app's secret is not another's");

    // Raw requests signed by the client's own helper, then tampered with.
    const send = async (path: string, body: string, query?: string, method = "POST") => {
      const q = query ?? pusher.createSignedQueryString({ method, path: `/apps/demo${path}`, body });
      const res = await fetch(`${server.httpUrl}/apps/demo${path}?${q}`, { method, headers: { "content-type": "application/json" }, ...(method === "POST" ? { body } : {}) });
      return { status: res.status, json: (await res.json()) as { error: string } };
    };
    const event = (extra: Record<string, unknown>) => JSON.stringify({ name: "e", data: "d", channels: ["x"], ...extra });
    const signed = pusher.createSignedQueryString({ method: "POST", path: "/apps/demo/events", body: event({}) });
    const tampered = await send("/events", event({ data: "other" }), signed);
    assert.equal(tampered.status, 401);
    assert.match(tampered.json.error, /body_md5/);
    const stale = signed.replace(/auth_timestamp=\d+/, `auth_timestamp=${Math.floor(Date.now() / 1000) - 3600}`);
    const old = await send("/events", event({}), stale);
    assert.equal(old.status, 401);
    assert.match(old.json.error, /^Timestamp expired/);
    // The same signed request twice (two identical triggers in one second) is accepted, as by Channels.
    assert.equal((await send("/events", event({}), signed)).status, 200);
    assert.equal((await send("/events", event({}), signed)).status, 200);

    const tooMany = await send("/events", event({ channels: Array.from({ length: 101 }, (_, i) => `c${i}`) }));
    assert.equal(tooMany.status, 400);
    assert.match(tooMany.json.error, /Too many channels/);
    const big = await send("/events", event({ data: "x".repeat(10 * 1024 + 1) }));
    assert.equal(big.status, 413);
    const badName = await send("/events", event({ channels: ["no spaces"] }));
    assert.equal(badName.status, 400);
    assert.equal((await send("/events", event({ channels: ["x".repeat(201)] }))).status, 400);
    assert.equal((await send("/events", event({ socket_id: "not-a-socket" }))).status, 400);
    assert.equal((await send("/events", event({ info: "everything" }))).status, 400);
    const batch = await send("/batch_events", JSON.stringify({ batch: Array.from({ length: 11 }, () => ({ channel: "x", name: "e", data: "d" })) }));
    assert.equal(batch.status, 400);
    assert.match(batch.json.error, /Batch too large/);
    const notJson = await send("/events", "{nope");
    assert.equal(notJson.status, 400);
    assert.equal(typeof notJson.json.error, "string");
  });

  // Past the signature check (the fuzz stage cannot sign): garbage a valid signature covers is
  // still a 4xx with a JSON {error}, never a 5xx.
  it("answers signed garbage with Channels' 4xx, never a 5xx", async () => {
    const hostile: unknown[] = [null, 1, "s", [], [1], {}, { name: 1 }, { name: "e", data: 1, channels: ["x"] }, { name: "e", data: "d", channels: "x" }, { name: "e", data: "d", channels: [null, {}, 1] },
      { name: "e", data: "d", channels: ["é", "\u0000", "a b"] }, { name: "e", data: "d", channel: "#server-to-user-\u0001é" }, { name: "e", data: "d", channels: [] }, { name: "x".repeat(201), data: "d", channel: "x" },
      { name: "e", data: "d", channel: "x", socket_id: 1.5 }, { name: "e", data: "d", channel: "x", info: ["user_count"] }, { name: "e", data: "d", channel: "x", info: "user_count,,subscription_count" },
      { batch: "x" }, { batch: [null] }, { batch: [{}] }, { batch: [{ channel: ["x"], name: "e", data: "d" }] }, { __proto__: { name: "e" }, constructor: {} }];
    const answers: number[] = [];
    for (const [path, bodies] of [["/events", hostile], ["/batch_events", hostile]] as const) {
      for (const value of bodies) {
        const body = JSON.stringify(value);
        const q = pusher.createSignedQueryString({ method: "POST", path: `/apps/demo${path}`, body });
        const res = await fetch(`${server.httpUrl}/apps/demo${path}?${q}`, { method: "POST", headers: { "content-type": "application/json" }, body });
        const json = (await res.json()) as { error?: unknown };
        answers.push(res.status);
        assert.ok(res.status < 500, `${path} ${body}: ${res.status} ${JSON.stringify(json)}`);
        if (res.status >= 400) assert.equal(typeof json.error, "string", `${path} ${body}`);
      }
    }
    assert.ok(answers.filter((s) => s === 400).length > hostile.length, "most are refused as input errors");
    for (const path of ["/channels/%E9", "/channels/a%20b/users", `/channels/${"x".repeat(201)}`, "/channels"]) {
      const q = pusher.createSignedQueryString({ method: "GET", path: `/apps/demo${path.replace("%E9", "é").replace("%20", " ")}`, params: { info: "bogus", filter_by_prefix: "\u0001" } });
      const res = await fetch(`${server.httpUrl}/apps/demo${path}?${q}`);
      assert.ok(res.status >= 400 && res.status < 500, `${path}: ${res.status}`);
    }
    for (const body of [{}, { socket_id: "1.1", channel: ["x"] }, { socket_id: "1.1", channel: "private-x", auth: 5 }, { socket_id: "9".repeat(400) + ".1", channel: "x" }]) {
      const res = await post("/subscribe", body);
      assert.ok(res.status >= 400 && res.status < 500 && typeof res.json.error === "string", `${JSON.stringify(body)}: ${res.status}`);
    }
  });
});
