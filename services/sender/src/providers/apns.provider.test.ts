import assert from "node:assert/strict";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { SpanKind } from "@opentelemetry/api";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { tokenHash } from "@herald/platform";
import { generateApnsKey, randomDeviceToken, scenarioToken, startFakeApns, testTls, type FakeApns } from "@herald/testing";
import type { Outcome, ProviderTarget, SendRequest } from "../provider.types.js";
import { apnsHeaders } from "./apns.headers.js";
import { ApnsJwtSigner } from "./apns.jwt.js";
import { outcomeOf, TOKEN_UPDATES_RETRY_MS } from "./apns.outcome.js";
import { ApnsProvider, EXPIRED_REASON, type ApnsProviderConfig } from "./apns.provider.js";

const tls = testTls();
const BUNDLE = "com.example.app";
const MINUTE = 60_000;
const utf8 = (s: string) => new TextEncoder().encode(s);
const PAYLOAD = utf8('{"aps":{"alert":{"title":"Hi","body":"there"}}}');

const request = (targets: ProviderTarget[], extra: Partial<SendRequest> = {}): SendRequest => ({
  app: "app1",
  publishId: "pub1",
  jobId: "job1",
  attempt: 0,
  targets,
  payload: PAYLOAD,
  headers: {},
  priority: "normal",
  ...extra,
});
const device = (token = randomDeviceToken(), payload?: Uint8Array): ProviderTarget => ({ deviceId: `dev-${token.slice(0, 8)}`, token, ...(payload ? { payload } : {}) });
const kinds = (outcomes: Outcome[]) => outcomes.reduce<Record<string, number>>((m, o) => ({ ...m, [o.kind]: (m[o.kind] ?? 0) + 1 }), {});
// A JSON body of exactly n bytes.
const sized = (n: number) => utf8(JSON.stringify({ aps: {}, pad: "x".repeat(n - 19) }));

