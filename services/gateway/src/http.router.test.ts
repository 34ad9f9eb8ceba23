import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import { createLogger, startTracing, type TracingOptions } from "@herald/platform";
import { HttpError } from "./http.errors.js";
import { startHttpServer, type HttpServer } from "./http.listen.js";
import { createRouter, type Route } from "./http.router.js";
import { MAX_BODY_DEPTH } from "./json.limits.js";

// The router on a real socket: every way a request can go wrong ends as one JSON answer (or a
// closed connection once headers are out), a fault is logged exactly once, and nothing escapes
// as an unhandled rejection.
describe("HTTP router", () => {
  let server: HttpServer;
  const logged: Array<Record<string, any>> = [];
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown) => rejections.push(reason);

  const routes: Route[] = [
    { method: "GET", pattern: "/items/:id", handle: async (req) => ({ body: { id: req.params.id } }) },
    {
      method: "GET",
      pattern: "/boom",
      handle: async () => {
        throw new TypeError("cannot read properties of undefined");
      },
    },
    {
      method: "GET",
      pattern: "/upstream",
      handle: async () => {
        throw new HttpError(500, "INTERNAL", "internal error", undefined, {}, new Error("upstream said INTERNAL"));
      },
    },
    {
      method: "GET",
      pattern: "/refused",
      handle: async () => {
        throw new HttpError(404, "NOPE", "not here", "id");
      },
    },
    {
      method: "GET",
      pattern: "/bad-error-body",
      errorBody: () => {
        throw new Error("the error body itself fails");
      },
      handle: async () => {
        throw new HttpError(400, "X", "x");
      },
    },
    { method: "POST", pattern: "/echo", handle: async (req) => ({ body: { got: typeof req.json() } }) },
    { method: "POST", pattern: "/small", maxBodyBytes: 16, handle: async (req) => ({ body: { size: req.body.length } }) },
  ];

  before(async () => {
    process.on("unhandledRejection", onRejection);
    const destination = { write: (line: string) => void logged.push(JSON.parse(line) as Record<string, any>) };
    server = await startHttpServer("127.0.0.1:0", createRouter({ routes, maxBodyBytes: 1024 * 1024, logger: createLogger({ service: "t", level: "warn", destination }) }));
  });
  after(async () => {
    process.off("unhandledRejection", onRejection);
    await server?.close();
  });

  const url = (path: string) => `http://127.0.0.1:${server.port}${path}`;
  const get = async (path: string, init: RequestInit = {}) => {
    const res = await fetch(url(path), init);
    const text = await res.text();
    return { status: res.status, json: text ? (JSON.parse(text) as Record<string, any>) : undefined };
  };
  const faults = (route: string) => logged.filter((l) => l.route === route);

  it("answers a malformed %-escape in a path parameter 400 naming the parameter", async () => {
    assert.deepEqual(await get("/items/%E0%A4%A"), { status: 400, json: { error: "INVALID_PATH", description: "the path segment for id has a malformed %-escape", field: "id" } });
    assert.deepEqual(await get("/items/caf%C3%A9"), { status: 200, json: { id: "café" } });
    assert.equal(faults("/items/:id").length, 0, "the client's mistake is not logged as a fault");
  });

  it("answers a request target that is no URL 400, not by throwing in the listener", async () => {
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(server.port, "127.0.0.1", () => socket.end("GET http://[ HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"));
      let data = "";
      socket.on("data", (d) => (data += d));
      socket.on("end", () => resolve(data));
      socket.on("error", reject);
    });
    assert.match(answer, /^HTTP\/1\.1 400 /);
    assert.match(answer, /"error":"INVALID_PATH"/);
  });

  it("answers what node's HTTP parser refuses (a raw non-ASCII byte in the path) as JSON too", async () => {
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(server.port, "127.0.0.1", () => socket.end(Buffer.concat([Buffer.from("GET /items/caf"), Buffer.from([0xc3, 0xa9]), Buffer.from(" HTTP/1.1\r\nhost: x\r\n\r\n")])));
      let data = "";
      socket.on("data", (d) => (data += d));
      socket.on("end", () => resolve(data));
      socket.on("error", reject);
    });
    assert.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n/);
    const body = JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)) as { error: string; description: string };
    assert.equal(body.error, "MALFORMED_REQUEST");
    assert.match(body.description, /HPE_/);
  });

  it("logs a handler's unexpected throw once, with the error, and answers 500 JSON", async () => {
    assert.deepEqual(await get("/boom"), { status: 500, json: { error: "INTERNAL", description: "internal error" } });
    const lines = faults("/boom");
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.level, "error");
    assert.equal(lines[0]!.err.type, "TypeError");
    assert.match(lines[0]!.err.message, /cannot read properties/);
  });

  it("logs the cause of a 5xx HttpError, and not the 4xx ones", async () => {
    assert.equal((await get("/upstream")).status, 500);
    const lines = faults("/upstream");
    assert.equal(lines.length, 1);
    assert.match(lines[0]!.err.message, /upstream said INTERNAL/);
    assert.deepEqual(await get("/refused"), { status: 404, json: { error: "NOPE", description: "not here", field: "id" } });
    assert.equal(faults("/refused").length, 0);
  });

  it("closes the connection when even the refusal fails, logging it, with no unhandled rejection", async () => {
    await assert.rejects(fetch(url("/bad-error-body")));
    assert.equal(faults("/bad-error-body").length, 1);
    assert.match(faults("/bad-error-body")[0]!.err.message, /the error body itself fails/);
    assert.deepEqual(rejections, []);
  });

  it("refuses JSON nested past MAX_BODY_DEPTH with 400 naming the path, however deep", async () => {
    const post = (body: string) => get("/echo", { method: "POST", headers: { "content-type": "application/json" }, body });
    const nested = (levels: number) => `{"a":${'{"b":'.repeat(levels - 2)}{}${"}".repeat(levels - 2)}}`;
    assert.equal((await post(nested(MAX_BODY_DEPTH))).status, 200);
    const over = await post(nested(MAX_BODY_DEPTH + 1));
    assert.equal(over.status, 400);
    assert.equal(over.json!.error, "NESTING_TOO_DEEP");
    assert.equal(over.json!.field, ["a", ...Array(MAX_BODY_DEPTH - 1).fill("b")].join("."));
    // Far past the stack (a recursive walk would throw RangeError: a 500).
    const huge = await post(`[${"[".repeat(200_000)}${"]".repeat(200_000)}]`);
    assert.equal(huge.status, 400);
    assert.equal(huge.json!.error, "NESTING_TOO_DEEP");
    assert.match(huge.json!.field, /^\[0\]\[0\]/);
  });

  it("holds a route's own body limit below the server's", async () => {
    const post = (body: string) => get("/small", { method: "POST", headers: { "content-type": "application/json" }, body });
    assert.deepEqual(await post('"0123456789abcd"'), { status: 200, json: { size: 16 } });
    const big = await post('"0123456789abcde"');
    assert.equal(big.status, 413);
    assert.equal(big.json!.error, "PAYLOAD_TOO_LARGE");
  });
});

