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

// One pooled app as the pool sees it: its credentials directory (files named as in
// CREDENTIAL_FILES), its settings, and a version that changes whenever either does.
export interface PoolApp {
  id: string;
  credentialsDir: string;
  version: string;
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

// Pooled apps from a directory with one subdirectory per app (the app id), rescanned every
// rescanMs so that apps and credential changes are picked up without a restart. A file's
// change is noticed by its size and modification time (a Kubernetes volume swaps a symlink,
// which changes both).
export class DirectoryPoolSource implements PoolAppSource {
  private readonly apps = new Map<string, PoolApp>();
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
      entries = (await readdir(this.o.dir, { withFileTypes: true })).filter((e) => e.isDirectory() || e.isSymbolicLink()).map((e) => e.name);
    } catch (err) {
      this.o.logger.warn({ err, dir: this.o.dir }, "pool: cannot read the apps directory; keeping what was known");
      return;
    }
    const seen = new Set<string>();
    const changed: string[] = [];
    for (const id of entries) {
      // Kubernetes' own entries (..data, ..2026_…) and anything else that is no app id.
      if (!isAppId(id)) continue;
      seen.add(id);
      const credentialsDir = join(this.o.dir, id);
      const version = await signature(credentialsDir);
      if (version === undefined || this.apps.get(id)?.version === version) continue;
      this.apps.set(id, { id, credentialsDir, version, settings: () => readSettings(credentialsDir) });
      changed.push(id);
    }
    for (const id of this.apps.keys()) {
      if (seen.has(id)) continue;
      this.apps.delete(id);
      changed.push(id);
    }
    if (changed.length) for (const l of this.listeners) l(changed);
  }
}

async function signature(dir: string): Promise<string | undefined> {
  try {
    const hash = createHash("sha256");
    for (const name of (await readdir(dir)).sort()) {
      if (name.startsWith(".")) continue;
      const s = await stat(join(dir, name));
      if (s.isFile()) hash.update(`${name}\0${s.size}\0${s.mtimeMs}\0`);
    }
    return hash.digest("base64url");
  } catch {
    // Gone between readdir and stat: the next scan sees.
    return undefined;
  }
}

async function readSettings(dir: string): Promise<AppSettings> {
  let text: string;
  try {
    text = await readFile(join(dir, SETTINGS_FILE), "utf8");
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

// The provider configuration of one pooled app: the pool's own, with the app's settings and
// credentials directory.
export const appProviderEnv = (pool: ProviderEnv, app: PoolApp, settings: AppSettings): ProviderEnv => ({ ...pool, ...settings, HERALD_CREDENTIALS_DIR: app.credentialsDir });
