import { randomBytes } from "node:crypto";
import { once } from "node:events";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { testTls } from "./tls.fixture.js";
import { browserKeys, decryptAes128gcm, DecryptError, type BrowserKeys } from "./webpush.ece.js";
import { VapidVerifier, type VapidClaims } from "./webpush.vapid.js";

// A Web Push service (RFC 8030 + 8291 + 8292) for tests and benchmarks: it checks what a real
// push service checks (TTL, aes128gcm, VAPID with aud = its origin, 4096-byte bodies), decrypts
// every message with the subscriber's private key and records the plaintext, so a test can
// assert exactly what a browser would have received.

export interface FakeWebPushOptions {
  // Plain http instead of TLS with testTls() (senders must then allow insecure endpoints).
  insecure?: boolean;
  // Host written into endpoints and the VAPID audience; "localhost" also works with testTls().
  hostname?: string;
  // When set, only these VAPID public keys (base64url) are accepted; others get 403.
  vapidPublicKeys?: string[];
  // Clock for the JWT exp checks, epoch milliseconds.
  now?: () => number;
  // Called with every request that reached a /push/ path, e.g. to show deliveries as they happen.
  onRecord?: (record: WebPushRecord) => void;
}

// Per-subscription behaviour once a request has passed every protocol check.
export type WebPushScenario =
  | "ok"
  | "gone" // 410: the user unsubscribed
  | "not-found" // 404: the subscription expired or never existed
  | "too-many" // 429 with Retry-After: 30
  | "server-error" // 500
  | "unavailable" // 503 with Retry-After: 5
  | "slow" // answers 201 after 2 s
  | `flaky-${number}` // the first n requests get 503, then 201
  | { kind: "too-many"; retryAfter?: string }
  | { kind: "server-error"; status?: number; retryAfter?: string }
  | { kind: "flaky"; failures: number; status?: number }
  | { kind: "slow"; delayMs: number }
  // Any answer at all, e.g. a redirect a sender must not follow.
  | { kind: "status"; status: number; headers?: Record<string, string> };

export interface SubscribeOptions {
  // Becomes the id in the endpoint path; random when omitted.
  name?: string;
  scenario?: WebPushScenario;
  // Like PushManager.subscribe({ applicationServerKey }): only this VAPID key may push to it.
  applicationServerKey?: string;
}

export interface PushSubscriptionJSON {
  endpoint: string;
  keys: { p256dh: string; auth: string };
}

export interface FakeSubscription extends PushSubscriptionJSON {
  id: string;
  // The PushSubscription JSON, as a browser hands it to the application (the device token).
  token: string;
  toJSON(): PushSubscriptionJSON;
}

export interface WebPushRecord {
  subscriptionId: string;
  // What the browser would see; null when the request was refused before decryption.
  plaintext: Buffer | null;
  headers: { ttl?: number; urgency?: string; topic?: string; contentEncoding?: string };
  vapid?: VapidClaims;
  status: number;
  // Why the fake refused the request (protocol errors and scenarios).
  error?: string;
  at: Date;
}

export interface FakeWebPush {
  // Base URL, e.g. https://127.0.0.1:41234.
  readonly url: string;
  // The origin senders must put in the VAPID aud claim (same as url).
  readonly origin: string;
  // Every request that reached a /push/ path, in arrival order.
  readonly records: readonly WebPushRecord[];
  // TCP connections accepted and requests received since start or reset().
  readonly connections: number;
  readonly requests: number;
  subscribe(nameOrOptions?: string | SubscribeOptions): FakeSubscription;
  setScenario(subscriptionId: string, scenario: WebPushScenario): void;
  // Records answered 201, optionally for one subscription.
  delivered(subscriptionId?: string): WebPushRecord[];
  // Resolves once at least `count` records exist (for senders running in other processes or loops).
  waitFor(count: number, timeoutMs?: number): Promise<WebPushRecord[]>;
  // Resolves once at least `count` requests have arrived, answered or not (e.g. held by "slow").
  waitForRequests(count: number, timeoutMs?: number): Promise<void>;
  // Forgets records, counters and flaky progress; subscriptions and scenarios stay.
  reset(): void;
  close(): Promise<void>;
}

