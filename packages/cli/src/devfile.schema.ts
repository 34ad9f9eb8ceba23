import { existsSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";

// `.herald/dev.json`: the keys `herald serve` created, so the CLI run next to it needs no flags.
// Development only: the file holds plaintext keys (mode 0600, and `.herald/` is gitignored).

export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));

export const DevFileSchema = z.object({
  server: z.string(),
  adminKey: z.string(),
  pid: z.number().int().optional(),
  startedAt: z.string().optional(),
  apps: z.array(
    z.object({
      id: z.string(),
      name: z.string().optional(),
      serverKey: z.string(),
      clientKey: z.string(),
      userTokenSecret: z.string(),
    }),
  ),
});

export type DevFile = z.infer<typeof DevFileSchema>;

// HERALD_DEV_FILE overrides the location (tests, several checkouts sharing one server).
export function devFilePath(env: NodeJS.ProcessEnv = process.env): string {
  return env.HERALD_DEV_FILE || join(REPO_ROOT, ".herald", "dev.json");
}

export async function writeDevFile(path: string, content: DevFile): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFile(path, `${JSON.stringify(content, null, 2)}\n`, { mode: 0o600 });
}

// Returns null when there is no file; throws with the path when it exists but is unreadable.
export async function readDevFile(path: string): Promise<DevFile | null> {
  if (!existsSync(path)) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, "utf8"));
  } catch (err) {
    throw new Error(`${path}: not valid JSON (${(err as Error).message}); delete it or restart \`herald serve\``);
  }
  const parsed = DevFileSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`${path}: unexpected content (${parsed.error.issues[0]?.message ?? "invalid"}); delete it or restart \`herald serve\``);
  return parsed.data;
}

// Removes the file at shutdown, but only when it still describes this server (another `serve`
// may have replaced it meanwhile).
export async function removeDevFileIfOurs(path: string, adminKey: string): Promise<void> {
  try {
    const current = await readDevFile(path);
    if (current?.adminKey === adminKey) await rm(path, { force: true });
  } catch {
    // Unreadable: not ours to judge.
  }
}
