import assert from "node:assert/strict";
import { connect } from "node:net";
import { test } from "node:test";
import { descriptorSetPath } from "@herald/proto";
import { Findings, shortJson } from "./fuzz.findings.js";
import { describeBytes, encodeJson, fuzzSettings, generateRequest, HOSTILE_ATOMS, loadMethods, ONE_MB, pickKind, rate, Rng, type CaseKind, type FuzzMethod, type ValuePools } from "./fuzz.generator.js";
import { checkStillDelivers, OTHER_APP, PRIMARY_APP, seedPools, startHeraldChild, type HeraldChild } from "./herald.fixture.js";

// Every HTTP route of the gateway (the native RPC routes from the descriptor set, the Beams,
// Channels, gorush, Centrifugo, Kinvey and Pushlet routes from the OpenAPI document the gateway
// serves), with hostile path parameters, headers and bodies, sent as raw bytes over TCP (node's
// http client refuses to send a non-ASCII path or header, which is exactly what a hostile client
// sends).
// Invariants: the process never exits; no 5xx; every 4xx is a JSON body naming the error;
// nothing hangs; and afterwards a publish is still delivered.
//   HERALD_FUZZ_SEED, HERALD_FUZZ_RUNS (default 2000), HERALD_FUZZ_ONLY=<index,...>

const TEST_FILE = "test/fuzz/http.fuzz.test.ts";
const settings = fuzzSettings(2000);
const CONCURRENCY = 8;
// Pushlet's send_notification waits up to 25 s for the delivery before answering 202.
const REQUEST_TIMEOUT_MS = 35_000;
const MAX_RESTARTS = 6;
const MAX_BODY = 1024 * 1024;

interface Operation {
  method: string;
  // "/device_api/v1/instances/{instance}/devices/{platform}/{device}"
  path: string;
  params: string[];
  rpc?: FuzzMethod;
}

interface HttpCase {
  index: number;
  op: Operation;
  kind: string;
  auth: string;
  raw: Buffer;
  target: string;
  notes: string[];
}

interface HttpAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  error?: string;
  ms: number;
}

type HttpKind = CaseKind | "invalid-json" | "wrong-types" | "wrong-content-type" | "form-body" | "huge-body" | "over-limit-body" | "deep-json-40" | "deep-json-5000" | "hostile-path" | "hostile-headers";
const DEEP_PLACEHOLDER = "\u0000deep\u0000";
const HTTP_KINDS: ReadonlyArray<[HttpKind, number]> = [
  ["valid", 10],
  ["mutated", 22],
  ["hostile", 10],
  ["hostile-path", 12],
  ["hostile-headers", 8],
  ["invalid-json", 8],
  ["wrong-types", 8],
  ["wrong-content-type", 3],
  ["form-body", 3],
  ["huge-body", 2],
  ["over-limit-body", 2],
  ["deep-json-40", 4],
  ["deep-json-5000", 3],
  ["oneof-combo", 3],
  ["out-of-range", 4],
  ["empty", 2],
];

// Path-parameter values: valid ones reach the handlers, the others are the malformed escapes,
// raw non-ASCII bytes and control characters that made the gateway answer 500.
const HOSTILE_SEGMENTS: readonly string[] = ["%", "%zz", "%E9", "%C3%28", "%00", "pr%C3%A9nom", "prénom", "équipe", "%2F..%2F", "..", "%0d%0aX-Injected:%201", "\u0001", "\u007f", "😀", "%F0%9F%98", "a".repeat(5000), "%25", "%u00e9", "\u202e", "__proto__"];

function validParam(name: string, rng: Rng, pools: ValuePools): string {
  switch (name) {
    case "instance":
    case "appKey":
      return rng.chance(0.85) ? PRIMARY_APP : OTHER_APP;
    case "platform":
      return rng.pick(["fcm", "apns", "web"]);
    case "device":
      return rng.pick(pools.deviceIds);
    case "user":
      return rng.pick(pools.users);
    case "interest":
      return rng.pick(pools.topics);
    case "app_id":
      return rng.chance(0.85) ? PRIMARY_APP : OTHER_APP;
    case "channel_name":
      return rng.pick([...pools.topics, "presence-room", "private-room", "x".repeat(200)]);
    default:
      return "x";
  }
}

