import assert from "node:assert/strict";
import { sign as signWith, createPrivateKey, randomUUID } from "node:crypto";
import { once } from "node:events";
import http2, { type ClientHttp2Session, type IncomingHttpHeaders } from "node:http2";
import { after, before, beforeEach, describe, it } from "node:test";
import { generateApnsKey, randomDeviceToken, scenarioOf, scenarioToken, startFakeApns, type ApnsTestKey, type FakeApns } from "./apns.fake.js";
import { testTls } from "./tls.fixture.js";

// The fake checked with a bare node:http2 client, so its rules are pinned down independently
// of the sender that is tested against it.

const BUNDLE = "com.example.fake";
const tls = testTls();

// ECDSA signatures are randomised: the same claims signed twice are two different tokens, so
// tokens are memoised to present "the same token" again.
const tokens = new Map<string, string>();
function jwt(key: ApnsTestKey, iatMs: number, overrides: { kid?: string; iss?: string; alg?: string } = {}): string {
  const id = JSON.stringify([key.privateKeyPem, iatMs, overrides]);
  const known = tokens.get(id);
  if (known) return known;
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const input = `${part({ alg: overrides.alg ?? "ES256", kid: overrides.kid ?? key.keyId })}.${part({ iss: overrides.iss ?? key.teamId, iat: Math.floor(iatMs / 1000) })}`;
  const signature = signWith("sha256", Buffer.from(input), { key: createPrivateKey(key.privateKeyPem), dsaEncoding: "ieee-p1363" });
  const token = `${input}.${signature.toString("base64url")}`;
  tokens.set(id, token);
  return token;
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  json: { reason?: string; timestamp?: number } | undefined;
}

async function connect(fake: FakeApns, client?: { cert: string; key: string }): Promise<ClientHttp2Session> {
  const session = http2.connect(fake.url, { ca: tls.ca, servername: "api.push.apple.com", ...client });
  session.on("error", () => {});
  await once(session, "remoteSettings");
  return session;
}

function post(session: ClientHttp2Session, token: string, headers: Record<string, string>, body: string | Buffer = '{"aps":{"alert":"hi"}}'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ":path": `/3/device/${token}`, ...headers });
    let status = 0;
    let responseHeaders: IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => {
      status = Number(h[":status"]);
      responseHeaders = h;
    });
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      resolve({ status, headers: responseHeaders, body: text, json: text ? JSON.parse(text) : undefined });
    });
    stream.on("error", reject);
    stream.end(body);
  });
}

