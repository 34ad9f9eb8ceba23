import type { IncomingMessage, ServerResponse } from "node:http";
import { context, INVALID_SPAN_CONTEXT, propagation, SpanKind, SpanStatusCode, trace, type Span } from "@opentelemetry/api";
import type { Logger } from "@herald/platform";
import { HttpError } from "./http.errors.js";
import { fieldPath, MAX_BODY_DEPTH, tooDeepAt } from "./json.limits.js";

// A small router over node:http: path patterns with :params, bodies read up to a limit and
// parsed as JSON, every refusal a JSON {error, description}, NDJSON for streams, CORS for the
// routes browsers call, one server span and one metric sample per request (none for probes). Whatever a handler
// throws ends here: an HttpError is the answer; anything else is a fault, logged once with the
// error and answered 500 (as is an HttpError of 5xx, whose cause is logged).

export interface HttpRequest {
  method: string;
  path: string;
  // The request target as sent (path and query), what request signatures cover.
  target: string;
  params: Record<string, string>;
  query: URLSearchParams;
  headers: IncomingMessage["headers"];
  // The body as sent (signatures are computed over it); empty without one.
  body: Buffer;
  // The body parsed as JSON; 400 INVALID_JSON when it is not (or nests deeper than
  // MAX_BODY_DEPTH), 415 when not sent as JSON.
  json(): unknown;
  // A JSON object or an HTML form (application/x-www-form-urlencoded, what curl -d sends) as
  // fields; 415 for anything else.
  fields(): Record<string, unknown>;
  signal: AbortSignal;
}

export interface HttpResponse {
  status?: number;
  headers?: Record<string, string>;
  // Sent as JSON.
  body?: unknown;
  // Sent as NDJSON, one line per item, flushed as each comes.
  stream?: AsyncIterable<unknown>;
}

export interface Route {
  method: "GET" | "POST" | "PUT" | "DELETE" | "PATCH";
  // "/v1/instances/:instance/users/:user"; a trailing "*" matches the rest of the path.
  pattern: string;
  handle(req: HttpRequest): Promise<HttpResponse>;
  // Browsers call it from other origins (the Beams web SDK): answer CORS preflights.
  cors?: boolean;
  // The error body of this route's refusals (compatibility APIs have their own shape).
  errorBody?: (e: HttpError) => unknown;
  // A smaller body limit than the server's (Beams' publish limits).
  maxBodyBytes?: number;
  // Its entry in the OpenAPI document (the RPC routes are described from the descriptors).
  doc?: { tag: string; summary: string; security?: "none" | "basic" };
  // A probe (GET /healthz, which Kubernetes calls every few seconds): no span and no metric
  // sample, so probes neither flood Jaeger with one-span traces nor skew the request metrics.
  probe?: boolean;
}

export interface RouterOptions {
  routes: Route[];
  maxBodyBytes: number;
  logger: Logger;
  onRequest?: (route: string, method: string, status: number, seconds: number) => void;
}

interface Compiled {
  route: Route;
  regex: RegExp;
  names: string[];
}

const tracer = trace.getTracer("herald-gateway");

export function createRouter(o: RouterOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const compiled: Compiled[] = o.routes.map((route) => {
    const names: string[] = [];
    const source = route.pattern
      .split("/")
      .map((part) => {
        if (part === "*") {
          names.push("*");
          return "(.*)";
        }
        if (part.startsWith(":")) {
          names.push(part.slice(1));
          return "([^/]+)";
        }
        return part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      })
      .join("/");
    return { route, regex: new RegExp(`^${source}$`), names };
  });

  return (req, res) => {
    const started = performance.now();
    // node passes any request target through ("http://[", "*"): one that is not a URL matches no
    // route and is refused below.
    const url = URL.canParse(req.url ?? "/", "http://gateway") ? new URL(req.url ?? "/", "http://gateway") : undefined;
    const method = (req.method ?? "GET").toUpperCase();
    const candidates = url ? compiled.filter((c) => c.regex.test(url.pathname)) : [];
    const match = candidates.find((c) => c.route.method === method);
    const label = match?.route.pattern ?? (candidates[0]?.route.pattern ?? "unmatched");
    const parent = propagation.extract(context.active(), req.headers, { keys: (h) => Object.keys(h), get: (h, k) => [h[k]].flat()[0] as string | undefined });
    const probe = match?.route.probe === true;
    const serve = (span: Span) => {
      const controller = new AbortController();
      res.on("close", () => controller.abort());
      const finish = (status: number) => {
        span.setAttribute("http.response.status_code", status);
        if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
        span.end();
        if (!probe) o.onRequest?.(label, method, status, (performance.now() - started) / 1000);
      };
      const fail = (err: unknown) => {
        const e = err instanceof HttpError ? err : new HttpError(500, "INTERNAL", "internal error", undefined, {}, err);
        if (e.status >= 500) {
          span.recordException((e.cause ?? e) as Error);
          o.logger[e.status === 500 ? "error" : "warn"]({ err: e.cause ?? e, route: label, status: e.status }, "request failed");
        }
        if (res.headersSent) {
          res.destroy();
          return finish(e.status);
        }
        const errorBody = (match ?? candidates[0])?.route.errorBody;
        finish(send(res, { status: e.status, headers: e.headers, body: errorBody ? errorBody(e) : e.body() }));
      };
      (async () => {
        const cors = candidates.some((c) => c.route.cors);
        if (cors) {
          res.setHeader("access-control-allow-origin", "*");
          res.setHeader("access-control-allow-headers", "authorization, content-type");
          res.setHeader("access-control-allow-methods", "GET, POST, PUT, DELETE, PATCH");
        }
        try {
          if (method === "OPTIONS" && cors) return finish(send(res, { status: 204 }));
          if (!url) throw new HttpError(400, "INVALID_PATH", "the request target is not a valid URL path");
          if (!match) {
            if (candidates.length) throw new HttpError(405, "METHOD_NOT_ALLOWED", `${method} is not allowed here; use ${[...new Set(candidates.map((c) => c.route.method))].join(" or ")}`, undefined, { allow: candidates.map((c) => c.route.method).join(", ") });
            throw new HttpError(404, "NOT_FOUND", `no route for ${method} ${url.pathname}; the API is described at GET /openapi.json`);
          }
          const values = match.regex.exec(url.pathname)!.slice(1);
          const params: Record<string, string> = {};
          match.names.forEach((n, i) => {
            params[n] = decodeParam(n, values[i]!);
          });
          const body = await readBody(req, Math.min(match.route.maxBodyBytes ?? o.maxBodyBytes, o.maxBodyBytes));
          const request: HttpRequest = {
            method,
            path: url.pathname,
            target: req.url ?? "/",
            params,
            query: url.searchParams,
            headers: req.headers,
            body,
            json: () => parseJson(req, body),
            fields: () => parseFields(req, body),
            signal: controller.signal,
          };
          const response = await match.route.handle(request);
          if (response.stream) return finish(await sendStream(res, response, o.logger));
          finish(send(res, response));
        } catch (err) {
          fail(err);
        }
      })().catch((err: unknown) => {
        // The refusal itself failed (an errorBody that throws, a broken socket): never an
        // unhandled rejection, and the client is not left waiting.
        o.logger.error({ err, route: label }, "request failed while answering");
        res.destroy();
        try {
          finish(500);
        } catch {
          // Only the metrics hook can throw here; the request is already answered (closed).
        }
      });
    };
    // A probe runs with a span that records nothing (setAttribute, end: no-ops).
    if (probe) serve(trace.wrapSpanContext(INVALID_SPAN_CONTEXT));
    else tracer.startActiveSpan(`HTTP ${method} ${label}`, { kind: SpanKind.SERVER, attributes: { "http.request.method": method, "http.route": label } }, parent, serve);
  };
}

