import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "@herald/testing";
import { infraScript } from "./kafka.fixture.js";

// FerretDB and its PostgreSQL of the suite's own (test/infra/ferretdb.sh in its own run dir, on
// free ports), so a suite may SIGKILL them without disturbing the suites sharing test/infra's.
export interface PrivateDatabase {
  // mongodb:// URL of FerretDB (no database name).
  url: string;
  // SIGKILLs FerretDB and PostgreSQL: no clean shutdown, data kept.
  kill(): Promise<void>;
  // Starts both again on the data as it is (PostgreSQL recovers from its WAL).
  resume(): Promise<void>;
  stop(): Promise<void>;
}

export async function startPrivateDatabase(): Promise<PrivateDatabase> {
  const run = mkdtempSync(join(tmpdir(), "herald-db-"));
  const env = {
    ...process.env,
    HERALD_RUN: run,
    HERALD_MONGO_PORT: String(await freePort()),
    HERALD_POSTGRES_PORT: String(await freePort()),
    HERALD_INFRA_QUIET: "1",
  };
  const ferretdb = infraScript("ferretdb", env);
  const postgres = infraScript("postgres", env);
  await ferretdb("start");
  return {
    url: `mongodb://127.0.0.1:${env.HERALD_MONGO_PORT}/`,
    async kill() {
      await ferretdb("kill");
      await postgres("kill");
    },
    async resume() {
      await postgres("resume");
      await ferretdb("resume");
    },
    async stop() {
      await ferretdb("stop").catch(() => {});
      await postgres("purge").catch(() => {});
      rmSync(run, { recursive: true, force: true });
    },
  };
}