// Kubernetes probes /healthz every few seconds per pod: a trace and a metric sample each time
// would drown the real requests in Jaeger and in the request metrics.
describe("HTTP router probes", () => {
  type Processor = NonNullable<TracingOptions["extraProcessors"]>[number];
  const spans: string[] = [];
  const samples: string[] = [];
  const processor: Processor = { onStart: () => {}, onEnd: (span) => void spans.push(span.name), forceFlush: async () => {}, shutdown: async () => {} };
  let tracing: ReturnType<typeof startTracing>;
  let server: HttpServer;

  before(async () => {
    tracing = startTracing({ serviceName: "herald-gateway", extraProcessors: [processor], detectors: [] });
    const routes: Route[] = [
      { method: "GET", pattern: "/healthz", probe: true, handle: async () => ({ body: { status: "ok" } }) },
      { method: "GET", pattern: "/items/:id", handle: async (req) => ({ body: { id: req.params.id } }) },
    ];
    const onRequest = (route: string, method: string, status: number) => void samples.push(`${method} ${route} ${status}`);
    server = await startHttpServer("127.0.0.1:0", createRouter({ routes, maxBodyBytes: 1024, logger: createLogger({ service: "t", level: "silent" }), onRequest }));
  });
  after(async () => {
    await server?.close();
    await tracing.shutdown();
  });

  it("makes no span and no metric sample for /healthz, and one of each for other routes", async () => {
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`http://127.0.0.1:${server.port}/healthz`);
      assert.deepEqual([res.status, await res.json()], [200, { status: "ok" }]);
    }
    const item = await fetch(`http://127.0.0.1:${server.port}/items/7`);
    assert.equal(item.status, 200);
    await item.text();
    // A POST to the probe's path is no probe: it is refused (405) and recorded like any request.
    assert.equal((await fetch(`http://127.0.0.1:${server.port}/healthz`, { method: "POST" })).status, 405);
    assert.deepEqual(spans, ["HTTP GET /items/:id", "HTTP POST /healthz"]);
    assert.deepEqual(samples, ["GET /items/:id 200", "POST /healthz 405"]);
  });
});