// A %-escape that is not UTF-8 ("%E0%A4%A") is the client's mistake, not a URIError.
function decodeParam(name: string, raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new HttpError(400, "INVALID_PATH", `the path segment for ${name} has a malformed %-escape`, name);
  }
}

function send(res: ServerResponse, r: HttpResponse): number {
  const status = r.status ?? (r.body === undefined ? 204 : 200);
  for (const [k, v] of Object.entries(r.headers ?? {})) res.setHeader(k, v);
  if (r.body === undefined || status === 204) {
    res.writeHead(status).end();
    return status;
  }
  const text = JSON.stringify(r.body);
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text) }).end(text);
  return status;
}

// NDJSON: one JSON value per line. An error after the first line can only end the stream; it
// comes as a last line {"error": ...} so the client knows it did not end normally.
async function sendStream(res: ServerResponse, r: HttpResponse, logger: Logger): Promise<number> {
  const status = r.status ?? 200;
  const iterator = r.stream![Symbol.asyncIterator]();
  // Before the first item nothing is sent: a refusal is still a plain error response.
  const first = await iterator.next();
  res.writeHead(status, { ...r.headers, "content-type": "application/x-ndjson; charset=utf-8" });
  try {
    for (let item = first; !item.done; item = await iterator.next()) {
      if (!res.write(`${JSON.stringify(item.value)}\n`)) await new Promise((resolve) => res.once("drain", resolve));
    }
  } catch (err) {
    const e = err instanceof HttpError ? err : new HttpError(500, "INTERNAL", "internal error", undefined, {}, err);
    if (e.status >= 500) logger.error({ err: e.cause ?? e }, "stream failed");
    res.write(`${JSON.stringify(e.body())}\n`);
  }
  res.end();
  return status;
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > limit) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners("data");
        req.resume();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

const tooLarge = (limit: number) => new HttpError(413, "PAYLOAD_TOO_LARGE", `the request body is larger than ${limit} bytes`);

function parseFields(req: IncomingMessage, body: Buffer): Record<string, unknown> {
  const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  if (type === "application/x-www-form-urlencoded") return Object.fromEntries(new URLSearchParams(body.toString("utf8")));
  const value = parseJson(req, body);
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new HttpError(400, "INVALID_JSON", "the body must be a JSON object");
  return value as Record<string, unknown>;
}

function parseJson(req: IncomingMessage, body: Buffer): unknown {
  if (body.length === 0) return {};
  const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== "application/json") throw new HttpError(415, "UNSUPPORTED_MEDIA_TYPE", `send the body as application/json (got ${type || "no content-type"})`);
  let value: unknown;
  try {
    value = JSON.parse(body.toString("utf8"));
  } catch (err) {
    throw new HttpError(400, "INVALID_JSON", `the body is not valid JSON: ${(err as Error).message}`);
  }
  const deep = tooDeepAt(value, MAX_BODY_DEPTH);
  if (deep) throw new HttpError(400, "NESTING_TOO_DEEP", `${fieldPath(deep)}: the body nests objects and arrays more than ${MAX_BODY_DEPTH} levels deep`, fieldPath(deep));
  return value;
}
