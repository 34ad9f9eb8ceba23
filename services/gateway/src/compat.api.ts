import { HttpError, ServiceRefusal } from "./http.errors.js";
import type { HttpRequest, HttpResponse, Route } from "./http.router.js";
import { fieldPath, MAX_BODY_DEPTH, tooDeepAt } from "./json.limits.js";

// Every compatibility API (Pusher Beams and Channels, Kinvey, Pushlet, gorush, Centrifugo) has the
// same declared shape, so where its limits, statuses and error bodies come from is decided once
// per system, not per route:
//   auth (the system's credential schemes) → decode (the body as the system reads it, with its
//   limits) → map to native calls (the endpoint's handler) → encode the answer, and every refusal,
//   in the system's format.
// A refusal of a Herald service passes through the system's `fromService` on its way out, and
// every refusal, the router's own (404, 405, 413) included, is answered with its `errorBody`.

export type JsonObject = Record<string, unknown>;

export interface CompatSystem<Scope, Scheme extends string> {
  // The OpenAPI tag ("PusherBeams").
  tag: string;
  // A refusal in the system's format ({error, description}, {error: {code, message}} ...).
  errorBody(e: HttpError): unknown;
  // A Herald service's refusal as the system answers it (Beams: a 400 is its 422); unchanged
  // when absent.
  fromService?(e: ServiceRefusal): HttpError;
  // The request body as the system reads it (a JSON object, a form, JSON whatever the content
  // type), refused in the system's words.
  decode(req: HttpRequest): JsonObject;
  // The system's body limit; the gateway's when absent (an endpoint may set a smaller one).
  maxBodyBytes?: number;
  // How a request proves who it is, by scheme; `body` is the decoded body, for schemes that
  // read credentials or the app from it (Kinvey's userId, Pushlet's application_id).
  auth: Record<Scheme, (req: HttpRequest, body: () => JsonObject) => Promise<Scope>>;
  // What the OpenAPI document says the endpoints take by default.
  security?: "none" | "basic";
}

export interface CompatCall<Scope> {
  req: HttpRequest;
  as: Scope;
  // The decoded body (decoded once, on first use).
  body(): JsonObject;
}

export interface CompatEndpoint<Scope, Scheme extends string> {
  method: Route["method"];
  pattern: string;
  summary: string;
  auth: Scheme;
  handle(call: CompatCall<Scope>): Promise<HttpResponse>;
  maxBodyBytes?: number;
  // Browsers call it (Beams' device API, Channels' subscribe).
  cors?: boolean;
  security?: "none" | "basic";
}

export function compatRoutes<Scope, Scheme extends string>(system: CompatSystem<Scope, Scheme>, endpoints: Array<CompatEndpoint<Scope, Scheme>>): Route[] {
  return endpoints.map((e) => {
    const maxBodyBytes = e.maxBodyBytes ?? system.maxBodyBytes;
    const security = e.security ?? system.security;
    return {
      method: e.method,
      pattern: e.pattern,
      errorBody: system.errorBody,
      ...(maxBodyBytes ? { maxBodyBytes } : {}),
      ...(e.cors ? { cors: true } : {}),
      doc: { tag: system.tag, summary: e.summary, ...(security ? { security } : {}) },
      handle: async (req) => {
        let decoded: JsonObject | undefined;
        const body = () => (decoded ??= system.decode(req));
        try {
          const as = await system.auth[e.auth](req, body);
          return await e.handle({ req, as, body });
        } catch (err) {
          throw err instanceof ServiceRefusal && system.fromService ? system.fromService(err) : err;
        }
      },
    };
  });
}

// Decoders for the ways the systems read bodies; `refuse` words the refusal as the system does.
const isObject = (v: unknown): v is JsonObject => v !== null && typeof v === "object" && !Array.isArray(v);

// application/json only (415 otherwise), a JSON object.
export const jsonObject = (refuse: (why: string, field?: string) => HttpError) => (req: HttpRequest): JsonObject => {
  const value = req.json();
  if (!isObject(value)) throw refuse("the body must be a JSON object");
  return value;
};

// A JSON object or an HTML form (what curl -d sends).
export const formOrJson = (req: HttpRequest): JsonObject => req.fields();

// JSON whatever the content type (gorush and Centrifugo bind any body as JSON); empty is {}.
export const anyJson = (refuse: (why: string, field?: string) => Error) => (req: HttpRequest): JsonObject => {
  if (req.body.length === 0) return {};
  let value: unknown;
  try {
    value = JSON.parse(req.body.toString("utf8"));
  } catch (err) {
    throw refuse(`the body is not JSON: ${(err as Error).message}`);
  }
  const deep = tooDeepAt(value, MAX_BODY_DEPTH);
  if (deep) throw refuse(`${fieldPath(deep)}: the body nests objects and arrays more than ${MAX_BODY_DEPTH} levels deep`, fieldPath(deep));
  if (!isObject(value)) throw refuse("the body must be a JSON object");
  return value;
};
