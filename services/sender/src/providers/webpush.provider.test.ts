import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import webPush from "web-push";
import { tokenHash } from "@herald/platform";
import { startFakeWebPush, testTls, type FakeSubscription, type FakeWebPush } from "@herald/testing";
import type { ProviderTarget, SendRequest } from "../provider.types.js";
import { MAX_PLAINTEXT, WebPushProvider, type WebPushProviderConfig } from "./webpush.provider.js";

const tls = testTls();
const vapid = { subject: "mailto:ops@herald.test", ...webPush.generateVAPIDKeys() };
const loopback = { webPushHosts: ["127.0.0.1", "localhost"], webPushAllowInsecure: false };
const utf8 = (s: string) => new TextEncoder().encode(s);

const request = (targets: ProviderTarget[], extra: Partial<SendRequest> = {}): SendRequest => ({
  app: "app1",
  publishId: "pub1",
  jobId: "job1",
  attempt: 0,
  targets,
  payload: utf8('{"title":"hi"}'),
  headers: {},
  priority: "normal",
  ...extra,
});
const target = (sub: FakeSubscription | string, payload?: Uint8Array): ProviderTarget => ({
  deviceId: typeof sub === "string" ? "raw" : `dev-${sub.id}`,
  token: typeof sub === "string" ? sub : sub.token,
  ...(payload ? { payload } : {}),
});

