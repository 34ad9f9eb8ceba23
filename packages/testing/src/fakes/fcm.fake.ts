import { generateKeyPairSync, randomBytes, randomUUID, verify, type KeyObject } from "node:crypto";
import http2, { type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import type { AddressInfo } from "node:net";
import { testTls } from "./tls.fixture.js";

// A faithful stand-in for FCM HTTP v1 and Google's OAuth2 token endpoint, on one TLS port
// (HTTP/2 for messages:send, HTTP/1.1 allowed for the token endpoint as Google allows both):
// RS256 JWT-bearer assertions verified against the registered service accounts' keys, access
// tokens with an expiry, bearer and project checks, message validation, FCM's error bodies
// with Retry-After, and scenario tokens for every error class.

export interface FakeServiceAccount {
  // The JSON a sender loads (token_uri points at this fake).
  json: string;
  clientEmail: string;
  projectId: string;
}

// Registration tokens that make the fake answer a certain way: `fcmScenarioToken("unregistered")`.
export const FCM_SCENARIOS = ["unregistered", "invalid-token", "quota", "unavailable", "internal", "sender-mismatch", "third-party-auth", "bad-message", "flaky"] as const;
export type FcmScenario = (typeof FCM_SCENARIOS)[number] | `flaky-${number}`;

export function fcmScenarioToken(scenario: FcmScenario): string {
  return `scenario-${scenario}-${randomBytes(12).toString("hex")}`;
}

export function randomFcmToken(): string {
  return `${randomBytes(11).toString("base64url")}:APA91b${randomBytes(100).toString("base64url")}`;
}

export interface FcmRecord {
  // token, topic or condition, whichever the message named.
  target: string;
  message: Record<string, unknown> | undefined;
  rawBody: Buffer;
  status: number;
  errorCode?: string;
  httpVersion: string;
  at: Date;
}

export interface FakeFcmOptions {
  // SETTINGS_MAX_CONCURRENT_STREAMS per connection (Google: 100 for firebase-admin).
  maxStreams?: number;
  // Lifetime of issued access tokens.
  tokenLifetimeS?: number;
  // Retry-After of the quota and unavailable scenarios.
  retryAfter?: string;
  // Added to every send answer.
  latencyMs?: number;
  now?: () => number;
  record?: boolean;
  // A send whose answer should wait (a provider stuck answering, for as long as a test wants):
  // answered once the promise returned for its record resolves; undefined answers as usual.
  hold?: (record: FcmRecord) => Promise<void> | undefined;
  // Called with every answered send, e.g. to show deliveries as they happen (npm start --fakes).
  onRecord?: (record: FcmRecord) => void;
}

export interface FakeFcm {
  readonly url: string;
  readonly tokenUri: string;
  readonly records: readonly FcmRecord[];
  readonly stats: { requests: number; byStatus: Record<number, number>; tokensIssued: number; connections: number };
  // A new service account the fake trusts, for `projectId`.
  serviceAccount(projectId?: string): FakeServiceAccount;
  // Makes every issued access token invalid at once (as a revocation would).
  revokeTokens(): void;
  delivered(target?: string): FcmRecord[];
  waitFor(count: number, timeoutMs?: number): Promise<void>;
  reset(): void;
  close(): Promise<void>;
}

const MAX_MESSAGE = 4096;

export async function startFakeFcm(options: FakeFcmOptions = {}): Promise<FakeFcm> {
  const tls = testTls();
  const now = options.now ?? Date.now;
  const accounts = new Map<string, { key: KeyObject; projectId: string }>();
  const tokens = new Map<string, { projectId: string; expiresAt: number }>();
  const flaky = new Map<string, number>();
  const records: FcmRecord[] = [];
  const stats = { requests: 0, byStatus: {} as Record<number, number>, tokensIssued: 0, connections: 0 };
  const waiters = new Set<() => void>();
  const recording = options.record ?? true;

  const server = http2.createSecureServer({ cert: tls.cert, key: tls.key, allowHTTP1: true, settings: { maxConcurrentStreams: options.maxStreams ?? 100 } }, (req, res) => {
    void handle(req, res).catch(() => {
      if (!res.headersSent) send(res, 500, { error: { code: 500, message: "fake failed", status: "INTERNAL" } });
    });
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("secureConnection", () => stats.connections++);
  server.on("session", (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const url = `https://127.0.0.1:${port}`;
  const tokenUri = `${url}/token`;

  async function handle(req: Http2ServerRequest, res: Http2ServerResponse): Promise<void> {
    const body = await readAll(req);
    if (req.method === "POST" && req.url === "/token") return issueToken(body, res);
    const path = /^\/v1\/projects\/([^/]+)\/messages:send$/.exec(req.url ?? "");
    if (req.method !== "POST" || !path) return send(res, 404, googleError(404, "NOT_FOUND", "Not found"));
    stats.requests++;
    const at = new Date(now());
    let message: Record<string, unknown> | undefined;
    let target = "";
    const answer = (status: number, json: object, errorCode?: string, headers: Record<string, string> = {}) => {
      stats.byStatus[status] = (stats.byStatus[status] ?? 0) + 1;
      const entry: FcmRecord = { target, message, rawBody: body, status, ...(errorCode ? { errorCode } : {}), httpVersion: req.httpVersion, at };
      if (recording) records.push(entry);
      options.onRecord?.(entry);
      for (const wake of waiters) wake();
      const reply = () => send(res, status, json, headers);
      const answerNow = () => (options.latencyMs ? void setTimeout(reply, options.latencyMs) : reply());
      const held = options.hold?.(entry);
      if (held) void held.then(answerNow);
      else answerNow();
    };
    const fail = (status: number, grpcStatus: string, text: string, errorCode?: string, headers?: Record<string, string>) => answer(status, googleError(status, grpcStatus, text, errorCode), errorCode ?? grpcStatus, headers);

    const bearer = /^Bearer (.+)$/.exec(String(req.headers.authorization ?? ""))?.[1];
    const grant = bearer ? tokens.get(bearer) : undefined;
    if (!grant || grant.expiresAt <= now()) return fail(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token.");
    if (decodeURIComponent(path[1]!) !== grant.projectId) return fail(403, "PERMISSION_DENIED", "Permission 'cloudmessaging.messages.create' denied on resource (or it may not exist).");
    try {
      message = (JSON.parse(body.toString("utf8")) as { message?: Record<string, unknown> }).message;
    } catch {
      return fail(400, "INVALID_ARGUMENT", "Invalid JSON payload received.");
    }
    if (!message || typeof message !== "object") return fail(400, "INVALID_ARGUMENT", "Request contains an invalid argument: message is required.", "INVALID_ARGUMENT");
    const named = (["token", "topic", "condition"] as const).filter((k) => typeof message![k] === "string");
    if (named.length !== 1) return fail(400, "INVALID_ARGUMENT", "Exactly one of token, topic or condition must be specified.", "INVALID_ARGUMENT");
    target = message[named[0]!] as string;
    const data = message.data;
    if (data !== undefined && (typeof data !== "object" || data === null || Object.values(data).some((v) => typeof v !== "string"))) {
      return fail(400, "INVALID_ARGUMENT", "Invalid value at 'message.data': values must be strings.", "INVALID_ARGUMENT");
    }
    const { [named[0]!]: _target, ...content } = message;
    if (Buffer.byteLength(JSON.stringify(content)) > MAX_MESSAGE) return fail(400, "INVALID_ARGUMENT", "Request contains an invalid argument: message is too big.", "INVALID_ARGUMENT");

    const scenario = /^scenario-([a-z-]+?)(?:-(\d+))?-[0-9a-f]{24}$/.exec(named[0] === "token" ? target : "");
    const retryAfter = { "retry-after": options.retryAfter ?? "1" };
    switch (scenario?.[1]) {
      case "unregistered":
        return fail(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED");
      case "invalid-token":
        return answer(400, tokenViolation(), "INVALID_ARGUMENT");
      case "quota":
        return fail(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Send requests'.", "QUOTA_EXCEEDED", retryAfter);
      case "unavailable":
        return fail(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE", retryAfter);
      case "internal":
        return fail(500, "INTERNAL", "Internal error encountered.", "INTERNAL");
      case "sender-mismatch":
        return fail(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH");
      case "third-party-auth":
        return fail(401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service", "THIRD_PARTY_AUTH_ERROR");
      case "bad-message":
        return fail(400, "INVALID_ARGUMENT", "Invalid android message.", "INVALID_ARGUMENT");
      case "flaky": {
        const failures = Number(scenario[2] ?? 1);
        const seen = flaky.get(target) ?? 0;
        flaky.set(target, seen + 1);
        if (seen < failures) return fail(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE", retryAfter);
      }
    }
    answer(200, { name: `projects/${grant.projectId}/messages/0:${now()}%${randomUUID().replace(/-/g, "")}` });
  }

  function issueToken(body: Buffer, res: Http2ServerResponse): void {
    const form = new URLSearchParams(body.toString("utf8"));
    const refuse = (description: string) => send(res, 400, { error: "invalid_grant", error_description: description });
    if (form.get("grant_type") !== "urn:ietf:params:oauth:grant-type:jwt-bearer") return send(res, 400, { error: "unsupported_grant_type", error_description: "Invalid grant_type" });
    const [head, claims, signature] = (form.get("assertion") ?? "").split(".");
    if (!head || !claims || !signature) return refuse("Invalid JWT: malformed");
    let header: { alg?: string };
    let c: { iss?: string; scope?: string; aud?: string; iat?: number; exp?: number };
    try {
      header = JSON.parse(Buffer.from(head, "base64url").toString()) as typeof header;
      c = JSON.parse(Buffer.from(claims, "base64url").toString()) as typeof c;
    } catch {
      return refuse("Invalid JWT: not JSON");
    }
    if (header.alg !== "RS256") return refuse("Invalid JWT: alg must be RS256");
    const account = c.iss ? accounts.get(c.iss) : undefined;
    if (!account) return refuse("Invalid JWT Signature.");
    if (!verify("RSA-SHA256", Buffer.from(`${head}.${claims}`), account.key, Buffer.from(signature, "base64url"))) return refuse("Invalid JWT Signature.");
    if (c.aud !== tokenUri) return refuse(`Invalid JWT: audience must be ${tokenUri}`);
    if (!c.scope?.split(" ").includes("https://www.googleapis.com/auth/firebase.messaging")) return send(res, 400, { error: "invalid_scope", error_description: "firebase.messaging scope required" });
    const nowS = Math.floor(now() / 1000);
    if (typeof c.iat !== "number" || typeof c.exp !== "number" || c.exp - c.iat > 3600 || c.exp <= nowS || c.iat > nowS + 60) {
      return refuse("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.");
    }
    const lifetime = options.tokenLifetimeS ?? 3600;
    const token = `ya29.fake-${randomBytes(24).toString("base64url")}`;
    tokens.set(token, { projectId: account.projectId, expiresAt: now() + lifetime * 1000 });
    stats.tokensIssued++;
    send(res, 200, { access_token: token, expires_in: lifetime, token_type: "Bearer" });
  }

  return {
    url,
    tokenUri,
    records,
    stats,
    serviceAccount(projectId = "herald-test") {
      const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
      const clientEmail = `sender-${randomBytes(4).toString("hex")}@${projectId}.iam.gserviceaccount.com`;
      accounts.set(clientEmail, { key: publicKey, projectId });
      const json = JSON.stringify({
        type: "service_account",
        project_id: projectId,
        private_key_id: randomBytes(20).toString("hex"),
        private_key: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
        client_email: clientEmail,
        token_uri: tokenUri,
      });
      return { json, clientEmail, projectId };
    },
    revokeTokens: () => tokens.clear(),
    delivered: (target) => records.filter((r) => r.status === 200 && (target === undefined || r.target === target)),
    waitFor(count, timeoutMs = 30_000) {
      const done = () => stats.requests >= count;
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
          reject(new Error(`fake FCM: ${stats.requests} of ${count} requests after ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(wake);
      });
    },
    reset() {
      records.length = 0;
      stats.requests = 0;
      stats.byStatus = {};
      flaky.clear();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const session of sessions) session.destroy();
      }),
  };
}

function googleError(code: number, status: string, message: string, errorCode?: string): object {
  return { error: { code, message, status, ...(errorCode ? { details: [{ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", errorCode }] } : {}) } };
}

function tokenViolation(): object {
  return {
    error: {
      code: 400,
      message: "The registration token is not a valid FCM registration token",
      status: "INVALID_ARGUMENT",
      details: [
        { "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", errorCode: "INVALID_ARGUMENT" },
        { "@type": "type.googleapis.com/google.rpc.BadRequest", fieldViolations: [{ field: "message.token", description: "The registration token is not a valid FCM registration token" }] },
      ],
    },
  };
}

function send(res: Http2ServerResponse, status: number, json: object, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.stream?.destroyed) return;
  res.writeHead(status, { "content-type": "application/json; charset=UTF-8", ...headers });
  res.end(JSON.stringify(json));
}

function readAll(req: Http2ServerRequest): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}
