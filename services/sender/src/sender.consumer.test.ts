import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { createLogger, MemoryBus, type BusMessage } from "@herald/platform";
import { BusTopics, events, Provider, type Lane } from "@herald/proto";
import type { Outcome, PushProvider, SendRequest, TargetResult } from "./provider.types.js";
import { backoffMs, SenderWorker } from "./sender.consumer.js";

const APP = "app1";

// A provider whose outcome per token is scripted: "sent", "invalid", "failed", "retry", "retry-once", "creds".
class ScriptedProvider implements PushProvider {
  readonly name = "fcm" as const;
  calls: SendRequest[] = [];
  private seen = new Map<string, number>();
  // A job with a "hold" token is answered only once this resolves (a provider slow to answer).
  held: Promise<void> = Promise.resolve();
  async send(request: SendRequest): Promise<TargetResult[]> {
    this.calls.push(request);
    if (request.targets.some((t) => t.token.startsWith("hold:"))) await this.held;
    return request.targets.map((target) => {
      const n = (this.seen.get(target.token) ?? 0) + 1;
      this.seen.set(target.token, n);
      const kind = target.token.split(":")[0];
      const outcome: Outcome =
        kind === "invalid" ? { kind: "invalid_token", reason: "fcm:UNREGISTERED" }
        : kind === "failed" ? { kind: "failed", reason: "fcm:INVALID_ARGUMENT" }
        : kind === "retry" ? { kind: "retry", reason: "fcm:UNAVAILABLE", retryAfterMs: 20 }
        : kind === "retry-once" && n === 1 ? { kind: "retry", reason: "fcm:UNAVAILABLE" }
        : kind === "creds" ? { kind: "credentials", reason: "fcm:SENDER_ID_MISMATCH" }
        : { kind: "sent", id: "m" };
      return { target, outcome };
    });
  }
  async close() {}
}