describe("ApnsProvider against the fake APNs over TLS + HTTP/2", () => {
  const key = generateApnsKey();
  // Shared by the fake and the providers; fakeSkew lets Apple's clock run ahead of ours.
  let clock = Date.parse("2026-11-01T10:00:00Z");
  let fakeSkew = 0;
  let fake: FakeApns;
  const exporter = new InMemorySpanExporter();
  const tracing = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const providers: ApnsProvider[] = [];
  const provider = (config: Partial<ApnsProviderConfig> = {}, target: FakeApns = fake) => {
    const p = new ApnsProvider({
      url: target.url,
      servername: "api.push.apple.com",
      bundleId: BUNDLE,
      auth: { kind: "token", keyId: key.keyId, teamId: key.teamId, privateKeyPem: key.privateKeyPem },
      ca: tls.ca,
      now: () => new Date(clock),
      tracer: tracing.getTracer("herald.sender"),
      ...config,
    });
    providers.push(p);
    return p;
  };
  const sendOne = async (p: ApnsProvider, target: ProviderTarget, extra?: Partial<SendRequest>) => {
    const [result] = await p.send(request([target], extra));
    assert.ok(result);
    return result.outcome;
  };

  before(async () => {
    fake = await startFakeApns({ keys: [{ ...key, bundleId: BUNDLE }], now: () => clock + fakeSkew, slowMs: 300, retryAfter: "7" });
  });
  after(async () => {
    await Promise.all(providers.map((p) => p.close()));
    await fake.close();
  });
  beforeEach(() => {
    fake.reset();
    exporter.reset();
  });
  afterEach(() => {
    fakeSkew = 0;
  });

  it("delivers byte-exact payloads with the job's headers, completed from its portable fields", async () => {
    const p = provider();
    const special = utf8('{"aps":{"alert":"für dich 🎁","sound":"default"},"deep_link":"app://x?y=1"}');
    const [a, b] = [device(), device(randomDeviceToken(), special)];
    const expireAt = new Date(clock + 3600_000 + 999);
    const results = await p.send(
      request([a, b], { priority: "high", expireAt, headers: { "apns-collapse-id": "news-1", "APNS-PUSH-TYPE": "alert", "x-not-apns": "dropped", authorization: "bearer forged" } }),
    );
    assert.deepEqual(kinds(results.map((r) => r.outcome)), { sent: 2 });
    const [ra, rb] = [fake.delivered(a.token)[0], fake.delivered(b.token)[0]];
    assert.ok(ra && rb);
    assert.deepEqual(new Uint8Array(ra.rawBody), PAYLOAD);
    assert.deepEqual(new Uint8Array(rb.rawBody), special);
    assert.deepEqual(results[0]?.outcome, { kind: "sent", id: ra.apnsId });
    assert.equal(ra.headers[":authority"], `api.push.apple.com:${fake.port}`);
    assert.equal(ra.headers["apns-topic"], BUNDLE);
    assert.equal(ra.headers["apns-push-type"], "alert");
    assert.equal(ra.headers["apns-priority"], "10");
    assert.equal(ra.headers["apns-expiration"], String(Math.floor(expireAt.getTime() / 1000)));
    assert.equal(ra.headers["apns-collapse-id"], "news-1");
    assert.equal(ra.headers["x-not-apns"], undefined);
    assert.match(ra.headers.authorization ?? "", /^bearer [\w-]+\.[\w-]+\.[\w-]+$/);
    assert.notEqual(ra.headers.authorization, "bearer forged");
    assert.equal(ra.auth, "token");

    // Topic suffixes and priorities per push type; explicit headers win.
    const headersFor = async (headers: Record<string, string>, priority: SendRequest["priority"] = "high") => {
      const t = device();
      assert.deepEqual(await sendOne(p, t, { headers, priority }), { kind: "sent", id: fake.delivered(t.token)[0]?.apnsId });
      const h = fake.delivered(t.token)[0]?.headers ?? {};
      return `${h["apns-topic"]} ${h["apns-priority"]}`;
    };
    assert.equal(await headersFor({ "apns-push-type": "voip" }), `${BUNDLE}.voip 10`);
    assert.equal(await headersFor({ "apns-push-type": "background" }), `${BUNDLE} 5`);
    assert.equal(await headersFor({ "apns-push-type": "liveactivity" }), `${BUNDLE}.push-type.liveactivity 10`);
    assert.equal(await headersFor({ "apns-push-type": "complication" }, "normal"), `${BUNDLE}.complication 5`);
    assert.equal(await headersFor({}, "low"), `${BUNDLE} 5`);
    assert.equal(await headersFor({ "apns-priority": "1", "apns-topic": BUNDLE }), `${BUNDLE} 1`);
  });

  it("never touches devices when APNs refuses the credentials", async () => {
    const wrongKey = provider({ auth: { kind: "token", keyId: key.keyId, teamId: key.teamId, privateKeyPem: generateApnsKey().privateKeyPem } });
    const unknownKey = provider({ auth: { kind: "token", ...generateApnsKey({ teamId: key.teamId }) } });
    const targets = [device(), device(scenarioToken("unregistered")), device(scenarioToken("bad-device-token"))];
    for (const p of [wrongKey, unknownKey]) {
      const outcomes = (await p.send(request(targets))).map((r) => r.outcome);
      assert.deepEqual(outcomes, targets.map(() => ({ kind: "credentials", reason: "apns:InvalidProviderToken" })));
    }
    assert.deepEqual(fake.stats.byStatus, { 403: 6 });
    assert.equal(fake.delivered().length, 0);

    const unusable = provider({ auth: { kind: "token", keyId: key.keyId, teamId: key.teamId, privateKeyPem: "not a key" } });
    assert.deepEqual(await sendOne(unusable, device()), { kind: "credentials", reason: "apns:InvalidSigningKey" });
    assert.equal(fake.stats.requests, 6, "nothing sent without a signed token");
  });

  it("opens one stream per fresh connection until the token is accepted, then uses many, never more than allowed", async () => {
    const wide = await startFakeApns({ keys: [{ ...key, bundleId: BUNDLE }], maxStreams: 50, latencyMs: 20, now: () => clock });
    try {
      const p = provider({}, wide);
      const targets = Array.from({ length: 200 }, () => device());
      const results = await p.send(request(targets));
      assert.deepEqual(kinds(results.map((r) => r.outcome)), { sent: 200 });
      assert.equal(wide.delivered().length, 200);
      // One span per HTTP/2 request: no stream was refused and sent again.
      assert.equal(exporter.getFinishedSpans().length, 200);
      const stats = wide.connectionStats;
      assert.ok(stats.length >= 1 && stats.length <= 2, `${stats.length} connections for maxSessions 2`);
      for (const c of stats) assert.ok(c.maxConcurrentStreamsWhileLimited <= 1, `connection ${c.id}: ${c.maxConcurrentStreamsWhileLimited} streams before the token`);
      const peak = Math.max(...stats.map((c) => c.maxConcurrentStreams));
      assert.ok(peak > 1 && peak <= 50, `peak of ${peak} concurrent streams`);

      // The connections stay open for the next job, already at the raised limit.
      const connects = p.connects;
      assert.deepEqual(kinds((await p.send(request(Array.from({ length: 100 }, () => device())))).map((r) => r.outcome)), { sent: 100 });
      assert.equal(p.connects, connects);
      assert.equal(wide.connections, stats.length);
    } finally {
      await wide.close();
    }
  });

  it("maps every scenario token to its outcome", async () => {
    const p = provider();
    const cases: [string, Outcome | ((o: Outcome, token: string) => void)][] = [
      [scenarioToken("bad-device-token"), { kind: "invalid_token", reason: "apns:BadDeviceToken" }],
      [scenarioToken("expired-token"), { kind: "invalid_token", reason: "apns:ExpiredToken" }],
      [scenarioToken("not-for-topic"), { kind: "invalid_token", reason: "apns:DeviceTokenNotForTopic" }],
      [
        scenarioToken("unregistered"),
        (o, token) => {
          const timestamp = fake.received.find((r) => r.token === token)?.timestamp;
          assert.ok(timestamp);
          assert.deepEqual(o, { kind: "invalid_token", reason: "apns:Unregistered", invalidSince: new Date(timestamp) });
        },
      ],
      [scenarioToken("too-many-requests"), { kind: "retry", reason: "apns:TooManyRequests", retryAfterMs: 7000 }],
      [scenarioToken("internal-error"), { kind: "retry", reason: "apns:InternalServerError" }],
      [scenarioToken("unavailable"), { kind: "retry", reason: "apns:ServiceUnavailable" }],
      [scenarioToken("slow"), (o, token) => assert.deepEqual(o, { kind: "sent", id: fake.delivered(token)[0]?.apnsId })],
    ];
    const results = await p.send(request(cases.map(([token]) => device(token))));
    cases.forEach(([token, expected], i) => {
      const outcome = results[i]?.outcome;
      assert.ok(outcome);
      if (typeof expected === "function") expected(outcome, token);
      else assert.deepEqual(outcome, expected, token);
    });

    const flaky = device(scenarioToken("flaky-2"));
    const attempts = [await sendOne(p, flaky), await sendOne(p, flaky, { attempt: 1 }), await sendOne(p, flaky, { attempt: 2 })];
    assert.deepEqual(attempts.map((o) => o.kind), ["retry", "retry", "sent"]);
  });

  it("enforces payload limits through APNs' answers: 4096 bytes, 5120 for VoIP", async () => {
    const p = provider();
    assert.equal((await sendOne(p, device(), { payload: sized(4096) })).kind, "sent");
    assert.deepEqual(await sendOne(p, device(), { payload: sized(4097) }), { kind: "failed", reason: "apns:PayloadTooLarge" });
    const voip = { headers: { "apns-push-type": "voip" } };
    assert.equal((await sendOne(p, device(), { ...voip, payload: sized(5120) })).kind, "sent");
    assert.deepEqual(await sendOne(p, device(), { ...voip, payload: sized(5121) }), { kind: "failed", reason: "apns:PayloadTooLarge" });
    assert.deepEqual(await sendOne(p, device(), { payload: new Uint8Array() }), { kind: "failed", reason: "apns:PayloadEmpty" });
  });

  it("sends nothing once expireAt has passed, for native topics, tokens that are not hex or headers HTTP/2 cannot carry", async () => {
    const p = provider();
    const targets = [device(), device()];
    const expired = await p.send(request(targets, { expireAt: new Date(clock - 1) }));
    assert.deepEqual(expired.map((r) => r.outcome), [
      { kind: "failed", reason: EXPIRED_REASON },
      { kind: "failed", reason: EXPIRED_REASON },
    ]);
    assert.deepEqual(await sendOne(p, device("../../3/device/abc")), { kind: "invalid_token", reason: "apns:BadDeviceToken" });
    assert.deepEqual(await p.send(request([], { nativeTopic: "news" })), [{ target: { deviceId: "", token: "news" }, outcome: { kind: "failed", reason: "apns:NativeTopicUnsupported" } }]);
    assert.deepEqual(await p.send(request([])), []);
    for (const headers of [{ "apns-collapse-id": "a\r\nb" }, { "apns-bad header": "x" }] as Record<string, string>[]) {
      assert.deepEqual(await sendOne(p, device(), { headers }), { kind: "failed", reason: "apns:InvalidHeader" });
    }
    assert.equal(fake.stats.requests, 0);
  });

  it("gives up on slow answers after requestTimeoutMs and on abort, as retries", async () => {
    const p = provider({ requestTimeoutMs: 100 });
    assert.deepEqual(await sendOne(p, device(scenarioToken("slow"))), { kind: "retry", reason: "apns:Timeout" });
    const abort = new AbortController();
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on("warning", onWarning);
    const pending = p.send(request(Array.from({ length: 20 }, () => device(scenarioToken("slow"))), { signal: abort.signal }));
    await fake.waitForRequests(21);
    abort.abort();
    assert.deepEqual(kinds((await pending).map((r) => r.outcome)), { retry: 20 });
    assert.ok((await pending).every((r) => r.outcome.kind === "retry" && r.outcome.reason === "apns:Aborted"));
    process.off("warning", onWarning);
    assert.deepEqual(warnings.map((w) => w.message), []);
    assert.deepEqual(await sendOne(p, device(), { signal: abort.signal }), { kind: "retry", reason: "apns:Aborted" });
    // The cancelled streams left the connection usable.
    assert.equal((await sendOne(p, device())).kind, "sent");
  });

  it("survives GOAWAY: requests in flight complete or come back as retry, new ones go out on a new connection", async () => {
    const p = provider();
    assert.equal((await sendOne(p, device())).kind, "sent");
    const before = p.connects;

    // Shutdown: what APNs already received is answered; what it did not is sent again.
    const inFlight = p.send(request(Array.from({ length: 10 }, () => device(scenarioToken("slow")))));
    await fake.waitForRequests(11);
    fake.goaway();
    const during = p.send(request(Array.from({ length: 10 }, () => device())));
    assert.deepEqual(kinds((await during).map((r) => r.outcome)), { sent: 10 });
    // Streams opened before the client read the GOAWAY were refused and sent once more.
    const resent = exporter.getFinishedSpans().filter((s) => s.attributes["herald.apns.resend"]);
    assert.ok(resent.length > 0 && resent.length <= 10, `${resent.length} resent`);
    // The old connection still carries the slow answers, but no new stream may go there.
    exporter.reset();
    const later = await p.send(request(Array.from({ length: 10 }, () => device())));
    assert.deepEqual(kinds(later.map((r) => r.outcome)), { sent: 10 });
    assert.equal(exporter.getFinishedSpans().length, 10, "no stream sent to the closing connection");
    assert.deepEqual(kinds((await inFlight).map((r) => r.outcome)), { sent: 10 });
    assert.ok(p.connects > before, "reconnected");

    // Dropped connection: requests in flight are retries for the runtime (they may have arrived).
    const reconnected = p.connects;
    const dropped = p.send(request(Array.from({ length: 5 }, () => device(scenarioToken("slow")))));
    await fake.waitForRequests(fake.stats.requests + 5);
    fake.goaway({ abortInFlight: true });
    for (const { outcome } of await dropped) {
      assert.equal(outcome.kind, "retry");
      assert.match(outcome.reason, /^apns:/);
    }
    assert.deepEqual(kinds((await p.send(request([device(), device()]))).map((r) => r.outcome)), { sent: 2 });
    assert.ok(p.connects > reconnected, "reconnected again");
  });

  it("keeps its provider token for 50 minutes, never changes it within 20, and APNs accepts every change", async () => {
    const p = provider();
    const bearer = () => fake.received.at(-1)?.headers.authorization;
    const iat = (authorization = "") => JSON.parse(Buffer.from(authorization.split(".")[1] ?? "", "base64url").toString()).iat as number;
    assert.equal((await sendOne(p, device())).kind, "sent");
    const first = bearer();
    assert.equal(iat(first), Math.floor(clock / 1000));
    clock += 19 * MINUTE;
    assert.equal((await sendOne(p, device())).kind, "sent");
    assert.equal(bearer(), first);
    clock += 30 * MINUTE;
    assert.equal((await sendOne(p, device())).kind, "sent");
    assert.equal(bearer(), first, "49 minutes old: still current");
    clock += MINUTE;
    assert.equal((await sendOne(p, device())).kind, "sent");
    const second = bearer();
    assert.notEqual(second, first);
    assert.equal(iat(second), Math.floor(clock / 1000));
    clock += 10 * MINUTE;
    assert.equal((await sendOne(p, device())).kind, "sent");
    assert.equal(bearer(), second);
    assert.equal(p.tokensGenerated, 2);
    assert.equal(fake.stats.byStatus[429], undefined);
  });

  it("renews the token at once when APNs says it expired, once for all streams that heard it", async () => {
    const p = provider();
    assert.equal((await sendOne(p, device())).kind, "sent");
    // Our clock says 30 minutes, Apple's says 61: the token is too old for Apple.
    clock += 30 * MINUTE;
    fakeSkew = 31 * MINUTE;
    const outcomes = (await p.send(request(Array.from({ length: 5 }, () => device())))).map((r) => r.outcome);
    assert.deepEqual(outcomes, outcomes.map(() => ({ kind: "retry", reason: "apns:ExpiredProviderToken" })));
    assert.equal((await sendOne(p, device())).kind, "sent");
    assert.equal(p.tokensGenerated, 2);
  });

  it("authenticates with a client certificate instead of a token", async () => {
    const p = provider({ auth: { kind: "certificate", ...pem(tls.issueClient(BUNDLE)) } });
    const t = device();
    assert.equal((await sendOne(p, t, { headers: { "apns-push-type": "alert" } })).kind, "sent");
    const [record] = fake.delivered(t.token);
    assert.equal(record?.auth, "certificate");
    assert.equal(record?.headers.authorization, undefined);
    assert.equal(record?.headers["apns-topic"], BUNDLE);
    assert.equal((await sendOne(p, device(), { headers: { "apns-push-type": "voip" } })).kind, "sent");
    assert.equal(p.tokensGenerated, 0);

    const otherApp = provider({ auth: { kind: "certificate", ...pem(tls.issueClient("com.other.app")) } });
    assert.deepEqual(await sendOne(otherApp, device()), { kind: "failed", reason: "apns:TopicDisallowed" });
  });

  it("authenticates with a .p12 certificate bundle and its passphrase", async () => {
    const pfx = tls.toPkcs12(tls.issueClient(BUNDLE), "s3cret");
    const p = provider({ auth: { kind: "pkcs12", pfx, passphrase: "s3cret" } });
    const t = device();
    assert.equal((await sendOne(p, t, { headers: { "apns-push-type": "alert" } })).kind, "sent");
    assert.equal(fake.delivered(t.token)[0]?.auth, "certificate");
  });

  it("connects by IP without a servername too", async () => {
    const p = new ApnsProvider({ url: fake.url, bundleId: BUNDLE, auth: { kind: "token", ...key }, ca: tls.ca, now: () => new Date(clock) });
    providers.push(p);
    const t = device();
    assert.equal((await sendOne(p, t)).kind, "sent");
    assert.equal(fake.delivered(t.token)[0]?.headers[":authority"], `127.0.0.1:${fake.port}`);
  });

  it("traces one client span per HTTP/2 request, with a token hash and never the token", async () => {
    const p = provider();
    const ok = device();
    const gone = device(scenarioToken("unregistered"));
    await p.send(request([ok, gone], { attempt: 3, app: "shop", publishId: "pub-9" }));
    const spans = exporter.getFinishedSpans();
    assert.equal(spans.length, 2);
    const byHash = new Map(spans.map((s) => [s.attributes["herald.token_hash"], s]));
    const hash = tokenHash;
    const sent = byHash.get(hash(ok.token));
    const failed = byHash.get(hash(gone.token));
    assert.ok(sent && failed);
    for (const span of spans) {
      assert.equal(span.name, "apns send");
      assert.equal(span.kind, SpanKind.CLIENT);
      assert.equal(span.instrumentationScope.name, "herald.sender");
      assert.equal(span.attributes["herald.app"], "shop");
      assert.equal(span.attributes["herald.publish_id"], "pub-9");
      assert.equal(span.attributes["herald.provider"], "apns");
      assert.equal(span.attributes["herald.attempt"], 3);
      assert.ok(!JSON.stringify(span.attributes).includes(ok.token) && !JSON.stringify(span.attributes).includes(gone.token));
    }
    assert.equal(sent.attributes["http.response.status_code"], 200);
    assert.equal(sent.attributes["herald.apns.reason"], undefined);
    assert.equal(failed.attributes["http.response.status_code"], 410);
    assert.equal(failed.attributes["herald.apns.reason"], "Unregistered");
  });
});