// A body that the compatibility route accepts, to start mutating from.
function compatTemplate(op: Operation, rng: Rng, pools: ValuePools): Record<string, unknown> {
  const p = op.path;
  const notification = { fcm: { notification: { title: "Hi", body: "there" } }, apns: { aps: { alert: { title: "Hi", body: "there" } } }, web: { notification: { title: "Hi", body: "there" } } };
  if (p.endsWith("/publishes/interests")) return { interests: [rng.pick(pools.topics)], ...notification };
  if (p.endsWith("/publishes/users")) return { users: [rng.pick(pools.users)], ...notification };
  if (p.endsWith("/devices/apns")) return { token: "b".repeat(64), bundleIdentifier: "dev.herald.demo", metadata: { sdkVersion: "4.0.0" } };
  if (p.endsWith("/devices/fcm")) return { token: `fcm-http-${rng.int(1000)}`, metadata: { sdkVersion: "2.0.0" } };
  if (p.endsWith("/devices/web")) return { token: Buffer.from(pools.webPushToken).toString("base64"), metadata: {} };
  if (p.endsWith("/metadata")) return { metadata: { sdkVersion: "2.0.1", locale: "fr" } };
  if (p.endsWith("/token")) return { token: `fcm-http-${rng.int(1000)}` };
  if (p.endsWith("/interests")) return { interests: [rng.pick(pools.topics)] };
  if (p.endsWith("/register-device") || p.endsWith("/unregister-device")) return { platform: rng.pick(["ios", "android"]), deviceId: rng.pick(["c".repeat(64), "kinvey-fcm-1"]), userId: rng.pick(pools.users) };
  if (p.endsWith("/send_notification")) return { type: rng.pick(["apns", "gcm", "fcm", "hms", "webpush"]), application_id: PRIMARY_APP, device_token: rng.pick(["d".repeat(64), "pushlet-fcm-1"]), alert: "Hello", badge: 1, sound: "default", data: { k: "v" } };
  if (p.endsWith("/application_feedback")) return { application_id: PRIMARY_APP, since: new Date(Date.now() - 86_400_000).toISOString() };
  if (p.endsWith("/register_application")) return { application_id: PRIMARY_APP, gcm_api_key: "AIza" };
  if (p.endsWith("/apps/{app_id}/events")) return { name: "e", data: JSON.stringify({ title: "Hi" }), channels: [rng.pick(pools.topics)], socket_id: "1.1", info: "subscription_count" };
  if (p.endsWith("/batch_events")) return { batch: [{ channel: rng.pick(pools.topics), name: "e", data: "d", info: "user_count" }] };
  if (p === "/api/push") return { notifications: [{ tokens: [rng.pick(["d".repeat(64), "gorush-fcm-1"])], platform: rng.pick([1, 2, 3]), message: "Hello", title: "Hi", data: { k: "v" }, badge: 1 }] };
  if (p.endsWith("/subscribe") || p.endsWith("/unsubscribe")) return { socket_id: "1.1", channel: rng.pick([...pools.topics, "private-room", "presence-room"]), auth: "demo:" + "0".repeat(64), channel_data: '{"user_id":"u"}' };
  return {};
}

// JSON-level damage: hostile strings, wrong types, unknown keys (hostile ones included), deep
// nesting in place of a value.
function mutateJson(value: unknown, rng: Rng, p: number, notes: string[], path: string, depth = 0): unknown {
  if (depth > 12) return value;
  if (rng.chance(p / 3)) {
    const wrong = rng.pick<unknown>([123, -1, 1e309, true, null, [], {}, "text", [1, "a"], { nested: {} }, 9007199254740993]);
    notes.push(`${path || "body"}: replaced by ${shortJson(wrong, 40)}`);
    return wrong;
  }
  if (typeof value === "string") {
    if (!rng.chance(p)) return value;
    const atom = rng.pick(HOSTILE_ATOMS);
    const out = rng.pick([atom, value + atom, atom + value, "", atom.repeat(500)]);
    notes.push(`${path}: ${shortJson(out, 60)}`);
    return out;
  }
  if (Array.isArray(value)) return value.map((v, i) => mutateJson(v, rng, p, notes, `${path}[${i}]`, depth + 1));
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      const key = rng.chance(p / 2) ? rng.pick(HOSTILE_ATOMS) : k;
      if (key !== k) notes.push(`${path}.${k}: key renamed to ${shortJson(key, 30)}`);
      out[key] = mutateJson(v, rng, p, notes, `${path}.${k}`, depth + 1);
    }
    if (rng.chance(p / 2)) {
      const extra = rng.pick(HOSTILE_ATOMS);
      out[extra] = "extra";
      notes.push(`${path || "body"}: unknown key ${shortJson(extra, 30)}`);
    }
    return out;
  }
  return value;
}

