// `herald`: the command-line client of Herald and its embedded all-in-one server.
//   node --import tsx packages/cli/src/herald.ts <command>   (npm run herald -- <command>)
// Exit codes: 0 done, 1 the server refused or failed (one line on stderr), 2 usage error.
import { realpathSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ConfigError } from "@herald/platform";
import { COMMANDS, findCommand, GROUPS, Values, type CommandSpec, type OptionSpec } from "./cli.commands.js";
import { describeCallError, lazyClients, render, resolveCredentials, UsageError, type GlobalValues, type Io } from "./cli.support.js";

const GLOBAL_OPTIONS: Record<string, OptionSpec> = {
  server: { type: "string", value: "host:port", help: "Herald gRPC address (env HERALD_SERVER; default 127.0.0.1:50051, or the one in .herald/dev.json)" },
  key: { type: "string", value: "K", help: "API key (env HERALD_API_KEY; default from .herald/dev.json: the admin key for apps/keys, else an app's server key)" },
  app: { type: "string", value: "A", help: "the app (env HERALD_APP): sent as x-herald-app; with .herald/dev.json picks that app's server key" },
  json: { type: "boolean", help: "machine-readable JSON output" },
  help: { type: "boolean", short: "h", help: "show help" },
};

const TOP_LEVEL = new Set(["serve", "status", "help", "publish"]);

function optionLines(options: Record<string, OptionSpec>): string[] {
  const rows = Object.entries(options).map(([name, o]) => [`${o.short ? `-${o.short}, ` : ""}--${name}${o.value ? ` ${o.value}` : ""}${o.multiple ? "..." : ""}`, o.help] as const);
  const width = Math.max(0, ...rows.map(([l]) => l.length));
  return rows.map(([l, h]) => `  ${l.padEnd(width)}  ${h}`);
}

export function commandHelp(cmd: CommandSpec): string {
  const hasOptions = Object.keys(cmd.options).length > 0;
  const lines = [`Usage: herald ${cmd.name}${cmd.args ? ` ${cmd.args}` : ""}${hasOptions ? " [options]" : ""}`, "", `${cmd.summary[0]!.toUpperCase()}${cmd.summary.slice(1)}.`];
  if (cmd.description) lines.push("", cmd.description);
  if (hasOptions) lines.push("", "Options:", ...optionLines(cmd.options));
  if (cmd.auth !== "none") lines.push("", "Global options:", ...optionLines(GLOBAL_OPTIONS));
  if (cmd.examples.length) lines.push("", "Examples:", ...cmd.examples.map((e) => `  ${e}`));
  return lines.join("\n");
}

function commandList(cmds: CommandSpec[]): string[] {
  const rows = cmds.map((c) => [`${c.name}${c.args ? ` ${c.args}` : ""}`, c.summary] as const);
  const width = Math.min(40, Math.max(...rows.map(([l]) => l.length)));
  return rows.map(([l, s]) => (l.length > width ? `  ${l}\n  ${"".padEnd(width)}  ${s}` : `  ${l.padEnd(width)}  ${s}`));
}

export function groupHelp(group: string): string {
  const cmds = COMMANDS.filter((c) => c.name.startsWith(`${group} `));
  return [`Usage: herald ${group} <command> [args] [options]`, "", `${GROUPS[group] ?? ""}.`, "", "Commands:", ...commandList(cmds), "", `Run \`herald ${group} <command> --help\` for its options and examples.`].join("\n");
}

export function globalHelp(): string {
  return [
    "herald: the command line of Herald, self-hosted push notifications",
    "",
    "Usage: herald [global options] <command> [args] [options]",
    "",
    "Commands:",
    ...commandList(COMMANDS),
    "",
    "Global options:",
    ...optionLines(GLOBAL_OPTIONS),
    "",
    "Keys: with `npm start` (herald serve) running, the keys it wrote to .herald/dev.json are used; otherwise",
    "pass --key (or HERALD_API_KEY). The admin key can act on any app by naming it with --app.",
    "",
    "Examples:",
    "  npm start                                                # the embedded server",
    "  npm run herald -- devices register --provider fcm --platform android --token t1 --topic news",
    "  npm run herald -- devices list --topic news",
    "  npm run herald -- users token alice",
    "  npm run herald -- topics stats news",
    "",
    "Run `herald <command> --help` for a command's options and examples.",
  ].join("\n");
}

interface Located {
  cmd?: CommandSpec;
  group?: string;
  unknown?: string;
  helpFor?: string[];
  rest: string[];
}

