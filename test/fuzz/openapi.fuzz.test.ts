import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { requireEnv } from "@herald/testing";
import { DEFAULT_SEED } from "./fuzz.generator.js";
import { PRIMARY_APP, startHeraldChild, type HeraldChild } from "./herald.fixture.js";

// schemathesis (installed by test/infra/schemathesis.sh) over the OpenAPI document the gateway
// serves, against `herald serve --fakes` in a child process, with a SERVER key. It generates
// requests from the document's schemas (valid ones and, in its negative mode, invalid ones) and
// checks the answers: no 5xx, and answers that match the document (status codes, content
// types, response schemas). Deterministic: a fixed seed (HERALD_FUZZ_SEED overrides it) and a
// bounded number of examples per operation (HERALD_FUZZ_OPENAPI_EXAMPLES), within a time budget.

const ST = requireEnv("HERALD_SCHEMATHESIS");
const SEED = process.env.HERALD_FUZZ_SEED ? Number(process.env.HERALD_FUZZ_SEED) : DEFAULT_SEED;
const EXAMPLES = Number(process.env.HERALD_FUZZ_OPENAPI_EXAMPLES ?? 20);
// schemathesis's own budget; the suite's timeout leaves room for start-up and the report.
const MAX_TIME_S = Number(process.env.HERALD_FUZZ_OPENAPI_MAX_TIME ?? 150);
const SERVER_CHECK = "not_a_server_error";
const CONFORMANCE_CHECKS = ["status_code_conformance", "content_type_conformance", "response_schema_conformance"];

interface StFailure {
  check: string;
  operation: string;
  detail: string;
  reproduce: string;
}

interface StRun {
  code: number | null;
  ms: number;
  stdout: string;
  failures: StFailure[];
  operations: number;
  requests: number;
}