describe("fake APNs", () => {
  let fake: FakeApns;
  let clock = Date.parse("2026-11-01T10:00:00Z");
  const key = generateApnsKey();
  const otherTeam = generateApnsKey();
  const sessions: ClientHttp2Session[] = [];
  const open = async (client?: { cert: string; key: string }) => {
    const s = await connect(fake, client);
    sessions.push(s);
    return s;
  };
  const auth = (iatMs = clock, k = key) => ({ authorization: `bearer ${jwt(k, iatMs)}`, "apns-topic": BUNDLE });

  before(async () => {
    fake = await startFakeApns({ keys: [{ ...key, bundleId: BUNDLE }], maxStreams: 20, now: () => clock, slowMs: 50, retryAfter: "7" });
    fake.registerKey({ ...otherTeam, bundleId: "com.other.app" });
  });
  after(async () => {
    for (const s of sessions) s.destroy();
    await fake.close();
  });
  beforeEach(() => fake.reset());

  it("starts every connection at one stream and raises the limit after the first valid token", async () => {
    const session = await open();
    assert.equal(session.remoteSettings.maxConcurrentStreams, 1);
    const refused = await post(session, randomDeviceToken(), { "apns-topic": BUNDLE });
    assert.equal(refused.status, 403);
    assert.equal(session.remoteSettings.maxConcurrentStreams, 1);
    const raised = once(session, "remoteSettings");
    const ok = await post(session, randomDeviceToken(), auth());
    assert.equal(ok.status, 200);
    await raised;
    assert.equal(session.remoteSettings.maxConcurrentStreams, 20);
    const stats = fake.connectionStats.find((c) => c.id === fake.delivered()[0]?.connectionId);
    assert.equal(stats?.streamLimit, 20);
    assert.equal(stats?.auth, "token");
  });

  it("answers like Apple: apns-id on every answer (echoed when given), JSON reasons, 410 timestamps", async () => {
    const session = await open();
    const id = randomUUID();
    const ok = await post(session, randomDeviceToken(), { ...auth(), "apns-id": id });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers["apns-id"], id);
    assert.equal(ok.body, "");
    const gone = await post(session, scenarioToken("unregistered", 24), auth());
    assert.equal(gone.status, 410);
    assert.match(String(gone.headers["apns-id"]), /^[0-9a-f-]{36}$/);
    assert.deepEqual(Object.keys(gone.json ?? {}), ["reason", "timestamp"]);
    assert.equal(gone.json?.reason, "Unregistered");
    assert.equal(gone.json?.timestamp, clock - 24 * 3600 * 1000);
    assert.deepEqual(await post(session, scenarioToken("bad-device-token"), auth()).then((a) => a.json), { reason: "BadDeviceToken" });
  });

  it("verifies provider tokens: signature, key, team, age, and the 20-minute change rule per connection", async () => {
    const session = await open();
    const reason = async (headers: Record<string, string>, s = session) => (await post(s, randomDeviceToken(), headers)).json?.reason ?? "ok";
    assert.equal(await reason({ "apns-topic": BUNDLE }), "MissingProviderToken");
    assert.equal(await reason({ authorization: "bearer nonsense", "apns-topic": BUNDLE }), "InvalidProviderToken");
    // Signed by another key under this key's id.
    const forged = jwt({ ...key, privateKeyPem: generateApnsKey().privateKeyPem }, clock);
    assert.equal(await reason({ authorization: `bearer ${forged}`, "apns-topic": BUNDLE }), "InvalidProviderToken");
    assert.equal(await reason({ authorization: `bearer ${jwt(key, clock, { iss: "WRONGTEAM1" })}`, "apns-topic": BUNDLE }), "InvalidProviderToken");
    assert.equal(await reason({ authorization: `bearer ${jwt(key, clock, { alg: "ES384" })}`, "apns-topic": BUNDLE }), "InvalidProviderToken");
    assert.equal(await reason(auth(clock - 61 * 60 * 1000)), "ExpiredProviderToken");

    const first = auth(clock);
    assert.equal(await reason(first), "ok");
    clock += 19 * 60 * 1000;
    assert.equal(await reason(first), "ok", "the same token again is fine");
    const second = auth(clock);
    assert.equal((await post(session, randomDeviceToken(), second)).status, 429);
    assert.equal(await reason(second), "TooManyProviderTokenUpdates");
    clock += 60 * 1000;
    assert.equal(await reason(second), "ok", "20 minutes after the first token");
    // One team per connection; on a fresh connection the other team is fine.
    assert.equal(await reason({ authorization: `bearer ${jwt(otherTeam, clock)}`, "apns-topic": "com.other.app" }), "InvalidProviderToken");
    assert.equal(await reason({ authorization: `bearer ${jwt(otherTeam, clock)}`, "apns-topic": "com.other.app" }, await open()), "ok");
    const connectionId = fake.delivered()[0]?.connectionId;
    assert.equal(fake.connectionStats.find((c) => c.id === connectionId)?.tokens, 2);
  });

  it("checks topics, push types, priorities, ids, expirations, collapse ids and payloads", async () => {
    const session = await open();
    const reason = async (headers: Record<string, string>, body?: string | Buffer, token = randomDeviceToken()) =>
      (await post(session, token, { ...auth(), ...headers }, body)).json?.reason ?? "ok";
    assert.equal(await reason({ "apns-topic": "com.someone.else" }), "TopicDisallowed");
    assert.equal(await reason({ "apns-push-type": "voip" }), "InvalidPushType", "voip needs the .voip topic");
    assert.equal(await reason({ "apns-push-type": "voip", "apns-topic": `${BUNDLE}.voip` }), "ok");
    assert.equal(await reason({ "apns-push-type": "liveactivity", "apns-topic": `${BUNDLE}.push-type.liveactivity` }), "ok");
    assert.equal(await reason({ "apns-topic": `${BUNDLE}.complication` }), "InvalidPushType");
    assert.equal(await reason({ "apns-push-type": "carrier-pigeon" }), "InvalidPushType");
    assert.equal(await reason({ "apns-push-type": "background", "apns-priority": "10" }), "BadPriority");
    assert.equal(await reason({ "apns-push-type": "background", "apns-priority": "5" }), "ok");
    assert.equal(await reason({ "apns-priority": "7" }), "BadPriority");
    assert.equal(await reason({ "apns-id": "not-a-uuid" }), "BadMessageId");
    assert.equal(await reason({ "apns-expiration": "tomorrow" }), "BadExpirationDate");
    assert.equal(await reason({ "apns-collapse-id": "x".repeat(64) }), "ok");
    assert.equal(await reason({ "apns-collapse-id": "x".repeat(65) }), "BadCollapseId");
    assert.equal(await reason({}, ""), "PayloadEmpty");
    assert.equal(await reason({}, "{nope"), "BadPayload");
    const sized = (n: number) => JSON.stringify({ aps: {}, pad: "x".repeat(n - 19) });
    assert.equal(sized(4096).length, 4096);
    assert.equal(await reason({}, sized(4096)), "ok");
    assert.equal((await post(session, randomDeviceToken(), auth(), sized(4097))).status, 413);
    assert.equal(await reason({}, sized(4097)), "PayloadTooLarge");
    assert.equal(await reason({ "apns-push-type": "voip", "apns-topic": `${BUNDLE}.voip` }, sized(5120)), "ok");
    assert.equal(await reason({ "apns-push-type": "voip", "apns-topic": `${BUNDLE}.voip` }, sized(5121)), "PayloadTooLarge");
    assert.equal(await reason({}, undefined, "zz".repeat(32)), "BadDeviceToken");
    const topicless = await post(session, randomDeviceToken(), { authorization: auth().authorization });
    assert.equal(topicless.json?.reason, "MissingTopic");
  });

  it("records requests exactly, with counters", async () => {
    const session = await open();
    const token = randomDeviceToken();
    const body = Buffer.from('{"aps":{"alert":"héllo 👋"},"n":1}');
    await post(session, token, { ...auth(), "apns-collapse-id": "c1" }, body);
    await post(session, scenarioToken("internal-error"), auth());
    const [ok, failed] = fake.received;
    assert.equal(ok?.token, token);
    assert.deepEqual(ok?.rawBody, body);
    assert.deepEqual(ok?.payload, { aps: { alert: "héllo 👋" }, n: 1 });
    assert.equal(ok?.headers["apns-collapse-id"], "c1");
    assert.equal(ok?.status, 200);
    assert.equal(ok?.auth, "token");
    assert.equal(failed?.reason, "InternalServerError");
    assert.deepEqual(fake.delivered(), [ok]);
    assert.deepEqual(fake.stats, { requests: 2, byStatus: { 200: 1, 500: 1 }, byReason: { InternalServerError: 1 } });
  });

  it("plays every scenario token", async () => {
    const session = await open();
    const answer = async (token: string) => {
      const a = await post(session, token, auth());
      return `${a.status} ${a.json?.reason ?? ""}`.trim();
    };
    assert.equal(await answer(scenarioToken("bad-device-token")), "400 BadDeviceToken");
    assert.equal(await answer(scenarioToken("unregistered")), "410 Unregistered");
    assert.equal(await answer(scenarioToken("expired-token")), "410 ExpiredToken");
    assert.equal(await answer(scenarioToken("not-for-topic")), "400 DeviceTokenNotForTopic");
    const limited = await post(session, scenarioToken("too-many-requests"), auth());
    assert.equal(limited.status, 429);
    assert.equal(limited.headers["retry-after"], "7");
    assert.equal(await answer(scenarioToken("internal-error")), "500 InternalServerError");
    assert.equal(await answer(scenarioToken("unavailable")), "503 ServiceUnavailable");
    assert.equal(await answer(scenarioToken("slow")), "200");
    const flaky = scenarioToken("flaky-2");
    assert.deepEqual(scenarioOf(flaky), { name: "flaky", n: 2 });
    assert.deepEqual([await answer(flaky), await answer(flaky), await answer(flaky)], ["503 ServiceUnavailable", "503 ServiceUnavailable", "200"]);
    assert.equal(scenarioOf(randomDeviceToken()), undefined);
  });

  it("accepts client certificates from the test CA for their CN's topic, at the full stream limit", async () => {
    const session = await open(tls.issueClient(BUNDLE));
    if (session.remoteSettings.maxConcurrentStreams !== 20) await once(session, "remoteSettings");
    assert.equal(session.remoteSettings.maxConcurrentStreams, 20);
    assert.equal((await post(session, randomDeviceToken(), {})).status, 200, "the topic defaults to the certificate's");
    assert.equal((await post(session, randomDeviceToken(), { "apns-topic": `${BUNDLE}.voip`, "apns-push-type": "voip" })).status, 200);
    assert.equal((await post(session, randomDeviceToken(), { "apns-topic": "com.other.app" })).json?.reason, "TopicDisallowed");
    assert.equal(fake.received[0]?.auth, "certificate");
  });

  it("sends GOAWAY with the Shutdown reason, answers what it already received, then closes", async () => {
    const session = await open();
    await post(session, randomDeviceToken(), auth());
    const held = post(session, scenarioToken("slow"), auth());
    await fake.waitForRequests(2);
    const goaway = once(session, "goaway");
    fake.goaway();
    const [code, , data] = (await goaway) as [number, number, Buffer];
    assert.equal(code, http2.constants.NGHTTP2_NO_ERROR);
    assert.deepEqual(JSON.parse(data.toString()), { reason: "Shutdown" });
    assert.equal((await held).status, 200);
    await once(session, "close");
  });

  it("keeps counters only when recording is off", async () => {
    const quiet = await startFakeApns({ keys: [{ ...key, bundleId: BUNDLE }], record: false, now: () => clock });
    const session = await connect(quiet);
    try {
      await Promise.all([post(session, randomDeviceToken(), auth()), post(session, scenarioToken("unregistered"), auth())]);
      await quiet.waitFor(2);
      assert.equal(quiet.received.length, 0);
      assert.deepEqual(quiet.stats.byStatus, { 200: 1, 410: 1 });
    } finally {
      session.destroy();
      await quiet.close();
    }
  });
});
