import https from "node:https";
import { SpanStatusCode, trace, type Tracer } from "@opentelemetry/api";
import { startProviderSpan } from "./provider.span.js";
import { tokenHash } from "@herald/platform";
import type { Outcome, ProviderTarget, PushProvider, RequestObserver, SendRequest, TargetResult } from "../provider.types.js";
import { AccessTokenCache, issuedToken, postForm, TokenEndpointError } from "./oauth.token.js";
import { retryAfter } from "./retry.after.js";

// Huawei Push Kit: client-credentials OAuth, then up to 1000 tokens per POST over keep-alive
// HTTPS. The answer's body `code` decides, also on HTTP 200 (providers.md): partial success
// names the illegal tokens, and only those lose their devices.

export const HMS_PUSH_URL = "https://push-api.cloud.huawei.com";
export const HMS_TOKEN_URL = "https://oauth-login.cloud.huawei.com/oauth2/v3/token";
export const HMS_MAX_TOKENS = 1000;

export interface HmsProviderConfig {
  // The AppGallery Connect app id (the OAuth client id).
  appId: string;
  clientSecret: string;
  pushUrl?: string;
  tokenUrl?: string;
  ca?: string;
  maxSockets?: number;
  requestTimeoutMs?: number;
  now?: () => Date;
  tracer?: Tracer;
  // Told of every HTTP request: its status (0 without an answer) and duration (metrics).
  onRequest?: RequestObserver;
}

const FRESH_TOKEN_MS = 60_000;
// Codes that say the app's credentials or permissions are wrong: never a device's fault.
const CREDENTIAL_CODES = new Set(["80200001", "80600003", "80300002"]);
const MAX_BODY = 64 * 1024;

interface HmsAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  code: string;
  msg: string;
  requestId?: string;
}

export class HmsProvider implements PushProvider {
  readonly name = "hms" as const;
  private readonly agent: https.Agent;
  private readonly tokens: AccessTokenCache;
  private readonly url: string;
  private readonly now: () => Date;
  private readonly timeoutMs: number;
  private readonly tracer: Tracer;

  constructor(private readonly config: HmsProviderConfig) {
    this.now = config.now ?? (() => new Date());
    this.timeoutMs = config.requestTimeoutMs ?? 15_000;
    this.tracer = config.tracer ?? trace.getTracer("herald.sender");
    this.agent = new https.Agent({ keepAlive: true, maxSockets: config.maxSockets ?? 16, ...(config.ca ? { ca: config.ca } : {}) });
    const tokenUrl = config.tokenUrl ?? HMS_TOKEN_URL;
    this.tokens = new AccessTokenCache(
      async () => issuedToken(tokenUrl, await postForm(tokenUrl, { grant_type: "client_credentials", client_id: config.appId, client_secret: config.clientSecret }, { agent: this.agent, timeoutMs: this.timeoutMs })),
      () => this.now().getTime(),
    );
    this.url = `${config.pushUrl ?? HMS_PUSH_URL}/v1/${encodeURIComponent(config.appId)}/messages:send`;
  }

  get tokenFetches(): number {
    return this.tokens.fetches;
  }

  async send(request: SendRequest): Promise<TargetResult[]> {
    const native = request.nativeTopic !== undefined ? { topic: request.nativeTopic } : request.nativeCondition !== undefined ? { condition: request.nativeCondition } : undefined;
    if (!request.targets.length && !native) return [];
    const all = request.targets.length ? request.targets : [{ deviceId: "", token: (native!.topic ?? native!.condition)! }];
    if (request.expireAt && request.expireAt.getTime() <= this.now().getTime()) return all.map((target) => ({ target, outcome: { kind: "failed", reason: "expired" } }));
    let token: string;
    try {
      token = await this.tokens.get();
    } catch (err) {
      const e = err instanceof TokenEndpointError ? err : new TokenEndpointError(String(err), false, "TokenError");
      const outcome: Outcome = e.credentials ? { kind: "credentials", reason: `hms:oauth:${e.code}` } : { kind: "retry", reason: `hms:oauth:${e.code}` };
      return all.map((target) => ({ target, outcome }));
    }
    // Targets with their own payload (templates) go alone; the rest share requests of ≤ 1000.
    const groups: ProviderTarget[][] = [];
    if (native) groups.push(all);
    else {
      const shared = request.targets.filter((t) => !t.payload);
      for (let i = 0; i < shared.length; i += HMS_MAX_TOKENS) groups.push(shared.slice(i, i + HMS_MAX_TOKENS));
      for (const t of request.targets) if (t.payload) groups.push([t]);
    }
    const results = await Promise.all(groups.map((group) => this.deliver(request, group, native, token)));
    return results.flat();
  }

  async close(): Promise<void> {
    this.agent.destroy();
  }

