import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createClient, createLogger } from "@herald/platform";
import { apps as appsApi, Platform, Provider, registry } from "@herald/proto";
import { readDevFile, REPO_ROOT } from "./devfile.schema.js";
import { loadPushApps } from "@herald/pushapp";
import { formatBanner, startEmbedded, type EmbeddedServer } from "./serve.js";

const silent = () => createLogger({ service: "test", level: "silent" });

describe("startEmbedded", () => {
  let tmp: string;
  let server: EmbeddedServer;
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), "herald-serve-"));
    server = await startEmbedded({ port: 0, appsDir: join(REPO_ROOT, "deploy/samples"), logger: silent(), devFile: join(tmp, ".herald", "dev.json") });
  });
  after(async () => {
    await server?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  test("every sample becomes an app with working SERVER and CLIENT keys", async () => {
    const { apps: samples } = await loadPushApps(join(REPO_ROOT, "deploy/samples"));
    assert.deepEqual(server.apps.map((a) => a.id).sort(), samples.map((a) => a.metadata.name).sort());
    assert.deepEqual(server.problems, []);
    const admin = createClient(appsApi.AppServiceService, appsApi, server.address, { apiKey: server.adminKey });
    const demo = await admin.getApp({ id: "demo" });
    assert.equal(demo.app?.name, "Herald Demo");
    assert.equal(demo.app?.limits?.maxDevicesPerUser, 10);
    admin.close();

    const app = server.apps.find((a) => a.id === "demo")!;
    const asServer = createClient(registry.RegistryServiceService, registry, server.address, { apiKey: app.serverKey });
    const asClient = createClient(registry.RegistryServiceService, registry, server.address, { apiKey: app.clientKey });
    const { device } = await asClient.registerDevice({ provider: Provider.PROVIDER_HMS, platform: Platform.PLATFORM_ANDROID, token: "hms-token" });
    assert.ok(device?.id);
    const listed = await asServer.listDevices({});
    assert.deepEqual(
      listed.devices.map((d) => d.id),
      [device.id],
    );
    asServer.close();
    asClient.close();
  });

  test("writes the keys to the dev file, removes it at stop; the banner shows keys and examples", async () => {
    const path = join(tmp, ".herald", "dev.json");
    const dev = await readDevFile(path);
    assert.equal(dev?.server, server.address);
    assert.equal(dev?.adminKey, server.adminKey);
    assert.deepEqual(dev?.apps.map((a) => a.serverKey), server.apps.map((a) => a.serverKey));
    assert.equal((await stat(path)).mode & 0o777, 0o600, "the keys file is private");
    const banner = formatBanner(server);
    assert.ok(banner.includes(server.address));
    assert.ok(banner.includes(server.adminKey));
    for (const a of server.apps) {
      assert.ok(banner.includes(a.serverKey) && banner.includes(a.clientKey) && banner.includes(a.userTokenSecret), a.id);
    }
    assert.match(banner, /grpcurl -plaintext/);
    assert.match(banner, /npm run herald -- devices list/);
    assert.match(banner, /dry-run: no credentials in embedded mode/, "without fakes every sender is dry-run");
    // With a provider for every sender (the fakes), nothing claims to be dry-run.
    const delivering = formatBanner({ ...server, apps: server.apps.map((a) => ({ ...a, dryRun: [] })) });
    assert.doesNotMatch(delivering, /dry-run/);

    await server.stop();
    assert.equal(existsSync(path), false);
  });
});

test("a port in use is a clear error and releases what was opened", async () => {
  const first = await startEmbedded({ port: 0, appsDir: join(REPO_ROOT, "deploy/samples"), logger: silent() });
  try {
    await assert.rejects(startEmbedded({ port: first.port, appsDir: join(REPO_ROOT, "deploy/samples"), logger: silent() }), /cannot listen on 127\.0\.0\.1:\d+.*pass --port/);
  } finally {
    await first.stop();
  }
});

// ensure-deps.sh in a scratch copy of the layout, with a fake npm that records its calls.
describe("ensure-deps.sh", () => {
  let root: string;
  let calls: string;
  const run = () =>
    new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile("sh", [join(root, "packages/cli/bin/ensure-deps.sh")], { cwd: tmpdir(), env: { ...process.env, PATH: `${join(root, "fakebin")}:${process.env.PATH}` } }, (err, _out, stderr) =>
        resolve({ code: err ? Number(err.code) : 0, stderr }),
      );
    });
  const npmCalls = async () => (existsSync(calls) ? (await readFile(calls, "utf8")).trim().split("\n") : []);

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "herald-deps-"));
    calls = join(root, "npm-calls");
    await mkdir(join(root, "packages/cli/bin"), { recursive: true });
    await mkdir(join(root, "fakebin"));
    await copyFile(join(REPO_ROOT, "packages/cli/bin/ensure-deps.sh"), join(root, "packages/cli/bin/ensure-deps.sh"));
    await writeFile(join(root, "package-lock.json"), "{}");
    // The fake npm logs where and how it was called, then installs like npm ci would.
    await writeFile(join(root, "fakebin/npm"), `#!/bin/sh\necho "$(pwd) $*" >> "${calls}"\nmkdir -p node_modules && touch node_modules/.package-lock.json\n`);
    await chmod(join(root, "fakebin/npm"), 0o755);
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  test("installs on a fresh clone, skips when current, reinstalls when the lock file changes", async () => {
    assert.equal((await run()).code, 0);
    assert.deepEqual(await npmCalls(), [`${root} ci --no-audit --no-fund`]);

    assert.equal((await run()).code, 0);
    assert.equal((await npmCalls()).length, 1, "nothing to do the second time");

    const later = new Date(Date.now() + 5_000);
    await utimes(join(root, "package-lock.json"), later, later);
    assert.equal((await run()).code, 0);
    assert.equal((await npmCalls()).length, 2);

    await rm(join(root, "node_modules"), { recursive: true });
    assert.equal((await run()).code, 0);
    assert.equal((await npmCalls()).length, 3);
  });
});
