// What one API client (the operator) sends to and receives from the kube-apiserver, counted from
// outside the client: a TLS-terminating HTTP proxy between it and the API server. The client gets
// a kubeconfig that points at the proxy (trusting the test CA of @herald/testing, whose server
// certificate names 127.0.0.1) and keeps its own token, which the proxy passes on unchanged; the
// proxy speaks TLS to the real API server with the CA of the original kubeconfig. Counted per
// verb and resource: requests, bytes each way (request line, headers and body as they travel,
// before TLS; a gzip-compressed list counts compressed), watch events (one JSON line each) and
// open watches. It runs in a process of its own (bench/kube.proxy.main.ts), so the driver's
// other work (the local kubelet) never delays the client's requests; startKubeProxy forks it.
import { fork } from "node:child_process";
import { createServer, request, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import { Agent } from "node:https";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Transform } from "node:stream";
import { KubeConfig } from "@kubernetes/client-node";
import { testTls } from "@herald/testing";

export interface TrafficCount {
  requests: number;
  // Client → API server, and back.
  sentBytes: number;
  receivedBytes: number;
  // Watch events received (watches only), and of them ERROR events (410 Gone: relist).
  events: number;
  watchErrors: number;
  // Answers with a status >= 400.
  failed: number;
  // Request sent → response ended, summed over the requests that are not watches, ms.
  totalMs: number;
  // Watches open now, and the most open at once since the proxy started.
  open: number;
  maxOpen: number;
}

// "<verb> <resource>": verbs get, list, watch, create, apply, patch, update, delete; resources as
// in the URL (with a subresource: "pushapps/status"); a watch or list by name ("secrets[name]",
// fieldSelector metadata.name) is told apart from one by label ("secrets[label]").
export type Traffic = Record<string, TrafficCount>;

const empty = (): TrafficCount => ({ requests: 0, sentBytes: 0, receivedBytes: 0, events: 0, watchErrors: 0, failed: 0, totalMs: 0, open: 0, maxOpen: 0 });

// Counts accumulated between two snapshots (open and maxOpen: as of the later one).
export function trafficSince(before: Traffic, after: Traffic): Traffic {
  const out: Traffic = {};
  for (const [key, a] of Object.entries(after)) {
    const b = before[key] ?? empty();
    const d = { requests: a.requests - b.requests, sentBytes: a.sentBytes - b.sentBytes, receivedBytes: a.receivedBytes - b.receivedBytes, events: a.events - b.events, watchErrors: a.watchErrors - b.watchErrors, failed: a.failed - b.failed, totalMs: a.totalMs - b.totalMs, open: a.open, maxOpen: a.maxOpen };
    if (d.requests || d.sentBytes || d.receivedBytes || d.events || d.open || d.failed) out[key] = d;
  }
  return out;
}

export function trafficTotal(t: Traffic): TrafficCount {
  const total = empty();
  for (const c of Object.values(t)) {
    total.requests += c.requests;
    total.sentBytes += c.sentBytes;
    total.receivedBytes += c.receivedBytes;
    total.events += c.events;
    total.watchErrors += c.watchErrors;
    total.failed += c.failed;
    total.totalMs += c.totalMs;
    total.open += c.open;
    total.maxOpen += c.maxOpen;
  }
  return total;
}

// The verb and resource of an API request, from its method, path and query.
export function classify(method: string, url: string, contentType: string | undefined): string {
  const u = new URL(url, "https://x");
  const parts = u.pathname.split("/").filter(Boolean);
  // /api/v1/... or /apis/<group>/<version>/...
  let rest = parts[0] === "api" ? parts.slice(2) : parts[0] === "apis" ? parts.slice(3) : [];
  if (parts[0] !== "api" && parts[0] !== "apis") return `${method.toLowerCase()} ${u.pathname}`;
  if (rest[0] === "namespaces" && rest.length >= 3) rest = rest.slice(2);
  const [resource = "(discovery)", name, sub] = rest;
  const watch = u.searchParams.get("watch") === "true" || u.searchParams.get("watch") === "1";
  let verb: string;
  switch (method) {
    case "GET":
      verb = watch ? "watch" : name ? "get" : "list";
      break;
    case "POST":
      verb = "create";
      break;
    case "PUT":
      verb = "update";
      break;
    case "PATCH":
      verb = contentType?.includes("apply-patch") ? "apply" : "patch";
      break;
    case "DELETE":
      verb = "delete";
      break;
    default:
      verb = method.toLowerCase();
  }
  let selector = "";
  if (!name && (verb === "watch" || verb === "list")) {
    if (u.searchParams.get("fieldSelector")?.startsWith("metadata.name=")) selector = "[name]";
    else if (u.searchParams.get("labelSelector")) selector = "[label]";
  }
  return `${verb} ${resource}${sub ? `/${sub}` : ""}${selector}`;
}

const ERROR_EVENT = Buffer.from('{"type":"ERROR"');
const headerBytes = (raw: string[]) => raw.reduce((n, s) => n + Buffer.byteLength(s), 0) + raw.length * 2;

interface ProxyServer {
  // A kubeconfig file: the original's user and namespace, the proxy's server and CA.
  kubeconfig: string;
  url: string;
  snapshot(): Traffic;
  // TLS connections the client opened to the proxy.
  connections(): number;
  close(): Promise<void>;
}

export interface KubeProxy {
  kubeconfig: string;
  url: string;
  pid: number;
  snapshot(): Promise<{ traffic: Traffic; connections: number }>;
  close(): Promise<void>;
}