describe("OpenAPI fuzz (schemathesis) over the gateway", { timeout: (MAX_TIME_S + 240) * 1000 }, () => {
  let h: HeraldChild;
  let dir: string;
  let run: StRun;

  before(async () => {
    assert.ok(existsSync(ST), `HERALD_SCHEMATHESIS=${ST} does not exist: run bash test/infra/schemathesis.sh install (test/infra/up.sh does)`);
    h = await startHeraldChild("openapi");
    dir = await mkdtemp(join(tmpdir(), "herald-schemathesis-"));
    run = await runSchemathesis(h, dir);
    console.log(`[openapi fuzz] schemathesis seed=${SEED} max-examples=${EXAMPLES}: exit ${run.code} after ${(run.ms / 1000).toFixed(1)} s, ${run.requests} requests on ${run.operations} operations (${((run.requests * 1000) / Math.max(1, run.ms)).toFixed(0)} requests/s); ${run.failures.length} failure(s)`);
    for (const f of run.failures) console.log(`[openapi fuzz] FINDING (${f.check}) ${f.operation}: ${f.detail}\n  reproduce: ${f.reproduce}`);
  });

  after(async () => {
    await h?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("schemathesis ran against every operation and herald serve is still running", () => {
    assert.ok(run.operations > 30, `schemathesis tested ${run.operations} operations:\n${run.stdout.slice(-4000)}`);
    assert.equal(h.exit(), undefined, `herald serve exited during the run:\n${h.output().slice(-4000)}`);
  });

  test(`no answer is a server error (${SERVER_CHECK})`, () => {
    const failures = run.failures.filter((f) => f.check === SERVER_CHECK);
    assert.deepEqual(failures.map((f) => `${f.operation}: ${f.detail} — ${f.reproduce}`), []);
  });

  test(`answers conform to the document (${CONFORMANCE_CHECKS.join(", ")})`, () => {
    const failures = run.failures.filter((f) => CONFORMANCE_CHECKS.includes(f.check));
    assert.deepEqual(failures.map((f) => `${f.check} ${f.operation}: ${f.detail}`), []);
  });
});

async function runSchemathesis(h: HeraldChild, dir: string): Promise<StRun> {
  const key = h.app(PRIMARY_APP).serverKey;
  // HERALD_FUZZ_OUT keeps the report (every request and answer) for a look afterwards.
  const reportDir = process.env.HERALD_FUZZ_OUT ? join(process.env.HERALD_FUZZ_OUT, `schemathesis-seed${SEED}`) : join(dir, "report");
  const args = [
    "run",
    `${h.httpUrl}/openapi.json`,
    "--checks",
    [SERVER_CHECK, ...CONFORMANCE_CHECKS].join(","),
    "--seed",
    String(SEED),
    "--max-examples",
    String(EXAMPLES),
    "--max-time",
    String(MAX_TIME_S),
    // Stateful testing follows links the document does not declare; the other phases are the
    // schema-driven ones.
    "--phases",
    "examples,coverage,fuzzing",
    "--header",
    `Authorization: Bearer ${key}`,
    "--workers",
    "2",
    "--request-timeout",
    "35",
    "--continue-on-failure",
    "--suppress-health-check",
    "all",
    "--report",
    "ndjson",
    "--report-dir",
    reportDir,
    "--output-truncate",
    "true",
    "--no-color",
  ];
  const started = Date.now();
  const child = spawn(ST, args, { cwd: dir, env: { ...process.env, SCHEMATHESIS_HOOKS: "", NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stdout += d));
  // schemathesis stops itself at --max-time; the kill is for a hang of its own.
  const killer = setTimeout(() => child.kill("SIGKILL"), (MAX_TIME_S + 120) * 1000);
  const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
  clearTimeout(killer);
  const ms = Date.now() - started;
  const events = await readEvents(reportDir);
  return { code, ms, stdout, ...summarise(events, stdout) };
}

async function readEvents(reportDir: string): Promise<Array<Record<string, unknown>>> {
  if (!existsSync(reportDir)) return [];
  const files = (await readdir(reportDir)).filter((f) => f.endsWith(".ndjson"));
  const events: Array<Record<string, unknown>> = [];
  for (const f of files) {
    for (const line of (await readFile(join(reportDir, f), "utf8")).split("\n")) {
      if (!line.trim()) continue;
      try {
        events.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // a truncated last line of a killed run
      }
    }
  }
  return events;
}

// The ndjson report has one event per line; each ScenarioFinished carries a recorder: the
// operation's label, the generated cases, the checks run on each case (with failure_info on a
// failure) and each case's request and response. One failure per check, operation and title
// is kept, with the request that caused it.
interface Recorder {
  label: string;
  checks?: Record<string, Array<{ name: string; status: string; failure_info?: { failure?: { title?: string; message?: string; code?: string } } }>>;
  interactions?: Record<string, { request?: { method?: string; uri?: string; body?: { $base64?: string } }; response?: { status_code?: number; content?: { $base64?: string } } }>;
}

function summarise(events: Array<Record<string, unknown>>, stdout: string): Omit<StRun, "code" | "ms" | "stdout"> {
  const failures: StFailure[] = [];
  const seen = new Set<string>();
  const operations = new Set<string>();
  let requests = 0;
  const text = (b?: { $base64?: string }) => (b?.$base64 ? Buffer.from(b.$base64, "base64").toString("utf8") : "");
  for (const e of events) {
    const finished = e.ScenarioFinished as { recorder?: Recorder } | undefined;
    const rec = finished?.recorder;
    if (!rec) continue;
    operations.add(rec.label);
    requests += Object.keys(rec.interactions ?? {}).length;
    for (const [caseId, checks] of Object.entries(rec.checks ?? {})) {
      for (const c of checks) {
        if (c.status !== "failure") continue;
        const f = c.failure_info?.failure ?? {};
        const detail = [f.title, f.message].filter(Boolean).join(": ").replace(/\s+/g, " ").slice(0, 400);
        const key = `${c.name}|${rec.label}|${f.title ?? ""}`;
        if (seen.has(key)) continue;
        seen.add(key);
        const i = rec.interactions?.[caseId];
        const reproduce = i?.request ? `${i.request.method} ${i.request.uri} body ${JSON.stringify(text(i.request.body).slice(0, 400))} → ${i.response?.status_code} ${text(i.response?.content).slice(0, 200)}` : `case ${caseId}`;
        failures.push({ check: c.name, operation: rec.label, detail, reproduce });
      }
    }
  }
  if (operations.size === 0) for (const m of stdout.matchAll(/^\s*(GET|POST|PUT|DELETE|PATCH) (\/\S+)/gm)) operations.add(`${m[1]} ${m[2]}`);
  return { failures, operations: operations.size, requests };
}
