// `npm run bench -- --unit-costs`: the memory store's heap per device and the CPU of one APNs
// request, bare node:http2 against Herald's provider (bench/units.main.ts, in a process of its
// own with --expose-gc), against the benchmark's fake APNs.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { FakesProcess } from "./fakes.client.js";
import type { UnitsArgs, UnitsResult } from "./units.main.js";

const ENTRY = fileURLToPath(new URL("./units.main.ts", import.meta.url));

export async function runUnits(fakes: FakesProcess, o: Omit<UnitsArgs, "apns">): Promise<UnitsResult> {
  const args: UnitsArgs = { apns: fakes.info.apns, ...o };
  const child = spawn(process.execPath, ["--expose-gc", "--import", "tsx", ENTRY, JSON.stringify(args)], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  if (code !== 0) throw new Error(`units.main.ts exited with ${code}: ${out}`);
  return JSON.parse(out.trim().split("\n").at(-1)!) as UnitsResult;
}
