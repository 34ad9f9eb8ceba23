import { constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type SecureClientSessionOptions } from "node:http2";
import { setMaxListeners } from "node:events";
import tls from "node:tls";
import http2wrapper from "http2-wrapper";
import { isIP } from "node:net";

// Long-lived HTTP/2 connections to one provider origin (APNs, FCM). http2-wrapper's Agent keeps
// up to `maxSessions` sessions and hands out a stream only while a session is below the peer's
// SETTINGS_MAX_CONCURRENT_STREAMS, so a fresh APNs connection (one stream until it has seen a
// valid token) is never overrun; when the peer raises the limit the queued requests flow at once.

// Where to connect and what to call the peer. The origin (and with it the SNI, the certificate
// check and :authority) is always the name the provider is known by; only the TCP destination
// changes (a fake on 127.0.0.1 standing in for api.push.apple.com).
export interface Http2Endpoint {
  origin: string;
  connectHost: string;
  port: number;
  servername?: string;
}

export function http2Endpoint(url: string, servername?: string): Http2Endpoint {
  const parsed = new URL(url);
  if (parsed.protocol !== "https:") throw new Error(`provider url must be https, got ${url}`);
  const port = Number(parsed.port || 443);
  const connectHost = parsed.hostname.replace(/^\[(.*)\]$/, "$1");
  const name = servername ?? (isIP(connectHost) ? undefined : connectHost);
  const origin = name ? new URL(`https://${name}:${port}`).origin : parsed.origin;
  return { origin, connectHost, port, ...(name ? { servername: name } : {}) };
}

// An answer: status, headers and the (small) body as text.
export interface Http2Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface Http2PoolOptions {
  endpoint: Http2Endpoint;
  maxSessions: number;
  ca?: string;
  // TLS client certificate (certificate auth).
  cert?: string;
  key?: string;
  pfx?: Buffer;
  passphrase?: string;
}

export interface PostOptions {
  timeoutMs: number;
  signal?: AbortSignal;
}

// A request that got no answer. `unsent`: the provider cannot have seen it (GOAWAY, refused stream,
// closing session), so sending it again cannot duplicate a notification.
export class Http2PoolError extends Error {
  constructor(
    readonly code: string,
    readonly unsent: boolean,
    options?: ErrorOptions,
  ) {
    super(`HTTP/2 request failed: ${code}`, options);
  }
}

// RFC 9113 §7 error codes, for readable reasons.
const H2_ERRORS = ["NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"];

// Provider answers are small JSON documents; anything bigger is not the provider talking.
const MAX_BODY = 64 * 1024;

// http2-wrapper skips sessions it marked with this symbol. It has no GOAWAY handling of its own:
// a session that received GOAWAY stays "closed but not destroyed" until its streams end, and the
// Agent would keep choosing it and get ERR_HTTP2_GOAWAY_SESSION for every new stream.
const kGracefullyClosing = (http2wrapper.Agent as unknown as { kGracefullyClosing?: symbol }).kGracefullyClosing;
// The Agent's count of a session's open streams, kept by its shim of session.request().
const kCurrentStreamCount = (http2wrapper.Agent as unknown as { kCurrentStreamCount?: symbol }).kCurrentStreamCount;

type PooledSession = ClientHttp2Session & Record<symbol, unknown>;

// A pooled session that can take one more stream now, as the Agent itself would judge it.
function hasFreeStream(session: PooledSession): boolean {
  if (session.destroyed || session.closed || session[kGracefullyClosing!] === true) return false;
  const count = session[kCurrentStreamCount!];
  const limit = session.remoteSettings.maxConcurrentStreams ?? 0;
  return typeof count === "number" && count < limit;
}

// http2-wrapper 2.2's private pieces this file relies on (pinned version; checked by the tests).
interface AgentInternals {
  _sessionCount: number;
  _processQueue(): void;
}

// At maxSessions, http2-wrapper closes an idle session every time it looks at its queue (a stream
// ended, a session closed), to make room for sessions to other origins. This pool has a single
// origin, so that only tears down warm connections, each replaced by a new one that starts again
// at one stream. Here the queue waits for a free stream instead.
class SingleOriginAgent extends http2wrapper.Agent {
  _processQueue(): void {
    const internals = this as unknown as AgentInternals;
    if (internals._sessionCount >= this.maxSessions) return;
    (http2wrapper.Agent.prototype as unknown as AgentInternals)._processQueue.call(this);
  }
}