const MAX_BODY = 4096;
const TOPIC = /^[A-Za-z0-9_-]{1,32}$/;
const URGENCIES = new Set(["very-low", "low", "normal", "high"]);

type Behaviour =
  | { kind: "ok" | "gone" | "not-found" }
  | { kind: "status"; status: number; headers?: Record<string, string> }
  | { kind: "flaky"; failures: number; status: number }
  | { kind: "slow"; delayMs: number };

function behaviour(scenario: WebPushScenario): Behaviour {
  if (typeof scenario === "object") {
    switch (scenario.kind) {
      case "too-many":
        return { kind: "status", status: 429, headers: { "retry-after": scenario.retryAfter ?? "30" } };
      case "server-error":
        return { kind: "status", status: scenario.status ?? 500, ...(scenario.retryAfter ? { headers: { "retry-after": scenario.retryAfter } } : {}) };
      case "status":
        return { kind: "status", status: scenario.status, ...(scenario.headers ? { headers: scenario.headers } : {}) };
      case "flaky":
        return { kind: "flaky", failures: scenario.failures, status: scenario.status ?? 503 };
      case "slow":
        return { kind: "slow", delayMs: scenario.delayMs };
    }
  }
  switch (scenario) {
    case "ok":
    case "gone":
    case "not-found":
      return { kind: scenario };
    case "too-many":
      return { kind: "status", status: 429, headers: { "retry-after": "30" } };
    case "server-error":
      return { kind: "status", status: 500 };
    case "unavailable":
      return { kind: "status", status: 503, headers: { "retry-after": "5" } };
    case "slow":
      return { kind: "slow", delayMs: 2000 };
  }
  const flaky = /^flaky-(\d+)$/.exec(scenario);
  if (!flaky?.[1]) throw new Error(`unknown Web Push scenario ${String(scenario)}`);
  return { kind: "flaky", failures: Number(flaky[1]), status: 503 };
}

interface Subscriber {
  keys: BrowserKeys;
  applicationServerKey?: string;
  behaviour: Behaviour;
  // Requests that passed the protocol checks, for flaky-n.
  seen: number;
}

interface Reply {
  status: number;
  error?: string;
  headers?: Record<string, string>;
}