// Messages between the driver and the proxy process.
export type ProxyRequest = { type: "snapshot"; id: number };
export type ProxyReply = { type: "ready"; url: string; kubeconfig: string } | { type: "snapshot"; id: number; traffic: Traffic; connections: number } | { type: "failed"; error: string };

export function startKubeProxy(kubeconfigFile: string): Promise<KubeProxy> {
  const child = fork(new URL("./kube.proxy.main.ts", import.meta.url), [kubeconfigFile], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const waiting = new Map<number, (reply: Extract<ProxyReply, { type: "snapshot" }>) => void>();
  let next = 0;
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`kube proxy exited with ${code}`)));
    child.on("message", (m: ProxyReply) => {
      if (m.type === "failed") reject(new Error(`kube proxy: ${m.error}`));
      else if (m.type === "snapshot") waiting.get(m.id)?.(m);
      else
        resolve({
          kubeconfig: m.kubeconfig,
          url: m.url,
          pid: child.pid!,
          snapshot: () =>
            new Promise((done) => {
              const id = next++;
              waiting.set(id, (reply) => {
                waiting.delete(id);
                done({ traffic: reply.traffic, connections: reply.connections });
              });
              child.send({ type: "snapshot", id } satisfies ProxyRequest);
            }),
          close: async () => {
            if (child.exitCode !== null) return;
            const exited = new Promise((r) => child.once("exit", r));
            child.kill("SIGTERM");
            await exited;
          },
        });
    });
  });
}

export async function startKubeProxyServer(kubeconfigFile: string): Promise<ProxyServer> {
  const original = new KubeConfig();
  original.loadFromFile(kubeconfigFile);
  const cluster = original.getCurrentCluster();
  if (!cluster) throw new Error(`${kubeconfigFile}: no current cluster`);
  const upstream = new URL(cluster.server);
  const ca = cluster.caData ? Buffer.from(cluster.caData, "base64") : undefined;
  const agent = new Agent({ keepAlive: true, maxSockets: Infinity, ca });
  const tls = testTls();
  const counts = new Map<string, TrafficCount>();
  let connections = 0;
  const sockets = new Set<import("node:net").Socket>();

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const key = classify(req.method ?? "GET", req.url ?? "/", req.headers["content-type"]);
    const count = counts.get(key) ?? empty();
    counts.set(key, count);
    count.requests++;
    count.sentBytes += Buffer.byteLength(`${req.method} ${req.url} HTTP/1.1`) + 2 + headerBytes(req.rawHeaders);
    const watch = key.startsWith("watch ");
    if (watch) {
      count.open++;
      count.maxOpen = Math.max(count.maxOpen, count.open);
    }
    let closed = false;
    const started = performance.now();
    const done = () => {
      if (closed) return;
      closed = true;
      if (watch) count.open--;
      else count.totalMs += performance.now() - started;
    };
    const headers = { ...req.headers, host: upstream.host };
    const up = request({ host: upstream.hostname, port: upstream.port || 443, method: req.method, path: req.url, headers, agent }, (upRes) => {
      count.receivedBytes += Buffer.byteLength(`HTTP/1.1 ${upRes.statusCode} ${upRes.statusMessage ?? ""}`) + 2 + headerBytes(upRes.rawHeaders);
      if ((upRes.statusCode ?? 502) >= 400) count.failed++;
      res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, upRes.headers);
      // A watch's response flows as events come: every chunk goes out at once.
      res.flushHeaders();
      const counter = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          count.receivedBytes += chunk.length;
          if (watch) {
            for (const byte of chunk) if (byte === 0x0a) count.events++;
            // An event split across two chunks right there is missed: rare, and only a count.
            for (let at = chunk.indexOf(ERROR_EVENT); at >= 0; at = chunk.indexOf(ERROR_EVENT, at + 1)) count.watchErrors++;
          }
          cb(null, chunk);
        },
      });
      upRes.pipe(counter).pipe(res);
      upRes.on("close", done);
      upRes.on("error", () => res.destroy());
    });
    up.on("error", (err) => {
      done();
      if (!res.headersSent) {
        res.writeHead(502, { "content-type": "text/plain" });
        res.end(`kube proxy: ${err.message}`);
      } else res.destroy();
    });
    req.on("data", (chunk: Buffer) => {
      count.sentBytes += chunk.length;
    });
    req.pipe(up);
    // The client went away (a watch stopped): so does the upstream request.
    res.on("close", () => {
      done();
      up.destroy();
    });
  };

  const server: Server = createServer({ key: tls.key, cert: tls.cert }, handle);
  server.on("secureConnection", (socket) => {
    connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  // Watches are long requests: no timeouts of the proxy's own.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  const url = `https://127.0.0.1:${port}`;

  const proxied = new KubeConfig();
  const user = original.getCurrentUser()!;
  const context = original.getContextObject(original.getCurrentContext())!;
  proxied.loadFromOptions({
    clusters: [{ name: cluster.name, server: url, caData: Buffer.from(tls.ca).toString("base64"), skipTLSVerify: false }],
    users: [user],
    contexts: [context],
    currentContext: context.name,
  });
  const kubeconfig = join(mkdtempSync(join(tmpdir(), "herald-bench-kubeproxy-")), "kubeconfig.json");
  writeFileSync(kubeconfig, proxied.exportConfig(), { mode: 0o600 });

  return {
    kubeconfig,
    url,
    snapshot: () => Object.fromEntries([...counts].map(([k, c]) => [k, { ...c }])),
    connections: () => connections,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}
