// What a benchmark mode hands the scenarios: a publishing client scoped to the benchmark app,
// the processes to measure, and a way to seed devices where that mode's platform reads them.
import { randomBytes } from "node:crypto";
import type { AsyncClient } from "@herald/platform";
import type { dispatch } from "@herald/proto";
import type { WatchedProcess } from "./proc.stats.js";
import type { LoopDelay } from "./embedded.main.js";
import type { SeedPlan, SeedResult } from "./seed.devices.js";

export type Mode = "distributed" | "embedded";

export type DispatchClient = AsyncClient<typeof dispatch.DispatchServiceService>;

export interface Target {
  mode: Mode;
  app: string;
  dispatch: DispatchClient;
  // Herald's processes first, then the fakes and the infrastructure.
  processes: WatchedProcess[];
  seed(plan: SeedPlan): Promise<SeedResult>;
  // The event-loop delay of Herald's process since the last call (embedded only: the distributed
  // processes are many); `reset` starts a new window.
  loopDelay?(reset: boolean): Promise<LoopDelay>;
  // SIGTERM, so that processes run with --cpu-prof write their profiles.
  stop(): Promise<void>;
}

// A new app id per platform start: Kafka (reused between runs) keeps each app's delivery topics
// and consumer offsets, and a job left over from an interrupted run must never be counted.
export const benchAppId = (): string => `bench-${randomBytes(4).toString("hex")}`;
export const BENCH_TOPIC = "bench";
