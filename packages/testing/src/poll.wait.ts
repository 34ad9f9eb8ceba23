// Polls until `check` returns a value other than undefined/false, or fails after the deadline
// with what was awaited and the last value seen. The poll interval is not a synchronisation
// assumption: only the condition ends the wait.
export async function eventually<T>(check: () => T | undefined | false | Promise<T | undefined | false>, what: string, options: { timeoutMs?: number; pollMs?: number } = {}): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const why = lastError ? `: last error ${lastError instanceof Error ? lastError.message : String(lastError)}` : "";
      throw new Error(`timed out after ${options.timeoutMs ?? 60_000} ms waiting for ${what}${why}`);
    }
    await new Promise((r) => setTimeout(r, options.pollMs ?? 200));
  }
}