describe("SenderWorker", () => {
  let bus: MemoryBus;
  let provider: ScriptedProvider;
  let worker: SenderWorker;
  const results: events.DeliveryResult[] = [];
  const feedback: events.TokenFeedback[] = [];
  const dead: events.DeadLetter[] = [];
  // The worker's clock; a case that needs time to stand still replaces it.
  let clock: () => Date;

  beforeEach(async () => {
    results.length = feedback.length = dead.length = 0;
    clock = () => new Date();
    bus = new MemoryBus();
    provider = new ScriptedProvider();
    worker = new SenderWorker({ app: APP, provider, bus, logger: createLogger({ service: "t", level: "silent" }), now: () => clock(), maxAttempts: 3, backoff: { initialMs: 10, maxMs: 40 }, credentialCooldownMs: 30 });
    await worker.start();
    const collect = <T>(topic: string, into: T[], decode: (b: Uint8Array) => T) => bus.subscribe({ group: `c-${topic}`, topics: [topic], handler: async (m: BusMessage) => void into.push(decode(m.value)) });
    await collect(BusTopics.results, results, (b) => events.DeliveryResult.decode(b));
    await collect(BusTopics.tokenFeedback, feedback, (b) => events.TokenFeedback.decode(b));
    await collect(BusTopics.deadLetter, dead, (b) => events.DeadLetter.decode(b));
  });
  afterEach(async () => {
    await worker.stop();
    await bus.close();
  });

  const job = (tokens: string[], extra: Partial<events.DeliveryJob> = {}) =>
    events.DeliveryJob.fromPartial({ jobId: `j-${Math.random()}`, app: APP, publishId: "p1", provider: Provider.PROVIDER_FCM, targets: tokens.map((token, i) => ({ deviceId: `d${i}`, token })), payload: Buffer.from("{}"), ...extra });
  const put = (j: events.DeliveryJob, lane: Lane = "bulk") => bus.publish(BusTopics.deliveries(APP, "fcm", lane), [{ key: j.jobId, value: events.DeliveryJob.encode(j).finish() }]);
  const total = (k: keyof events.DeliveryResult) => results.reduce((n, r) => n + (r[k] as number), 0);
  const until = async (cond: () => boolean, what: string) => {
    const deadline = Date.now() + 5000;
    while (!cond()) {
      if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };

  it("reports sent, failed and invalid tokens, and sends token feedback for the dead ones", async () => {
    await put(job(["ok:1", "ok:2", "failed:1", "invalid:1"]));
    await until(() => results.length === 1 && feedback.length === 1, "results");
    assert.deepEqual([total("sent"), total("failed"), total("invalidTokens")], [2, 1, 1]);
    assert.deepEqual(results[0]!.failedByReason, { "fcm:INVALID_ARGUMENT": 1, "fcm:UNREGISTERED": 1 });
    assert.equal(feedback[0]!.token, "invalid:1");
    assert.equal(feedback[0]!.deviceId, "d3");
  });

  it("sends a job of the urgent lane while the bulk lane is stuck on a slow job", async () => {
    let release!: () => void;
    provider.held = new Promise((r) => (release = r));
    // One job held at the provider, one queued behind it on the same (bulk) topic.
    await put(job(["hold:1"], { publishId: "broadcast" }));
    await put(job(["ok:queued"], { publishId: "broadcast" }));
    await until(() => provider.calls.length === 1, "the held bulk job");
    await put(job(["ok:urgent"], { publishId: "reset" }), "urgent");
    await until(() => results.some((r) => r.publishId === "reset"), "the urgent job's result");
    assert.deepEqual(results.map((r) => [r.publishId, r.sent]), [["reset", 1]], "nothing of the bulk lane finished before it");
    release();
    await until(() => total("sent") === 3, "the bulk jobs after the release");
    assert.deepEqual(provider.calls.map((c) => c.targets[0]!.token), ["hold:1", "ok:urgent", "ok:queued"]);
  });

  it("retries transient failures with backoff until they are sent", async () => {
    await put(job(["retry-once:1", "ok:1"]));
    await until(() => total("sent") === 2, "the retried delivery");
    assert.equal(total("retrying"), 1);
    const retried = provider.calls.find((c) => c.attempt === 1);
    assert.deepEqual(retried?.targets.map((t) => t.token), ["retry-once:1"], "only the failed target is retried");
  });

  it("dead-letters after bounded attempts and never retries past expire_at", async () => {
    await put(job(["retry:1"]));
    await until(() => dead.length === 1, "the dead letter");
    assert.equal(provider.calls.length, 3);
    assert.equal(total("deadLettered"), 1);
    assert.match(dead[0]!.reason, /gave up after 3 attempts/);
    // Time stands still, so the job is never expired on arrival however slow the machine, and its
    // first retry (5-10 ms later) would land after expire_at.
    const t0 = new Date();
    clock = () => t0;
    await put(job(["retry:2"], { expireAt: new Date(t0.getTime() + 5) }));
    await until(() => dead.length === 2, "the expiring dead letter");
    assert.match(dead[1]!.reason, /expires before the next attempt/);
  });

  it("does not send expired or cancelled jobs", async () => {
    await put(job(["ok:1", "ok:2"], { expireAt: new Date(Date.now() - 1) }));
    await until(() => total("expired") === 2, "expired");
    await bus.publish(BusTopics.control, [{ key: "p2", value: events.PublishControl.encode({ app: APP, publishId: "p2", cancelled: true }).finish() }]);
    await until(() => worker.isCancelled("p2"), "the cancellation");
    await put(job(["ok:3"], { publishId: "p2" }));
    await until(() => total("cancelled") === 1, "cancelled");
    assert.equal(provider.calls.length, 0);
  });

  it("never reports tokens dead on credential errors and pauses the app", async () => {
    await put(job(["creds:1"]));
    await until(() => total("retrying") === 1, "the credential retry");
    assert.equal(feedback.length, 0);
    assert.equal(total("invalidTokens"), 0);
    const health = worker.health();
    assert.equal(health.degraded, true);
    assert.equal(health.degraded && health.reason, "fcm:SENDER_ID_MISMATCH");
  });

  it("backs off exponentially with jitter under a ceiling", () => {
    for (let attempt = 0; attempt < 10; attempt++) {
      const ceiling = Math.min(400, 10 * 2 ** attempt);
      const ms = backoffMs(attempt, { initialMs: 10, maxMs: 400 });
      assert.ok(ms >= ceiling / 2 && ms <= ceiling, `${attempt}: ${ms}`);
    }
  });
});

describe("SenderWorker steps and hand-offs", () => {
  const logger = createLogger({ service: "t", level: "silent" });
  // A bus whose publish fails `failures` times (the broker down), then records.
  const flakyBus = (failures: number) => {
    const published: Array<{ topic: string; value: Uint8Array }> = [];
    let left = failures;
    const bus = {
      publish: async (topic: string, messages: Array<{ value: Uint8Array }>) => {
        if (left-- > 0) throw new Error("broker unreachable");
        for (const m of messages) published.push({ topic, value: m.value });
      },
    } as unknown as MemoryBus;
    return { bus, results: () => published.filter((p) => p.topic === BusTopics.results).map((p) => events.DeliveryResult.decode(p.value)) };
  };
  const bigJob = (n: number) =>
    events.DeliveryJob.fromPartial({ jobId: "big", app: APP, publishId: "p1", provider: Provider.PROVIDER_FCM, targets: Array.from({ length: n }, (_, i) => ({ deviceId: `d${i}`, token: `ok:${i}` })), payload: Buffer.from("{}") });
  const message = (j: events.DeliveryJob, progress?: string) => {
    const checkpoints: string[] = [];
    const m = { topic: "t", partition: 0, offset: "7", key: j.jobId, value: events.DeliveryJob.encode(j).finish(), headers: {}, timestamp: new Date(), ...(progress ? { progress } : {}), checkpoint: async (p: string) => void checkpoints.push(p) };
    return { m, checkpoints };
  };

  it("works through a large job in steps, checkpointing position and counts, and reports the job once", async () => {
    const provider = new ScriptedProvider();
    const { bus, results } = flakyBus(0);
    const worker = new SenderWorker({ app: APP, provider, bus, logger, now: () => new Date(), checkpointEvery: 10 });
    const { m, checkpoints } = message(bigJob(25));
    await worker.handle(m);
    assert.deepEqual(provider.calls.map((c) => c.targets.length), [10, 10, 5]);
    assert.deepEqual(results().map((r) => [r.jobId, r.sent, r.resumedSent]), [["big", 25, 0]]);
    // "<job>:<attempt>:<position>:<counts so far>"
    assert.deepEqual(checkpoints.map((c) => c.split(":").slice(0, 3).join(":")), ["big:0:10", "big:0:20"]);
    assert.deepEqual(checkpoints.map((c) => events.DeliveryResult.decode(Buffer.from(c.split(":")[3]!, "base64url")).sent), [10, 20]);
  });

  it("starts a job at its checkpoint with the counts carried there, and a job at most one step long as it is", async () => {
    const provider = new ScriptedProvider();
    const { bus, results } = flakyBus(0);
    const worker = new SenderWorker({ app: APP, provider, bus, logger, now: () => new Date(), checkpointEvery: 10 });
    const carried = Buffer.from(events.DeliveryResult.encode(events.DeliveryResult.fromPartial({ sent: 18, failed: 2, failedByReason: { "fcm:INTERNAL": 2 } })).finish()).toString("base64url");
    await worker.handle(message(bigJob(25), `big:0:20:${carried}`).m);
    // A checkpoint without counts (a sender that reported each step itself): only what is left.
    await worker.handle(message(bigJob(25), "big:0:20").m);
    // Another attempt's checkpoint is not this one's; unreadable counts start the job over.
    await worker.handle(message(bigJob(25), "big:1:20").m);
    await worker.handle(message(bigJob(25), "big:0:20:%%%").m);
    await worker.handle(message(bigJob(10)).m);
    assert.deepEqual(provider.calls.map((c) => c.targets.length), [5, 5, 10, 10, 5, 10, 10, 5, 10]);
    assert.deepEqual(results().map((r) => [r.jobId, r.sent, r.failed, r.resumedSent]), [["big", 23, 2, 18], ["big", 5, 0, 0], ["big", 25, 0, 0], ["big", 25, 0, 0], ["big", 10, 0, 0]]);
    assert.deepEqual(results()[0]!.failedByReason, { "fcm:INTERNAL": 2 });
  });

  it("stops at a checkpoint when the bus asks it to yield, and goes on from there when handed the message again: each target once, one report", async () => {
    const provider = new ScriptedProvider();
    const { bus, results } = flakyBus(0);
    const worker = new SenderWorker({ app: APP, provider, bus, logger, now: () => new Date(), checkpointEvery: 10 });
    const outcomes: unknown[] = [];
    let progress: string | undefined;
    for (let run = 0; run < 5; run++) {
      const { m, checkpoints } = message(bigJob(25), progress);
      outcomes.push(await worker.handle({ ...m, shouldYield: () => true }));
      progress = checkpoints.at(-1) ?? progress;
      if (outcomes.at(-1) !== "yielded") break;
      assert.equal(results().length, 0, "no report before the last step");
    }
    assert.deepEqual(outcomes, ["yielded", "yielded", undefined]);
    assert.deepEqual(provider.calls.map((c) => c.targets.map((t) => t.token)), [0, 10, 20].map((from) => Array.from({ length: Math.min(10, 25 - from) }, (_, i) => `ok:${from + i}`)));
    assert.deepEqual(results().map((r) => [r.jobId, r.sent, r.resumedSent]), [["big", 25, 20]]);
  });

  it("hands the outcomes on again while the bus fails, without sending again", async () => {
    const provider = new ScriptedProvider();
    const { bus, results } = flakyBus(3);
    const worker = new SenderWorker({ app: APP, provider, bus, logger, now: () => new Date(), handOffRetry: { initialMs: 5, maxMs: 10 } });
    await worker.handle(message(bigJob(5)).m);
    assert.equal(provider.calls.length, 1);
    assert.deepEqual(results().map((r) => r.sent), [5]);
  });
});
