import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { createLogger } from "@herald/platform";
import { DirectoryPoolSource, poolFileName } from "./pool.source.js";

const logger = createLogger({ service: "pool-source-test", level: "silent" });

// The layout a kubelet writes for a projected volume: every key a symlink to ..data/<key>, and
// ..data a symlink to a timestamped directory that a change replaces as a whole.
class KubeletVolume {
  private generation = 0;
  constructor(readonly dir: string) {}

  write(files: Record<string, string>): void {
    const version = `..2026_12_08_00_00_00.${++this.generation}`;
    mkdirSync(join(this.dir, version));
    for (const [name, content] of Object.entries(files)) writeFileSync(join(this.dir, version, name), content);
    symlinkSync(version, join(this.dir, "..data_tmp"));
    renameSync(join(this.dir, "..data_tmp"), join(this.dir, "..data"));
    for (const name of Object.keys(files)) {
      try {
        symlinkSync(join("..data", name), join(this.dir, name));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      }
    }
  }

  remove(name: string): void {
    rmSync(join(this.dir, name));
  }
}

describe("DirectoryPoolSource", () => {
  let dir: string;
  let source: DirectoryPoolSource;
  const changes: string[][] = [];

  beforeEach(() => {
    changes.length = 0;
    dir = mkdtempSync(join(tmpdir(), "herald-pool-source-"));
    source = new DirectoryPoolSource({ dir, rescanMs: 60_000, logger });
    source.onChange((apps) => changes.push([...apps].sort()));
  });
  afterEach(async () => {
    await source.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("finds each app's files among <app>.<file> entries, and ignores names that are no app's", async () => {
    writeFileSync(join(dir, poolFileName("shop", "apns-key.p8")), "KEY");
    writeFileSync(join(dir, poolFileName("shop", "settings.json")), JSON.stringify({ HERALD_APNS_BUNDLE_ID: "com.example.shop" }));
    writeFileSync(join(dir, poolFileName("news-2", "settings.json")), "{}");
    for (const stray of ["Upper.settings.json", ".hidden.json", "noextension", "trailing.", "-x.settings.json", "é.settings.json"]) writeFileSync(join(dir, stray), "{}");
    await source.start();
    assert.deepEqual(changes, [["news-2", "shop"]]);
    const shop = source.get("shop")!;
    assert.equal(readFileSync(shop.path("apns-key.p8"), "utf8"), "KEY");
    assert.deepEqual(await shop.settings(), { HERALD_APNS_BUNDLE_ID: "com.example.shop" });
    assert.deepEqual(await source.get("news-2")!.settings(), {});
  });

  it("a settings file that is not the app's settings fails that app alone, with the reason", async () => {
    writeFileSync(join(dir, poolFileName("bad", "settings.json")), JSON.stringify({ HERALD_PROVIDER_URL: "https://evil.example" }));
    writeFileSync(join(dir, poolFileName("torn", "settings.json")), "{");
    await source.start();
    await assert.rejects(source.get("bad")!.settings(), /HERALD_PROVIDER_URL|Unrecognized/);
    await assert.rejects(source.get("torn")!.settings(), /not JSON/);
  });

  it("a kubelet's swap of the whole volume changes only the apps whose bytes changed; a removed app goes", async () => {
    const volume = new KubeletVolume(dir);
    const shard = { [poolFileName("a", "settings.json")]: "{}", [poolFileName("b", "settings.json")]: "{}", [poolFileName("b", "vapid-private-key")]: "one" };
    volume.write(shard);
    await source.start();
    assert.deepEqual(changes, [["a", "b"]]);
    const before = source.get("a")!.version;

    // Another app of the shard joins: every file is new on disk, a's bytes are not.
    volume.write({ ...shard, [poolFileName("c", "settings.json")]: "{}" });
    await source.rescan();
    assert.deepEqual(changes.at(-1), ["c"]);
    assert.equal(source.get("a")!.version, before);

    // b's key is rotated: b alone changes, and its path reads the new key.
    volume.write({ ...shard, [poolFileName("b", "vapid-private-key")]: "two", [poolFileName("c", "settings.json")]: "{}" });
    await source.rescan();
    assert.deepEqual(changes.at(-1), ["b"]);
    assert.equal(readFileSync(source.get("b")!.path("vapid-private-key"), "utf8"), "two");

    volume.remove(poolFileName("c", "settings.json"));
    await source.rescan();
    assert.deepEqual(changes.at(-1), ["c"]);
    assert.equal(source.get("c"), undefined);
    assert.equal(changes.length, 4);
  });

  it("keeps what it knew when the directory cannot be read", async () => {
    writeFileSync(join(dir, poolFileName("kept", "settings.json")), "{}");
    await source.start();
    rmSync(dir, { recursive: true });
    await source.rescan();
    assert.ok(source.get("kept"));
    assert.equal(changes.length, 1);
  });
});
