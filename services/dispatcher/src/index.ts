export { createDispatcherModule, type DispatcherModule, type DispatcherModuleDeps } from "./dispatcher.module.js";
export { grpcRecipients, storeRecipients, type RecipientSource } from "./recipient.source.js";
export { buildPayload, checkNotification, PAYLOAD_LIMITS } from "./notification.payload.js";
