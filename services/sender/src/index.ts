export * from "./provider.types.js";
export { SenderWorker, backoffMs, type SenderOptions } from "./sender.consumer.js";
export { DryRunProvider } from "./providers/dryrun.provider.js";