describe("APNs classification, headers and token signing", () => {
  const now = new Date("2026-11-01T10:00:00Z");
  const answer = (status: number, reason?: string, headers: Record<string, string> = {}, extra: object = {}) => ({
    status,
    headers,
    body: reason ? JSON.stringify({ reason, ...extra }) : "",
  });

  it("classifies APNs answers", () => {
    assert.deepEqual(outcomeOf(answer(200, undefined, { "apns-id": "a-b" }), now), { kind: "sent", id: "a-b" });
    assert.deepEqual(outcomeOf(answer(410, "Unregistered", {}, { timestamp: 1_700_000_000_000 }), now), {
      kind: "invalid_token",
      reason: "apns:Unregistered",
      invalidSince: new Date(1_700_000_000_000),
    });
    assert.deepEqual(outcomeOf(answer(400, "BadTopic"), now), { kind: "failed", reason: "apns:BadTopic" });
    assert.deepEqual(outcomeOf(answer(404, "BadPath"), now), { kind: "failed", reason: "apns:BadPath" });
    assert.deepEqual(outcomeOf(answer(403, "BadCertificateEnvironment"), now), { kind: "credentials", reason: "apns:BadCertificateEnvironment" });
    assert.deepEqual(outcomeOf(answer(403, "ExpiredProviderToken"), now), { kind: "retry", reason: "apns:ExpiredProviderToken" });
    assert.deepEqual(outcomeOf(answer(429, "TooManyProviderTokenUpdates"), now), { kind: "retry", reason: "apns:TooManyProviderTokenUpdates", retryAfterMs: TOKEN_UPDATES_RETRY_MS });
    assert.deepEqual(outcomeOf(answer(503, "Shutdown", { "retry-after": new Date(now.getTime() + 30_000).toUTCString() }), now), {
      kind: "retry",
      reason: "apns:Shutdown",
      retryAfterMs: 30_000,
    });
    assert.deepEqual(outcomeOf({ status: 502, headers: {}, body: "<html>bad gateway</html>" }, now), { kind: "retry", reason: "apns:502" });
  });

  it("builds headers from the job", () => {
    const base: SendRequest = { app: "a", publishId: "p", jobId: "j", attempt: 0, targets: [], payload: PAYLOAD, headers: {}, priority: "high" };
    assert.deepEqual(apnsHeaders(base, BUNDLE), { "apns-topic": BUNDLE, "apns-priority": "10" });
    assert.deepEqual(apnsHeaders({ ...base, headers: { "apns-push-type": "pushtotalk" }, expireAt: new Date(1_800_000_000_500) }, BUNDLE), {
      "apns-push-type": "pushtotalk",
      "apns-topic": `${BUNDLE}.voip-ptt`,
      "apns-priority": "10",
      "apns-expiration": "1800000000",
    });
    assert.equal(apnsHeaders({ ...base, headers: { "apns-expiration": "0" }, expireAt: new Date() }, BUNDLE)["apns-expiration"], "0");
  });

  it("refuses token lifetimes outside Apple's 20-60 minutes", () => {
    const key = generateApnsKey();
    assert.throws(() => new ApnsJwtSigner(key, () => now, 19 * MINUTE), RangeError);
    assert.throws(() => new ApnsJwtSigner(key, () => now, 60 * MINUTE), RangeError);
    const signer = new ApnsJwtSigner(key, () => now, 20 * MINUTE);
    const token = signer.current();
    assert.equal(signer.current(), token);
    signer.expired("some older token");
    assert.equal(signer.current(), token);
    signer.expired(token);
    assert.notEqual(signer.current(), token);
  });
});

function pem({ cert, key }: { cert: string; key: string }) {
  return { certPem: cert, keyPem: key };
}
