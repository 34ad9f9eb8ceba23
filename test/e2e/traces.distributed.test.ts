import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { tokenHash } from "@herald/platform";
import { dispatch } from "@herald/proto";
import { requireEnv, startFakeWebPush, type FakeSubscription, type FakeWebPush } from "@herald/testing";
import { Platform as DevicePlatform, Provider } from "../integration/fixtures.js";
import { ALLOW_FAKES, registerMany, startPlatform, testCaFile, watchToEnd, webPushSender, type Clients, type Platform } from "./platform.fixture.js";

// Jaeger's query API (GET /api/traces), as much of it as these checks read.
interface JaegerSpan {
  spanID: string;
  operationName: string;
  references: Array<{ refType: string; spanID: string }>;
  processID: string;
  tags: Array<{ key: string; value: unknown }>;
}
interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string; tags?: Array<{ key: string; value: unknown }> }>;
}

const tagOf = (span: JaegerSpan, key: string) => span.tags.find((t) => t.key === key)?.value;

// Polls Jaeger until `ready` holds for the traces holding a span with this publish id.
async function findTraces(jaeger: string, service: string, publishId: string, ready: (traces: JaegerTrace[]) => boolean): Promise<JaegerTrace[]> {
  const query = new URLSearchParams({ service, tags: JSON.stringify({ "herald.publish_id": publishId }), lookback: "1h", limit: "20" });
  const deadline = Date.now() + 60_000;
  let traces: JaegerTrace[] = [];
  for (;;) {
    const res = await fetch(`${jaeger}/api/traces?${query}`);
    if (res.status === 200) {
      traces = ((await res.json()) as { data: JaegerTrace[] | null }).data ?? [];
      if (ready(traces)) return traces;
    }
    if (Date.now() > deadline) assert.fail(`Jaeger did not show the expected trace within 60 s (HTTP ${res.status}): ${JSON.stringify(traces).slice(0, 2000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

// A publish through the distributed stack, exported over OTLP to a real Jaeger, comes back from
// Jaeger's query API as one trace: the gRPC call, the Kafka hops, the fan-out (with the topic
// service's part), each delivery job, each provider request and the registry removing a dead
// token, every span under its parent.
describe("one trace per publish in Jaeger", () => {
  const appId = `trc-${randomUUID().slice(0, 6)}`;
  const jaeger = requireEnv("HERALD_JAEGER_QUERY_URL");
  let platform: Platform;
  let app: Clients;
  let fake: FakeWebPush;

  before(async () => {
    fake = await startFakeWebPush();
    platform = await startPlatform({
      ...ALLOW_FAKES,
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: requireEnv("HERALD_OTLP_TRACES_URL"),
      // Export within a fraction of a second instead of the SDK's 5 s.
      OTEL_BSP_SCHEDULE_DELAY: "100",
    });
    app = await platform.createApp(appId);
    const web = webPushSender(testCaFile());
    await platform.startSender(appId, "webpush", web.env, web.credentials);
  });
  after(async () => {
    await platform?.stop();
    await fake?.close();
  });

  it("links the publish call to every provider request, with app, provider, status and hashed tokens", async () => {
    const subs: FakeSubscription[] = [fake.subscribe(), fake.subscribe(), fake.subscribe({ scenario: "gone" })];
    await registerMany(app, subs.map((s) => ({ provider: Provider.PROVIDER_WEBPUSH, platform: DevicePlatform.PLATFORM_WEB, token: s.token, topics: ["match"] })));
    const { id } = await app.dispatch.publish({ recipients: { target: { $case: "topics", value: { values: ["match"] } } }, notification: { alert: { title: "Goal", body: "2-1" } } });
    assert.equal(dispatch.publishStateToJSON((await watchToEnd(app, id)).state), "PUBLISH_STATE_DONE");

    const sends = (t: JaegerTrace) => t.spans.filter((s) => s.operationName === "webpush send");
    // The registry handles the dead token's feedback after the sends, so its span can reach
    // Jaeger later than theirs: wait for it too.
    const feedback = (t: JaegerTrace) => t.spans.find((s) => t.processes[s.processID]?.serviceName === "herald-registry" && /herald\.token-feedback process$/.test(s.operationName));
    const complete = (t: JaegerTrace) =>
      sends(t).length === 3 && t.spans.some((s) => s.operationName === "herald.dispatch.v1.DispatchService/Publish") && feedback(t) !== undefined;
    const traces = await findTraces(jaeger, "herald-sender-webpush", id, (ts) => ts.some(complete));
    const trace = traces.find(complete)!;
    assert.equal(traces.filter((t) => sends(t).length > 0).length, 1, "every provider request of the publish is in one trace");

    const byId = new Map(trace.spans.map((s) => [s.spanID, s]));
    const service = (s: JaegerSpan) => trace.processes[s.processID]!.serviceName;
    const parentOf = (s: JaegerSpan) => {
      const ref = s.references.find((r) => r.refType === "CHILD_OF");
      return ref ? byId.get(ref.spanID) : undefined;
    };
    const ancestry = (s: JaegerSpan) => {
      const chain: string[] = [];
      for (let p = parentOf(s); p; p = parentOf(p)) chain.push(`${service(p)}: ${p.operationName}`);
      return chain;
    };

    const root = trace.spans.find((s) => s.operationName === "herald.dispatch.v1.DispatchService/Publish")!;
    assert.equal(service(root), "herald-dispatcher");
    assert.equal(parentOf(root), undefined, "the publish call is the root");
    assert.deepEqual(new Set(Object.values(trace.processes).map((p) => p.serviceName)), new Set(["herald-dispatcher", "herald-topic", "herald-sender-webpush", "herald-registry"]));

    for (const send of sends(trace)) {
      const chain = ancestry(send);
      const at = (pattern: RegExp) => chain.findIndex((step) => pattern.test(step));
      const steps = [
        /^herald-sender-webpush: deliver job$/,
        // Kafka spans are named by the topic's kind (a bounded set of operations); the topic
        // itself, namespace, app and provider included, is messaging.destination.name.
        /^herald-sender-webpush: herald\.deliveries process$/,
        /^herald-dispatcher: herald\.deliveries publish$/,
        /^herald-dispatcher: fanout$/,
        /^herald-dispatcher: herald\.publishes process$/,
        /^herald-dispatcher: herald\.publishes publish$/,
        /^herald-dispatcher: herald\.dispatch\.v1\.DispatchService\/Publish$/,
      ].map(at);
      assert.ok(steps.every((i, n) => i >= 0 && (n === 0 || i > steps[n - 1]!)), `provider request under job → Kafka → fan-out → Kafka → publish call, in order; got:\n${chain.join("\n")}`);
      assert.equal(tagOf(send, "herald.app"), appId);
      assert.equal(tagOf(send, "herald.provider"), "webpush");
      assert.equal(tagOf(send, "herald.publish_id"), id);
      assert.equal(Number(tagOf(send, "herald.attempt")), 0);
      assert.match(String(tagOf(send, "herald.token_hash")), /^[0-9a-f]{16}$/);
    }
    // One hash definition for every provider: tokenHash of the token as registered.
    assert.deepEqual(new Set(sends(trace).map((s) => tagOf(s, "herald.token_hash"))), new Set(subs.map((s) => tokenHash(s.token))));
    // The root names the publish and its status; the Kafka spans the full topic.
    assert.equal(tagOf(root, "herald.publish_id"), id);
    assert.equal(Number(tagOf(root, "rpc.grpc.status_code")), 0);
    const deliveryTopics = new Set(trace.spans.filter((s) => s.operationName === "herald.deliveries process").map((s) => String(tagOf(s, "messaging.destination.name"))));
    assert.equal(deliveryTopics.size, 1);
    assert.match([...deliveryTopics][0]!, new RegExp(`herald\\.deliveries\\.${appId}\\.webpush$`));
    // Resource detection: every process says which host and process it is.
    for (const p of Object.values(trace.processes)) {
      const keys = new Set((p.tags ?? []).map((t) => t.key));
      for (const k of ["host.name", "process.pid", "process.runtime.name"]) assert.ok(keys.has(k), `${p.serviceName}: ${k} in ${[...keys].join(", ")}`);
    }
    assert.deepEqual(sends(trace).map((s) => Number(tagOf(s, "http.response.status_code"))).sort(), [201, 201, 410]);

    // The topic service's part of the fan-out (streaming the recipients) is under the fan-out.
    const stream = trace.spans.find((s) => s.operationName === "herald.topic.v1.TopicService/StreamRecipients");
    assert.ok(stream, "the topic service's span is in the trace");
    assert.equal(service(stream), "herald-topic");
    assert.ok(ancestry(stream).includes("herald-dispatcher: fanout"), ancestry(stream).join("\n"));

    // The dead subscription's removal happens in the registry, in the same trace.
    const removal = feedback(trace);
    assert.ok(removal, "the registry's token-feedback handling is in the trace");
    assert.ok(ancestry(removal).includes("herald-sender-webpush: deliver job"), ancestry(removal).join("\n"));

    // Tokens never reach the trace: only their hashes do.
    const everything = JSON.stringify(trace);
    for (const s of subs) {
      const endpoint = (JSON.parse(s.token) as { endpoint: string }).endpoint;
      assert.ok(!everything.includes(endpoint), "no subscription endpoint in the trace");
    }
  });
});
