export * from "./store.types.js";
export * from "./domain.rules.js";
export * from "./device.mapper.js";
export * from "./apikey.lookup.js";
export { createMemoryStore } from "./store.memory.js";
export { createMongoStore, ensureStoreIndexes, COLLECTIONS } from "./store.mongo.js";
export * from "./publish.types.js";
export { createMemoryPublishRepository } from "./publish.repository.memory.js";
export { createMongoPublishRepository, ensurePublishIndexes, PUBLISH_COLLECTIONS } from "./publish.repository.mongo.js";
