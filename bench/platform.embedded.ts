// The embedded mode: `herald serve` (every service, memory store and bus) in one process of its
// own, so its peak RSS is the embedded server's alone.
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createClient } from "@herald/platform";
import { dispatch } from "@herald/proto";
import type { ProviderName } from "@herald/store";
import type { EmbeddedArgs, FromEmbedded, ToEmbedded } from "./embedded.main.js";
import type { FakesProcess } from "./fakes.client.js";
import type { Target } from "./platform.types.js";
import type { SeedResult } from "./seed.devices.js";

const ENTRY = fileURLToPath(new URL("./embedded.main.ts", import.meta.url));

export interface EmbeddedOptions {
  fakes: FakesProcess;
  providers: ProviderName[];
  // Extra node flags for the server process, e.g. --cpu-prof.
  nodeArgs?: string[];
  log: (line: string) => void;
}

export async function startEmbeddedTarget(o: EmbeddedOptions): Promise<Target> {
  const args: EmbeddedArgs = { fakesUrl: o.fakes.url, providers: o.providers };
  const child = fork(ENTRY, [JSON.stringify(args)], { execArgv: [...(o.nodeArgs ?? []), "--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  // The next answer of the server process (its messages come one at a time, in order).
  let waiting: { resolve: (m: FromEmbedded) => void; reject: (e: Error) => void } | undefined;
  child.on("message", (m: FromEmbedded) => {
    if (m.type === "log") return o.log(`embedded: ${m.line}`);
    const w = waiting;
    waiting = undefined;
    if (m.type === "error") w?.reject(new Error(`embedded server: ${m.message}`));
    else w?.resolve(m);
  });
  void exited.then((code) => waiting?.reject(new Error(`the embedded server exited with ${code}`)));
  const next = () => new Promise<FromEmbedded>((resolve, reject) => (waiting = { resolve, reject }));

  o.log("embedded: starting the server");
  const ready = await next();
  if (ready.type !== "ready") throw new Error(`embedded server: expected ready, got ${ready.type}`);
  const client = createClient(dispatch.DispatchServiceService, dispatch, ready.address, { apiKey: ready.serverKey });
  return {
    mode: "embedded",
    app: ready.app,
    dispatch: client,
    processes: [
      { name: "herald (embedded)", pid: child.pid!, role: "herald" },
      { name: "fakes", pid: o.fakes.pid, role: "fakes" },
    ],
    async seed(plan): Promise<SeedResult> {
      const answer = next();
      child.send({ type: "seed", plan } satisfies ToEmbedded);
      const m = await answer;
      if (m.type !== "seeded") throw new Error(`embedded server: expected seeded, got ${m.type}`);
      return m.result;
    },
    async loopDelay(reset) {
      const answer = next();
      child.send({ type: "loop", reset } satisfies ToEmbedded);
      const m = await answer;
      if (m.type !== "loop") throw new Error(`embedded server: expected loop, got ${m.type}`);
      return m.delay;
    },
    async stop() {
      client.close();
      if (child.exitCode !== null) return;
      child.send({ type: "stop" } satisfies ToEmbedded);
      const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