describe("WebPushProvider against the fake push service over TLS", () => {
  let fake: FakeWebPush;
  const providers: WebPushProvider[] = [];
  const provider = (config: Partial<WebPushProviderConfig> = {}) => {
    const p = new WebPushProvider({ vapid, tokenRules: loopback, ca: tls.ca, ...config });
    providers.push(p);
    return p;
  };
  let webpush: WebPushProvider;
  const sendOne = async (p: WebPushProvider, t: ProviderTarget, extra?: Partial<SendRequest>) => {
    const [result] = await p.send(request([t], extra));
    assert.ok(result);
    return result.outcome;
  };

  before(async () => {
    fake = await startFakeWebPush();
    webpush = provider();
  });
  after(async () => {
    await Promise.all(providers.map((p) => p.close()));
    await fake.close();
  });
  beforeEach(() => fake.reset());

  it("delivers exactly the bytes sent: JSON, binary and empty payloads, and per-device overrides", async () => {
    const json = fake.subscribe();
    const binary = fake.subscribe();
    const empty = fake.subscribe();
    const templated = fake.subscribe();
    const bytes = new Uint8Array(1024).map((_, i) => (i * 7 + 3) % 256);
    const text = utf8("multi-byte ✓ 𝄞 \u0000 \r\n end");
    const results = await webpush.send(
      request([target(json), target(binary, bytes), target(empty, new Uint8Array(0)), target(templated, text)], { payload: utf8('{"title":"Hello","n":1}') }),
    );
    assert.deepEqual(results.map((r) => r.outcome.kind), ["sent", "sent", "sent", "sent"]);
    assert.deepEqual(results.map((r) => r.target.deviceId), [json, binary, empty, templated].map((s) => `dev-${s.id}`));
    assert.deepEqual(fake.delivered(json.id)[0]?.plaintext, Buffer.from('{"title":"Hello","n":1}'));
    assert.deepEqual(fake.delivered(binary.id)[0]?.plaintext, Buffer.from(bytes));
    assert.deepEqual(fake.delivered(empty.id)[0]?.plaintext, Buffer.alloc(0));
    assert.deepEqual(fake.delivered(templated.id)[0]?.plaintext, Buffer.from(text));
    const first = results[0]?.outcome;
    assert.ok(first?.kind === "sent" && first.id?.startsWith(`${fake.origin}/m/`), "the Location header is the message id");
  });

  it("signs VAPID for the endpoint's origin, expiring within 12 hours", async () => {
    const sub = fake.subscribe({ applicationServerKey: vapid.publicKey });
    assert.equal((await sendOne(webpush, target(sub))).kind, "sent");
    const claims = fake.records[0]?.vapid;
    assert.equal(claims?.aud, fake.origin);
    assert.equal(claims?.sub, vapid.subject);
    assert.equal(claims?.publicKey, vapid.publicKey);
    const ahead = (claims?.exp ?? 0) - Date.now() / 1000;
    assert.ok(ahead > 6 * 3600 && ahead <= 12 * 3600, `exp ${ahead}s ahead`);
  });

  it("reports VAPID rejections as credential problems, never as dead tokens", async () => {
    const other = webPush.generateVAPIDKeys();
    const pinned = fake.subscribe({ applicationServerKey: other.publicKey });
    assert.deepEqual(await sendOne(webpush, target(pinned)), { kind: "credentials", reason: "webpush:403" });

    const sub = fake.subscribe();
    const mismatched = provider({ vapid: { ...vapid, privateKey: other.privateKey } });
    assert.deepEqual(await sendOne(mismatched, target(sub)), { kind: "credentials", reason: "webpush:401" });

    const broken = provider({ vapid: { ...vapid, privateKey: "not-a-key" } });
    assert.deepEqual(await sendOne(broken, target(sub)), { kind: "credentials", reason: "webpush:InvalidVapidKeys" });
    assert.deepEqual(fake.records.map((r) => r.status), [403, 401]);
  });

  it("sets TTL, Urgency and Topic from the request", async () => {
    const sub = fake.subscribe();
    const now = new Date();
    const clocked = provider({ now: () => now });
    await sendOne(clocked, target(sub));
    await sendOne(clocked, target(sub), { headers: { TTL: "60", Urgency: "very-low", Topic: "scores_1" }, priority: "high" });
    await sendOne(clocked, target(sub), { priority: "high", expireAt: new Date(now.getTime() + 90_500) });
    await sendOne(clocked, target(sub), { priority: "low", headers: { ttl: "3600" }, expireAt: new Date(now.getTime() + 120_000) });
    await sendOne(clocked, target(sub), { expireAt: new Date(now.getTime() - 1000) });
    assert.deepEqual(
      fake.records.map((r) => r.headers),
      [
        { ttl: 2419200, urgency: "normal", contentEncoding: "aes128gcm" },
        { ttl: 60, urgency: "very-low", topic: "scores_1", contentEncoding: "aes128gcm" },
        { ttl: 90, urgency: "high", contentEncoding: "aes128gcm" },
        // Never kept past expireAt, whatever the TTL header asks for.
        { ttl: 120, urgency: "low", contentEncoding: "aes128gcm" },
        { ttl: 0, urgency: "normal", contentEncoding: "aes128gcm" },
      ],
    );
  });

  it("fails messages with headers no push service accepts, without sending", async () => {
    const sub = fake.subscribe();
    assert.deepEqual(await sendOne(webpush, target(sub), { headers: { Topic: "t".repeat(33) } }), { kind: "failed", reason: "webpush:InvalidTopic" });
    assert.deepEqual(await sendOne(webpush, target(sub), { headers: { Topic: "no spaces" } }), { kind: "failed", reason: "webpush:InvalidTopic" });
    assert.deepEqual(await sendOne(webpush, target(sub), { headers: { Urgency: "asap" } }), { kind: "failed", reason: "webpush:InvalidUrgency" });
    assert.deepEqual(await sendOne(webpush, target(sub), { headers: { TTL: "-1" } }), { kind: "failed", reason: "webpush:InvalidTTL" });
    assert.deepEqual(await sendOne(webpush, target("not json")), { kind: "failed", reason: "webpush:InvalidSubscription" });
    const badKey = JSON.stringify({ endpoint: `${fake.origin}/push/x`, keys: { p256dh: "AAAA", auth: "BBBBBBBBBBBBBBBBBBBBBB" } });
    assert.deepEqual(await sendOne(webpush, target(badKey)), { kind: "failed", reason: "webpush:InvalidSubscription" });
    assert.equal(fake.requests, 0);
  });

  it("classifies the push service's answers", async () => {
    const cases: Array<[Parameters<FakeWebPush["subscribe"]>[0], unknown]> = [
      [{ scenario: "gone" }, { kind: "invalid_token", reason: "webpush:410" }],
      [{ scenario: "not-found" }, { kind: "invalid_token", reason: "webpush:404" }],
      [{ scenario: "too-many" }, { kind: "retry", reason: "webpush:429", retryAfterMs: 30_000 }],
      [{ scenario: { kind: "too-many", retryAfter: new Date(Date.now() + 60_000).toUTCString() } }, "retry-after-date"],
      [{ scenario: "server-error" }, { kind: "retry", reason: "webpush:500" }],
      [{ scenario: "unavailable" }, { kind: "retry", reason: "webpush:503", retryAfterMs: 5000 }],
      [{ scenario: { kind: "status", status: 400 } }, { kind: "failed", reason: "webpush:400" }],
      [{ scenario: { kind: "status", status: 413 } }, { kind: "failed", reason: "webpush:413" }],
      [{ scenario: { kind: "status", status: 202 } }, { kind: "sent" }],
    ];
    for (const [options, expected] of cases) {
      const outcome = await sendOne(webpush, target(fake.subscribe(options)));
      if (expected === "retry-after-date") {
        assert.ok(outcome.kind === "retry" && outcome.reason === "webpush:429");
        assert.ok(outcome.retryAfterMs !== undefined && outcome.retryAfterMs > 50_000 && outcome.retryAfterMs <= 60_000, `${outcome.retryAfterMs}`);
      } else {
        assert.deepEqual(outcome, expected, JSON.stringify(options));
      }
    }
    const flaky = fake.subscribe({ scenario: "flaky-2" });
    const kinds = [];
    for (let i = 0; i < 3; i++) kinds.push((await sendOne(webpush, target(flaky))).kind);
    assert.deepEqual(kinds, ["retry", "retry", "sent"]);
  });

  it("never follows a redirect", async () => {
    const sub = fake.subscribe({ scenario: { kind: "status", status: 307, headers: { location: "https://169.254.169.254/latest/meta-data/" } } });
    assert.deepEqual(await sendOne(webpush, target(sub)), { kind: "failed", reason: "webpush:307" });
    assert.equal(fake.requests, 1);
  });

  it("retries on timeouts, refused connections and cancellation", async () => {
    const slow = fake.subscribe({ scenario: { kind: "slow", delayMs: 10_000 } });
    const impatient = provider({ timeoutMs: 100 });
    assert.deepEqual(await sendOne(impatient, target(slow)), { kind: "retry", reason: "webpush:Timeout" });

    const closed = await startFakeWebPush();
    const orphan = closed.subscribe();
    await closed.close();
    assert.deepEqual(await sendOne(webpush, target(orphan)), { kind: "retry", reason: "webpush:ECONNREFUSED" });

    const abort = new AbortController();
    const pending = sendOne(webpush, target(slow), { signal: abort.signal });
    await fake.waitForRequests(2);
    abort.abort();
    assert.deepEqual(await pending, { kind: "retry", reason: "webpush:Aborted" });
    assert.deepEqual(await sendOne(webpush, target(slow), { signal: abort.signal }), { kind: "retry", reason: "webpush:Aborted" });
    assert.equal(fake.requests, 2, "an already cancelled send makes no request");
    await fake.waitFor(2);
    assert.deepEqual(fake.records.map((r) => r.status), [0, 0], "the fake saw both clients give up");
  });

  it("refuses endpoints off the allow-list before connecting, as failed rather than invalid", async () => {
    const sub = fake.subscribe();
    const keys = sub.keys;
    const port = new URL(fake.url).port;
    const endpoints = [
      "https://169.254.169.254/latest/meta-data/",
      "https://evil.example.com/push/x",
      "https://fcm.googleapis.com.evil.example/push/x",
      `http://127.0.0.1:${port}/push/${sub.id}`, // plain http is not allowed here
      `https://user:pw@127.0.0.1:${port}/push/${sub.id}`,
      "file:///etc/passwd",
      "/push/relative",
    ];
    const results = await webpush.send(request(endpoints.map((endpoint) => target(JSON.stringify({ endpoint, keys })))));
    for (const r of results) assert.deepEqual(r.outcome, { kind: "failed", reason: "webpush:EndpointNotAllowed" }, r.target.token);
    assert.equal(fake.requests, 0);
    assert.equal(fake.connections, 0);

    // A policy that no longer lists the push service refuses tokens the registry once accepted.
    const tightened = provider({ tokenRules: { webPushHosts: ["fcm.googleapis.com"], webPushAllowInsecure: false } });
    assert.deepEqual(await sendOne(tightened, target(sub)), { kind: "failed", reason: "webpush:EndpointNotAllowed" });
    assert.equal(fake.connections, 0);
  });

  it("accepts 3993 bytes of plaintext and refuses 3994 without sending", async () => {
    const sub = fake.subscribe();
    const max = new Uint8Array(MAX_PLAINTEXT).fill(0x41);
    assert.equal(MAX_PLAINTEXT, 3993);
    assert.deepEqual(await sendOne(webpush, target(sub), { payload: new Uint8Array(MAX_PLAINTEXT + 1) }), { kind: "failed", reason: "webpush:PayloadTooLarge" });
    assert.deepEqual(await sendOne(webpush, target(sub, new Uint8Array(MAX_PLAINTEXT + 1))), { kind: "failed", reason: "webpush:PayloadTooLarge" });
    assert.equal(fake.requests, 0);
    assert.equal((await sendOne(webpush, target(sub), { payload: max })).kind, "sent");
    assert.deepEqual(fake.delivered(sub.id)[0]?.plaintext, Buffer.from(max));
  });

  it("reuses keep-alive connections", async (t) => {
    const pooled = provider({ maxSockets: 8 });
    const subs = Array.from({ length: 4 }, () => fake.subscribe());
    const targets = Array.from({ length: 400 }, (_, i) => target(subs[i % subs.length]!, utf8(`message ${i}`)));
    const started = performance.now();
    const first = await pooled.send(request(targets));
    const second = await pooled.send(request(targets));
    const ms = performance.now() - started;
    t.diagnostic(`800 sends over ${fake.connections} connections in ${ms.toFixed(0)} ms (${Math.round(800 / (ms / 1000))}/s)`);
    assert.ok([...first, ...second].every((r) => r.outcome.kind === "sent"));
    assert.equal(fake.delivered().length, 800);
    assert.ok(fake.connections <= 8, `${fake.connections} connections`);
    const seen = fake.delivered(subs[1]!.id).map((r) => r.plaintext?.toString());
    assert.equal(seen.length, 200);
    assert.deepEqual(new Set(seen), new Set(targets.filter((_, i) => i % 4 === 1).map((t) => Buffer.from(t.payload!).toString())));
  });

  it("traces one client span per request without the endpoint", async () => {
    const exporter = new InMemorySpanExporter();
    const tracing = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    try {
      const traced = provider({ tracer: tracing.getTracer("herald.sender") });
      const ok = fake.subscribe();
      const gone = fake.subscribe({ scenario: "gone" });
      const outside = JSON.stringify({ endpoint: "https://169.254.169.254/x", keys: ok.keys });
      await traced.send(request([target(ok), target(gone), target(outside)], { attempt: 2 }));
      const spans = exporter.getFinishedSpans();
      assert.equal(spans.length, 2, "no span for a request never made");
      const okSpan = spans.find((s) => s.attributes["http.response.status_code"] === 201);
      assert.equal(okSpan?.name, "webpush send");
      assert.equal(okSpan?.kind, SpanKind.CLIENT);
      assert.equal(okSpan?.instrumentationScope.name, "herald.sender");
      assert.deepEqual(
        { ...okSpan?.attributes },
        {
          "herald.app": "app1",
          "herald.publish_id": "pub1",
          "herald.provider": "webpush",
          "herald.attempt": 2,
          "http.request.method": "POST",
          "server.address": "127.0.0.1",
          "herald.token_hash": tokenHash(ok.token),
          "http.response.status_code": 201,
          "herald.outcome": "sent",
        },
      );
      const goneSpan = spans.find((s) => s.attributes["http.response.status_code"] === 410);
      assert.equal(goneSpan?.status.code, SpanStatusCode.ERROR);
      assert.equal(goneSpan?.attributes["herald.outcome"], "invalid_token");
      const everything = JSON.stringify(spans.map((s) => [s.name, s.attributes, s.status]));
      assert.ok(!everything.includes(ok.endpoint) && !everything.includes(gone.endpoint), "endpoints stay out of traces");
    } finally {
      await tracing.shutdown();
    }
  });

  it("rejects native topics, which Web Push does not have", async () => {
    assert.deepEqual(await webpush.send(request([], { nativeTopic: "news" })), [
      { target: { deviceId: "", token: "news" }, outcome: { kind: "failed", reason: "webpush:NativeTopicUnsupported" } },
    ]);
    assert.deepEqual(await webpush.send(request([])), []);
  });
});

describe("WebPushProvider over plain http (local fakes)", () => {
  it("sends when the rules allow insecure endpoints, and only then", async () => {
    const fake = await startFakeWebPush({ insecure: true });
    const allowed = new WebPushProvider({ vapid, tokenRules: { ...loopback, webPushAllowInsecure: true } });
    const strict = new WebPushProvider({ vapid, tokenRules: loopback });
    try {
      const sub = fake.subscribe();
      const [ok] = await allowed.send(request([target(sub)]));
      assert.equal(ok?.outcome.kind, "sent");
      assert.deepEqual(fake.delivered(sub.id)[0]?.plaintext, Buffer.from('{"title":"hi"}'));
      assert.equal(fake.records[0]?.vapid?.aud, fake.origin);
      const [refused] = await strict.send(request([target(sub)]));
      assert.deepEqual(refused?.outcome, { kind: "failed", reason: "webpush:EndpointNotAllowed" });
      assert.equal(fake.requests, 1);
    } finally {
      await Promise.all([allowed.close(), strict.close()]);
      await fake.close();
    }
  });
});
