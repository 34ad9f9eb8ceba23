// Memory and CPU of the measured processes, from /proc (Linux).
import { readdirSync, readFileSync, writeFileSync } from "node:fs";

export interface WatchedProcess {
  name: string;
  pid: number;
  // Herald's own processes, as opposed to the fakes, Kafka, FerretDB and PostgreSQL.
  role: "herald" | "fakes" | "infra";
  // Count the CPU of its child processes too (PostgreSQL's backends, one per connection): those
  // that run, and those it has reaped. The RSS stays the parent's own.
  children?: boolean;
}

export interface ProcessUsage {
  name: string;
  pid: number;
  role: WatchedProcess["role"];
  // Resident set before the phase, and its peak during it (VmHWM after a reset, else the polled
  // maximum of VmRSS), in MiB.
  rssBeforeMiB: number;
  peakRssMiB: number;
  // How the peak was obtained: "VmHWM" (kernel peak since the reset) or "polled".
  peakSource: "VmHWM" | "polled";
  // User + system CPU seconds spent during the phase.
  cpuSeconds: number;
}

const CLOCK_TICKS = 100;

function status(pid: number): { rssKiB: number; hwmKiB: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/status`, "utf8");
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN);
    return { rssKiB: field("VmRSS"), hwmKiB: field("VmHWM") };
  } catch {
    return undefined;
  }
}

// A process's resident set now, MiB (NaN when it is gone).
export const rssMiB = (pid: number): number => mib(status(pid)?.rssKiB ?? NaN);

// Fields after the command name (which may contain spaces): ppid is the 4th, utime, stime,
// cutime and cstime the 14th to 17th.
function statFields(pid: number | string): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

function cpuTicks(p: Pick<WatchedProcess, "pid" | "children">): number {
  const own = statFields(p.pid);
  if (!own) return NaN;
  let ticks = Number(own[11]) + Number(own[12]);
  if (!p.children) return ticks;
  ticks += Number(own[13]) + Number(own[14]);
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const child = statFields(entry);
    if (child && Number(child[1]) === p.pid) ticks += Number(child[11]) + Number(child[12]);
  }
  return ticks;
}

// User + system CPU seconds a process has spent since it started (NaN when it is gone).
export const cpuSecondsOf = (pid: number): number => cpuTicks({ pid }) / CLOCK_TICKS;

// Its peak resident set since it started (or since the last reset), MiB.
export const peakRssMiB = (pid: number): number => mib(status(pid)?.hwmKiB ?? NaN);

// Resets the kernel's peak RSS (VmHWM) to the current RSS ("5" > clear_refs, Linux >= 4.0).
function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

const mib = (kib: number) => Math.round((kib / 1024) * 10) / 10;

// Measures a phase: call start() before it and stop() after. Between the two VmRSS is polled,
// both as a fallback where the peak cannot be reset and as a check of the kernel's figure.
export class UsageMeter {
  private readonly start = new Map<number, { rssKiB: number; ticks: number; reset: boolean }>();
  private readonly polledMax = new Map<number, number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly processes: WatchedProcess[],
    private readonly pollMs = 200,
  ) {}

  begin(): void {
    for (const p of this.processes) {
      const s = status(p.pid);
      this.start.set(p.pid, { rssKiB: s?.rssKiB ?? NaN, ticks: cpuTicks(p), reset: resetPeak(p.pid) });
      this.polledMax.set(p.pid, s?.rssKiB ?? 0);
    }
    // unref: a phase that throws before end() must not keep the driver alive.
    this.timer = setInterval(() => this.poll(), this.pollMs).unref();
  }

  private poll(): void {
    for (const p of this.processes) {
      const rss = status(p.pid)?.rssKiB;
      if (rss !== undefined && rss > (this.polledMax.get(p.pid) ?? 0)) this.polledMax.set(p.pid, rss);
    }
  }

  end(): ProcessUsage[] {
    clearInterval(this.timer);
    this.poll();
    return this.processes.map((p) => {
      const begin = this.start.get(p.pid);
      const s = status(p.pid);
      const polled = this.polledMax.get(p.pid) ?? NaN;
      const kernel = begin?.reset && s ? s.hwmKiB : NaN;
      return {
        name: p.name,
        pid: p.pid,
        role: p.role,
        rssBeforeMiB: mib(begin?.rssKiB ?? NaN),
        peakRssMiB: mib(Number.isFinite(kernel) ? Math.max(kernel, polled) : polled),
        peakSource: Number.isFinite(kernel) ? "VmHWM" : "polled",
        cpuSeconds: Math.round(((cpuTicks(p) - (begin?.ticks ?? NaN)) / CLOCK_TICKS) * 100) / 100,
      };
    });
  }
}

// The pid in a pid file (Kafka and FerretDB started by test/infra), if that process runs.
export function pidFromFile(path: string): number | undefined {
  try {
    const pid = Number(readFileSync(path, "utf8").trim());
    return Number.isInteger(pid) && pid > 0 && status(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}
