// Urgent first, bulk never starved. The urgent and bulk lanes of a sender are consumed side by
// side and share the provider's connections; without a rule a broadcast's steps take as many
// HTTP/2 streams as the urgent lane's lone notifications. The gate lets a bulk step start only
// while no urgent step is in flight — or once it has waited `maxBulkWaitMs`, so a steady stream of
// urgent traffic slows a broadcast down but never stops it.

export class LaneGate {
  private urgent = 0;
  private waiters: Array<() => void> = [];
  // Bulk steps that started only because their wait ran out (a measure of urgent pressure).
  overridden = 0;

  constructor(private readonly maxBulkWaitMs = 250) {}

  // Runs one urgent step: bulk steps not yet started wait for it.
  async urgentStep<T>(work: () => Promise<T>): Promise<T> {
    this.urgent++;
    try {
      return await work();
    } finally {
      if (--this.urgent === 0) this.release();
    }
  }

  // Resolves when a bulk step may start: no urgent step in flight, or maxBulkWaitMs passed.
  bulkTurn(): Promise<void> {
    if (this.urgent === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== go);
        this.overridden++;
        resolve();
      }, this.maxBulkWaitMs);
      const go = () => {
        clearTimeout(timer);
        resolve();
      };
      this.waiters.push(go);
    });
  }

  get urgentInFlight(): number {
    return this.urgent;
  }

  private release(): void {
    const waiting = this.waiters;
    this.waiters = [];
    for (const go of waiting) go();
  }
}
