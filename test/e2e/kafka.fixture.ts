import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "@herald/testing";

// A Kafka broker of the suite's own, started by test/infra/kafka.sh in its own run dir on free
// ports: a suite may SIGKILL it without disturbing the suites that share test/infra's broker
// (npm test runs two files at a time). The installed jars in HERALD_CACHE are shared.
export interface PrivateKafka {
  brokers: string;
  // SIGKILL: no clean shutdown, data kept.
  kill(): Promise<void>;
  // Starts again on the data as it is; resolves once the broker is unfenced.
  resume(): Promise<void>;
  stop(): Promise<void>;
  // The last lines of its log, for failure messages.
  log(): string;
}

// Runs a test/infra script (`<name>.sh <command>`) with the private run dir's environment.
export function infraScript(name: string, env: NodeJS.ProcessEnv): (command: string, timeoutMs?: number) => Promise<void> {
  const file = fileURLToPath(new URL(`../infra/${name}.sh`, import.meta.url));
  return (command, timeoutMs = 120_000) =>
    new Promise<void>((resolve, reject) =>
      execFile("bash", [file, command], { env, timeout: timeoutMs }, (err, _stdout, stderr) =>
        err ? reject(new Error(`${name}.sh ${command} failed: ${err.message}\n${stderr}`)) : resolve(),
      ),
    );
}

export async function startPrivateKafka(): Promise<PrivateKafka> {
  const run = mkdtempSync(join(tmpdir(), "herald-kafka-"));
  const env = {
    ...process.env,
    HERALD_RUN: run,
    HERALD_KAFKA_PORT: String(await freePort()),
    HERALD_KAFKA_CONTROLLER_PORT: String(await freePort()),
    // The class-data archive lives in the shared cache: this broker only ever runs without one,
    // so a SIGKILL can never leave a half-written archive behind for the shared broker.
    HERALD_KAFKA_CDS: "0",
    HERALD_INFRA_QUIET: "1",
  };
  const script = infraScript("kafka", env);
  const logFile = join(run, "kafka", "kafka.log");
  await script("start");
  return {
    brokers: `127.0.0.1:${env.HERALD_KAFKA_PORT}`,
    kill: () => script("kill"),
    resume: () => script("resume"),
    async stop() {
      await script("stop").catch(() => {});
      rmSync(run, { recursive: true, force: true });
    },
    log: () => {
      try {
        return readFileSync(logFile, "utf8").split("\n").slice(-40).join("\n");
      } catch {
        return "";
      }
    },
  };
}
