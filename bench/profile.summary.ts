// Summarises .cpuprofile files written with `npm run bench -- --profile`: self time by function
// and by package/file, and inclusive time of chosen functions, so a bottleneck can be named
// without opening DevTools.
//   node --import tsx bench/profile.summary.ts <file.cpuprofile> [--top N] [--match substring ...]
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: "string" }, match: { type: "string", multiple: true } } });
const top = Number(values.top ?? 25);

for (const file of positionals) {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  // Self time per node from the sample deltas (µs).
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const total = profile.endTime - profile.startTime;
  const idle = [...self].filter(([id]) => ["(idle)", "(program)"].includes(byId.get(id)!.callFrame.functionName)).reduce((a, [, t]) => a + t, 0);

  const where = (n: ProfileNode) => {
    const url = n.callFrame.url.replace(/^file:\/\//, "");
    const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1];
    if (pkg) return pkg;
    const own = /\/work\/[^/]+\/((?:packages|services|bench)\/[^/]+)/.exec(url)?.[1];
    if (own) return own;
    if (url.startsWith("node:")) return url;
    return url ? url.split("/").slice(-2).join("/") : `(${n.callFrame.functionName || "native"})`;
  };
  const sum = (key: (n: ProfileNode) => string) => {
    const out = new Map<string, number>();
    for (const [id, t] of self) {
      const k = key(byId.get(id)!);
      out.set(k, (out.get(k) ?? 0) + t);
    }
    return [...out].sort((a, b) => b[1] - a[1]).slice(0, top);
  };
  const ms = (us: number) => `${(us / 1000).toFixed(0).padStart(7)} ms ${((us / total) * 100).toFixed(1).padStart(5)} %`;

  console.log(`\n${file}\n  wall ${(total / 1e6).toFixed(1)} s, busy ${((total - idle) / 1e6).toFixed(1)} s`);
  console.log("\n  self time by package / file:");
  for (const [k, t] of sum(where)) console.log(`  ${ms(t)}  ${k}`);
  console.log("\n  self time by function:");
  for (const [k, t] of sum((n) => `${n.callFrame.functionName || "(anonymous)"}  ${where(n)}:${n.callFrame.lineNumber + 1}`)) console.log(`  ${ms(t)}  ${k}`);

  // Inclusive time of functions whose name or file contains a --match string.
  if (values.match?.length) {
    const parent = new Map<number, number>();
    for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    console.log("\n  inclusive time of matches:");
    for (const m of values.match) {
      let t = 0;
      for (const [id, us] of self) {
        // Counted once per sample, however often the match occurs on the stack.
        for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
          const f = byId.get(cur)!.callFrame;
          if (f.functionName.includes(m) || f.url.includes(m)) {
            t += us;
            break;
          }
        }
      }
      console.log(`  ${ms(t)}  ${m}`);
    }
  }
}