  private async deliver(request: SendRequest, targets: ProviderTarget[], native: { topic?: string; condition?: string } | undefined, token: string): Promise<TargetResult[]> {
    const started = performance.now();
    let status = 0;
    const span = startProviderSpan(this.tracer, "hms send", () => ({
      "herald.app": request.app,
      "herald.publish_id": request.publishId,
      "herald.provider": "hms",
      "herald.attempt": request.attempt,
      "herald.targets": targets.length,
      "http.request.method": "POST",
      // One request carries up to 1000 tokens: herald.token_hash when it carries one (as every
      // other provider's span), and herald.token_hashes listing them all.
      ...(native ? {} : targets.length === 1 ? { "herald.token_hash": tokenHash(targets[0]!.token) } : { "herald.token_hashes": targets.map((t) => tokenHash(t.token)) }),
    }));
    const target = native ? { key: native.topic !== undefined ? "topic" : "condition", value: JSON.stringify(native.topic ?? native.condition) } : { key: "token", value: JSON.stringify(targets.map((t) => t.token)) };
    const message = Buffer.from(targets[0]?.payload ?? request.payload).toString("utf8").trim();
    const body = `{"validate_only":false,"message":{${JSON.stringify(target.key)}:${target.value}${message.length > 2 ? `,${message.slice(1)}` : "}"}}`;
    let results: TargetResult[];
    try {
      const answer = await this.post(body, token, request.signal);
      status = answer.status;
      span.setAttribute("http.response.status_code", answer.status);
      span.setAttribute("herald.hms.code", answer.code);
      results = this.classify(answer, targets, token);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? "NetworkError";
      span.setAttribute("error.type", code);
      results = targets.map((t) => ({ target: t, outcome: { kind: "retry", reason: `hms:${code}` } }));
    }
    const failed = results.filter((r) => r.outcome.kind !== "sent").length;
    if (failed) span.setStatus({ code: SpanStatusCode.ERROR, message: `${failed} of ${targets.length} not sent` });
    span.end();
    this.config.onRequest?.(status, (performance.now() - started) / 1000);
    return results;
  }

  private classify(answer: HmsAnswer, targets: ProviderTarget[], token: string): TargetResult[] {
    const all = (outcome: Outcome) => targets.map((target) => ({ target, outcome }));
    const reason = `hms:${answer.code}`;
    // HTTP 503 (and 429) is Push Kit's flow control: slow down, as long as it says.
    if (answer.status === 503 || answer.status === 429) {
      const after = retryAfter(answer.headers["retry-after"], this.now());
      return all({ kind: "retry", reason: `hms:${answer.status}`, ...(after !== undefined ? { retryAfterMs: after } : {}) });
    }
    switch (answer.code) {
      case "80000000":
        return all(answer.requestId ? { kind: "sent", id: answer.requestId } : { kind: "sent" });
      case "80100000": {
        // Partial success: msg is a JSON string naming the illegal tokens; the rest went out.
        let illegal = new Set<string>();
        try {
          illegal = new Set((JSON.parse(answer.msg) as { illegal_tokens?: string[] }).illegal_tokens ?? []);
        } catch {
          // Without the list nobody can be told apart: count them all sent, delete nothing.
        }
        return targets.map((target) => ({ target, outcome: illegal.has(target.token) ? { kind: "invalid_token", reason: "hms:illegal_token" } : { kind: "sent", ...(answer.requestId ? { id: answer.requestId } : {}) } }));
      }
      case "80300007":
        return all({ kind: "invalid_token", reason });
      case "80200003": {
        const fresh = this.tokens.ageMs(token) < FRESH_TOKEN_MS;
        this.tokens.invalidate(token);
        return all(fresh ? { kind: "credentials", reason } : { kind: "retry", reason });
      }
      case "81000001":
        return all({ kind: "retry", reason });
    }
    if (CREDENTIAL_CODES.has(answer.code)) return all({ kind: "credentials", reason });
    if (answer.status >= 500) return all({ kind: "retry", reason: `hms:${answer.status}` });
    if (answer.status === 401 || answer.status === 403) return all({ kind: "credentials", reason });
    return all({ kind: "failed", reason });
  }

  private post(body: string, token: string, signal: AbortSignal | undefined): Promise<HmsAnswer> {
    return new Promise((resolve, reject) => {
      const req = https.request(
        this.url,
        {
          method: "POST",
          agent: this.agent,
          timeout: this.timeoutMs,
          headers: { "content-type": "application/json; charset=utf-8", authorization: `Bearer ${token}`, "content-length": Buffer.byteLength(body) },
          ...(signal ? { signal } : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (c: Buffer) => {
            size += c.length;
            if (size <= MAX_BODY) chunks.push(c);
          });
          res.on("end", () => {
            let json: { code?: unknown; msg?: unknown; requestId?: unknown } = {};
            try {
              json = JSON.parse(Buffer.concat(chunks).toString("utf8")) as typeof json;
            } catch {
              // Flow control and proxies answer without the JSON envelope: the status decides.
            }
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              code: typeof json.code === "string" ? json.code : String(res.statusCode ?? 0),
              msg: typeof json.msg === "string" ? json.msg : "",
              ...(typeof json.requestId === "string" ? { requestId: json.requestId } : {}),
            });
          });
          res.on("error", reject);
        },
      );
      req.on("timeout", () => req.destroy(Object.assign(new Error("HMS request timed out"), { code: "Timeout" })));
      req.on("error", reject);
      req.end(body);
    });
  }
}
