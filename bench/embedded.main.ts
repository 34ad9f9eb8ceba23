// The embedded mode's server process (forked by platform.embedded.ts): `herald serve` in one
// process — every service on the memory store and bus — with the benchmark app's senders pointed
// at the fakes. It seeds its own memory store on request, since no other process can reach it;
// the driver publishes over gRPC like any client, so its load is not counted here.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { startEmbedded } from "@herald/cli";
import { createLogger } from "@herald/platform";
import type { ProviderName } from "@herald/store";
import { connectFakes } from "./fakes.client.js";
import { benchAppId } from "./platform.types.js";
import { entryOf, providerFromConfig, TOKEN_RULES, writeCaFile } from "./providers.table.js";
import { seedDevices, type SeedPlan, type SeedResult } from "./seed.devices.js";

export interface EmbeddedArgs {
  fakesUrl: string;
  providers: ProviderName[];
}

export type ToEmbedded = { type: "seed"; plan: SeedPlan } | { type: "loop"; reset: boolean } | { type: "stop" };
export type FromEmbedded = { type: "ready"; app: string; address: string; serverKey: string } | { type: "seeded"; result: SeedResult } | { type: "loop"; delay: LoopDelay } | { type: "log"; line: string } | { type: "error"; message: string };

// How long the server's event loop was held, sampled every 10 ms (perf_hooks): what a lone
// publish or a health check waits at worst while a broadcast runs.
export interface LoopDelay {
  maxMs: number;
  p99Ms: number;
}

const send = (message: FromEmbedded) => process.send!(message);
const args = JSON.parse(process.argv[2] ?? "{}") as EmbeddedArgs;
const fakes = await connectFakes(args.fakesUrl);
const caFile = writeCaFile(fakes.info);

// The PushApp the server loads at start. Its secret references are placeholders: the embedded
// mode never reads Secrets, the providers come from providerFor below.
const secretRef = (name: string) => ({ name: `bench-${name}`, key: "credential" });
const providerSpecs: Record<string, unknown> = {};
for (const provider of args.providers) {
  if (provider === "apns") {
    const { bundleId, keyId, teamId } = fakes.info.apns;
    providerSpecs.apns = { environment: "production", bundleId, auth: { token: { keyId, teamId, keySecretRef: secretRef("apns") } } };
  } else if (provider === "fcm") {
    providerSpecs.fcm = { projectId: fakes.info.fcm.projectId, serviceAccountSecretRef: secretRef("fcm") };
  } else if (provider === "webpush") {
    providerSpecs.webpush = { subject: "mailto:bench@herald.test", vapidKeysSecretRef: secretRef("webpush") };
  } else {
    throw new Error(`no PushApp settings for ${provider} in the embedded benchmark`);
  }
}
const appId = benchAppId();
const appsDir = mkdtempSync(join(tmpdir(), "herald-bench-apps-"));
const pushApp = { apiVersion: "herald.dev/v1alpha1", kind: "PushApp", metadata: { name: appId }, spec: { displayName: "Herald benchmark", providers: providerSpecs } };
// JSON is YAML: no serializer needed.
writeFileSync(join(appsDir, "bench.pushapp.yaml"), JSON.stringify(pushApp, null, 2));

const server = await startEmbedded({
  port: 0,
  appsDir,
  devFile: false,
  tokenRules: TOKEN_RULES,
  logger: createLogger({ service: "herald", level: "warn", destination: process.stderr }),
  providerFor: (_app, name) => (args.providers.includes(name) ? providerFromConfig(name, entryOf(name).sender(fakes.info, caFile)) : undefined),
});
const app = server.apps.find((a) => a.id === appId);
if (!app) throw new Error(`the embedded server did not load the benchmark app: ${server.problems.join("; ")}`);

const loop = monitorEventLoopDelay({ resolution: 10 });
loop.enable();

process.on("message", (message: ToEmbedded) => {
  if (message.type === "loop") {
    send({ type: "loop", delay: { maxMs: Math.round(loop.max / 1e5) / 10, p99Ms: Math.round(loop.percentile(99) / 1e5) / 10 } });
    if (message.reset) loop.reset();
  } else if (message.type === "seed") {
    seedDevices(server.store, fakes, message.plan, (line) => send({ type: "log", line }))
      .then((result) => send({ type: "seeded", result }))
      .catch((err: unknown) => send({ type: "error", message: String((err as Error).stack ?? err) }));
  } else if (message.type === "stop") {
    // exit() after a clean stop lets --cpu-prof write its profile.
    void server.stop().finally(() => process.exit(0));
  }
});
send({ type: "ready", app: appId, address: server.address, serverKey: app.serverKey });
