import type { Logger } from "./log.logger.js";

type Stopper = { name: string; stop: () => Promise<void> };

// Stops what a process started in reverse order (servers stop accepting before the bus and the
// database they drain into are closed), once, with a deadline per step.
export class Lifecycle {
  private readonly stoppers: Stopper[] = [];
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly stepTimeoutMs = 15_000,
  ) {}

  add(name: string, stop: () => Promise<void>): void {
    this.stoppers.push({ name, stop });
  }

  shutdown(reason: string): Promise<void> {
    this.stopping ??= this.runStoppers(reason);
    return this.stopping;
  }

  // SIGTERM / SIGINT drain and exit 0; a second signal exits at once.
  installSignalHandlers(exit: (code: number) => void = process.exit): void {
    let signalled = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (signalled) return exit(1);
      signalled = true;
      this.shutdown(signal).then(
        () => exit(0),
        () => exit(1),
      );
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    // A failed start (top-level await in main.ts) or a bug escaping a callback: one structured
    // line naming the error (with kafkajs/Mongo error types and codes), then the same drain.
    process.on("uncaughtException", (err) => {
      this.logger.fatal({ err }, `fatal: ${err instanceof Error ? err.message : String(err)}`);
      this.shutdown("fatal error").finally(() => exit(1));
    });
  }

  private async runStoppers(reason: string): Promise<void> {
    this.logger.info({ reason }, "shutting down");
    for (const { name, stop } of [...this.stoppers].reverse()) {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          stop(),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`timed out after ${this.stepTimeoutMs} ms`)), this.stepTimeoutMs);
          }),
        ]);
      } catch (err) {
        this.logger.error({ err, step: name }, "shutdown step failed");
      } finally {
        clearTimeout(timer);
      }
    }
    this.logger.info("stopped");
  }
}
