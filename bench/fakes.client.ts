// Starts bench/fakes.main.ts as its own process and talks to its control endpoint.
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { FAKES_READY, type FakesInfo, type FakesOptions, type FakesStats, type SubscriptionsResponse } from "./fakes.protocol.js";

export interface FakesControl {
  // The control endpoint, for another process (the embedded server seeds its own devices).
  url: string;
  info: FakesInfo;
  stats(): Promise<FakesStats>;
  reset(): Promise<void>;
  watch(keys: string[]): Promise<void>;
  subscribeWebPush(count: number): Promise<SubscriptionsResponse["subscriptions"]>;
}

export interface FakesProcess extends FakesControl {
  pid: number;
  stop(): Promise<void>;
}

const ENTRY = fileURLToPath(new URL("./fakes.main.ts", import.meta.url));

export async function startFakes(options: FakesOptions, nodeArgs: string[] = []): Promise<FakesProcess> {
  const child = spawn(process.execPath, [...nodeArgs, "--import", "tsx", ENTRY, JSON.stringify(options)], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await readyPort(child);
  const control = await connectFakes(`http://127.0.0.1:${port}`);
  return {
    ...control,
    pid: child.pid!,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function readyPort(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`the fakes process did not start within 60 s: ${out}`)), 60_000);
    child.once("exit", (code) => reject(new Error(`the fakes process exited with ${code}: ${out}`)));
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const line = out.split("\n").find((l) => l.startsWith(FAKES_READY));
      if (!line) return;
      clearTimeout(timer);
      resolve(Number(line.slice(FAKES_READY.length)));
    });
  });
}

export async function connectFakes(url: string): Promise<FakesControl> {
  const call = async <T>(method: "GET" | "POST", path: string, body?: unknown): Promise<T> => {
    const res = await fetch(`${url}${path}`, { method, ...(body !== undefined ? { body: JSON.stringify(body), headers: { "content-type": "application/json" } } : {}) });
    if (!res.ok) throw new Error(`fakes ${method} ${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  };
  return {
    url,
    info: await call<FakesInfo>("GET", "/info"),
    stats: () => call<FakesStats>("GET", "/stats"),
    reset: async () => void (await call("POST", "/reset", {})),
    watch: async (keys) => void (await call("POST", "/watch", { keys })),
    subscribeWebPush: async (count) => (await call<SubscriptionsResponse>("POST", "/webpush/subscriptions", { count })).subscriptions,
  };
}