// Finds the command words (`devices list`) among leading global options; everything else is
// left for the command's own parser.
function locate(argv: string[]): Located {
  const words: Array<{ word: string; at: number }> = [];
  for (let i = 0; i < argv.length && words.length < 2; i++) {
    const tok = argv[i]!;
    if (tok === "--") break;
    if (tok.startsWith("-")) {
      const name = tok.replace(/^--?/, "").split("=")[0]!;
      const spec = GLOBAL_OPTIONS[name] ?? Object.values(GLOBAL_OPTIONS).find((o) => o.short === name);
      if (!spec) break;
      if (spec.type === "string" && !tok.includes("=")) i++;
      continue;
    }
    words.push({ word: tok, at: i });
    if (words.length === 1 && TOP_LEVEL.has(tok)) {
      if (tok === "help") {
        const rest = argv.slice(i + 1).filter((t) => !t.startsWith("-"));
        return { helpFor: rest, rest: [] };
      }
      break;
    }
  }
  const drop = (n: number) => argv.filter((_, i) => !words.slice(0, n).some((w) => w.at === i));
  const first = words[0]?.word;
  if (!first) return { rest: argv };
  if (TOP_LEVEL.has(first)) return { cmd: findCommand(first)!, rest: drop(1) };
  if (!(first in GROUPS)) return { unknown: first, rest: drop(1) };
  const second = words[1]?.word;
  if (!second) return { group: first, rest: drop(1) };
  const cmd = findCommand(`${first} ${second}`);
  return cmd ? { cmd, rest: drop(2) } : { group: first, unknown: `${first} ${second}`, rest: drop(2) };
}

function helpText(words: string[]): string | undefined {
  if (words.length === 0) return globalHelp();
  const cmd = findCommand(words.slice(0, 2).join(" ")) ?? findCommand(words[0]!);
  if (cmd) return commandHelp(cmd);
  if (words[0]! in GROUPS) return groupHelp(words[0]!);
  return undefined;
}

const defaultIo: Io = {
  out: (s) => process.stdout.write(`${s}\n`),
  err: (s) => process.stderr.write(`${s}\n`),
};

// Runs one command line. Resolves to the exit code, or null for `serve` (the process keeps
// serving until a signal).
export async function main(argv: string[], io: Io = defaultIo, env: NodeJS.ProcessEnv = process.env): Promise<number | null> {
  const located = locate(argv);
  if (located.helpFor) {
    const text = helpText(located.helpFor);
    if (!text) {
      io.err(`herald: unknown command "${located.helpFor.join(" ")}"\n\n${globalHelp()}`);
      return 2;
    }
    io.out(text);
    return 0;
  }
  const wantsHelp = located.rest.some((t) => t === "--help" || t === "-h");
  if (located.unknown) {
    io.err(`herald: unknown command "${located.unknown}"\n\n${located.group ? groupHelp(located.group) : globalHelp()}`);
    return 2;
  }
  if (!located.cmd) {
    const text = located.group ? groupHelp(located.group) : globalHelp();
    if (wantsHelp) {
      io.out(text);
      return 0;
    }
    io.err(located.group ? `herald: ${located.group} needs a command\n\n${text}` : text);
    return 2;
  }
  const cmd = located.cmd;
  if (wantsHelp) {
    io.out(commandHelp(cmd));
    return 0;
  }

  let values: Values;
  let positionals: string[];
  const usage = (message: string) => {
    io.err(`herald: ${message}\n\n${commandHelp(cmd)}`);
    return 2;
  };
  try {
    const options: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> = {};
    for (const [name, o] of Object.entries({ ...GLOBAL_OPTIONS, ...cmd.options })) {
      options[name] = { type: o.type, ...(o.multiple ? { multiple: true } : {}), ...(o.short ? { short: o.short } : {}) };
    }
    const parsed = parseArgs({ args: located.rest, options, allowPositionals: true, strict: true });
    values = new Values(parsed.values as Record<string, string | boolean | Array<string | boolean> | undefined>);
    positionals = parsed.positionals;
  } catch (err) {
    return usage((err as Error).message);
  }
  const min = cmd.minArgs ?? 0;
  const max = cmd.maxArgs ?? Infinity;
  if (positionals.length < min) return usage(`missing argument${cmd.args ? `: ${cmd.args}` : ""}`);
  if (positionals.length > max) return usage(`unexpected argument "${positionals[max]}"`);

  const globals: GlobalValues = {
    ...(values.str("server") ? { server: values.str("server") } : {}),
    ...(values.str("key") ? { key: values.str("key") } : {}),
    ...(values.str("app") ? { app: values.str("app") } : {}),
    json: values.bool("json"),
  };
  let server = globals.server ?? env.HERALD_SERVER ?? "";
  let clients: ReturnType<typeof lazyClients> | undefined;
  try {
    const creds = await resolveCredentials(cmd.auth, globals, env);
    server = creds.server;
    clients = lazyClients(creds);
    const output = await cmd.run({ clients, creds, io, json: globals.json ?? false }, values, positionals);
    if (cmd.name === "serve") return null;
    if (output) render(output, io, globals.json ?? false);
    return output?.exitCode ?? 0;
  } catch (err) {
    if (err instanceof UsageError) return usage(err.message);
    if (err instanceof ConfigError) {
      io.err(`herald: ${err.message}`);
      return 2;
    }
    io.err(`herald: ${describeCallError(err, server) ?? (err as Error).message ?? String(err)}`);
    return 1;
  } finally {
    if (cmd.name !== "serve") clients?.close();
  }
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(resolve(script)) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  const code = await main(process.argv.slice(2));
  if (code !== null) process.exitCode = code;
}
