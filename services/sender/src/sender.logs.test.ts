import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MemoryBus } from "@herald/platform";
import { BusTopics, events, Provider } from "@herald/proto";
import type { PushProvider, SendRequest, TargetResult } from "./provider.types.js";
import { SenderWorker } from "./sender.consumer.js";
import { senderLogger } from "./sender.logger.js";

// JSON.parse keeps the last of two equal keys; a strict parser (Go's with DisallowDuplicateFields,
// many log pipelines) refuses the line, so a log line with a key twice is a lost line. This one
// refuses duplicates at any depth and otherwise parses like JSON.parse.
export function parseStrictJson(text: string): unknown {
  let i = 0;
  const fail = (what: string): never => {
    throw new SyntaxError(`${what} at ${i} in ${text.slice(0, 200)}`);
  };
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i]!)) i++;
  };
  const expect = (c: string) => {
    ws();
    if (text[i] !== c) fail(`expected ${c}`);
    i++;
  };
  const string = (): string => {
    const start = i++;
    while (text[i] !== '"') {
      if (i >= text.length) fail("unterminated string");
      i += text[i] === "\\" ? 2 : 1;
    }
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (): unknown => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const out: Record<string, unknown> = {};
      const seen = new Set<string>();
      ws();
      if (text[i] === "}") return i++, out;
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a key");
        const key = string();
        if (seen.has(key)) fail(`duplicate key "${key}"`);
        seen.add(key);
        expect(":");
        out[key] = value();
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        expect("}");
        return out;
      }
    }
    if (c === "[") {
      i++;
      const out: unknown[] = [];
      ws();
      if (text[i] === "]") return i++, out;
      for (;;) {
        out.push(value());
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        expect("]");
        return out;
      }
    }
    if (c === '"') return string();
    const start = i;
    while (i < text.length && !",]} \t\n\r".includes(text[i]!)) i++;
    if (start === i) fail("expected a value");
    return JSON.parse(text.slice(start, i));
  };
  const out = value();
  ws();
  if (i !== text.length) fail("trailing characters");
  return out;
}

describe("sender log lines", () => {
  it("the checker refuses a key twice, at any depth, and parses the rest like JSON.parse", () => {
    assert.throws(() => parseStrictJson('{"app":"a","provider":"fcm","app":"a"}'), /duplicate key "app"/);
    assert.throws(() => parseStrictJson('{"x":[{"k":1,"k":2}]}'), /duplicate key "k"/);
    const ok = '{"a":"q\\"uote\\\\","b":[1,-2.5e3,true,null,{}],"c":{"d":"é"}}';
    assert.deepEqual(parseStrictJson(ok), JSON.parse(ok));
  });

  it("are JSON objects with every key once, the credential refusal included", async () => {
    const lines: string[] = [];
    const logger = senderLogger({ app: "app1", provider: "fcm", level: "debug", destination: { write: (line: string) => void lines.push(line) } });
    const provider: PushProvider = {
      name: "fcm",
      send: async (r: SendRequest): Promise<TargetResult[]> => r.targets.map((target) => ({ target, outcome: { kind: "credentials", reason: "fcm:SENDER_ID_MISMATCH" } })),
      close: async () => {},
    };
    const bus = new MemoryBus();
    const worker = new SenderWorker({ app: "app1", provider, bus, logger, now: () => new Date(), maxAttempts: 3, backoff: { initialMs: 10, maxMs: 40 }, credentialCooldownMs: 30_000 });
    await worker.start();
    try {
      const job = events.DeliveryJob.fromPartial({ jobId: "j1", app: "app1", publishId: "p1", provider: Provider.PROVIDER_FCM, targets: [{ deviceId: "d1", token: "t1" }], payload: Buffer.from("{}") });
      await bus.publish(BusTopics.deliveries("app1", "fcm"), [{ key: "j1", value: events.DeliveryJob.encode(job).finish() }]);
      const refusal = () => lines.find((l) => l.includes("refused the credentials"));
      for (let n = 0; !refusal() && n < 1000; n++) await new Promise((r) => setTimeout(r, 5));
      assert.ok(refusal(), `the credential refusal was logged; got:\n${lines.join("")}`);
    } finally {
      await worker.stop();
      await bus.close();
    }
    for (const line of lines) {
      const parsed = parseStrictJson(line.trim()) as Record<string, unknown>;
      assert.equal(typeof parsed, "object");
      assert.equal(parsed.service, "herald-sender-fcm");
      assert.equal(parsed.app, "app1");
      assert.equal(parsed.provider, "fcm");
    }
    const refusal = parseStrictJson(lines.find((l) => l.includes("refused the credentials"))!.trim()) as Record<string, unknown>;
    assert.equal(refusal.level, "error");
    assert.equal(refusal.reason, "fcm:SENDER_ID_MISMATCH");
  });
});
