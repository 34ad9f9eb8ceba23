import { randomUUID } from "node:crypto";
import { once } from "node:events";
import http2, { constants, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from "node:http2";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { ApnsTokenVerifier, type ApnsKeyRegistration, type ConnectionTokenState } from "./apns.auth.js";
import { scenarioOf, type ApnsScenarioName } from "./apns.scenario.js";
import { testTls } from "./tls.fixture.js";

export { generateApnsKey, type ApnsKeyRegistration, type ApnsTestKey } from "./apns.auth.js";
export { APNS_SCENARIOS, randomDeviceToken, scenarioOf, scenarioToken, type ApnsScenario, type ApnsScenarioName } from "./apns.scenario.js";

// Apple's HTTP/2 provider API (reference/providers.md) for tests and benchmarks: TLS with the
// test CA, one stream per new connection until a valid provider token is seen, ES256 tokens with
// Apple's timing rules, certificate auth, Apple's header and payload checks and error bodies,
// scenario tokens for every answer a sender has to classify, and GOAWAY on demand.

export interface FakeApnsOptions {
  // Keys accepted for token auth; more can be added with registerKey().
  keys?: ApnsKeyRegistration[];
  // SETTINGS_MAX_CONCURRENT_STREAMS once a connection is authenticated (Apple: 500-1500).
  maxStreams?: number;
  // Clock for the provider-token rules, epoch milliseconds.
  now?: () => number;
  // How long the "slow" scenario holds its answer.
  slowMs?: number;
  // Added to every answer, to give benchmarks a realistic round trip and tests overlapping streams.
  latencyMs?: number;
  // Retry-After for the "too-many-requests" scenario. Apple sends none; senders must cope with both.
  retryAfter?: string;
  // Ask for TLS client certificates (certificate auth). Connections without one still work.
  requestCert?: boolean;
  // false: keep counters only, no per-request records (benchmarks at tens of thousands per second).
  record?: boolean;
  // Called with every answered request, e.g. to show deliveries as they happen (npm start --fakes).
  onRecord?: (received: ApnsReceived) => void;
}

export interface ApnsReceived {
  token: string;
  // As received, lowercased names; pseudo-headers (:path, :authority, ...) included.
  headers: Record<string, string>;
  // The parsed JSON body; undefined when it was empty, too large or not JSON.
  payload: unknown;
  rawBody: Buffer;
  // 0 when the request was cut off (GOAWAY with abortInFlight, client reset) before an answer.
  status: number;
  reason?: string;
  // The 410 body's timestamp (epoch ms).
  timestamp?: number;
  apnsId: string;
  connectionId: number;
  auth: "token" | "certificate" | "none";
  at: Date;
}

export interface FakeApnsConnection {
  id: number;
  auth: "token" | "certificate" | "none";
  // The SETTINGS_MAX_CONCURRENT_STREAMS currently advertised.
  streamLimit: number;
  // Most streams open at once on this connection, overall and while it was limited to one.
  // nghttp2 refuses streams beyond the advertised limit before they reach the fake, so a client
  // that ignores the limit shows up as REFUSED_STREAM errors on its side, not as a higher count.
  maxConcurrentStreams: number;
  maxConcurrentStreamsWhileLimited: number;
  requests: number;
  // Distinct provider tokens presented.
  tokens: number;
  closed: boolean;
}

export interface FakeApnsStats {
  // Requests that arrived (answered or not) and answers by status and by reason.
  requests: number;
  byStatus: Record<number, number>;
  byReason: Record<string, number>;
}

export interface FakeApns {
  // https://127.0.0.1:<port>; the certificate is also valid for api.push.apple.com and
  // api.sandbox.push.apple.com, so senders can keep the production servername.
  readonly url: string;
  readonly port: number;
  // PEM of the CA that signed the fake's certificate (testTls() is per process): senders in other
  // processes need it as their extra CA.
  readonly ca: string;
  // Every answered (or cut-off) request in order; empty when options.record is false.
  readonly received: readonly ApnsReceived[];
  // HTTP/2 connections accepted since start or reset().
  readonly connections: number;
  // Per connection since start or reset() (open ones are carried over, their maxima restarted).
  // Certificate connections also start at one stream and are raised as soon as they are up.
  readonly connectionStats: readonly FakeApnsConnection[];
  readonly stats: FakeApnsStats;
  registerKey(registration: ApnsKeyRegistration): void;
  // 200 records, optionally for one token.
  delivered(token?: string): ApnsReceived[];
  // Resolves once at least `count` requests have been answered (records, or counters without them).
  waitFor(count: number, timeoutMs?: number): Promise<readonly ApnsReceived[]>;
  // Resolves once at least `count` requests have arrived, answered or not (e.g. held by "slow").
  waitForRequests(count: number, timeoutMs?: number): Promise<void>;
  // GOAWAY (NO_ERROR, debug data {"reason":"Shutdown"}) on every open connection. Requests
  // already received are answered, then the connections close; with abortInFlight they are
  // reset instead and the connections dropped.
  goaway(options?: { abortInFlight?: boolean }): void;
  // Forgets records, counters and flaky progress; keys and open connections stay.
  reset(): void;
  close(): Promise<void>;
}

const PAYLOAD_LIMIT = 4096;
const VOIP_PAYLOAD_LIMIT = 5120;
// Bodies beyond this are drained, not kept.
const KEEP_LIMIT = 64 * 1024;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DEVICE_TOKEN = /^[0-9a-f]{64,200}$/i;
const HOUR_MS = 60 * 60 * 1000;
const SHUTDOWN = Buffer.from(JSON.stringify({ reason: "Shutdown" }));

// The apns-topic each push type needs (Apple's "Sending notification requests to APNs").
const TOPIC_SUFFIX: Record<string, string> = {
  alert: "",
  background: "",
  location: ".location-query",
  voip: ".voip",
  complication: ".complication",
  fileprovider: ".pushkit.fileprovider",
  liveactivity: ".push-type.liveactivity",
  pushtotalk: ".voip-ptt",
  // The topic comes from the MDM certificate; nothing to derive it from here.
  mdm: "",
};

interface Connection {
  stats: FakeApnsConnection;
  tokens: ConnectionTokenState;
  session: ServerHttp2Session;
  // Streams open right now, and those not answered yet (for GOAWAY with abortInFlight).
  active: number;
  inFlight: Set<ServerHttp2Stream>;
  // The CN of a client certificate signed by the test CA: the topic it may push to.
  certTopic?: string;
  // A client certificate the test CA did not sign.
  badCert: boolean;
}

interface Reply {
  status: number;
  reason?: string;
  timestamp?: number;
  headers?: Record<string, string>;
}

export async function startFakeApns(options: FakeApnsOptions = {}): Promise<FakeApns> {
  const now = options.now ?? Date.now;
  const maxStreams = options.maxStreams ?? 1000;
  const slowMs = options.slowMs ?? 2000;
  const latencyMs = options.latencyMs ?? 0;
  const recording = options.record ?? true;
  const tls = testTls();
  const verifier = new ApnsTokenVerifier();
  for (const key of options.keys ?? []) verifier.register(key);

  const received: ApnsReceived[] = [];
  const open = new Set<Connection>();
  let tracked: Connection[] = [];
  let counters: FakeApnsStats = { requests: 0, byStatus: {}, byReason: {} };
  let answers = 0;
  let nextConnectionId = 0;
  const flakySeen = new Map<string, number>();
  const timers = new Set<NodeJS.Timeout>();
  const waiters = new Set<() => void>();

  const server = http2.createSecureServer({
    cert: tls.cert,
    key: tls.key,
    ca: tls.ca,
    requestCert: options.requestCert ?? true,
    // Token-auth clients have no certificate; whether one is valid is decided per request.
    rejectUnauthorized: false,
    allowHTTP1: false,
    // Every connection starts at one stream, like Apple's before the first valid token.
    settings: { maxConcurrentStreams: 1 },
    // Benchmarks push thousands of streams per connection.
    maxSessionMemory: 64,
  });

  server.on("session", (session: ServerHttp2Session) => {
    const socket = session.socket as TLSSocket;
    const peer = socket.getPeerCertificate?.();
    const hasCert = !!peer && Object.keys(peer).length > 0;
    const cn = hasCert && socket.authorized ? peer.subject?.CN : undefined;
    const connection: Connection = {
      stats: {
        id: ++nextConnectionId,
        auth: cn ? "certificate" : "none",
        streamLimit: 1,
        maxConcurrentStreams: 0,
        maxConcurrentStreamsWhileLimited: 0,
        requests: 0,
        tokens: 0,
        closed: false,
      },
      tokens: {},
      session,
      active: 0,
      inFlight: new Set(),
      badCert: hasCert && !socket.authorized,
      ...(typeof cn === "string" && cn ? { certTopic: cn } : {}),
    };
    open.add(connection);
    tracked.push(connection);
    // The certificate authenticated the connection during the handshake already.
    if (connection.certTopic) raise(connection);
    session.on("error", () => {});
    session.on("close", () => {
      connection.stats.closed = true;
      open.delete(connection);
    });
    session.on("stream", (stream, headers) => onStream(connection, stream, headers));
  });
  server.on("sessionError", () => {});
  server.on("tlsClientError", () => {});

  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  const url = `https://127.0.0.1:${port}`;

  function raise(connection: Connection): void {
    if (connection.stats.streamLimit === maxStreams) return;
    connection.stats.streamLimit = maxStreams;
    connection.session.settings({ maxConcurrentStreams: maxStreams });
  }

  function wake(): void {
    for (const w of waiters) w();
  }

  function onStream(connection: Connection, stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const { stats } = connection;
    counters.requests++;
    stats.requests++;
    connection.active++;
    connection.inFlight.add(stream);
    stats.maxConcurrentStreams = Math.max(stats.maxConcurrentStreams, connection.active);
    if (stats.streamLimit === 1) stats.maxConcurrentStreamsWhileLimited = Math.max(stats.maxConcurrentStreamsWhileLimited, connection.active);
    let counted = true;
    // A stream stops counting once its answer is on the way or it is gone, whichever is first:
    // that is when the client may open the next one.
    const uncount = () => {
      if (!counted) return;
      counted = false;
      connection.active--;
      connection.inFlight.delete(stream);
    };
    stream.once("close", uncount);
    stream.on("error", () => {});

    const chunks: Buffer[] = [];
    let size = 0;
    stream.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= KEEP_LIMIT) chunks.push(chunk);
    });
    stream.on("end", () => {
      if (stream.destroyed) return;
      const rawBody = size <= KEEP_LIMIT ? Buffer.concat(chunks, size) : Buffer.alloc(0);
      const { reply, token, payload, auth, delayMs } = decide(connection, headers, rawBody, size);
      const apnsId = apnsIdOf(headers);
      const at = now();
      let timer: NodeJS.Timeout | undefined;
      let answered = false;
      const answer = (r: Reply) => {
        if (answered) return;
        answered = true;
        uncount();
        if (timer) {
          clearTimeout(timer);
          timers.delete(timer);
        }
        answers++;
        counters.byStatus[r.status] = (counters.byStatus[r.status] ?? 0) + 1;
        if (r.reason) counters.byReason[r.reason] = (counters.byReason[r.reason] ?? 0) + 1;
        if (recording || options.onRecord) {
          const entry: ApnsReceived = {
            token,
            headers: flatten(headers),
            payload,
            rawBody,
            status: r.status,
            ...(r.reason ? { reason: r.reason } : {}),
            ...(r.timestamp !== undefined ? { timestamp: r.timestamp } : {}),
            apnsId,
            connectionId: stats.id,
            auth,
            at: new Date(at),
          };
          if (recording) received.push(entry);
          options.onRecord?.(entry);
        }
        if (r.status !== 0 && !stream.destroyed && !stream.closed) respond(stream, apnsId, r);
        wake();
      };
      // Reset before the answer (client timeout, GOAWAY with abortInFlight): recorded as cut off.
      stream.once("close", () => answer({ status: 0, reason: "StreamClosed" }));
      const wait = delayMs + latencyMs;
      if (wait <= 0) return answer(reply);
      timer = setTimeout(() => answer(reply), wait);
      timers.add(timer);
    });
    wake();
  }

  // Apple's checks in the order that matters for a sender: path, credentials, headers, body,
  // then the device token's scenario.
  function decide(connection: Connection, headers: IncomingHttpHeaders, rawBody: Buffer, size: number) {
    const path = String(headers[":path"] ?? "");
    const match = /^\/3\/device\/([^/?]*)$/.exec(path);
    const token = match?.[1] ?? "";
    let auth: ApnsReceived["auth"] = "none";
    let payload: unknown;
    const result = (reply: Reply, delayMs = 0) => ({ reply, token, payload, auth, delayMs });
    const fail = (status: number, reason: string) => result({ status, reason });

    if (!match) return fail(404, "BadPath");
    if (headers[":method"] !== "POST") return fail(405, "MethodNotAllowed");
    if (!token) return fail(400, "MissingDeviceToken");

    let topics: ReadonlySet<string>;
    const authorization = headers.authorization;
    if (typeof authorization === "string") {
      const check = verifier.check(authorization, connection.tokens, now());
      if (!check.ok) return fail(check.status, check.reason);
      if (connection.stats.auth === "none") connection.stats.auth = "token";
      if (check.changed) connection.stats.tokens++;
      auth = "token";
      topics = check.topics;
      raise(connection);
    } else if (connection.certTopic) {
      auth = "certificate";
      topics = new Set([connection.certTopic]);
    } else {
      return fail(403, connection.badCert ? "BadCertificate" : "MissingProviderToken");
    }

    const apnsId = headers["apns-id"];
    if (apnsId !== undefined && (typeof apnsId !== "string" || !UUID.test(apnsId))) return fail(400, "BadMessageId");
    const pushType = String(headers["apns-push-type"] ?? "alert");
    if (!(pushType in TOPIC_SUFFIX)) return fail(400, "InvalidPushType");
    // With a certificate the topic defaults to the certificate's; a team key needs it spelled out.
    const topic = headers["apns-topic"] ?? (auth === "certificate" ? connection.certTopic : undefined);
    if (typeof topic !== "string" || !topic) return fail(400, "MissingTopic");
    const suffix = TOPIC_SUFFIX[pushType] ?? "";
    if (pushType !== "mdm" && !(topic.endsWith(suffix) && topics.has(topic.slice(0, topic.length - suffix.length)))) {
      // An app of this team, but the suffix belongs to another push type.
      const known = topics.has(topic) || Object.values(TOPIC_SUFFIX).some((s) => s && topic.endsWith(s) && topics.has(topic.slice(0, -s.length)));
      return fail(400, known ? "InvalidPushType" : "TopicDisallowed");
    }
    const priority = headers["apns-priority"];
    if (priority !== undefined && !["10", "5", "1"].includes(String(priority))) return fail(400, "BadPriority");
    if (pushType === "background" && String(priority) === "10") return fail(400, "BadPriority");
    const expiration = headers["apns-expiration"];
    if (expiration !== undefined && !/^\d+$/.test(String(expiration))) return fail(400, "BadExpirationDate");
    const collapseId = headers["apns-collapse-id"];
    if (collapseId !== undefined && Buffer.byteLength(String(collapseId)) > 64) return fail(400, "BadCollapseId");

    if (size === 0) return fail(400, "PayloadEmpty");
    if (size > (pushType === "voip" ? VOIP_PAYLOAD_LIMIT : PAYLOAD_LIMIT)) return fail(413, "PayloadTooLarge");
    try {
      payload = JSON.parse(rawBody.toString("utf8"));
    } catch {
      payload = undefined;
    }
    // Apple documents no reason for malformed JSON; BadPayload is this fake's choice.
    if (typeof payload !== "object" || payload === null || Array.isArray(payload)) return fail(400, "BadPayload");

    if (!DEVICE_TOKEN.test(token)) return fail(400, "BadDeviceToken");
    const scenario = scenarioOf(token.toLowerCase());
    if (!scenario) return result({ status: 200 });
    return scenarioReply(scenario.name, scenario.n, token, result, fail);
  }

  function scenarioReply<T>(name: ApnsScenarioName, n: number, token: string, result: (r: Reply, delayMs?: number) => T, fail: (status: number, reason: string) => T): T {
    switch (name) {
      case "bad-device-token":
        return fail(400, "BadDeviceToken");
      case "unregistered":
        // When Apple learned the token went away: n hours before now (scenarioToken("unregistered", 24)
        // is a verdict older than a fresh registration, which the registry must not act on).
        return result({ status: 410, reason: "Unregistered", timestamp: now() - n * HOUR_MS });
      case "expired-token":
        return fail(410, "ExpiredToken");
      case "not-for-topic":
        return fail(400, "DeviceTokenNotForTopic");
      case "too-many-requests":
        return result({ status: 429, reason: "TooManyRequests", ...(options.retryAfter ? { headers: { "retry-after": options.retryAfter } } : {}) });
      case "internal-error":
        return fail(500, "InternalServerError");
      case "unavailable":
        return fail(503, "ServiceUnavailable");
      case "slow":
        return result({ status: 200 }, slowMs);
      case "flaky": {
        const seen = (flakySeen.get(token) ?? 0) + 1;
        flakySeen.set(token, seen);
        return seen <= n ? fail(503, "ServiceUnavailable") : result({ status: 200 });
      }
    }
  }

  function until(done: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!done()) return;
        clearTimeout(timer);
        waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`fake APNs: ${what()} after ${timeoutMs} ms`));
      }, timeoutMs);
      waiters.add(check);
    });
  }

  const fake: FakeApns = {
    url,
    port,
    ca: tls.ca,
    received,
    get connections() {
      return tracked.length;
    },
    get connectionStats() {
      return tracked.map((c) => ({ ...c.stats }));
    },
    get stats() {
      return counters;
    },
    registerKey: (registration) => verifier.register(registration),
    delivered(token) {
      return received.filter((r) => r.status === 200 && (token === undefined || r.token === token));
    },
    async waitFor(count, timeoutMs = 10_000) {
      await until(() => answers >= count, timeoutMs, () => `${answers} of ${count} answers`);
      return received;
    },
    waitForRequests(count, timeoutMs = 10_000) {
      return until(() => counters.requests >= count, timeoutMs, () => `${counters.requests} of ${count} requests`);
    },
    goaway({ abortInFlight = false } = {}) {
      for (const connection of open) {
        const { session } = connection;
        if (session.closed || session.destroyed) continue;
        // Last stream id 0 makes Node announce the last stream it processed: everything already
        // received is still answered, anything newer the client must send again.
        session.goaway(constants.NGHTTP2_NO_ERROR, 0, SHUTDOWN);
        if (abortInFlight) {
          for (const stream of connection.inFlight) stream.close(constants.NGHTTP2_INTERNAL_ERROR);
          session.destroy();
        } else {
          session.close();
        }
      }
    },
    reset() {
      received.length = 0;
      counters = { requests: 0, byStatus: {}, byReason: {} };
      answers = 0;
      flakySeen.clear();
      tracked = [...open];
      for (const { stats, active } of tracked) {
        stats.requests = 0;
        stats.maxConcurrentStreams = active;
        stats.maxConcurrentStreamsWhileLimited = stats.streamLimit === 1 ? active : 0;
      }
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      const closed = once(server, "close");
      server.close();
      for (const { session } of open) session.destroy();
      await closed;
    },
  };
  return fake;
}

function apnsIdOf(headers: IncomingHttpHeaders): string {
  const given = headers["apns-id"];
  return typeof given === "string" && UUID.test(given) ? given.toLowerCase() : randomUUID();
}

function respond(stream: ServerHttp2Stream, apnsId: string, r: Reply): void {
  if (r.status === 200) {
    stream.respond({ ":status": 200, "apns-id": apnsId }, { endStream: true });
    return;
  }
  const body = JSON.stringify({ reason: r.reason, ...(r.timestamp !== undefined ? { timestamp: r.timestamp } : {}) });
  stream.respond({ ":status": r.status, "apns-id": apnsId, "content-type": "application/json", ...r.headers });
  stream.end(body);
}

function flatten(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(", ") : String(value);
  }
  return out;
}
