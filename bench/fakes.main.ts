// The fake providers of a benchmark run, in a process of their own (started by fakes.client.ts):
// the fake APNs (HTTP/2, ES256 provider tokens), the fake FCM (HTTP/2, OAuth2 service-account
// grant) and the fake Web Push service (decrypts every message), plus a control endpoint for the
// driver. The fakes count answers instead of keeping
// records, so memory stays flat however many notifications arrive.
//   node --import tsx bench/fakes.main.ts '<FakesOptions JSON>'
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { ProviderName } from "@herald/store";
import { generateApnsKey, startFakeApns, startFakeFcm, startFakeWebPush, testTls } from "@herald/testing";
import { FAKES_READY, wallNow, watchKey, type FakesInfo, type FakesOptions, type FakesStats, type ProviderCount, type SubscriptionsResponse } from "./fakes.protocol.js";

const options = JSON.parse(process.argv[2] ?? "{}") as FakesOptions;
const BUNDLE_ID = "dev.herald.bench";
const FCM_PROJECT_ID = "herald-bench";
// The Web Push fake keeps a record per request; it is emptied this often (the counts live here).
const WEBPUSH_RECORDS_KEPT = 10_000;

const emptyCount = (): ProviderCount => ({ ok: 0, failed: 0, byStatus: {}, firstOkAt: 0, lastOkAt: 0 });
let counts: Partial<Record<ProviderName, ProviderCount>> = {};
// Watched key → receive time; undefined while not arrived. Only keys asked for are tracked.
let watched = new Map<string, number | undefined>();

function count(provider: ProviderName, status: number, key: string): void {
  const c = (counts[provider] ??= emptyCount());
  c.byStatus[status] = (c.byStatus[status] ?? 0) + 1;
  if (status < 200 || status > 299) {
    c.failed++;
    return;
  }
  const at = wallNow();
  c.ok++;
  if (c.firstOkAt === 0) c.firstOkAt = at;
  c.lastOkAt = at;
  if (watched.size === 0) return;
  const k = watchKey(provider, key);
  if (watched.has(k) && watched.get(k) === undefined) watched.set(k, at);
}

const tls = testTls();
const key = generateApnsKey();
// record: false keeps no per-request records; onRecord is the only per-token signal the fake
// gives, needed for latency probes (its cost is part of the measured ceiling as well).
const apns = await startFakeApns({
  keys: [{ ...key, bundleId: BUNDLE_ID }],
  record: false,
  maxStreams: options.apnsMaxStreams,
  latencyMs: options.apnsLatencyMs,
  onRecord: (r) => count("apns", r.status, r.token),
});
const webpush = await startFakeWebPush({
  onRecord: (r) => {
    count("webpush", r.status, r.subscriptionId);
    if (webpush.records.length >= WEBPUSH_RECORDS_KEPT) webpush.reset();
  },
});
// Like the APNs fake: no records, counted through onRecord under the registration token.
const fcm = await startFakeFcm({ record: false, onRecord: (r) => count("fcm", r.status, r.target) });
// The one service account every sender of a run uses (the fake trusts only those it issued).
const fcmAccount = fcm.serviceAccount(FCM_PROJECT_ID);

const info: FakesInfo = {
  pid: process.pid,
  providers: ["apns", "fcm", "webpush"],
  apns: { url: apns.url, ca: apns.ca, bundleId: BUNDLE_ID, keyId: key.keyId, teamId: key.teamId, privateKeyPem: key.privateKeyPem },
  webpush: { url: webpush.url, ca: tls.ca },
  fcm: { url: fcm.url, ca: tls.ca, projectId: fcmAccount.projectId, serviceAccountJson: fcmAccount.json },
};

async function body<T>(req: IncomingMessage): Promise<T> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as T;
}

function send(res: ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) }).end(text);
}

async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const where = `${req.method} ${req.url}`;
  switch (where) {
    case "GET /info":
      return send(res, 200, info);
    case "GET /stats": {
      const arrived: FakesStats["watched"] = {};
      for (const [k, at] of watched) if (at !== undefined) arrived[k] = at;
      return send(res, 200, { providers: counts, watched: arrived } satisfies FakesStats);
    }
    case "POST /reset":
      counts = {};
      watched = new Map();
      return send(res, 200, {});
    case "POST /watch": {
      const { keys } = await body<{ keys: string[] }>(req);
      for (const k of keys) watched.set(k, undefined);
      return send(res, 200, {});
    }
    case "POST /webpush/subscriptions": {
      const { count: n } = await body<{ count: number }>(req);
      const subscriptions = Array.from({ length: n }, () => {
        const s = webpush.subscribe();
        return { id: s.id, token: s.token };
      });
      return send(res, 200, { subscriptions } satisfies SubscriptionsResponse);
    }
    default:
      return send(res, 404, { error: `no ${where}` });
  }
}

const control = createServer((req, res) => void route(req, res).catch((err: unknown) => send(res, 500, { error: String(err) })));
// The driver may leave the channel idle for a long time (a long import of one provider): with
// Node's 5 s default, a request can race the server closing the idle socket ("fetch failed").
control.keepAliveTimeout = 10 * 60_000;
control.listen(0, "127.0.0.1");
await new Promise((resolve) => control.once("listening", resolve));

const stop = async () => {
  control.close();
  await Promise.allSettled([apns.close(), fcm.close(), webpush.close()]);
  process.exit(0);
};
process.once("SIGTERM", () => void stop());
process.once("SIGINT", () => void stop());
process.stdout.write(`${FAKES_READY}${(control.address() as AddressInfo).port}\n`);
