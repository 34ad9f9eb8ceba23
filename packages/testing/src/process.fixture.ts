import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import { createServer } from "node:net";
import { basename, dirname, join } from "node:path";
import * as grpc from "@grpc/grpc-js";

export interface ServiceProcess {
  child: ChildProcess;
  address: string;
  output(): string;
  waitHealthy(timeoutMs?: number): Promise<void>;
  // SIGTERM and wait for the exit code.
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

// Runs a service's main.ts as its own process, the way a Deployment would.
// nodeArgs: node flags for the service (--cpu-prof and others that NODE_OPTIONS refuses).
export function spawnService(entry: string, env: Record<string, string>, address: string, nodeArgs: string[] = []): ServiceProcess {
  const child = spawn(process.execPath, [...nodeArgs, "--import", "tsx", entry], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  // HERALD_TEST_LOG_DIR keeps every service's whole output as a file, for debugging a suite.
  const logDir = process.env.HERALD_TEST_LOG_DIR;
  if (logDir) {
    const file = createWriteStream(join(logDir, `${basename(dirname(dirname(entry)))}-${child.pid}.log`));
    child.stdout!.pipe(file);
    child.stderr!.pipe(file);
  }
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    child,
    address,
    output: () => out,
    async waitHealthy(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        if (child.exitCode !== null) throw new Error(`${entry} exited with ${child.exitCode}: ${failureOf(out)}`);
        if (await healthy(address)) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`${entry} did not become healthy within ${timeoutMs} ms: ${failureOf(out)}`);
    },
    async stop(signal = "SIGTERM", timeoutMs = 20_000) {
      if (child.exitCode !== null) return child.exitCode;
      child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

// The fatal log line first (test reports may cut long messages), then the end of the output.
export function failureOf(output: string): string {
  const fatal = output.split("\n").filter((l) => /"level":(50|60)|fatal/i.test(l)).slice(-3);
  return [...fatal, "--- last output ---", output.slice(-4000)].join("\n");
}

// grpc.health.v1.Health/Check for the whole server: SERVING is the response bytes [8, 1].
export async function healthy(address: string): Promise<boolean> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  try {
    const res = await new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest("/grpc.health.v1.Health/Check", (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), { deadline: Date.now() + 1000 }, (err, r) =>
        err ? reject(err) : resolve(r!),
      ),
    );
    return res.length === 2 && res[0] === 8 && res[1] === 1;
  } catch {
    return false;
  } finally {
    client.close();
  }
}
