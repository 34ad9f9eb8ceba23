export { createRegistryModule, type RegistryModule, type RegistryModuleDeps } from "./registry.module.js";
export type { WebhookOptions } from "./webhook.consumer.js";
export { UserTokens } from "./usertoken.jwt.js";
export { toAppProto, toLimits } from "./app.service.js";
