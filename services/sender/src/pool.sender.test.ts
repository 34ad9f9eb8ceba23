import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { createLogger, MemoryBus, type BusMessage } from "@herald/platform";
import { BusTopics, events, Provider } from "@herald/proto";
import { PooledSender, type PooledSenderOptions } from "./pool.sender.js";
import { DirectoryPoolSource, poolFileName } from "./pool.source.js";
import type { PushProvider, SendRequest, TargetResult } from "./provider.types.js";

const logger = createLogger({ service: "t", level: "silent" });

// Records what each app's provider was asked to send, and with which settings it was built.
class RecordingProvider implements PushProvider {
  readonly name = "apns" as const;
  constructor(
    readonly app: string,
    readonly bundle: string | undefined,
    private readonly sent: Array<{ app: string; bundle: string | undefined; tokens: string[] }>,
  ) {}
  async send(request: SendRequest): Promise<TargetResult[]> {
    this.sent.push({ app: this.app, bundle: this.bundle, tokens: request.targets.map((t) => t.token) });
    return request.targets.map((target) => ({ target, outcome: { kind: "sent", id: "x" } }));
  }
  async close() {}
}

describe("PooledSender", () => {
  let dir: string;
  let bus: MemoryBus;
  let source: DirectoryPoolSource;
  let pool: PooledSender;
  const sent: Array<{ app: string; bundle: string | undefined; tokens: string[] }> = [];
  const results: events.DeliveryResult[] = [];
  const dead: events.DeadLetter[] = [];

  const writeApp = (app: string, settings: string) => writeFileSync(join(dir, poolFileName(app, "settings.json")), settings);
  const job = (topicApp: string, app: string, publishId: string) =>
    bus.publish(BusTopics.pooled(topicApp, "apns"), [
      { key: publishId, value: events.DeliveryJob.encode(events.DeliveryJob.fromPartial({ jobId: `${publishId}:j`, app, publishId, provider: Provider.PROVIDER_APNS, targets: [{ deviceId: "d", token: `t-${publishId}` }], payload: Buffer.from("{}") })).finish() },
    ]);
  const until = async (what: string, done: () => boolean) => {
    const deadline = Date.now() + 5000;
    while (!done()) {
      if (Date.now() > deadline) assert.fail(`${what}: results ${JSON.stringify(results.map((r) => [r.publishId, r.sent, r.deadLettered]))}, health ${JSON.stringify(pool.health())}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };

  const makePool = (o: Partial<PooledSenderOptions> = {}) =>
    new PooledSender({
      provider: "apns",
      bus,
      logger,
      now: () => new Date(),
      source,
      createProvider: async (app) => new RecordingProvider(app.id, (await app.settings()).HERALD_APNS_BUNDLE_ID, sent),
      problemCooldownMs: 100,
      missingRetryMs: 50,
      ...o,
    });

  beforeEach(async () => {
    sent.length = results.length = dead.length = 0;
    dir = mkdtempSync(join(tmpdir(), "herald-pool-unit-"));
    bus = new MemoryBus();
    source = new DirectoryPoolSource({ dir, rescanMs: 60_000, logger });
    pool = makePool();
    await bus.subscribe({ group: "results", topics: [BusTopics.results], handler: async (m: BusMessage) => void results.push(events.DeliveryResult.decode(m.value)) });
    await bus.subscribe({ group: "dead", topics: [BusTopics.deadLetter], handler: async (m: BusMessage) => void dead.push(events.DeadLetter.decode(m.value)) });
  });
  afterEach(async () => {
    await pool.stop();
    await source.stop();
    await bus.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("keeps an app with broken settings waiting, names the problem, and sends the other apps' jobs meanwhile", async () => {
    writeApp("good", JSON.stringify({ HERALD_APNS_BUNDLE_ID: "com.example.good" }));
    writeApp("broken", JSON.stringify({ HERALD_APNS_BUNDLE_ID: "com.example.ok", HERALD_PROVIDER_URL: "https://evil.example", "é\u0000": 1 }));
    await source.start();
    await pool.start();
    await job("broken", "broken", "p1");
    await job("good", "good", "p2");
    await until("good sent", () => results.some((r) => r.publishId === "p2"));
    assert.deepEqual(sent, [{ app: "good", bundle: "com.example.good", tokens: ["t-p2"] }]);
    const problem = pool.health().degraded.find((d) => d.app === "broken");
    assert.match(problem?.reason ?? "", /settings\.json: .*HERALD_PROVIDER_URL/, "the refused key is named");
    // Fixed on disk: the next try builds the app and its waiting job goes out.
    writeApp("broken", JSON.stringify({ HERALD_APNS_BUNDLE_ID: "com.example.fixed" }));
    await source.rescan();
    await until("broken sent once fixed", () => results.some((r) => r.publishId === "p1"));
    assert.deepEqual(sent.at(-1), { app: "broken", bundle: "com.example.fixed", tokens: ["t-p1"] });
  });

  it("keeps the jobs of an app it has no configuration for until the configuration appears", async () => {
    await source.start();
    await pool.start();
    await job("later", "later", "p3");
    await until("the app is reported", () => pool.health().degraded.some((d) => d.app === "later"));
    assert.equal(results.length, 0);
    writeApp("later", JSON.stringify({ HERALD_APNS_BUNDLE_ID: "com.example.later" }));
    await source.rescan();
    await until("sent", () => results.some((r) => r.publishId === "p3" && r.sent === 1));
  });

  it("closes the provider of an app idle for idleCloseMs, and builds it again for the app's next job", async () => {
    await pool.stop();
    const built: string[] = [];
    const closed: string[] = [];
    pool = makePool({
      idleCloseMs: 50,
      createProvider: async (app) => {
        built.push(app.id);
        const provider = new RecordingProvider(app.id, undefined, sent);
        provider.close = async () => void closed.push(app.id);
        return provider;
      },
    });
    writeApp("quiet", "{}");
    await source.start();
    await pool.start();
    await job("quiet", "quiet", "q1");
    await until("sent", () => results.some((r) => r.publishId === "q1"));
    await until("closed once idle", () => closed.length === 1);
    assert.equal(pool.health().apps, 0, "forgotten until its next job");
    await job("quiet", "quiet", "q2");
    await until("sent again", () => results.some((r) => r.publishId === "q2"));
    assert.deepEqual(built, ["quiet", "quiet"]);
    assert.deepEqual(sent.map((x) => x.tokens), [["t-q1"], ["t-q2"]]);
  });

  it("never sends a job that names another app than its topic's: dead-lettered, its publish told", async () => {
    writeApp("victim", JSON.stringify({ HERALD_APNS_BUNDLE_ID: "com.example.victim" }));
    writeApp("attacker", JSON.stringify({ HERALD_APNS_BUNDLE_ID: "com.example.attacker" }));
    await source.start();
    await pool.start();
    await job("attacker", "victim", "p4");
    await until("dead-lettered", () => dead.length === 1 && results.length === 1);
    assert.equal(sent.length, 0);
    assert.match(dead[0]!.reason, /on a topic of app attacker/);
    assert.deepEqual([results[0]!.app, results[0]!.publishId, results[0]!.deadLettered], ["victim", "p4", 1]);
  });
});
