import type { RateRepository } from "./store.types.js";

// Publish-rate windows in memory (the embedded mode): a counter per (app, window). Each call runs
// synchronously inside its promise, so concurrent takes never exceed the limit.
export class MemoryRates implements RateRepository {
  // `${app}\n${window}` → slots taken and when the window may be forgotten.
  private readonly windows = new Map<string, { taken: number; expiresAt: Date }>();

  async take(app: string, window: string, limit: number, expiresAt: Date): Promise<boolean> {
    if (limit <= 0) return false;
    const id = `${app}\n${window}`;
    const current = this.windows.get(id);
    if (!current) {
      this.windows.set(id, { taken: 1, expiresAt: new Date(expiresAt) });
      return true;
    }
    if (current.taken >= limit) return false;
    current.taken++;
    return true;
  }

  async sweep(now: Date): Promise<number> {
    let n = 0;
    for (const [id, w] of this.windows) {
      if (w.expiresAt < now) {
        this.windows.delete(id);
        n += w.taken;
      }
    }
    return n;
  }
}
