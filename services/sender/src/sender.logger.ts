import { createLogger, type Logger, type LoggerOptions } from "@herald/platform";
import type { ProviderName } from "./provider.types.js";

// A sender's logger: every line names its app and provider (bindings of the process's logger),
// so the worker's own lines need not (and repeating them is harmless: see uniqueKeys).
export function senderLogger(o: { app: string; provider: ProviderName; level?: string; destination?: LoggerOptions["destination"] }): Logger {
  return createLogger({ service: `herald-sender-${o.provider}`, level: o.level, destination: o.destination }).child({ app: o.app, provider: o.provider });
}