export class Http2Pool {
  private readonly agent: http2wrapper.Agent;
  private readonly sessionOptions: SecureClientSessionOptions;
  private readonly origin: URL;
  private readonly sessions = new Set<PooledSession>();
  // Connections opened so far (tests and metrics).
  connects = 0;

  constructor(private readonly options: Http2PoolOptions) {
    const { endpoint } = options;
    // Parsed once: the Agent parses a string origin on every request.
    this.origin = new URL(endpoint.origin);
    // Idle sessions stay open: APNs wants long-lived connections, and a new one starts at one stream.
    this.agent = new SingleOriginAgent({ maxSessions: options.maxSessions, maxEmptySessions: options.maxSessions });
    this.agent.on("session", (session: PooledSession) => {
      this.connects++;
      this.sessions.add(session);
      // The Agent listens once; a later error on a pooled session must not become an uncaught one.
      session.on("error", () => {});
      session.once("goaway", () => {
        if (kGracefullyClosing) (session as unknown as Record<symbol, boolean>)[kGracefullyClosing] = true;
      });
      session.once("close", () => this.sessions.delete(session));
    });
    this.sessionOptions = {
      ...(endpoint.servername ? { servername: endpoint.servername } : {}),
      ...(options.ca ? { ca: options.ca } : {}),
      ...(options.cert ? { cert: options.cert } : {}),
      ...(options.key ? { key: options.key } : {}),
      ...(options.pfx ? { pfx: options.pfx } : {}),
      ...(options.passphrase ? { passphrase: options.passphrase } : {}),
      // The TCP destination may differ from the origin (a fake on 127.0.0.1 standing in for
      // api.push.apple.com); TLS still checks the certificate against the origin's name.
      createConnection: (_origin: URL, connectOptions: tls.ConnectionOptions) =>
        tls.connect({
          ...connectOptions,
          host: endpoint.connectHost,
          port: endpoint.port,
          ALPNProtocols: ["h2"],
          ...(endpoint.servername ? { servername: endpoint.servername } : {}),
        }),
    } as SecureClientSessionOptions;
  }

  post(path: string, headers: Record<string, string>, body: Uint8Array, options: PostOptions): Promise<Http2Answer> {
    return new Promise((resolve, reject) => {
      const pending = new PendingPost(resolve, reject, body, options);
      const requestHeaders = { ...headers, ":method": "POST", ":path": path };
      // A warm session with a free stream takes the request directly: the Agent's own path
      // (origin and options normalised, a session search, two promises) costs about as much
      // CPU as the request itself. Everything else (no session yet, all full, one closing)
      // goes through the Agent, which queues, connects and counts.
      const session = this.freeSession();
      if (session) {
        let direct: ClientHttp2Stream | undefined;
        try {
          direct = session.request(requestHeaders, { endStream: false });
        } catch {
          // The session started closing since it was chosen: the Agent picks another.
        }
        if (direct) return pending.attach(direct);
      }
      this.agent.request(this.origin, this.sessionOptions, requestHeaders, { endStream: false }).then(
        (s) => pending.attach(s),
        (err: NodeJS.ErrnoException) => pending.fail(sessionError(err)),
      );
    });
  }

  private freeSession(): PooledSession | undefined {
    if (!kCurrentStreamCount) return undefined;
    for (const session of this.sessions) if (hasFreeStream(session)) return session;
    return undefined;
  }

  // Destroys every pooled connection; requests in flight fail with a network error.
  async close(): Promise<void> {
    // Sessions leave the set on "close", so every one still in it has that event to come.
    const closed = [...this.sessions].map((s) => new Promise<void>((resolve) => s.once("close", () => resolve())));
    this.agent.destroy();
    await Promise.all(closed);
  }
}

// One POST in flight. Its state and its stream's handlers live on one object, and the handlers
// are shared functions that find it on the stream: a dozen closures per request (each also named
// at run time by tsx) were a measurable share of a delivery's CPU.
const kPending = Symbol("pendingPost");

class PendingPost {
  private stream: ClientHttp2Stream | undefined;
  private settled = false;
  private readonly timer: NodeJS.Timeout;
  status = 0;
  headers: IncomingHttpHeaders = {};
  chunks: Buffer[] = [];
  size = 0;

  constructor(
    private readonly resolve: (answer: Http2Answer) => void,
    private readonly reject: (error: Http2PoolError) => void,
    private readonly body: Uint8Array,
    private readonly options: PostOptions,
  ) {
    // The clock runs from asking the pool, so a connection that never comes up also times out.
    this.timer = setTimeout(onTimeout, options.timeoutMs, this);
    options.signal?.addEventListener("abort", this, { once: true });
  }

