import assert from "node:assert/strict";
import { test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { fromHeaderValue } from "@herald/platform";
import { descriptorSetPath } from "@herald/proto";
import { Findings, shortJson } from "./fuzz.findings.js";
import { damageBinary, describeBytes, encodeBinary, encodeJson, fuzzSettings, generateRequest, loadMethods, pickKind, rate, Rng, type FuzzMethod, type ValuePools } from "./fuzz.generator.js";
import { checkStillDelivers, OTHER_APP, PRIMARY_APP, seedPools, startHeraldChild, type HeraldChild } from "./herald.fixture.js";

// Structure-aware fuzzing of every gRPC method of every Herald service (read from the
// descriptor set, so a new method is fuzzed without a change here), sent with a generic grpc-js
// client to `herald serve --fakes` in a child process. Invariants: the process never exits; no
// INTERNAL/UNKNOWN/DATA_LOSS for anything a client sends; every refusal has a herald-reason
// trailer and every INVALID_ARGUMENT a herald-field; nothing hangs; and afterwards a publish to
// a new device is still delivered.
//   HERALD_FUZZ_SEED (default fixed), HERALD_FUZZ_RUNS (default 3000), HERALD_FUZZ_ONLY=<index,...>

const TEST_FILE = "test/fuzz/grpc.fuzz.test.ts";
const settings = fuzzSettings(3000);
// In flight at once: enough to keep two cores busy and to overlap the cases that hang, few
// enough that a crash names few suspects.
const CONCURRENCY = 16;
const UNARY_DEADLINE_MS = 8_000;
// A 1 MB value takes milliseconds to refuse; a case that has not answered in 4 s hangs (and
// each hang holds its batch, so the budget of the run depends on this).
const HUGE_DEADLINE_MS = 4_000;
const STREAM_DEADLINE_MS = 2_000;
// A crash restarts the child (so one defect does not hide the others), up to this many times.
const MAX_RESTARTS = 6;
const SERVER_FAULTS = new Set([grpc.status.INTERNAL, grpc.status.UNKNOWN, grpc.status.DATA_LOSS]);

type Auth = "none" | "garbage" | "malformed" | "client" | "server" | "admin" | "admin+app" | "admin+other-app" | "admin+hostile-app" | "other-app-key";
const AUTH_WEIGHTS: ReadonlyArray<[Auth, number]> = [
  ["server", 34],
  ["client", 12],
  ["admin+app", 12],
  ["admin", 6],
  ["admin+other-app", 8],
  ["admin+hostile-app", 5],
  ["other-app-key", 8],
  ["none", 6],
  ["garbage", 5],
  ["malformed", 4],
];
// grpc-js only sends printable-ASCII metadata values: these are the hostile ones it allows.
const HOSTILE_APP_HEADERS = ["", " ", "%00", "%C3%A9quipe", "../shop", "shop ", "DEMO", "__proto__", "demo,shop", "x".repeat(3000), "demo\\u0000"];

interface Case {
  index: number;
  method: FuzzMethod;
  kind: string;
  auth: Auth;
  authText: string;
  metadata: grpc.Metadata;
  bytes: Uint8Array;
  notes: string[];
  json: string;
}

interface Answer {
  code: grpc.status;
  details: string;
  reason?: string;
  field?: string;
  messages: number;
}

function pickAuth(rng: Rng, m: FuzzMethod): Auth {
  const weights = AUTH_WEIGHTS.map(([a, w]): [Auth, number] => (m.service.name === "AppService" && a === "server" ? ["admin", w] : [a, w]));
  const total = weights.reduce((s, [, w]) => s + w, 0);
  let x = rng.next() * total;
  for (const [a, w] of weights) {
    x -= w;
    if (x < 0) return a;
  }
  return "server";
}

function metadataFor(auth: Auth, h: HeraldChild, rng: Rng): { metadata: grpc.Metadata; text: string } {
  const md = new grpc.Metadata();
  const own = h.app(PRIMARY_APP);
  const bearer = (key: string) => md.set("authorization", `Bearer ${key}`);
  let text: string = auth;
  switch (auth) {
    case "none":
      break;
    case "garbage":
      bearer(rng.pick(["garbage", "hk_s_demo_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "hk_admin_x", "%C3%A9", "a".repeat(2000)]));
      text = `garbage (${md.get("authorization")[0]!.toString().slice(0, 40)})`;
      break;
    case "malformed": {
      const value = rng.pick([`Basic ${own.serverKey}`, "Bearer", "Bearer ", `bearer ${own.serverKey}`, `Bearer  ${own.serverKey}`, `${own.serverKey}`, `Bearer ${own.serverKey} extra`]);
      md.set("authorization", value);
      text = `malformed (${JSON.stringify(value.replace(own.serverKey, "<demo SERVER key>"))})`;
      break;
    }
    case "client":
      bearer(own.clientKey);
      text = "CLIENT key of demo";
      break;
    case "server":
      bearer(own.serverKey);
      text = "SERVER key of demo";
      break;
    case "admin":
      bearer(h.adminKey);
      text = "admin key, no x-herald-app";
      break;
    case "admin+app":
      bearer(h.adminKey);
      md.set("x-herald-app", PRIMARY_APP);
      text = `admin key + x-herald-app: ${PRIMARY_APP}`;
      break;
    case "admin+other-app":
      bearer(h.adminKey);
      md.set("x-herald-app", OTHER_APP);
      text = `admin key + x-herald-app: ${OTHER_APP}`;
      break;
    case "admin+hostile-app": {
      const app = rng.pick(HOSTILE_APP_HEADERS);
      bearer(h.adminKey);
      md.set("x-herald-app", app);
      text = `admin key + x-herald-app: ${JSON.stringify(app.length > 40 ? `${app.slice(0, 20)}…(${app.length})` : app)}`;
      break;
    }
    case "other-app-key":
      bearer(h.app(OTHER_APP).serverKey);
      text = `SERVER key of ${OTHER_APP}`;
      break;
  }
  return { metadata: md, text };
}

function buildCase(index: number, methods: FuzzMethod[], h: HeraldChild, pools: ValuePools): Case {
  // Round-robin over methods: every method gets the same share whatever the seed.
  const method = methods[index % methods.length]!;
  const rng = new Rng(settings.seed, "grpc", index);
  const kind = pickKind(rng);
  const auth = pickAuth(rng, method);
  const { metadata, text } = metadataFor(auth, h, rng);
  const gen = generateRequest(method.method.input, rng, pools, kind, true);
  const bytes = damageBinary(kind, encodeBinary(gen.message), rng, gen.notes);
  return { index, method, kind, auth, authText: text, metadata, bytes, notes: gen.notes, json: shortJson(encodeJson(gen.message)) };
}

const identity = (b: Buffer) => b;

// One client per port: Herald's services, and gorush's API on its own port.
interface Clients {
  herald: grpc.Client;
  gorush: grpc.Client;
}
const connect = (h: HeraldChild, options: grpc.ChannelOptions): Clients => ({
  herald: new grpc.Client(h.address, grpc.credentials.createInsecure(), options),
  gorush: new grpc.Client(h.gorushAddress, grpc.credentials.createInsecure(), options),
});
const disconnect = (c: Clients) => {
  c.herald.close();
  c.gorush.close();
};

function send(clients: Clients, c: Case): Promise<Answer> {
  const client = c.method.path.startsWith("/proto.") ? clients.gorush : clients.herald;
  return new Promise((resolve) => {
    const answer = (err: Partial<grpc.ServiceError> | null, messages: number): Answer => {
      if (!err) return { code: grpc.status.OK, details: "", messages };
      const reason = err.metadata?.get("herald-reason")[0]?.toString();
      const field = err.metadata?.get("herald-field")[0]?.toString();
      return { code: err.code ?? grpc.status.UNKNOWN, details: err.details ?? String(err.message), ...(reason !== undefined ? { reason } : {}), ...(field !== undefined ? { field: fromHeaderValue(field) } : {}), messages };
    };
    if (!c.method.serverStreaming) {
      const deadline = Date.now() + (c.kind === "huge-string" ? HUGE_DEADLINE_MS : UNARY_DEADLINE_MS);
      client.makeUnaryRequest(c.method.path, identity, identity, Buffer.from(c.bytes), c.metadata, { deadline }, (err) => resolve(answer(err, err ? 0 : 1)));
      return;
    }
    let messages = 0;
    const stream = client.makeServerStreamRequest(c.method.path, identity, identity, Buffer.from(c.bytes), c.metadata, { deadline: Date.now() + STREAM_DEADLINE_MS });
    stream.on("data", () => {
      messages++;
      if (messages >= 50) stream.cancel();
    });
    stream.on("error", (err: grpc.ServiceError) => resolve(answer(err, messages)));
    stream.on("status", (s: grpc.StatusObject) => {
      if (s.code === grpc.status.OK) resolve(answer(null, messages));
    });
  });
}

test("gRPC fuzz: every method of every Herald service keeps its contract under hostile input", { timeout: 20 * 60_000 }, async () => {
  const { methods } = loadMethods(descriptorSetPath, ["herald.", "proto.Gorush"]);
  assert.ok(methods.length >= 30, `expected every Herald RPC in ${descriptorSetPath}, found ${methods.length}`);
  console.log(`[grpc fuzz] seed=${settings.seed} runs=${settings.only ? `only ${settings.only.join(",")}` : settings.runs}; ${methods.length} methods: ${methods.map((m) => m.path.split(".").pop()).join(" ")}`);
  const findings = new Findings("grpc", TEST_FILE);
  let h = await startHeraldChild("grpc");
  let pools = await seedPools(h);
  const clientOptions = { "grpc.max_receive_message_length": -1, "grpc.max_send_message_length": -1 };
  let client = connect(h, clientOptions);
  const perMethod = new Map<string, Map<string, number>>();
  let sent = 0;
  let restarts = 0;
  const started = Date.now();

  const check = (c: Case, a: Answer) => {
    const codeName = grpc.status[a.code] ?? String(a.code);
    const counts = perMethod.get(c.method.path) ?? new Map<string, number>();
    counts.set(codeName, (counts.get(codeName) ?? 0) + 1);
    perMethod.set(c.method.path, counts);
    const base = { target: c.method.path, seed: settings.seed, index: c.index, kind: c.kind, auth: c.authText, request: `${describeBytes(c.bytes)}; as JSON ${c.json}`, notes: c.notes };
    const answerText = `${codeName}${a.reason !== undefined ? ` herald-reason=${a.reason}` : ""}${a.field !== undefined ? ` herald-field=${JSON.stringify(a.field)}` : ""} ${JSON.stringify(a.details.slice(0, 200))}`;
    const shape = `${codeName} ${a.reason ?? ""} ${a.details}`;
    // One violation per answer, the gravest: a server fault or a hang says more than the
    // missing trailer that comes with it.
    if (SERVER_FAULTS.has(a.code)) return findings.add({ ...base, invariant: "server fault for client input", answer: answerText }, shape, c.bytes);
    if (a.code === grpc.status.DEADLINE_EXCEEDED && !c.method.serverStreaming) return findings.add({ ...base, invariant: `no answer within ${c.kind === "huge-string" ? HUGE_DEADLINE_MS : UNARY_DEADLINE_MS} ms`, answer: answerText }, shape, c.bytes);
    // A stream ends by our deadline or our cancel after 50 messages: not the server's answer.
    const ours = c.method.serverStreaming && (a.code === grpc.status.DEADLINE_EXCEEDED || a.code === grpc.status.CANCELLED);
    if (a.code !== grpc.status.OK && !ours && a.reason === undefined) {
      findings.add({ ...base, invariant: "refusal without herald-reason", answer: answerText }, shape, c.bytes);
    }
    if (a.code === grpc.status.INVALID_ARGUMENT && !a.field) findings.add({ ...base, invariant: "INVALID_ARGUMENT without herald-field", answer: answerText }, shape, c.bytes);
  };

  // A dead child: note it with every case that was in flight, replay those one at a time
  // against a fresh child to name the one that kills it, and go on.
  const restart = async (suspects: Case[], replaying: boolean) => {
    const exit = h.exit() ?? "no exit (connection lost)";
    const tail = h.output().slice(-3000);
    disconnect(client);
    await h.stop();
    restarts++;
    if (replaying || suspects.length === 1) {
      const c = suspects[0]!;
      findings.add(
        { invariant: "the process exited", target: c.method.path, answer: `herald serve exited (${exit})`, seed: settings.seed, index: c.index, kind: c.kind, auth: c.authText, request: `${describeBytes(c.bytes)}; as JSON ${c.json}`, notes: c.notes, extra: `last output of the child:\n${tail}` },
        `${exit} ${/\n(\w*Error[^\n]*)/.exec(tail)?.[1] ?? ""}`,
        c.bytes,
      );
    }
    if (restarts > MAX_RESTARTS) throw new Error(`herald serve died ${restarts} times; stopping the run.\n${findings.report()}`);
    h = await startHeraldChild("grpc");
    pools = await seedPools(h);
    client = connect(h, clientOptions);
    if (!replaying && suspects.length > 1) {
      const before = restarts;
      for (const s of suspects) {
        const again = buildCase(s.index, methods, h, pools);
        const a = await send(client, again);
        sent++;
        if (h.exit() !== undefined || (a.code === grpc.status.UNAVAILABLE && !(await stillServing(h)))) await restart([again], true);
        else check(again, a);
      }
      if (restarts === before) {
        const c = suspects[0]!;
        findings.add(
          { invariant: "the process exited", target: suspects.map((s) => s.method.path).join(" | "), answer: `herald serve exited (${exit}); no single in-flight case does it alone`, seed: settings.seed, index: c.index, kind: suspects.map((s) => s.kind).join(","), auth: c.authText, request: `cases ${suspects.map((s) => s.index).join(",")} sent together`, notes: suspects.flatMap((s) => s.notes), extra: `last output of the child:\n${tail}` },
          `${exit} together`,
        );
      }
    }
  };

  try {
    const indexes = settings.only ?? Array.from({ length: settings.runs }, (_, i) => i);
    for (let at = 0; at < indexes.length; at += CONCURRENCY) {
      const batch = indexes.slice(at, at + CONCURRENCY).map((i) => buildCase(i, methods, h, pools));
      const answers = await Promise.all(batch.map((c) => send(client, c)));
      sent += batch.length;
      if (h.exit() !== undefined || answers.some((a) => a.code === grpc.status.UNAVAILABLE)) {
        // UNAVAILABLE from a live child is a connection problem of ours only if the child died.
        const dead = h.exit() !== undefined || !(await stillServing(h));
        if (dead) {
          await restart(batch, false);
          continue;
        }
      }
      batch.forEach((c, i) => check(c, answers[i]!));
      if ((at / CONCURRENCY) % 64 === 63) console.log(`[grpc fuzz] progress: ${rate(sent, Date.now() - started)}, ${findings.size} finding(s)`);
    }
    const elapsed = Date.now() - started;
    console.log(`[grpc fuzz] ${rate(sent, elapsed)}; ${restarts} restart(s) after a crash`);
    for (const [path, counts] of perMethod) console.log(`[grpc fuzz]   ${path}: ${[...counts].map(([k, v]) => `${k} ${v}`).join(", ")}`);

    let delivery: string;
    try {
      const d = await checkStillDelivers(h);
      delivery = d.state === "PUBLISH_STATE_DONE" && d.sent === 1 ? "" : `the publish after the run ended ${d.state} with ${d.sent} sent`;
      console.log(`[grpc fuzz] after the run: publish ${d.id} ${d.state}, ${d.sent} sent (${d.ms} ms)`);
    } catch (err) {
      delivery = (err as Error).message;
    }
    console.log(findings.report());
    const crashes = findings.list().filter((e) => e.first.invariant === "the process exited");
    assert.equal(h.exit(), undefined, "herald serve is still running at the end");
    assert.deepEqual(
      findings.list().map((e) => `${e.first.invariant}: ${[...e.targets].join(" ")} → ${e.first.answer} (case ${e.first.index}, ${e.count}x)`),
      [],
      `${findings.size} distinct contract violation(s), ${crashes.length} of them crashes; reproductions above`,
    );
    assert.equal(delivery, "", "a publish to a freshly registered device is delivered after the fuzz run");
  } finally {
    disconnect(client);
    await h.stop();
  }
});

// On a new connection: the fuzzing client's own connection may be the one that broke. A
// server that cannot answer a health check within 5 s is as good as dead to its clients.
async function stillServing(h: HeraldChild): Promise<boolean> {
  if (h.exit() !== undefined) return false;
  const probe = new grpc.Client(h.address, grpc.credentials.createInsecure());
  try {
    return await new Promise<boolean>((resolve) => {
      probe.makeUnaryRequest("/grpc.health.v1.Health/Check", identity, identity, Buffer.alloc(0), new grpc.Metadata(), { deadline: Date.now() + 5_000 }, (err) => resolve(!err));
    });
  } finally {
    probe.close();
  }
}
