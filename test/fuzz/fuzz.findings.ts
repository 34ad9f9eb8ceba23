import { mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

// What the fuzzers found, one entry per distinct defect (invariant, target and the shape of the
// answer), each with the first reproduction and how often it recurred. A failure must be
// reproducible from its report alone: seed, index, the exact request (a file when large) and
// the command that replays just that case.

export interface Finding {
  invariant: string;
  target: string;
  answer: string;
  seed: number;
  index: number;
  kind: string;
  auth: string;
  request: string;
  notes: string[];
  // Where the exact request bytes were written.
  file?: string;
  extra?: string;
}

export class Findings {
  private readonly bySignature = new Map<string, { first: Finding; count: number; indexes: number[]; targets: Set<string> }>();
  readonly dir: string;

  constructor(
    readonly fuzzer: string,
    private readonly testFile: string,
  ) {
    this.dir = process.env.HERALD_FUZZ_OUT ?? join(tmpdir(), "herald-fuzz-findings");
  }

  // `shape` is the part of the answer that identifies the defect (code, reason, message with
  // the input-specific parts removed), so one defect hit a hundred times, through any number of
  // methods or routes, is one entry listing them.
  add(f: Finding, shape: string, bytes?: Uint8Array): void {
    const signature = `${f.invariant} | ${normalise(shape)}`;
    const seen = this.bySignature.get(signature);
    if (seen) {
      seen.count++;
      seen.targets.add(f.target);
      if (seen.indexes.length < 10) seen.indexes.push(f.index);
      return;
    }
    if (bytes) {
      mkdirSync(this.dir, { recursive: true });
      f.file = join(this.dir, `${this.fuzzer}-seed${f.seed}-case${f.index}.bin`);
      writeFileSync(f.file, bytes);
    }
    this.bySignature.set(signature, { first: f, count: 1, indexes: [f.index], targets: new Set([f.target]) });
    process.stdout.write(`${this.format(f, 1, [f.index], new Set([f.target]))}\n`);
  }

  get size(): number {
    return this.bySignature.size;
  }

  list(): Array<{ first: Finding; count: number; indexes: number[]; targets: Set<string> }> {
    return [...this.bySignature.values()];
  }

  format(f: Finding, count: number, indexes: number[], targets: Set<string>): string {
    const others = [...targets].filter((t) => t !== f.target);
    return [
      `[${this.fuzzer} fuzz] FINDING (${f.invariant}) ${f.target}: ${f.answer}`,
      `  seed=${f.seed} index=${f.index} kind=${f.kind} auth=${f.auth}; seen ${count}x (cases ${indexes.join(",")}${count > indexes.length ? ",…" : ""})`,
      ...(others.length ? [`  also on: ${others.join(" ")}`] : []),
      `  reproduce: HERALD_FUZZ_SEED=${f.seed} HERALD_FUZZ_ONLY=${f.index} node --import tsx --test ${this.testFile}`,
      `  request: ${f.request}`,
      ...(f.file ? [`  exact request bytes: ${f.file}`] : []),
      ...(f.notes.length ? [`  mutations: ${f.notes.slice(0, 12).join("; ")}${f.notes.length > 12 ? `; … ${f.notes.length - 12} more` : ""}`] : []),
      ...(f.extra ? [`  ${f.extra.split("\n").join("\n  ")}`] : []),
    ].join("\n");
  }

  report(): string {
    if (this.size === 0) return `[${this.fuzzer} fuzz] no findings`;
    return [`[${this.fuzzer} fuzz] ${this.size} distinct finding(s):`, ...this.list().map((e) => this.format(e.first, e.count, e.indexes, e.targets))].join("\n\n");
  }
}

function normalise(s: string): string {
  return s
    .replace(/"[^"]*"/g, '"…"')
    .replace(/'[^']*'/g, "'…'")
    .replace(/\b[0-9a-f]{8,}\b/gi, "<hex>")
    .replace(/,(metadata filters|name resolution|LB pick|remote_addr)[^,]*/g, "")
    .replace(/(%[0-9A-F]{2})+/g, "%…")
    .replace(/\d+/g, "N")
    .slice(0, 200);
}

// A JSON rendering short enough for a log line.
export function shortJson(value: unknown, max = 600): string {
  let s: string;
  try {
    s = JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : typeof v === "string" && v.length > 80 ? `${v.slice(0, 40)}…(${v.length} chars)` : v));
  } catch (err) {
    s = `(not renderable: ${(err as Error).message})`;
  }
  if (s === undefined) return "undefined";
  const escaped = s.replace(/[\u0000-\u001f\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  return escaped.length > max ? `${escaped.slice(0, max)}… (${escaped.length} chars)` : escaped;
}
