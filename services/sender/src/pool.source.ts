import { createHash } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "@herald/platform";
import { isAppId } from "@herald/proto";
import { z } from "zod";
import { ProviderConfigError, providerEnv, type ProviderEnv } from "./provider.factory.js";

// The settings a pooled app brings itself: what a dedicated sender gets as environment variables
// (the same names), everything else (provider URL, CA, timeouts, connections) is the pool's.
export const APP_SETTINGS = z
  .object({
    HERALD_APNS_ENVIRONMENT: z.enum(["production", "sandbox"]).optional(),
    HERALD_APNS_BUNDLE_ID: providerEnv.HERALD_APNS_BUNDLE_ID,
    HERALD_APNS_KEY_ID: providerEnv.HERALD_APNS_KEY_ID,
    HERALD_APNS_TEAM_ID: providerEnv.HERALD_APNS_TEAM_ID,
    HERALD_VAPID_SUBJECT: providerEnv.HERALD_VAPID_SUBJECT,
    HERALD_VAPID_PUBLIC_KEY: providerEnv.HERALD_VAPID_PUBLIC_KEY,
    HERALD_FCM_PROJECT_ID: providerEnv.HERALD_FCM_PROJECT_ID,
    HERALD_HMS_APP_ID: providerEnv.HERALD_HMS_APP_ID,
  })
  .strict();
export type AppSettings = z.infer<typeof APP_SETTINGS>;

export const SETTINGS_FILE = "settings.json";

// One pooled app as the pool sees it: where each of its credential files is (files named as in
// CREDENTIAL_FILES), its settings, and a version that changes whenever the content of either does.
export interface PoolApp {
  id: string;
  version: string;
  // The path of one of its files (it may not exist: the provider says which one it misses).
  path(file: string): string;
  // Read lazily: a broken settings file concerns this app alone, when it first sends.
  settings(): Promise<AppSettings>;
}

export interface PoolAppSource {
  get(app: string): PoolApp | undefined;
  // Called with the ids of apps whose configuration appeared, changed or went away.
  onChange(listener: (apps: string[]) => void): void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

// The file of one app in a pool directory: <app>.<file>. An app id holds no '.', and a Secret key
// no '/', which is why the operator's credential shards (many apps per Secret, all mounted into
// one projected volume) name them so.
export const poolFileName = (app: string, file: string) => `${app}.${file}`;

// Pooled apps from one directory of <app>.<file> entries, rescanned every rescanMs so that apps
// and credential changes are picked up without a restart. An app's version is the hash of its
// files' contents; a file is read again only when its size, modification time or inode change
// (the kubelet swaps a symlink to a new directory whenever any key of a shard changes, so every
// file of that shard looks new, and only the apps whose bytes changed may be rebuilt).
export class DirectoryPoolSource implements PoolAppSource {
  private readonly apps = new Map<string, PoolApp>();
  // path → the content hash of the file as last read, with the stat it was read at.
  private readonly hashes = new Map<string, { stamp: string; hash: string }>();
  private readonly listeners: Array<(apps: string[]) => void> = [];
  private timer?: NodeJS.Timeout;
  private scanning?: Promise<void>;

  constructor(private readonly o: { dir: string; rescanMs?: number; logger: Logger }) {}

  get(app: string): PoolApp | undefined {
    return this.apps.get(app);
  }

  onChange(listener: (apps: string[]) => void): void {
    this.listeners.push(listener);
  }

  async start(): Promise<void> {
    await this.rescan();
    const every = this.o.rescanMs ?? 2000;
    const tick = () => {
      this.timer = setTimeout(() => void this.rescan().finally(tick), every);
      this.timer.unref();
    };
    tick();
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    await this.scanning;
  }

  // Exposed for tests that do not want to wait for the next scan.
  rescan(): Promise<void> {
    this.scanning ??= this.scan().finally(() => (this.scanning = undefined));
    return this.scanning;
  }

  private async scan(): Promise<void> {
    let entries: string[];
    try {
      entries = await readdir(this.o.dir);
    } catch (err) {
      this.o.logger.warn({ err, dir: this.o.dir }, "pool: cannot read the apps directory; keeping what was known");
      return;
    }
    const filesOf = new Map<string, string[]>();
    for (const name of entries) {
      // Kubernetes' own entries (..data, ..2026_…) start with a dot; anything else that is not
      // <app id>.<file> is no app's.
      const dot = name.indexOf(".");
      const id = name.slice(0, dot);
      if (dot <= 0 || dot === name.length - 1 || !isAppId(id)) continue;
      filesOf.set(id, [...(filesOf.get(id) ?? []), name]);
    }
    const changed: string[] = [];
    const read = new Set<string>();
    for (const [id, names] of filesOf) {
      const version = await this.versionOf(names.sort(), read);
      if (version === undefined || this.apps.get(id)?.version === version) continue;
      const path = (file: string) => join(this.o.dir, poolFileName(id, file));
      this.apps.set(id, { id, version, path, settings: () => readSettings(path(SETTINGS_FILE)) });
      changed.push(id);
    }
    for (const id of this.apps.keys()) {
      if (filesOf.has(id)) continue;
      this.apps.delete(id);
      changed.push(id);
    }
    for (const path of this.hashes.keys()) if (!read.has(path)) this.hashes.delete(path);
    if (changed.length) for (const l of this.listeners) l(changed);
  }

  // The hash of the files' names and contents; undefined when one went away while being read
  // (the next scan sees the directory as it is then).
  private async versionOf(names: string[], read: Set<string>): Promise<string | undefined> {
    const hash = createHash("sha256");
    for (const name of names) {
      const path = join(this.o.dir, name);
      read.add(path);
      try {
        const s = await stat(path);
        if (!s.isFile()) continue;
        const stamp = `${s.size}:${s.mtimeMs}:${s.ino}`;
        let known = this.hashes.get(path);
        if (known?.stamp !== stamp) {
          known = { stamp, hash: createHash("sha256").update(await readFile(path)).digest("base64url") };
          this.hashes.set(path, known);
        }
        hash.update(`${name}\0${known.hash}\0`);
      } catch {
        return undefined;
      }
    }
    return hash.digest("base64url");
  }
}

async function readSettings(path: string): Promise<AppSettings> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw new ProviderConfigError(`cannot read ${SETTINGS_FILE}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ProviderConfigError(`${SETTINGS_FILE} is not JSON: ${(err as Error).message}`);
  }
  const parsed = APP_SETTINGS.safeParse(json);
  if (!parsed.success) throw new ProviderConfigError(`${SETTINGS_FILE}: ${parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ")}`);
  return parsed.data;
}

// The provider configuration of one pooled app: the pool's own, with the app's settings (its
// credential files come from PoolApp.path).
export const appProviderEnv = (pool: ProviderEnv, settings: AppSettings): ProviderEnv => ({ ...pool, ...settings });
