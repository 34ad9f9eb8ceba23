import https from "node:https";

// OAuth2 access tokens for FCM (service-account JWT bearer grant) and HMS (client credentials):
// one token shared by every request, renewed ahead of its expiry, fetched once however many
// requests ask at the same moment, and dropped when the provider says it is no longer valid.

export interface IssuedToken {
  accessToken: string;
  expiresInS: number;
}

// The token endpoint refused or could not be reached. `credentials`: it refused what we
// presented (invalid_grant, invalid_client) — retrying the same secret cannot help.
export class TokenEndpointError extends Error {
  constructor(
    message: string,
    readonly credentials: boolean,
    readonly code: string,
  ) {
    super(message);
  }
}

// Renew this long before the provider's expiry, so no request goes out with a token about to die.
const RENEW_BEFORE_MS = 5 * 60_000;

export class AccessTokenCache {
  private current?: { token: string; expiresAt: number; fetchedAt: number };
  private pending?: Promise<string>;
  // Tokens fetched so far (tests, metrics).
  fetches = 0;

  constructor(
    private readonly fetchToken: () => Promise<IssuedToken>,
    private readonly now: () => number,
  ) {}

  get(): Promise<string> {
    const c = this.current;
    if (c && this.now() < c.expiresAt - Math.min(RENEW_BEFORE_MS, (c.expiresAt - c.fetchedAt) / 2)) return Promise.resolve(c.token);
    this.pending ??= this.fetchToken()
      .then(({ accessToken, expiresInS }) => {
        const at = this.now();
        this.fetches++;
        this.current = { token: accessToken, expiresAt: at + expiresInS * 1000, fetchedAt: at };
        return accessToken;
      })
      .finally(() => (this.pending = undefined));
    return this.pending;
  }

  // The provider refused `token`: the next get() fetches a new one (unless another caller did).
  invalidate(token: string): void {
    if (this.current?.token === token) this.current = undefined;
  }

  // How long ago `token` was issued; a refusal of a token this fresh is a credential problem,
  // not an expiry.
  ageMs(token: string): number {
    return this.current?.token === token ? this.now() - this.current.fetchedAt : Number.POSITIVE_INFINITY;
  }
}

export interface FormPostOptions {
  ca?: string;
  timeoutMs: number;
  agent?: https.Agent;
}

// POSTs an application/x-www-form-urlencoded body and reads a JSON answer (token endpoints).
export function postForm(url: string, form: Record<string, string>, options: FormPostOptions): Promise<{ status: number; json: Record<string, unknown> }> {
  const body = new URLSearchParams(form).toString();
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", "content-length": Buffer.byteLength(body), accept: "application/json" },
        timeout: options.timeoutMs,
        ...(options.agent ? { agent: options.agent } : {}),
        ...(options.ca ? { ca: options.ca } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          let json: Record<string, unknown> = {};
          try {
            json = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>;
          } catch {
            // Not JSON (a proxy's error page): the status alone decides.
          }
          resolve({ status: res.statusCode ?? 0, json });
        });
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new TokenEndpointError(`token endpoint ${url} timed out`, false, "Timeout")));
    req.on("error", (err) => reject(err instanceof TokenEndpointError ? err : new TokenEndpointError(`token endpoint ${url}: ${err.message}`, false, (err as NodeJS.ErrnoException).code ?? "NetworkError")));
    req.end(body);
  });
}

// Turns a token endpoint's answer into a token or a classified error (RFC 6749 §5.2).
export function issuedToken(url: string, answer: { status: number; json: Record<string, unknown> }): IssuedToken {
  const { status, json } = answer;
  if (status === 200 && typeof json.access_token === "string" && json.access_token) {
    const expires = Number(json.expires_in);
    return { accessToken: json.access_token, expiresInS: Number.isFinite(expires) && expires > 0 ? expires : 3600 };
  }
  const code = typeof json.error === "string" ? json.error : String(status);
  // 400/401 with an OAuth error code: what we presented was refused. 5xx, 429: try later.
  const credentials = status === 400 || status === 401 || status === 403;
  throw new TokenEndpointError(`token endpoint ${url} answered ${status} ${code}${typeof json.error_description === "string" ? `: ${json.error_description}` : ""}`, credentials, code);
}
