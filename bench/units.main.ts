// Unit costs, measured in a process of its own (started by units.scenario.ts with --expose-gc):
// the memory store's heap per device, and the CPU of one APNs request through each layer of
// Herald's HTTP/2 client against the fake APNs, so that the embedded and distributed numbers
// can be split into what Node's HTTP/2 client costs and what Herald adds.
//   node --expose-gc --import tsx bench/units.main.ts '<UnitsArgs JSON>'
import http2 from "node:http2";
import { randomBytes } from "node:crypto";
import { createMemoryStore, type DeviceImport } from "@herald/store";
import { ApnsJwtSigner, ApnsProvider, DEFAULT_TOKEN_REFRESH_MS } from "@herald/sender";
import type { FakesInfo } from "./fakes.protocol.js";

export interface UnitsArgs {
  apns: FakesInfo["apns"];
  storeDevices: number;
  // APNs requests per layer and round; layers take turns, `rounds` times.
  requests: number;
  rounds: number;
}

export interface UnitsResult {
  store: { devices: number; heapBytesPerDevice: number; rssMiB: number };
  // CPU µs per APNs request (user + system of this process), by layer.
  apns: { requests: number; bareHttp2: number; heraldProvider: number };
}

const args = JSON.parse(process.argv[2] ?? "{}") as UnitsArgs;
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("units.main.ts needs --expose-gc");

// The memory store's own heap: devices as the registry stores them, one topic each.
async function storeCost(devices: number): Promise<UnitsResult["store"]> {
  const store = createMemoryStore();
  gc!();
  const before = process.memoryUsage().heapUsed;
  const now = new Date();
  for (let done = 0; done < devices; ) {
    const n = Math.min(2000, devices - done);
    const batch: DeviceImport[] = Array.from({ length: n }, () => ({ provider: "apns", platform: "ios", token: randomBytes(32).toString("hex"), user: "", tags: {}, meta: {}, locale: "en-US", timezone: "UTC", topics: ["news"] }));
    await store.devices.importMany("bench", batch, now);
    done += n;
  }
  gc!();
  const bytes = (process.memoryUsage().heapUsed - before) / devices;
  const result = { devices, heapBytesPerDevice: Math.round(bytes), rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20) };
  await store.close();
  return result;
}

const body = Buffer.from(JSON.stringify({ aps: { alert: { title: "Hello", body: "A broadcast to everyone" } } }));
let serial = 0;
const nextToken = () => (serial++).toString(16).padStart(64, "0");
// In flight at once, as the sender keeps them (four 250-target steps).
const WINDOW = 1000;

// The floor: one bare node:http2 session, a stream per request, nothing else. It keeps as many
// streams open as the fake allows (one until it has seen a valid provider token) up to WINDOW.
async function bareHttp2(n: number, session: http2.ClientHttp2Session, jwt: string): Promise<void> {
  let started = 0;
  let open = 0;
  let done = 0;
  await new Promise<void>((resolve, reject) => {
    const pump = () => {
      const limit = Math.min(WINDOW, session.remoteSettings.maxConcurrentStreams ?? 1);
      for (; started < n && open < limit; started++, open++) {
        const stream = session.request({ ":method": "POST", ":path": `/3/device/${nextToken()}`, "apns-topic": args.apns.bundleId, "apns-priority": "10", authorization: `bearer ${jwt}` });
        stream.on("response", (h) => {
          if (h[":status"] !== 200) reject(new Error(`fake APNs answered ${h[":status"]}`));
        });
        stream.resume();
        stream.on("end", () => {
          open--;
          if (++done === n) resolve();
          else pump();
        });
        stream.on("error", reject);
        stream.end(body);
      }
    };
    pump();
  });
}

// Herald's APNs provider (its HTTP/2 pool, spans, outcome classification), in 250-target jobs.
async function heraldProvider(n: number, provider: ApnsProvider): Promise<void> {
  let left = n;
  const worker = async () => {
    while (left > 0) {
      const targets = Array.from({ length: Math.min(250, left) }, () => ({ deviceId: "d", token: nextToken() }));
      left -= targets.length;
      const results = await provider.send({ app: "bench", publishId: "p", jobId: "j", attempt: 0, targets, payload: body, headers: {}, priority: "high" });
      const bad = results.find((r) => r.outcome.kind !== "sent");
      if (bad) throw new Error(`the provider reported ${JSON.stringify(bad.outcome)}`);
    }
  };
  await Promise.all(Array.from({ length: WINDOW / 250 }, worker));
}

async function apnsCost(requests: number, rounds: number): Promise<UnitsResult["apns"]> {
  const { url, ca, bundleId, keyId, teamId, privateKeyPem } = args.apns;
  const provider = new ApnsProvider({ url, ca, bundleId, auth: { kind: "token", keyId, teamId, privateKeyPem } });
  const session = http2.connect(url, { ca });
  try {
    // Warm-up: connections up, the fake's stream limit raised, code optimised.
    const jwt = new ApnsJwtSigner({ keyId, teamId, privateKeyPem }, () => new Date(), DEFAULT_TOKEN_REFRESH_MS).current();
    await bareHttp2(2000, session, jwt);
    await heraldProvider(2000, provider);
    const cpu = { bare: 0, provider: 0 };
    const measure = async (run: () => Promise<void>) => {
      const start = process.cpuUsage();
      await run();
      const used = process.cpuUsage(start);
      return used.user + used.system;
    };
    // Turns alternate which layer goes first, so a machine that speeds up or slows down during
    // the run weighs on both alike.
    for (let round = 0; round < rounds; round++) {
      const bare = () => measure(() => bareHttp2(requests, session, jwt));
      const herald = () => measure(() => heraldProvider(requests, provider));
      if (round % 2 === 0) (cpu.bare += await bare()), (cpu.provider += await herald());
      else (cpu.provider += await herald()), (cpu.bare += await bare());
    }
    const per = (us: number) => Math.round((us / (requests * rounds)) * 10) / 10;
    return { requests: requests * rounds, bareHttp2: per(cpu.bare), heraldProvider: per(cpu.provider) };
  } finally {
    session.close();
    await provider.close();
  }
}

const result: UnitsResult = { store: await storeCost(args.storeDevices), apns: await apnsCost(args.requests, args.rounds) };
process.stdout.write(`${JSON.stringify(result)}\n`);
