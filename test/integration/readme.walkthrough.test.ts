import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { REPO_ROOT, startHeraldChild, type HeraldChild } from "../fuzz/herald.fixture.js";

// The README's "Using the API" and "Publishing and delivery" commands, typed as a new user types
// them after `npm start`: each `npm run herald -- ...` line of their sh blocks runs through npm
// and a shell, against `herald serve` as `npm start` runs it (dry-run senders), with only the
// placeholders (<device-id>, <jwt>, <apns-hex>, <id>) filled from what the earlier commands
// printed. A command that fails or hangs (the first walk-through once waited forever on a
// publish no sender could finish) fails this test.

const COMMAND_TIMEOUT_MS = 60_000;

// The `npm run herald -- ...` commands of the sh blocks of one README section, continuation
// lines joined, comments dropped.
function commandsOf(readme: string, heading: string): string[] {
  const start = readme.indexOf(`\n## ${heading}\n`);
  assert.ok(start >= 0, `README has a "## ${heading}" section`);
  const end = readme.indexOf("\n## ", start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  const commands: string[] = [];
  for (const [, block] of section.matchAll(/```sh\n([\s\S]*?)```/g)) {
    const lines = block!.replace(/\\\n\s*/g, "").split("\n");
    for (const line of lines) {
      const command = line.replace(/\s+#.*$/, "").trim();
      if (command.startsWith("npm run herald -- ")) commands.push(command);
    }
  }
  return commands;
}

function run(command: string, devFile: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile("sh", ["-c", command], { cwd: REPO_ROOT, env: { ...process.env, HERALD_DEV_FILE: devFile }, timeout: COMMAND_TIMEOUT_MS }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 124) : 0;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
}

describe("the README walk-through, typed as written", () => {
  let herald: HeraldChild;
  let readme: string;

  before(async () => {
    herald = await startHeraldChild("readme", { fakes: false });
    readme = await readFile(join(REPO_ROOT, "README.md"), "utf8");
  });
  after(() => herald?.stop());

  it("runs every CLI command of Using the API and Publishing and delivery", async () => {
    const commands = [...commandsOf(readme, "Using the API"), ...commandsOf(readme, "Publishing and delivery")];
    assert.ok(commands.length >= 10, `found the README's commands: ${commands.join("\n")}`);
    const filled: Record<string, string> = { "<apns-hex>": randomBytes(32).toString("hex") };
    for (const written of commands) {
      // A placeholder is filled from an earlier command's output; the README says where from.
      if (written.includes("<device-id>") && !filled["<device-id>"]) {
        const listed = await run("npm run herald -- devices list --topic news --json", herald.devFile);
        filled["<device-id>"] = (JSON.parse(listed.out.slice(listed.out.indexOf("{"))) as { devices: Array<{ id: string }> }).devices[0]!.id;
      }
      const command = written.replace(/<[a-z-]+>/g, (p) => {
        const value = filled[p];
        assert.ok(value, `"${written}": nothing earlier printed a value for ${p}`);
        return value;
      });
      const { code, out } = await run(command, herald.devFile);
      assert.equal(code, 0, `"${command}" failed (${code === 124 ? "no end within 60 s" : `exit ${code}`}):\n${out}\n--- herald serve:\n${herald.output().slice(-3000)}`);
      if (written.includes("users token")) filled["<jwt>"] = /eyJ[\w-]+\.[\w-]+\.[\w-]+/.exec(out)?.[0] ?? "";
      if (written.includes(" publish ")) filled["<id>"] = /\bp[0-9a-z]{25}\b/.exec(out)?.[0] ?? filled["<id>"] ?? "";
      if (written.includes("--wait") && written.includes(" publish ")) assert.match(out, /state\s+done/, `"${command}" ended done:\n${out}`);
    }
    assert.equal(herald.exit(), undefined, "herald serve is still running");
  });
});
