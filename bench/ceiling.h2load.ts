// The ceiling: the fake APNs's own request rate, measured with h2load (Debian's nghttp2-client)
// on this machine with requests a sender would send (valid provider token, apns-topic, a small
// alert payload, one device token). No Herald sender can deliver faster than this fake answers.
import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { randomDeviceToken } from "@herald/testing";
// Not exported by @herald/sender: the production signer, so the token is exactly a sender's.
import { ApnsJwtSigner } from "../services/sender/src/providers/apns.jwt.js";
import type { FakesProcess } from "./fakes.client.js";
import { UsageMeter, type ProcessUsage } from "./proc.stats.js";

export interface CeilingResult {
  command: string;
  requests: number;
  succeeded: number;
  status2xx: number;
  seconds: number;
  // 2xx answers per second. A fresh connection allows one stream until its first valid token (as
  // Apple's do), so h2load's opening burst of -m streams is refused with REFUSED_STREAM (-m − 1
  // errors per connection, answered by nghttp2 before the fake sees them): not counted here.
  requestsPerSecond: number;
  // The fake's own count of 200 answers, as a check that the requests were valid.
  fakeOk: number;
  usage: ProcessUsage[];
}

export interface CeilingOptions {
  requests: number;
  clients: number;
  streams: number;
}

const run = promisify(execFile);

export async function measureCeiling(fakes: FakesProcess, o: CeilingOptions): Promise<CeilingResult> {
  const { apns } = fakes.info;
  const jwt = new ApnsJwtSigner({ keyId: apns.keyId, teamId: apns.teamId, privateKeyPem: apns.privateKeyPem }, () => new Date()).current();
  const dir = mkdtempSync(join(tmpdir(), "herald-bench-h2load-"));
  const body = join(dir, "payload.json");
  // The alert payload the dispatcher builds for the broadcast (see broadcast.scenario.ts).
  writeFileSync(body, JSON.stringify({ aps: { alert: { title: "Benchmark", body: "Broadcast to 100000 devices" } } }));
  const args = [
    "-n", String(o.requests),
    "-c", String(o.clients),
    "-m", String(o.streams),
    "-H", `authorization: bearer ${jwt}`,
    "-H", `apns-topic: ${apns.bundleId}`,
    "-H", "apns-push-type: alert",
    "-d", body,
    `${apns.url}/3/device/${randomDeviceToken()}`,
  ];
  await fakes.reset();
  const meter = new UsageMeter([{ name: "fakes", pid: fakes.pid, role: "fakes" }]);
  meter.begin();
  const { stdout } = await run("h2load", args, { maxBuffer: 16 * 1024 * 1024 });
  const usage = meter.end();
  const fakeOk = (await fakes.stats()).providers.apns?.ok ?? 0;

  // "finished in 2.02s, 49504.95 req/s, 2.17MB/s" (or "518.71ms")
  const finished = /finished in ([\d.]+)(m?s), /.exec(stdout);
  // "requests: 100000 total, 100000 started, 100000 done, 100000 succeeded, 0 failed, ..."
  const requests = /requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded/.exec(stdout);
  const codes = /status codes: (\d+) 2xx/.exec(stdout);
  if (!finished || !requests || !codes) throw new Error(`cannot read h2load's output:\n${stdout}`);
  const seconds = Number(finished[1]) / (finished[2] === "ms" ? 1000 : 1);
  return {
    command: ["h2load", ...args.map((a) => (a.startsWith("authorization:") ? "'authorization: bearer <ES256 JWT>'" : /\s/.test(a) ? `'${a}'` : a))].join(" "),
    requests: Number(requests[1]),
    succeeded: Number(requests[2]),
    status2xx: Number(codes[1]),
    seconds,
    requestsPerSecond: Math.round(Number(codes[1]) / seconds),
    fakeOk,
    usage,
  };
}