export async function startFakeWebPush(options: FakeWebPushOptions = {}): Promise<FakeWebPush> {
  const now = options.now ?? Date.now;
  const subscribers = new Map<string, Subscriber>();
  const timers = new Set<NodeJS.Timeout>();
  const waiters = new Set<() => void>();
  const records: WebPushRecord[] = [];
  const allowedKeys = options.vapidPublicKeys ? new Set(options.vapidPublicKeys) : undefined;
  let connections = 0;
  let requests = 0;
  let messages = 0;

  // A bug in the fake must show up as a failed request, not as an unhandled rejection.
  const onRequest = (req: IncomingMessage, res: ServerResponse) => void handle(req, res).catch((err: unknown) => res.destroy(err as Error));
  const server = options.insecure
    ? http.createServer({ keepAliveTimeout: 60_000 }, onRequest)
    : https.createServer({ ...pick(testTls()), keepAliveTimeout: 60_000 }, onRequest);
  server.on("connection", () => connections++);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  const origin = `${options.insecure ? "http" : "https"}://${options.hostname ?? "127.0.0.1"}:${port}`;
  const vapid = new VapidVerifier(origin, now);

  function record(entry: WebPushRecord): void {
    records.push(entry);
    options.onRecord?.(entry);
    for (const wake of waiters) wake();
  }

  function until(done: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const wake = () => {
        if (!done()) return;
        clearTimeout(timer);
        waiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(() => {
        waiters.delete(wake);
        reject(new Error(`fake Web Push: ${what()} after ${timeoutMs} ms`));
      }, timeoutMs);
      waiters.add(wake);
    });
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    requests++;
    for (const wake of waiters) wake();
    const at = new Date(now());
    const path = /^\/push\/([^/?]+)$/.exec(req.url ?? "");
    if (!path?.[1]) return reply(res, { status: 404, error: "no such path" });
    if (req.method !== "POST") return reply(res, { status: 405, error: "push with POST", headers: { allow: "POST" } });
    const id = decodeURIComponent(path[1]);
    const ttlHeader = header(req, "ttl");
    const headers: WebPushRecord["headers"] = {
      ...(ttlHeader !== undefined && /^\d+$/.test(ttlHeader) ? { ttl: Number(ttlHeader) } : {}),
      ...(header(req, "urgency") !== undefined ? { urgency: header(req, "urgency") } : {}),
      ...(header(req, "topic") !== undefined ? { topic: header(req, "topic") } : {}),
      ...(header(req, "content-encoding") !== undefined ? { contentEncoding: header(req, "content-encoding") } : {}),
    };
    let vapidClaims: VapidClaims | undefined;
    let plaintext: Buffer | null = null;
    const finish = (r: Reply): void => {
      record({
        subscriptionId: id,
        plaintext,
        headers,
        ...(vapidClaims ? { vapid: vapidClaims } : {}),
        status: r.status,
        ...(r.error ? { error: r.error } : {}),
        at,
      });
      reply(res, r);
    };

    const body = await readBody(req, MAX_BODY);
    if (body === undefined) return; // the client went away mid-body
    const sub = subscribers.get(id);
    if (!sub) return finish({ status: 404, error: "no such subscription" });
    if (ttlHeader === undefined) return finish({ status: 400, error: "TTL header required" });
    if (headers.ttl === undefined) return finish({ status: 400, error: "TTL must be a non-negative integer" });
    if (headers.urgency !== undefined && !URGENCIES.has(headers.urgency)) return finish({ status: 400, error: `Urgency ${headers.urgency} is not very-low, low, normal or high` });
    if (headers.topic !== undefined && !TOPIC.test(headers.topic)) return finish({ status: 400, error: "Topic must be 1-32 base64url characters" });
    const hasBody = body === "too-large" || body.length > 0;
    if (hasBody && headers.contentEncoding === undefined) return finish({ status: 400, error: "Content-Encoding required with a body" });
    if (hasBody && headers.contentEncoding !== "aes128gcm") return finish({ status: 415, error: `Content-Encoding ${headers.contentEncoding} is not aes128gcm` });

    const auth = vapid.check(header(req, "authorization"));
    if (!auth.ok) return finish({ status: auth.status, error: auth.error });
    vapidClaims = auth.claims;
    if (allowedKeys && !allowedKeys.has(auth.claims.publicKey)) return finish({ status: 403, error: "VAPID key not allowed" });
    if (sub.applicationServerKey !== undefined && sub.applicationServerKey !== auth.claims.publicKey) {
      return finish({ status: 403, error: "VAPID key differs from the subscription's applicationServerKey" });
    }
    if (body === "too-large") return finish({ status: 413, error: `body exceeds ${MAX_BODY} bytes` });
    if (body.length > 0) {
      try {
        plaintext = decryptAes128gcm(body, sub.keys).plaintext;
      } catch (err) {
        if (err instanceof DecryptError) return finish({ status: 400, error: `aes128gcm: ${err.message}` });
        throw err;
      }
    } else {
      plaintext = Buffer.alloc(0);
    }

    const b = sub.behaviour;
    const n = ++sub.seen;
    if (b.kind === "gone") return finish({ status: 410, error: "subscription gone" });
    if (b.kind === "not-found") return finish({ status: 404, error: "subscription not found" });
    if (b.kind === "status") return finish({ status: b.status, ...(b.status >= 300 ? { error: "scenario" } : {}), ...(b.headers ? { headers: b.headers } : {}) });
    if (b.kind === "flaky" && n <= b.failures) return finish({ status: b.status, error: `flaky ${n}/${b.failures}` });
    const created = (): Reply => ({ status: 201, headers: { location: `${origin}/m/${++messages}`, ttl: String(headers.ttl) } });
    if (b.kind === "slow") {
      const timer = setTimeout(() => {
        timers.delete(timer);
        res.off("close", gaveUp);
        finish(created());
      }, b.delayMs);
      // A client that times out or cancels is recorded at once (status 0), so nothing from an
      // earlier test turns up after a reset.
      const gaveUp = () => {
        clearTimeout(timer);
        timers.delete(timer);
        finish({ status: 0, error: "client closed the request before the answer" });
      };
      res.once("close", gaveUp);
      timers.add(timer);
      return;
    }
    finish(created());
  }

  const fake: FakeWebPush = {
    url: origin,
    origin,
    records,
    get connections() {
      return connections;
    },
    get requests() {
      return requests;
    },
    subscribe(nameOrOptions) {
      const o: SubscribeOptions = typeof nameOrOptions === "string" ? { name: nameOrOptions } : (nameOrOptions ?? {});
      const id = o.name ?? randomBytes(12).toString("base64url");
      if (subscribers.has(id)) throw new Error(`subscription ${id} exists already`);
      const keys = browserKeys();
      subscribers.set(id, {
        keys,
        behaviour: behaviour(o.scenario ?? "ok"),
        seen: 0,
        ...(o.applicationServerKey ? { applicationServerKey: o.applicationServerKey } : {}),
      });
      const json: PushSubscriptionJSON = {
        endpoint: `${origin}/push/${encodeURIComponent(id)}`,
        keys: { p256dh: keys.publicKey.toString("base64url"), auth: keys.auth.toString("base64url") },
      };
      return { id, ...json, token: JSON.stringify(json), toJSON: () => json };
    },
    setScenario(subscriptionId, scenario) {
      const sub = subscribers.get(subscriptionId);
      if (!sub) throw new Error(`no subscription ${subscriptionId}`);
      sub.behaviour = behaviour(scenario);
      sub.seen = 0;
    },
    delivered(subscriptionId) {
      return records.filter((r) => r.status === 201 && (subscriptionId === undefined || r.subscriptionId === subscriptionId));
    },
    async waitFor(count, timeoutMs = 10_000) {
      await until(() => records.length >= count, timeoutMs, () => `${records.length} of ${count} records`);
      return [...records];
    },
    waitForRequests(count, timeoutMs = 10_000) {
      return until(() => requests >= count, timeoutMs, () => `${requests} of ${count} requests`);
    },
    reset() {
      records.length = 0;
      connections = 0;
      requests = 0;
      for (const sub of subscribers.values()) sub.seen = 0;
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      const closed = once(server, "close");
      server.close();
      server.closeAllConnections();
      await closed;
    },
  };
  return fake;
}

const pick = ({ cert, key }: { cert: string; key: string }) => ({ cert, key });

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(", ") : value;
}

// The body, "too-large" past `limit` bytes (drained, not kept), or undefined if the client aborted.
async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | "too-large" | undefined> {
  const declared = Number(req.headers["content-length"] ?? 0);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size <= limit && declared <= limit) chunks.push(chunk);
    }
  } catch {
    return undefined;
  }
  return size > limit || declared > limit ? "too-large" : Buffer.concat(chunks, size);
}

function reply(res: ServerResponse, r: Reply): void {
  // A slow answer may find the client gone (it timed out); there is nobody left to tell.
  if (res.destroyed || res.writableEnded) return;
  const body = r.status >= 400 ? JSON.stringify({ code: r.status, error: http.STATUS_CODES[r.status] ?? "Error", message: r.error ?? "" }) : "";
  res.writeHead(r.status, { ...(body ? { "content-type": "application/json" } : {}), "content-length": Buffer.byteLength(body), ...r.headers });
  res.end(body);
}
