import { randomBytes, randomUUID } from "node:crypto";
import https from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { testTls } from "./tls.fixture.js";

// A faithful stand-in for Huawei Push Kit and its OAuth endpoint over TLS: client-credentials
// tokens with an expiry, bearer checks answered with HMS body codes, up to 1000 tokens per
// message, partial success naming the illegal tokens, flow control (HTTP 503), and scenario
// tokens for each case.

export const HMS_SCENARIOS = ["illegal", "flow-control", "internal", "flaky"] as const;
export type HmsScenario = (typeof HMS_SCENARIOS)[number] | `flaky-${number}`;

export function hmsScenarioToken(scenario: HmsScenario): string {
  return `scenario-${scenario}-${randomBytes(12).toString("hex")}`;
}

export function randomHmsToken(): string {
  return `IQAAAA${randomBytes(90).toString("base64url")}`;
}

export interface HmsRecord {
  tokens: string[];
  topic?: string;
  condition?: string;
  message: Record<string, unknown> | undefined;
  rawBody: Buffer;
  status: number;
  code: string;
  // Tokens the answer accepted.
  accepted: string[];
  at: Date;
}

export interface FakeHmsOptions {
  tokenLifetimeS?: number;
  retryAfter?: string;
  now?: () => number;
  // Called with every answered send, e.g. to show deliveries as they happen (npm start --fakes).
  onRecord?: (record: HmsRecord) => void;
}

export interface FakeHms {
  readonly pushUrl: string;
  readonly tokenUrl: string;
  readonly records: readonly HmsRecord[];
  readonly stats: { requests: number; tokensIssued: number };
  // Credentials the fake accepts for `appId`.
  app(appId?: string): { appId: string; clientSecret: string };
  revokeTokens(): void;
  // Makes every issued access token expired (HMS then answers 80200003).
  expireTokens(): void;
  // Tokens delivered (accepted), with repeats.
  delivered(token?: string): string[];
  reset(): void;
  close(): Promise<void>;
}

const MAX_TOKENS = 1000;
const MAX_MESSAGE = 4096;

