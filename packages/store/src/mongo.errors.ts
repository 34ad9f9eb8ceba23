// Duplicate-key (E11000) detection for single writes and bulk writes alike.
export function isDuplicateKey(error: unknown): boolean {
  if (typeof error !== "object" || error === null) return false;
  const e = error as { code?: unknown; writeErrors?: unknown };
  if (e.code === 11000) return true;
  const writeErrors = Array.isArray(e.writeErrors) ? e.writeErrors : e.writeErrors ? [e.writeErrors] : [];
  return writeErrors.some((w: { code?: unknown }) => w?.code === 11000);
}

// The input positions a bulk insert (ordered: false) refused as duplicate keys; undefined when any
// other error is among them, or when the error is not a bulk write error at all.
export function duplicateKeyIndexes(error: unknown): number[] | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const e = error as { writeErrors?: unknown };
  const writeErrors: Array<{ code?: unknown; index?: unknown }> = Array.isArray(e.writeErrors) ? e.writeErrors : e.writeErrors ? [e.writeErrors] : [];
  if (writeErrors.length === 0 || !writeErrors.every((w) => w?.code === 11000 && typeof w.index === "number")) return undefined;
  return writeErrors.map((w) => w.index as number);
}
