import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient, errorReason } from "@herald/platform";
import { apps as appsApi, dispatch, Platform, Provider, registry } from "@herald/proto";
import { eventually } from "@herald/testing";
import type { ValuePools } from "./fuzz.generator.js";

// Herald as the fuzzers see it: `herald serve --fakes` in a CHILD process, so that a crash is
// the child exiting (an in-process server would take the test runner down with it, or hide an
// uncaught exception behind the runner's own handler). Keys come from its dev file.

export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

export interface HeraldApp {
  id: string;
  serverKey: string;
  clientKey: string;
  userTokenSecret: string;
}

export interface HeraldChild {
  child: ChildProcess;
  // host:port of the gRPC server, and the gateway's base URL.
  address: string;
  // host:port of gorush's gRPC API.
  gorushAddress: string;
  httpUrl: string;
  adminKey: string;
  // The keys file the CLI reads (HERALD_DEV_FILE).
  devFile: string;
  apps: Map<string, HeraldApp>;
  app(id: string): HeraldApp;
  // Exit code/signal once the child has exited; undefined while it runs.
  exit(): string | undefined;
  // The last 200 kB of stdout+stderr (the crash's stack trace is at the end).
  output(): string;
  stop(): Promise<void>;
}

const OUTPUT_KEEP = 200_000;