export async function startFakeHms(options: FakeHmsOptions = {}): Promise<FakeHms> {
  const tls = testTls();
  const now = options.now ?? Date.now;
  const secrets = new Map<string, string>();
  const tokens = new Map<string, { appId: string; expiresAt: number }>();
  const flaky = new Map<string, number>();
  const records: HmsRecord[] = [];
  const stats = { requests: 0, tokensIssued: 0 };

  const server = https.createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
    void handle(req, res).catch(() => reply(res, 500, { code: "81000001", msg: "System inner error" }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const base = `https://127.0.0.1:${port}`;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readAll(req);
    if (req.method === "POST" && req.url === "/oauth2/v3/token") return issueToken(body, res);
    const path = /^\/v1\/([^/]+)\/messages:send$/.exec(req.url ?? "");
    if (req.method !== "POST" || !path) return reply(res, 404, { code: "80100001", msg: "Not found" });
    stats.requests++;
    const at = new Date(now());
    const record: HmsRecord = { tokens: [], message: undefined, rawBody: body, status: 0, code: "", accepted: [], at };
    const answer = (status: number, code: string, msg: string, headers: Record<string, string> = {}) => {
      record.status = status;
      record.code = code;
      records.push(record);
      options.onRecord?.(record);
      reply(res, status, { code, msg, requestId: `${now()}${randomUUID().slice(0, 8)}` }, headers);
    };
    const bearer = /^Bearer (.+)$/.exec(String(req.headers.authorization ?? ""))?.[1];
    const grant = bearer ? tokens.get(bearer) : undefined;
    if (!grant) return answer(401, "80200001", "Oauth authentication error");
    if (grant.expiresAt <= now()) return answer(401, "80200003", "Oauth Token expired");
    if (decodeURIComponent(path[1]!) !== grant.appId) return answer(403, "80300002", "There is no permission to send a message to a specified device");
    let parsed: { validate_only?: boolean; message?: Record<string, unknown> };
    try {
      parsed = JSON.parse(body.toString("utf8")) as typeof parsed;
    } catch {
      return answer(400, "80100003", "Illegal payload, the JSON is invalid");
    }
    const message = parsed.message;
    if (!message || typeof message !== "object") return answer(400, "80100003", "Illegal payload, message is required");
    record.message = message;
    const { token, topic, condition, ...content } = message as { token?: unknown; topic?: unknown; condition?: unknown };
    const named = [token, topic, condition].filter((v) => v !== undefined).length;
    if (named !== 1) return answer(400, "80100003", "Illegal payload, exactly one of token, topic or condition");
    if (Buffer.byteLength(JSON.stringify(content)) > MAX_MESSAGE) return answer(400, "80300008", "The message body size exceeds the default value");
    if (typeof topic === "string") record.topic = topic;
    if (typeof condition === "string") record.condition = condition;
    if (token !== undefined) {
      if (!Array.isArray(token) || token.length === 0 || token.some((t) => typeof t !== "string")) return answer(400, "80100003", "Illegal payload, token must be a non-empty array");
      if (token.length > MAX_TOKENS) return answer(400, "80300010", "The number of tokens in the message body exceeds the default value");
      record.tokens = token as string[];
    }

    const scenarioOf = (t: string) => /^scenario-([a-z-]+?)(?:-(\d+))?-[0-9a-f]{24}$/.exec(t);
    const retryAfter = { "retry-after": options.retryAfter ?? "1" };
    for (const t of record.tokens) {
      const s = scenarioOf(t);
      if (s?.[1] === "flow-control") return answer(503, "81000001", "Flow control", retryAfter);
      if (s?.[1] === "internal") return answer(500, "81000001", "System inner error");
      if (s?.[1] === "flaky") {
        const seen = flaky.get(t) ?? 0;
        flaky.set(t, seen + 1);
        if (seen < Number(s[2] ?? 1)) return answer(503, "81000001", "Flow control", retryAfter);
      }
    }
    const illegal = record.tokens.filter((t) => scenarioOf(t)?.[1] === "illegal");
    record.accepted = record.tokens.filter((t) => !illegal.includes(t));
    if (record.tokens.length && illegal.length === record.tokens.length) return answer(200, "80300007", "All the tokens are invalid");
    if (illegal.length) return answer(200, "80100000", JSON.stringify({ success: record.accepted.length, failure: illegal.length, illegal_tokens: illegal }));
    answer(200, "80000000", "Success");
  }

  function issueToken(body: Buffer, res: ServerResponse): void {
    const form = new URLSearchParams(body.toString("utf8"));
    if (form.get("grant_type") !== "client_credentials") return reply(res, 400, { error: 1102, sub_error: 20003, error_description: "unsupported grant type" });
    const appId = form.get("client_id") ?? "";
    if (!secrets.has(appId) || secrets.get(appId) !== form.get("client_secret")) return reply(res, 400, { error: "invalid_client", sub_error: 20001, error_description: "invalid client secret" });
    const lifetime = options.tokenLifetimeS ?? 3600;
    const token = `CF${randomBytes(32).toString("base64url")}`;
    tokens.set(token, { appId, expiresAt: now() + lifetime * 1000 });
    stats.tokensIssued++;
    reply(res, 200, { access_token: token, expires_in: lifetime, token_type: "Bearer" });
  }

  return {
    pushUrl: base,
    tokenUrl: `${base}/oauth2/v3/token`,
    records,
    stats,
    app(appId = `10${randomBytes(4).readUInt32BE(0)}`) {
      const clientSecret = randomBytes(32).toString("hex");
      secrets.set(appId, clientSecret);
      return { appId, clientSecret };
    },
    revokeTokens: () => tokens.clear(),
    expireTokens() {
      for (const grant of tokens.values()) grant.expiresAt = now();
    },
    delivered: (token) => records.flatMap((r) => r.accepted).filter((t) => token === undefined || t === token),
    reset() {
      records.length = 0;
      stats.requests = 0;
      flaky.clear();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function reply(res: ServerResponse, status: number, json: object, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  res.writeHead(status, { "content-type": "application/json;charset=UTF-8", ...headers });
  res.end(JSON.stringify(json));
}

function readAll(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}