function headerLine(name: string, value: string | Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${name}: `), Buffer.isBuffer(value) ? value : Buffer.from(value, "utf8"), Buffer.from("\r\n")]);
}

function buildCase(index: number, ops: Operation[], h: HeraldChild, pools: ValuePools): HttpCase {
  const op = ops[index % ops.length]!;
  const rng = new Rng(settings.seed, "http", index);
  const kind = pickKind(rng, HTTP_KINDS as ReadonlyArray<[CaseKind, number]>) as HttpKind;
  const notes: string[] = [];
  const own = h.app(PRIMARY_APP);

  // The path, parameters filled.
  let target = op.path;
  for (const name of op.params) {
    let v = validParam(name, rng, pools);
    if (kind === "hostile-path" || (kind === "hostile" && rng.chance(0.3))) {
      v = rng.pick(HOSTILE_SEGMENTS);
      notes.push(`path {${name}}: ${shortJson(v, 40)}`);
    }
    target = target.replace(`{${name}}`, v);
  }
  if (kind === "hostile-path" && op.params.length === 0) {
    const extra = rng.pick(["?%zz=%", "%E9", "/%", "?a=%00", "é", "?prénom=équipe"]);
    target += extra;
    notes.push(`path suffix ${shortJson(extra, 30)}`);
  }

  // Who is calling.
  const headers: Buffer[] = [];
  const auths: Array<[string, () => void]> = [
    ["none", () => {}],
    ["garbage bearer", () => headers.push(headerLine("authorization", "Bearer garbage"))],
    ["CLIENT key", () => headers.push(headerLine("authorization", `Bearer ${own.clientKey}`))],
    ["SERVER key", () => headers.push(headerLine("authorization", `Bearer ${own.serverKey}`))],
    ["SERVER key", () => headers.push(headerLine("authorization", `Bearer ${own.serverKey}`))],
    ["SERVER key", () => headers.push(headerLine("authorization", `Bearer ${own.serverKey}`))],
    ["admin key", () => headers.push(headerLine("authorization", `Bearer ${h.adminKey}`))],
    ["admin key + x-herald-app demo", () => headers.push(headerLine("authorization", `Bearer ${h.adminKey}`), headerLine("x-herald-app", PRIMARY_APP))],
    [`admin key + x-herald-app ${OTHER_APP}`, () => headers.push(headerLine("authorization", `Bearer ${h.adminKey}`), headerLine("x-herald-app", OTHER_APP))],
    [`SERVER key of ${OTHER_APP}`, () => headers.push(headerLine("authorization", `Bearer ${h.app(OTHER_APP).serverKey}`))],
    ["Beams secret (user token secret)", () => headers.push(headerLine("authorization", `Bearer ${own.userTokenSecret}`))],
    ["basic demo:SERVER key", () => headers.push(headerLine("authorization", `Basic ${Buffer.from(`${PRIMARY_APP}:${own.serverKey}`).toString("base64")}`))],
    ["basic demo:secret", () => headers.push(headerLine("authorization", `Basic ${Buffer.from(`${PRIMARY_APP}:${own.userTokenSecret}`).toString("base64")}`))],
    ["basic not-base64", () => headers.push(headerLine("authorization", "Basic %%%not base64"))],
    ["Kinvey user token", () => headers.push(headerLine("authorization", `Kinvey ${pools.userTokens[0]}`))],
    ["bad signature", () => headers.push(headerLine("x-herald-app", PRIMARY_APP), headerLine("x-herald-timestamp", String(Math.floor(Date.now() / 1000))), headerLine("x-herald-signature", `v1=${"00".repeat(32)}`))],
  ];
  const [authName, applyAuth] = rng.pick(auths);
  applyAuth();
  let auth = authName;
  if (kind === "hostile-headers" || (kind === "hostile" && rng.chance(0.3))) {
    const variant = rng.int(7);
    const atom = rng.pick(HOSTILE_ATOMS.filter((a) => !/[\r\n\u0000]/.test(a)));
    if (variant === 0) headers.push(headerLine("x-herald-app", atom));
    if (variant === 1) headers.push(headerLine("x-herald-app", Buffer.from([0x63, 0x61, 0x66, 0xe9])));
    if (variant === 2) headers.push(headerLine("authorization", `Bearer ${atom}`));
    if (variant === 3) headers.push(headerLine("x-herald-timeout-ms", rng.pick(["-1", "0", "1e309", "abc", "99999999999999999999", "1.5", atom])));
    if (variant === 4) headers.push(headerLine("traceparent", rng.pick(["00-zz-zz-01", `00-${"f".repeat(32)}-${"f".repeat(16)}-01`, atom])));
    if (variant === 5) headers.push(headerLine("x-herald-signature", `v1=${atom}`), headerLine("x-herald-timestamp", rng.pick(["-1", "1e30", atom])), headerLine("x-herald-app", PRIMARY_APP));
    if (variant === 6) headers.push(headerLine("authorization", Buffer.from([0x42, 0x65, 0x61, 0x72, 0x65, 0x72, 0x20, 0xc3, 0xa9, 0xff])));
    auth += ` + hostile header (${["x-herald-app", "x-herald-app latin-1 bytes", "authorization", "x-herald-timeout-ms", "traceparent", "signature headers", "authorization raw bytes"][variant]} ${variant === 0 || variant === 2 ? shortJson(atom, 30) : ""})`;
  }
  if (op.rpc?.serverStreaming && !auth.includes("timeout")) headers.push(headerLine("x-herald-timeout-ms", "2000"));

  // The body.
  let body: Buffer = Buffer.alloc(0);
  let contentType = "application/json";
  if (op.method !== "GET" && op.method !== "DELETE") {
    let json: unknown;
    if (op.rpc) {
      const genKind: CaseKind = (["valid", "mutated", "hostile", "oneof-combo", "out-of-range", "empty"] as string[]).includes(kind) ? (kind as CaseKind) : "valid";
      const gen = generateRequest(op.rpc.method.input, rng, pools, genKind, false);
      notes.push(...gen.notes);
      json = genKind === "empty" ? {} : encodeJson(gen.message);
    } else json = compatTemplate(op, rng, pools);
    if (kind === "mutated" || kind === "hostile") json = mutateJson(json, rng, kind === "hostile" ? 0.5 : 0.15, notes, "");
    if (kind === "wrong-types") json = mutateJson(json, rng, 0.9, notes, "");
    // The deep value is spliced in as text: JSON.stringify itself runs out of stack at 5000.
    let deepText: string | undefined;
    if (kind === "deep-json-40" || kind === "deep-json-5000") {
      const levels = kind === "deep-json-40" ? 40 : 5000;
      const key = rng.pick(Object.keys((json as object) ?? {}).concat(["data", "payload"]));
      const object = rng.chance(0.5);
      deepText = object ? `${'{"a":'.repeat(levels)}"leaf"${"}".repeat(levels)}` : `${"[".repeat(levels)}"leaf"${"]".repeat(levels)}`;
      (json as Record<string, unknown>)[key] = DEEP_PLACEHOLDER;
      notes.push(`${key}: nested ${levels} levels deep (${object ? "objects" : "arrays"})`);
    }
    let text = JSON.stringify(json) ?? "null";
    if (deepText) text = text.replace(JSON.stringify(DEEP_PLACEHOLDER), deepText);
    body = Buffer.from(text);
    if (kind === "invalid-json") {
      const variants: Array<[string, Buffer]> = [
        ["truncated", body.subarray(0, Math.max(1, body.length - 3))],
        ["trailing comma", Buffer.from(`${body.toString().replace(/}$/, "")},}`)],
        ["NaN literal", Buffer.from('{"a": NaN}')],
        ["single quotes", Buffer.from("{'a': 1}")],
        ["BOM first", Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), body])],
        ["invalid UTF-8", Buffer.concat([Buffer.from('{"token":"'), Buffer.from([0xff, 0xfe, 0xed, 0xa0, 0x80]), Buffer.from('"}')])],
        ["lone surrogate escape", Buffer.from('{"token":"\\ud800","metadata":{"\\udfff":"x"}}')],
        ["100k nested arrays as text", Buffer.from(`${"[".repeat(100_000)}${"]".repeat(100_000)}`)],
        ["duplicate keys", Buffer.from('{"token":"a","token":{"b":1}}')],
        ["huge number", Buffer.from(`{"badge": 1${"0".repeat(400)}}`)],
        ["a bare string", Buffer.from('"just a string"')],
        ["an array", Buffer.from("[1,2,3]")],
        ["null", Buffer.from("null")],
        ["NUL bytes", Buffer.from([0x7b, 0x00, 0x7d])],
        ["__proto__ key", Buffer.from('{"__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}}}')],
      ];
      const [label, bytes] = rng.pick(variants);
      body = bytes;
      notes.push(`body: invalid JSON (${label})`);
    }
    if (kind === "huge-body") {
      const pad = "x".repeat(MAX_BODY - body.length - 64);
      body = Buffer.from(JSON.stringify({ ...(JSON.parse(body.toString()) as object), [rng.pick(["token", "metadata", "title", "zzz"])]: pad }));
      notes.push(`body: ${body.length} bytes (just under the 1 MiB limit)`);
    }
    if (kind === "over-limit-body") {
      body = Buffer.concat([Buffer.from('{"token":"'), Buffer.alloc(ONE_MB + 100, 0x61), Buffer.from('"}')]);
      notes.push(`body: ${body.length} bytes (over the 1 MiB limit)`);
    }
    if (kind === "wrong-content-type") {
      contentType = rng.pick(["text/plain", "application/xml", "", "application/json; charset=latin1", "multipart/form-data; boundary=x", "application/json\u00e9"]);
      notes.push(`content-type ${shortJson(contentType, 40)}`);
    }
    if (kind === "form-body") {
      contentType = "application/x-www-form-urlencoded";
      body = Buffer.from(rng.pick(["type=fcm&device_token=%zz&alert=%E9", "application_id=demo&data=%7B%22k%22%3A%22v%22%7D&type=apns&device_token=%00", "a=%&b=%%", `data=${"%5B".repeat(3000)}`, "=&=&&"]));
      notes.push(`body: form ${shortJson(body.toString(), 60)}`);
    }
    if (kind === "empty") body = Buffer.alloc(0);
  }

  const head = Buffer.concat([
    Buffer.from(`${op.method} `),
    Buffer.from(target, "utf8"),
    Buffer.from(" HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n"),
    ...headers,
    ...(body.length || contentType !== "application/json" ? [headerLine("content-type", contentType)] : []),
    Buffer.from(`content-length: ${body.length}\r\n\r\n`),
  ]);
  return { index, op, kind, auth, raw: Buffer.concat([head, body]), target, notes };
}

// One request on its own connection; the answer as bytes, whatever state the server leaves the
// socket in.
function sendRaw(port: number, raw: Buffer): Promise<HttpAnswer> {
  const started = Date.now();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let done = false;
    const socket = connect(port, "127.0.0.1");
    const finish = (error?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ ...parseResponse(Buffer.concat(chunks)), ...(error && chunks.length === 0 ? { error } : {}), ms: Date.now() - started });
    };
    const timer = setTimeout(() => finish(`no answer within ${REQUEST_TIMEOUT_MS} ms`), REQUEST_TIMEOUT_MS);
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.on("end", () => finish());
    socket.on("close", () => finish("connection closed without an answer"));
    // A server that answers 413 and closes before reading the whole body resets our write: the
    // answer it sent first is what counts.
    socket.on("error", (err) => finish(`socket error ${(err as NodeJS.ErrnoException).code ?? err.message}`));
    socket.write(raw);
  });
}

function parseResponse(bytes: Buffer): { status: number; headers: Record<string, string>; body: Buffer } {
  const end = bytes.indexOf("\r\n\r\n");
  if (end < 0) return { status: 0, headers: {}, body: bytes };
  const lines = bytes.subarray(0, end).toString("latin1").split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "")?.[1] ?? 0);
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(":");
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let body = bytes.subarray(end + 4);
  if (headers["transfer-encoding"]?.includes("chunked")) body = dechunk(body);
  return { status, headers, body };
}

function dechunk(b: Buffer): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  for (let guard = 0; guard < 100_000 && at < b.length; guard++) {
    const lineEnd = b.indexOf("\r\n", at);
    if (lineEnd < 0) break;
    const size = parseInt(b.subarray(at, lineEnd).toString("latin1"), 16);
    if (!Number.isFinite(size) || size === 0) break;
    out.push(b.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
  return Buffer.concat(out);
}

async function operations(h: HeraldChild, rpcByPath: Map<string, FuzzMethod>): Promise<Operation[]> {
  const res = await fetch(`${h.httpUrl}/openapi.json`);
  assert.equal(res.status, 200, "GET /openapi.json");
  const doc = (await res.json()) as { paths: Record<string, Record<string, unknown>> };
  const ops: Operation[] = [];
  for (const [path, entry] of Object.entries(doc.paths)) {
    for (const method of Object.keys(entry)) {
      const params = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
      const rpc = path.startsWith("/v1/") ? rpcByPath.get(path.slice(3)) : undefined;
      ops.push({ method: method.toUpperCase(), path, params, ...(rpc ? { rpc } : {}) });
    }
  }
  // Routes the document does not describe are fuzzed too.
  ops.push({ method: "GET", path: "/healthz", params: [] }, { method: "GET", path: "/openapi.json", params: [] }, { method: "POST", path: "/v1/herald.nope.v1.Nope/Nope", params: [] });
  return ops.sort((a, b) => `${a.path} ${a.method}`.localeCompare(`${b.path} ${b.method}`));
}

test("HTTP fuzz: every gateway route keeps its contract under hostile input", { timeout: 20 * 60_000 }, async () => {
  const { methods } = loadMethods(descriptorSetPath);
  const findings = new Findings("http", TEST_FILE);
  let h = await startHeraldChild("http");
  let pools = await seedPools(h);
  const ops = await operations(h, new Map(methods.map((m) => [m.path, m])));
  const missing = methods.filter((m) => !ops.some((o) => o.rpc === m)).map((m) => m.path);
  assert.deepEqual(missing, [], "every RPC of the descriptor set is a route of the OpenAPI document");
  console.log(`[http fuzz] seed=${settings.seed} runs=${settings.only ? `only ${settings.only.join(",")}` : settings.runs}; ${ops.length} operations (${ops.filter((o) => !o.rpc).length} not RPC): ${ops.filter((o) => !o.rpc).map((o) => `${o.method} ${o.path}`).join(", ")}`);
  const port = () => Number(new URL(h.httpUrl).port);
  const statuses = new Map<string, number>();
  let sent = 0;
  let restarts = 0;
  const started = Date.now();

  const check = (c: HttpCase, a: HttpAnswer) => {
    const route = `${c.op.method} ${c.op.path}`;
    statuses.set(`${a.status || a.error}`, (statuses.get(`${a.status || a.error}`) ?? 0) + 1);
    const text = a.body.toString("utf8");
    const answer = a.error ?? `${a.status} ${shortJson(text.slice(0, 300), 300)}`;
    const base = { target: route, seed: settings.seed, index: c.index, kind: c.kind, auth: c.auth, request: `${c.op.method} ${shortJson(c.target, 200)}; ${describeBytes(c.raw)}`, notes: c.notes, answer };
    if (a.error) return findings.add({ ...base, invariant: "no HTTP answer" }, a.error, c.raw);
    if (a.status >= 500) return findings.add({ ...base, invariant: "5xx for client input" }, `${a.status} ${text}`, c.raw);
    if (a.status >= 400) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      // Herald's and most compat APIs' {error: "...", ...}, or Centrifugo's {error: {code, message}}.
      const body = parsed !== null && typeof parsed === "object" ? (parsed as Record<string, unknown>) : undefined;
      const isText = (v: unknown) => typeof v === "string" && v.length > 0;
      const nested = body?.error !== null && typeof body?.error === "object" ? (body.error as Record<string, unknown>) : undefined;
      const named = body !== undefined && (["error", "reason"].some((k) => isText(body[k])) || (nested !== undefined && isText(nested.message) && typeof nested.code === "number"));
      if (!named) return findings.add({ ...base, invariant: "4xx without a JSON body naming the error" }, `${a.status} ${text.slice(0, 80)}`, c.raw);
    }
    if (a.status === 200 && (a.headers["content-type"] ?? "").includes("ndjson")) {
      const last = text.trim().split("\n").pop() ?? "";
      if (/"error":"(INTERNAL|UNKNOWN|DATA_LOSS)"/.test(last)) return findings.add({ ...base, invariant: "stream ended with a server fault" }, last, c.raw);
    }
  };

  const restart = async (suspects: HttpCase[], replaying: boolean) => {
    const exit = h.exit() ?? "not answering";
    const tail = h.output().slice(-3000);
    await h.stop();
    restarts++;
    if (replaying || suspects.length === 1) {
      const c = suspects[0]!;
      findings.add(
        { invariant: "the process exited", target: `${c.op.method} ${c.op.path}`, answer: `herald serve exited (${exit})`, seed: settings.seed, index: c.index, kind: c.kind, auth: c.auth, request: `${c.op.method} ${shortJson(c.target, 200)}; ${describeBytes(c.raw)}`, notes: c.notes, extra: `last output of the child:\n${tail}` },
        `${exit} ${/\n(\w*Error[^\n]*)/.exec(tail)?.[1] ?? ""}`,
        c.raw,
      );
    }
    if (restarts > MAX_RESTARTS) throw new Error(`herald serve died ${restarts} times; stopping the run.\n${findings.report()}`);
    h = await startHeraldChild("http");
    pools = await seedPools(h);
    if (!replaying && suspects.length > 1) {
      const before = restarts;
      for (const s of suspects) {
        const again = buildCase(s.index, ops, h, pools);
        const a = await sendRaw(port(), again.raw);
        sent++;
        if (h.exit() !== undefined || !(await healthz(h))) await restart([again], true);
        else check(again, a);
      }
      if (restarts === before) {
        const c = suspects[0]!;
        findings.add(
          { invariant: "the process exited", target: suspects.map((s) => `${s.op.method} ${s.op.path}`).join(" | "), answer: `herald serve exited (${exit}); no single in-flight case does it alone`, seed: settings.seed, index: c.index, kind: suspects.map((s) => s.kind).join(","), auth: c.auth, request: `cases ${suspects.map((s) => s.index).join(",")} sent together`, notes: suspects.flatMap((s) => s.notes), extra: `last output of the child:\n${tail}` },
          `${exit} together`,
        );
      }
    }
  };

  try {
    const indexes = settings.only ?? Array.from({ length: settings.runs }, (_, i) => i);
    for (let at = 0; at < indexes.length; at += CONCURRENCY) {
      const batch = indexes.slice(at, at + CONCURRENCY).map((i) => buildCase(i, ops, h, pools));
      const answers = await Promise.all(batch.map((c) => sendRaw(port(), c.raw)));
      sent += batch.length;
      if (h.exit() !== undefined || (answers.some((a) => a.error) && !(await healthz(h)))) {
        await restart(batch, false);
        continue;
      }
      batch.forEach((c, i) => check(c, answers[i]!));
      if ((at / CONCURRENCY) % 64 === 63) console.log(`[http fuzz] progress: ${rate(sent, Date.now() - started)}, ${findings.size} finding(s)`);
    }
    const elapsed = Date.now() - started;
    console.log(`[http fuzz] ${rate(sent, elapsed)}; ${restarts} restart(s) after a crash; statuses: ${[...statuses].sort().map(([k, v]) => `${k} ${v}`).join(", ")}`);

    let delivery: string;
    try {
      const d = await checkStillDelivers(h);
      delivery = d.state === "PUBLISH_STATE_DONE" && d.sent === 1 ? "" : `the publish after the run ended ${d.state} with ${d.sent} sent`;
      console.log(`[http fuzz] after the run: publish ${d.id} ${d.state}, ${d.sent} sent (${d.ms} ms)`);
    } catch (err) {
      delivery = (err as Error).message;
    }
    console.log(findings.report());
    assert.equal(h.exit(), undefined, "herald serve is still running at the end");
    assert.deepEqual(
      findings.list().map((e) => `${e.first.invariant}: ${[...e.targets].join(" ")} → ${e.first.answer.slice(0, 200)} (case ${e.first.index}, ${e.count}x)`),
      [],
      `${findings.size} distinct contract violation(s); reproductions above`,
    );
    assert.equal(delivery, "", "a publish to a freshly registered device is delivered after the fuzz run");
  } finally {
    await h.stop();
  }
});

// The gateway answers its health route within 5 s (a blocked event loop counts as down).
async function healthz(h: HeraldChild): Promise<boolean> {
  if (h.exit() !== undefined) return false;
  try {
    const res = await fetch(`${h.httpUrl}/healthz`, { signal: AbortSignal.timeout(5_000) });
    return res.status === 200;
  } catch {
    return false;
  }
}