// Starts `herald serve --fakes` (or, with fakes: false, plain `herald serve` as `npm start` runs
// it: dry-run senders) on free ports with the sample PushApps; resolves once the dev file and the
// banner's HTTP line are there.
export async function startHeraldChild(label: string, options: { fakes?: boolean } = {}): Promise<HeraldChild> {
  const fakes = options.fakes ?? true;
  const dir = await mkdtemp(join(tmpdir(), `herald-fuzz-${label}-`));
  const devFile = join(dir, "dev.json");
  const child = spawn(process.execPath, ["--import", "tsx", join(REPO_ROOT, "packages/cli/src/herald.ts"), "serve", ...(fakes ? ["--fakes"] : []), "--port", "0", "--http-port", "0", "--gorush-grpc-port", "0", "--apps", join(REPO_ROOT, "deploy/samples")], {
    cwd: REPO_ROOT,
    env: { ...process.env, HERALD_DEV_FILE: devFile, HERALD_LOG_LEVEL: process.env.HERALD_FUZZ_LOG_LEVEL ?? "warn", HERALD_FAKES: String(fakes) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const keep = (d: Buffer) => {
    out += d.toString("utf8");
    if (out.length > OUTPUT_KEEP * 2) out = out.slice(-OUTPUT_KEEP);
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  // A test process that dies (a timeout, a kill) must not leave its server behind.
  const orphanGuard = () => child.kill("SIGKILL");
  process.once("exit", orphanGuard);
  let exitedWith: string | undefined;
  const exited = new Promise<void>((resolve) =>
    child.once("exit", (code, signal) => {
      exitedWith = signal ? `signal ${signal}` : `code ${code}`;
      process.removeListener("exit", orphanGuard);
      resolve();
    }),
  );

  const fail = async (why: string) => {
    if (!exitedWith) child.kill("SIGKILL");
    await exited;
    await rm(dir, { recursive: true, force: true });
    return new Error(`herald serve (${label}) ${why}:\n${out.slice(-6000)}`);
  };

  let httpUrl: string;
  let gorushAddress: string;
  try {
    [httpUrl, gorushAddress] = await eventually(
      () => {
        if (exitedWith) throw new Error(`exited during start-up (${exitedWith})`);
        const http = /HTTP API\s+(http:\/\/\S+)/.exec(out);
        const gorush = /gorush gRPC\s+(\S+)/.exec(out);
        return http && gorush && existsSync(devFile) ? [http[1]!, gorush[1]!] : undefined;
      },
      "herald serve to print its banner and write its dev file",
      { timeoutMs: 90_000, pollMs: 100 },
    );
  } catch (err) {
    throw await fail((err as Error).message);
  }
  const dev = JSON.parse(await readFile(devFile, "utf8")) as { server: string; adminKey: string; apps: HeraldApp[] };
  const apps = new Map(dev.apps.map((a) => [a.id, a]));
  return {
    child,
    address: dev.server,
    httpUrl,
    gorushAddress,
    adminKey: dev.adminKey,
    devFile,
    apps,
    app(id) {
      const a = apps.get(id);
      if (!a) throw new Error(`no app ${id} in ${devFile} (apps: ${[...apps.keys()].join(", ")})`);
      return a;
    },
    exit: () => exitedWith,
    output: () => out,
    async stop() {
      if (!exitedWith) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// The apps the fuzzers use: requests go to PRIMARY (every provider configured), OTHER is the
// "another app" of the tenancy variants, FINAL_CHECK is left alone for the delivery check.
// Admin-key cases may delete or rotate only the sacrificial apps the setup creates.
export const PRIMARY_APP = "demo";
export const OTHER_APP = "shop";
export const FINAL_CHECK_APP = "news";

// Real ids for the generator, so mutated requests get past "not found" into deeper code.
export async function seedPools(h: HeraldChild): Promise<ValuePools> {
  const app = h.app(PRIMARY_APP);
  const reg = createClient(registry.RegistryServiceService, registry, h.address, { apiKey: app.serverKey });
  const pub = createClient(dispatch.DispatchServiceService, dispatch, h.address, { apiKey: app.serverKey });
  const admin = createClient(appsApi.AppServiceService, appsApi, h.address, { apiKey: h.adminKey });
  try {
    const deviceIds: string[] = [];
    const seeds = [
      { provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: "fuzz-seed-fcm-1", user: "alice", topics: ["news"] },
      { provider: Provider.PROVIDER_APNS, platform: Platform.PLATFORM_IOS, token: "a".repeat(64), user: "bob", topics: ["news", "sports"] },
      { provider: Provider.PROVIDER_HMS, platform: Platform.PLATFORM_ANDROID, token: "fuzz-seed-hms-1", topics: ["sports"], tags: { team: "red" } },
    ];
    for (const s of seeds) deviceIds.push((await reg.registerDevice(s)).device!.id);
    const userTokens = [(await reg.createUserToken({ user: "alice", ttlSeconds: 3600 })).token];
    const publishIds = [(await pub.publish({ recipients: { target: { $case: "topics", value: { values: ["news"] } } }, notification: { alert: { title: "seed", body: "seed" } } })).id];
    const appIds = ["fuzz-victim-1", "fuzz-victim-2"];
    const keyIds: string[] = [];
    for (const id of appIds) {
      await admin.createApp({ id, name: id, providers: [Provider.PROVIDER_FCM] });
      keyIds.push((await admin.createApiKey({ appId: id, role: appsApi.ApiKeyRole.API_KEY_ROLE_SERVER, name: "fuzz" })).key!.id);
    }
    appIds.push("no-such-app");
    return {
      deviceIds,
      publishIds,
      users: ["alice", "bob", "carol"],
      topics: ["news", "sports", "alerts"],
      userTokens,
      appIds,
      keyIds,
      // Nothing listens on port 9 of loopback: a webhook there fails without leaving the machine.
      loopbackUrl: "http://127.0.0.1:9",
      webPushToken: JSON.stringify({ endpoint: "https://127.0.0.1:9/push/fuzz", keys: { p256dh: "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM", auth: "tBHItJI5svbpez7KI4CCXg" } }),
    };
  } finally {
    reg.close();
    pub.close();
    admin.close();
  }
}

const FINAL_STATES = new Set([dispatch.PublishState.PUBLISH_STATE_DONE, dispatch.PublishState.PUBLISH_STATE_FAILED, dispatch.PublishState.PUBLISH_STATE_CANCELLED, dispatch.PublishState.PUBLISH_STATE_EXPIRED]);

// After a fuzz run: Herald still does its job. A device registered now, a publish to it, and
// GetPublish polled until a final state; DONE with one sent is the only pass.
export async function checkStillDelivers(h: HeraldChild): Promise<{ id: string; state: string; sent: number; ms: number }> {
  const started = Date.now();
  const app = h.app(FINAL_CHECK_APP);
  const reg = createClient(registry.RegistryServiceService, registry, h.address, { apiKey: app.serverKey });
  const pub = createClient(dispatch.DispatchServiceService, dispatch, h.address, { apiKey: app.serverKey });
  try {
    const { device } = await reg.registerDevice({ provider: Provider.PROVIDER_FCM, platform: Platform.PLATFORM_ANDROID, token: `fuzz-final-${Date.now()}` });
    const { id } = await pub.publish({ recipients: { target: { $case: "deviceIds", value: { values: [device!.id] } } }, notification: { alert: { title: "after the fuzz run", body: "still delivering" } } });
    const done = await eventually(
      async () => {
        const p = (await pub.getPublish({ id }, { deadlineMs: 5_000 })).publish;
        return p && FINAL_STATES.has(p.state) ? p : undefined;
      },
      `publish ${id} to reach a final state`,
      { timeoutMs: 30_000, pollMs: 100 },
    );
    return { id, state: dispatch.publishStateToJSON(done.state), sent: Number(done.counts?.sent ?? 0), ms: Date.now() - started };
  } catch (err) {
    const { reason } = errorReason(err);
    throw new Error(`the delivery check failed${reason ? ` (${reason})` : ""}: ${(err as Error).message}`);
  } finally {
    reg.close();
    pub.close();
  }
}
