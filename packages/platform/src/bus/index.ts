export * from "./bus.types.js";
export type { BusLogger } from "./bus.logger.js";
export { MemoryBus, type MemoryBusOptions } from "./bus.memory.js";
export { KafkaBus, type KafkaBusOptions } from "./bus.kafka.js";
export { namespacedBus } from "./bus.namespace.js";
export { BUS_TRACER } from "./bus.tracing.js";
export { backoffDelay, type RetryPolicy } from "./bus.retry.js";
