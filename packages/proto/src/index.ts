// Generated contracts, one namespace per proto package (names like StringList repeat across them).
export * as common from "./gen/herald/common/v1/common.js";
export * as registry from "./gen/herald/registry/v1/registry.js";
export * as apps from "./gen/herald/registry/v1/app.js";
export * as topic from "./gen/herald/topic/v1/topic.js";
export * as dispatch from "./gen/herald/dispatch/v1/dispatch.js";
export * as events from "./gen/herald/events/v1/events.js";
// gorush's gRPC contract (package "proto"), served by the gateway's gorush port.
export * as gorush from "./gen/gorush/gorush.js";
export { Provider, Platform } from "./gen/herald/common/v1/common.js";
export { descriptorSetPath } from "./descriptors.js";
export { BusGroups, BusTopics, deliveryTopicsOf, pooledTopics, pooledTopicsOf, LANES, WEBHOOK_EVENTS, type Lane, type WebhookEvent } from "./topics.js";
export { APP_ID_MAX_LENGTH, APP_ID_PATTERN, APP_ID_RULE, isAppId } from "./app.id.js";
