// The real `herald` CLI, run as a child process against the embedded server started in-process.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { createLogger } from "@herald/platform";
import { REPO_ROOT, writeDevFile } from "./devfile.schema.js";
import { startEmbedded, type EmbeddedApp, type EmbeddedServer } from "./serve.js";

const HERALD = fileURLToPath(new URL("./herald.ts", import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

let tmp: string;
let server: EmbeddedServer;
let app: EmbeddedApp;

// Nothing from the developer's shell or .herald/dev.json leaks into the runs.
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("HERALD_")) env[k] = v;
  return { ...env, HERALD_DEV_FILE: join(tmp, "absent-dev.json"), ...extra };
}

function herald(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, ["--import", "tsx", HERALD, ...args], { cwd: REPO_ROOT, env: childEnv(env), timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

// A command with the server and a key; --json output parsed.
async function json(key: string, args: string[]): Promise<Record<string, any>> {
  const run = await herald([...args, "--server", server.address, "--key", key, "--json"]);
  assert.equal(run.code, 0, `herald ${args.join(" ")} failed (${run.code}): ${run.stderr}`);
  return JSON.parse(run.stdout);
}

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), "herald-cli-"));
  const apps = join(tmp, "apps");
  await mkdir(apps);
  await copyFile(join(REPO_ROOT, "deploy/samples/demo.pushapp.yaml"), join(apps, "demo.pushapp.yaml"));
  server = await startEmbedded({ host: "127.0.0.1", port: 0, appsDir: apps, logger: createLogger({ service: "test", level: "silent" }) });
  assert.equal(server.apps.length, 1);
  app = server.apps[0]!;
});

after(async () => {
  await server?.stop();
  await rm(tmp, { recursive: true, force: true });
});