  // The caller's signal aborted (EventTarget calls an object listener's handleEvent).
  handleEvent(): void {
    this.fail(new Http2PoolError("Aborted", false));
  }

  attach(stream: ClientHttp2Stream): void {
    if (this.settled) {
      stream.close(constants.NGHTTP2_CANCEL);
      return;
    }
    this.stream = stream;
    (stream as unknown as Record<symbol, PendingPost>)[kPending] = this;
    stream.on("response", onResponse);
    stream.on("data", onData);
    stream.on("end", onEnd);
    stream.on("error", onStreamError);
    stream.on("close", onClose);
    stream.end(this.body);
  }

  answered(): void {
    if (this.settle()) this.resolve({ status: this.status, headers: this.headers, body: this.chunks.length ? Buffer.concat(this.chunks).toString("utf8") : "" });
  }

  fail(error: Http2PoolError): void {
    if (!this.settle()) return;
    this.reject(error);
    this.stream?.close(constants.NGHTTP2_CANCEL);
  }

  get done(): boolean {
    return this.settled;
  }

  private settle(): boolean {
    if (this.settled) return false;
    this.settled = true;
    clearTimeout(this.timer);
    this.options.signal?.removeEventListener("abort", this);
    return true;
  }
}

const pendingOf = (stream: ClientHttp2Stream) => (stream as unknown as Record<symbol, PendingPost>)[kPending]!;

function onTimeout(pending: PendingPost): void {
  pending.fail(new Http2PoolError("Timeout", false));
}

function onResponse(this: ClientHttp2Stream, headers: IncomingHttpHeaders): void {
  const pending = pendingOf(this);
  pending.status = Number(headers[":status"] ?? 0);
  pending.headers = headers;
}

function onData(this: ClientHttp2Stream, chunk: Buffer): void {
  const pending = pendingOf(this);
  pending.size += chunk.length;
  if (pending.size <= MAX_BODY) pending.chunks.push(chunk);
}

// A reset stream also ends (before its error): only an answer with a status counts.
function onEnd(this: ClientHttp2Stream): void {
  const pending = pendingOf(this);
  if (pending.status) pending.answered();
}

// Errors are built only when they are news: a stack trace per answered request costs.
function onStreamError(this: ClientHttp2Stream, err: NodeJS.ErrnoException): void {
  const pending = pendingOf(this);
  if (!pending.done) pending.fail(streamError(err, this));
}

function onClose(this: ClientHttp2Stream): void {
  const pending = pendingOf(this);
  if (!pending.done) pending.fail(streamError(undefined, this));
}

function streamError(err: NodeJS.ErrnoException | undefined, stream: ClientHttp2Stream): Http2PoolError {
  // A stream above the GOAWAY's last stream id, or beyond the peer's limit, is refused unprocessed.
  if (stream.rstCode === constants.NGHTTP2_REFUSED_STREAM) return new Http2PoolError("REFUSED_STREAM", true, { cause: err });
  const reset = stream.rstCode ? `RST_STREAM:${H2_ERRORS[stream.rstCode] ?? stream.rstCode}` : undefined;
  // The peer's RST_STREAM code says more than Node's generic stream error; a socket error more than both.
  const code = (err?.code === "ERR_HTTP2_STREAM_ERROR" ? reset : undefined) ?? err?.code ?? reset ?? "StreamClosed";
  return new Http2PoolError(code, false, { cause: err });
}

function sessionError(err: NodeJS.ErrnoException): Http2PoolError {
  // No stream was created: the session had received GOAWAY, was closing or already gone.
  const unsent =
    err.code === "ERR_HTTP2_GOAWAY_SESSION" ||
    err.code === "ERR_HTTP2_INVALID_SESSION" ||
    /gracefully closing/.test(err.message);
  return new Http2PoolError(err.code ?? (unsent ? "SessionClosing" : "ConnectionError"), unsent, { cause: err });
}

// Every target's request listens for the caller's abort. Those listeners go on a signal of our
// own, so a job of thousands of targets neither trips Node's listener-leak warning on the
// caller's signal nor leaves listeners behind on it.
export function sharedSignal(outer: AbortSignal | undefined): { signal?: AbortSignal; release: () => void } {
  if (!outer) return { release: () => {} };
  const inner = new AbortController();
  setMaxListeners(0, inner.signal);
  const abort = () => inner.abort(outer.reason);
  if (outer.aborted) abort();
  else outer.addEventListener("abort", abort, { once: true });
  return { signal: inner.signal, release: () => outer.removeEventListener("abort", abort) };
}