describe("herald CLI against the embedded server", () => {
  test("apps list with the admin key", async () => {
    const res = await json(server.adminKey, ["apps", "list"]);
    assert.deepEqual(
      res.apps.map((a: { id: string }) => a.id),
      ["demo"],
    );
    assert.deepEqual(res.apps[0].providers, ["PROVIDER_APNS", "PROVIDER_FCM", "PROVIDER_HMS", "PROVIDER_WEBPUSH"]);
    // Readable output is a table.
    const table = await herald(["apps", "list", "--server", server.address, "--key", server.adminKey]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^ID\s+NAME/m);
    assert.match(table.stdout, /^demo\s+Herald Demo/m);
  });

  let deviceId = "";

  test("devices register, list and get", async () => {
    const reg = await json(app.serverKey, ["devices", "register", "--provider", "fcm", "--platform", "android", "--token", "cli-token-1", "--topic", "news", "--tag", "team=red", "--meta", "name=Ada", "--locale", "en-GB"]);
    assert.equal(reg.created, true);
    deviceId = reg.device.id;
    assert.ok(deviceId);
    assert.equal(reg.device.provider, "PROVIDER_FCM");

    const list = await json(app.serverKey, ["devices", "list", "--topic", "news"]);
    assert.deepEqual(
      list.devices.map((d: { id: string }) => d.id),
      [deviceId],
    );
    assert.deepEqual(list.devices[0].tags, { team: "red" });
    const none = await json(app.serverKey, ["devices", "list", "--tag", "team=blue"]);
    assert.deepEqual(none.devices ?? [], []);

    const got = await json(app.serverKey, ["devices", "get", deviceId]);
    assert.equal(got.device.token, "cli-token-1");
    assert.equal(got.device.platform, "PLATFORM_ANDROID");

    const readable = await herald(["devices", "list", "--server", server.address, "--key", app.serverKey]);
    assert.equal(readable.code, 0, readable.stderr);
    assert.match(readable.stdout, new RegExp(`^${deviceId}\\s+fcm\\s+android`, "m"));
  });

  test("topics add and stats", async () => {
    const added = await json(app.serverKey, ["topics", "add", deviceId, "sport", "weather"]);
    assert.deepEqual(added.topics, ["news", "sport", "weather"]);
    const stats = await json(app.serverKey, ["topics", "stats", "news", "sport", "nobody"]);
    const byTopic = Object.fromEntries(stats.stats.map((s: { topic: string; deviceCount?: string }) => [s.topic, Number(s.deviceCount ?? 0)]));
    assert.deepEqual(byTopic, { news: 1, sport: 1, nobody: 0 });
  });

  test("users token, bind and unbind", async () => {
    const minted = await json(app.serverKey, ["users", "token", "alice", "--ttl", "600"]);
    assert.match(minted.token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    // The readable form is the bare token, for $(...) capture.
    const bare = await herald(["users", "token", "alice", "--server", server.address, "--key", app.serverKey]);
    assert.equal(bare.code, 0, bare.stderr);
    assert.match(bare.stdout.trim(), /^[\w-]+\.[\w-]+\.[\w-]+$/);

    // Binding is what a device does with the CLIENT key.
    const bound = await json(app.clientKey, ["users", "bind", deviceId, "--user-token", minted.token]);
    assert.equal(bound.device.user, "alice");
    const unbound = await json(app.clientKey, ["users", "unbind", deviceId]);
    assert.equal(unbound.device.user ?? "", "");
  });

  test("a bad token exits 1 with the code, reason and field on stderr", async () => {
    const run = await herald(["devices", "register", "--provider", "apns", "--platform", "ios", "--token", "not-a-token", "--server", server.address, "--key", app.serverKey]);
    assert.equal(run.code, 1);
    assert.equal(run.stdout, "");
    assert.equal(run.stderr.trim(), "herald: INVALID_ARGUMENT (INVALID_TOKEN) token: an APNs device token is 64 hexadecimal characters");
  });

  test("publish --wait follows a publish to done and prints its counts", async () => {
    await json(app.serverKey, ["devices", "register", "--provider", "fcm", "--platform", "android", "--token", "wait-1", "--topic", "waiting"]);
    await json(app.serverKey, ["devices", "register", "--provider", "fcm", "--platform", "android", "--token", "wait-2", "--topic", "waiting"]);
    const done = await json(app.serverKey, ["publish", "--topic", "waiting", "--title", "Hi", "--body", "there", "--uid", "cli-1", "--wait"]);
    assert.equal(done.state, "PUBLISH_STATE_DONE");
    assert.equal(done.counts.targeted, 2);
    assert.equal(done.counts.sent, 2);
    const listed = await json(app.serverKey, ["publishes", "list", "--uid", "cli-1"]);
    assert.equal(listed.publishes[0].id, done.id);
    const bad = await herald(["publish", "--topic", "waiting", "--server", server.address, "--key", app.serverKey]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /PAYLOAD_REQUIRED/);
    const usage = await herald(["publish", "--topic", "a", "--user", "b", "--body", "x", "--server", server.address, "--key", app.serverKey]);
    assert.equal(usage.code, 2);
  });

  test("a CLIENT key is refused where a SERVER key is needed", async () => {
    const run = await herald(["devices", "list", "--server", server.address, "--key", app.clientKey]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /^herald: PERMISSION_DENIED \(SERVER_KEY_REQUIRED\) /);
  });

  test("unknown commands and bad usage exit 2 with help", async () => {
    const unknown = await herald(["frobnicate"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "frobnicate"/);
    assert.match(unknown.stderr, /Usage: herald/);
    assert.match(unknown.stderr, /devices register/);

    const unknownSub = await herald(["devices", "explode"]);
    assert.equal(unknownSub.code, 2);
    assert.match(unknownSub.stderr, /unknown command "devices explode"/);
    assert.match(unknownSub.stderr, /Usage: herald devices <command>/);

    const badOption = await herald(["devices", "list", "--colour", "red", "--key", "x"]);
    assert.equal(badOption.code, 2);
    assert.match(badOption.stderr, /--colour/);
    assert.match(badOption.stderr, /Usage: herald devices list/);

    const missing = await herald(["devices", "register", "--provider", "fcm", "--key", "x"]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--platform is required/);

    const help = await herald(["topics", "stats", "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Usage: herald topics stats <topic>\.\.\./);
    assert.match(help.stdout, /Examples:/);
  });

  test("keys come from the dev file that serve writes", async () => {
    const devFile = join(tmp, "dev.json");
    await writeDevFile(devFile, { server: server.address, adminKey: server.adminKey, apps: [app] });
    const env = { HERALD_DEV_FILE: devFile };
    const list = await herald(["devices", "list", "--json"], env);
    assert.equal(list.code, 0, list.stderr);
    assert.ok(JSON.parse(list.stdout).devices.some((d: { id: string }) => d.id === deviceId));
    const apps = await herald(["apps", "get", "demo", "--json"], env);
    assert.equal(apps.code, 0, apps.stderr);
    assert.equal(JSON.parse(apps.stdout).app.name, "Herald Demo");
    const status = await herald(["status"], env);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /SERVING/);
    assert.match(status.stdout, /admin key \(1 apps: demo\)/);
  });

  test("status reports health and what an app key is", async () => {
    const run = await herald(["status", "--server", server.address, "--key", app.clientKey, "--json"]);
    assert.equal(run.code, 0, run.stderr);
    const res = JSON.parse(run.stdout);
    assert.equal(res.status, "SERVING");
    assert.equal(res.services["herald.registry.v1.RegistryService"], "SERVING");
    assert.equal(res.services["herald.topic.v1.TopicService"], "SERVING");
    assert.deepEqual({ role: res.key.role, app: res.key.app }, { role: "client", app: "demo" });

    const down = await herald(["status", "--server", "127.0.0.1:1"]);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /^herald: UNAVAILABLE .*cannot reach 127\.0\.0\.1:1/);
  });
});
